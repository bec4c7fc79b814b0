"""Small value rules of the import: home-relative paths, host lists, edeliver's auto-version
pieces. Pure functions, so each rule is tested on its own."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..validation import InvalidInput, host_address
from .bash import Assignment
from .findings import Finding, note

# deliver.auto_version's pieces (the same rule as pydeliver_tasks.autoversion, which the loader
# applies): edeliver's names, its append-/git-/build- prefixes, joined by + only
AUTO_VERSION_PIECES = {"commit-count", "commit-count-all", "revision", "branch",
                       "branch-unless-master", "date", "time", "mix-env"}
_AUTO_VERSION_ALIASES = {"commit-count-branch": "commit-count",
                         "commit-count-all-branches": "commit-count-all"}


def check(fn: Callable[[str], object], value: str) -> str:
    """The validator's complaint about value, or "" when it passes."""
    try:
        fn(value)
    except InvalidInput as e:
        return f"check it: {e}"
    return ""


def home_relative(path: str) -> tuple[str, str]:
    """edeliver's `~/x` (expanded by the remote shell) as our home-relative `x`, and a note."""
    path = path.strip()
    if path == "~" or path.startswith("~/"):
        return path[2:].rstrip("/") or ".", "~/ dropped: a relative path starts in the user's home"
    if path.startswith("~"):
        return path, "check it: ~user is not expanded here, write the absolute path"
    return (path.rstrip("/") or path), ""


def join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def auto_version_check(value: str) -> str:
    """What our loader would refuse in an AUTO_VERSION kept as given, or ""."""
    if not value.strip():
        return ""
    if re.search(r"\S\s+\S", value.strip()):
        return "check it: edeliver also took spaces between pieces; here they are joined by + only"
    seen: list[str] = []
    for raw in value.split("+"):
        name = raw.strip().lower().removeprefix("append-").removeprefix("git-").removeprefix("build-")
        name = _AUTO_VERSION_ALIASES.get(name, name)
        if name not in AUTO_VERSION_PIECES:
            known = ", ".join(sorted(AUTO_VERSION_PIECES))
            return f"check it: {raw.strip()!r} is not a piece we know ({known})"
        if name in seen:
            return f"check it: the piece {name!r} is given twice"
        seen.append(name)
    return ""


def join_path(path: str, app: str) -> str:
    return app if path in ("", ".") else f"{path.rstrip('/')}/{app}"


def host_list(a: Assignment, user: Assignment | None) -> tuple[list[str], list[Finding]]:
    """`user@host` for every host of a `<STAGE>_HOSTS` list, each oddity noted."""
    who = user.value.strip() if user is not None else ""
    findings: list[Finding] = []
    if "," in a.value:
        findings.append(note(a.line, a.name, "commas read as separators (edeliver wanted "
                                             "spaces between hosts)"))
    out: list[str] = []
    for name in re.split(r"[\s,]+", a.value.strip()):
        if not name:
            continue
        spec = name if "@" in name or not who else f"{who}@{name}"
        if "@" in name and who:
            findings.append(note(a.line, a.name, f"{name} has its own user: kept as written "
                                 "(edeliver put its _USER before it as well)"))
        if re.search(r"[^\]]:\d+$", name):
            findings.append(note(a.line, a.name, f"{name}: the :port is the SSH port here "
                                 "(edeliver handed it to ssh as part of the name)"))
        problem = check(host_address, spec)
        if problem:
            findings.append(note(a.line, a.name, f"{spec}: {problem}"))
        if spec in out:
            findings.append(note(a.line, a.name, f"{spec} is listed twice: kept once"))
        else:
            out.append(spec)
    return out, findings
