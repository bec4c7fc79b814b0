"""What the importer says about one line of `.deliver/config`: the report is a list of these, so
nothing in the file (a host, a hook, a setting) can disappear without a line saying why."""

from __future__ import annotations

from dataclasses import dataclass

MAPPED = "mapped"
NOT_MAPPED = "not mapped"
NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """One line's fate: `what` is the whole sentence, `status` its kind (mapped, not mapped, note).

    line 0 means the file as a whole (a setting it lacks)."""

    line: int
    name: str
    status: str
    what: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED


def mapped(line: int, name: str, key: str, detail: str = "") -> Finding:
    return Finding(line, name, MAPPED, f"mapped to deliver.{key}" + (f" ({detail})" if detail else ""))


def not_mapped(line: int, name: str, why: str) -> Finding:
    return Finding(line, name, NOT_MAPPED, f"not mapped: {why}")


def note(line: int, name: str, text: str) -> Finding:
    return Finding(line, name, NOTE, text)
