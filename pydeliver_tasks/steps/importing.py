"""deliver.import: an edeliver project's `.deliver/config` as our invoke.yaml (and tasks.py),
read without running it (importer). Nothing is written while anything is left unmapped or the
result is not a valid config, unless the user accepts a partial import."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.exceptions import Exit

from .. import lazy
from .. import validation as v
from ..config import ConfigError, load
from ..fleet import say

importer = lazy.module("pydeliver_tasks.importer", fleet=False)  # only `deliver.import` needs it


def _write(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


def import_edeliver(project_dir: Path, source: str = ".deliver/config",
                    accept_partial: bool = False, force: bool = False) -> importer.ImportResult:
    """Read `source` (relative to project_dir), print what became of every line, and write
    invoke.yaml (tasks.py too when there is none). Exit 1 when something is not mapped or the
    result is not a valid config (nothing written) unless accept_partial; exit 2 when the file
    cannot be read, or invoke.yaml exists (unless force)."""
    path = project_dir / source
    result = importer.import_text(importer.read(path))
    for line in importer.report_lines(result, source):
        say(line)
    problems = []
    try:
        load({"deliver": {**result.config, "project_dir": str(project_dir)}})
    except ConfigError as exc:
        problems = exc.problems
    for problem in problems:
        say(f"invalid in the result: {problem}")
    target, tasks = project_dir / "invoke.yaml", project_dir / "tasks.py"
    left = len(result.unmapped) + len(problems)
    if left and not accept_partial:
        raise Exit(f"{left} thing(s) above were not mapped or are not valid: nothing written; "
                   f"fix {source} (or the values), or write what was mapped: inv deliver.import "
                   f"--accept-partial", code=1)
    if target.exists() and not force:
        raise v.InvalidInput(f"{target} exists: nothing written; --force replaces it")
    _write(target, importer.invoke_yaml(result.config))
    say(f"wrote {target}" + (f" ({left} thing(s) left to do by hand, listed above)" if left else ""))
    if tasks.exists():
        say(f"kept {tasks}: it must import the tasks (from pydeliver_tasks import ns)")
    else:
        _write(tasks, importer.tasks_py())
        say(f"wrote {tasks}")
    return result
