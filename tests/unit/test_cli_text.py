"""What the CLI says of itself: every task's --list line is one whole sentence."""

from __future__ import annotations

from invoke import Collection, Task

from pydeliver_tasks import ns


def tasks(c: Collection, prefix: str = "") -> list[tuple[str, Task]]:
    found = [(prefix + name, t) for name, t in c.tasks.items()]
    for name, sub in c.collections.items():
        found += tasks(sub, f"{prefix}{name}.")
    return found


def test_every_list_line_is_a_whole_sentence() -> None:
    cut = []
    for name, t in tasks(ns):
        doc = (t.body.__doc__ or "").strip()
        first = doc.splitlines()[0] if doc else ""
        if not first.endswith((".", ":")) or len(first) > 100:
            cut.append(f"{name}: {first!r}")
    assert not cut, "inv --list shows the docstring's first line; these are cut:\n" + "\n".join(cut)
