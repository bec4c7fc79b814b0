"""What a run hands back: one HostResult per host, gathered in one RunResult (summary table,
JSON, the hosts left unfinished and the steps that would finish or undo them)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from ..model import NextStep, Release, UpgradeManifest
from .output import say

# Results of hosts a run did not touch (a strategy stopped first, or left an unreachable one out).
NOT_STARTED = ("not started", "skipped")


@dataclass
class HostResult:
    host: str
    ok: bool
    message: str
    seconds: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def not_started(self) -> bool:
        return not self.ok and self.message.startswith(NOT_STARTED)


@dataclass
class RunResult:
    """Every step's answer: per-host results (iterate it like a list), what was built, and for
    a run that did not finish, the hosts left and the steps that finish or undo them — data
    only; the task layer words them as commands."""

    step: str
    stage: str
    hosts: list[HostResult] = field(default_factory=list)
    dry_run: bool = False
    release: Release | None = None  # build.release / build.upgrade: what the store now has
    manifest: UpgradeManifest | None = None  # build.upgrade, show.appup: the plan
    releases: list[Release] = field(default_factory=list)  # releases: what the store holds
    text: str = ""  # show.relup: the relup
    finish: tuple[NextStep, ...] = ()  # per unfinished host, in this order
    undo: tuple[NextStep, ...] = ()  # per done host, when others were left unfinished

    def __iter__(self) -> Iterator[HostResult]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, index: int) -> HostResult:
        return self.hosts[index]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.hosts)

    @property
    def done(self) -> list[str]:
        return [r.host for r in self.hosts if r.ok]

    @property
    def waiting(self) -> list[str]:
        return [r.host for r in self.hosts if r.not_started]

    @property
    def failed(self) -> list[str]:
        return [r.host for r in self.hosts if not r.ok and not r.not_started]

    def table(self) -> str:
        width = max([len(r.host) for r in self.hosts] + [4])
        title = f"{self.step} — stage {self.stage}" + (
            " (dry run: nothing was changed)" if self.dry_run else "")
        lines = [title, f"  {'host':<{width}}  result  time    message"]
        for r in self.hosts:
            verdict = "ok" if r.ok else "FAILED"
            message = " ".join(r.message.split())  # one row per host, whatever a reply held
            lines.append(f"  {r.host:<{width}}  {verdict:<6}  {r.seconds:5.1f}s  {message}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"step": self.step, "stage": self.stage, "ok": self.ok,
                "hosts": [asdict(r) for r in self.hosts]}

    def write_json(self, path: str) -> None:
        """--json: to a file, or '-' for stdout."""
        text = json.dumps(self.as_json(), indent=2, default=str)
        if path == "-":
            say(text)
        else:
            Path(path).write_text(text + "\n")


class StepFailed(Exit):
    """Raised after the summary when any host failed; exits non-zero when it reaches Invoke.
    `result` is the run's RunResult (its `finish`/`undo` say what is left)."""

    def __init__(self, step: str, results: Sequence[HostResult] | RunResult) -> None:
        self.result = results if isinstance(results, RunResult) else RunResult(
            step, "", list(results))
        self.results = list(self.result.hosts)
        r = self.result
        if r.failed:
            text = f"{step} failed on {len(r.failed)} of {len(r)} host(s): {', '.join(r.failed)}"
            text += f"; not started: {', '.join(r.waiting)}" if r.waiting else ""
        else:
            text = f"{step} did not run on {len(r.waiting)} of {len(r)} host(s): " + \
                ", ".join(r.waiting)
        super().__init__(text, code=1)

    def __str__(self) -> str:
        return str(self.message)
