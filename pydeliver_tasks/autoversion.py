"""Auto-versions (edeliver's `--auto-version`): a unique, ordered version for every build, made
from git and build facts, without a change in the user's repository (the build host's checkout
is rewritten). Pure functions; the facts are gathered by steps.versioning.

`1.0.0` + `commit-count+revision+branch-unless-master` -> `1.0.0+3027-82a5834-feature`: the
first piece joins with `+` (build metadata), the others with `-`.

Order: PEP 440, whose local version (after `+`) compares piece by piece, numbers as numbers and
above words — so `1.0.0+3028-…` is newer than `1.0.0+3027-…`, and both are newer than `1.0.0`.
Two versions that differ first in a piece that is not a number (a revision, a branch) have no
order: `ordered` says so, and what needs an order (upgrade, latest) refuses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from packaging.version import InvalidVersion, Version

from . import validation as v

# canonical piece -> what it appends; the accepted spellings are below
PIECES = {
    "commit-count": "commits reachable from the built commit (the same commit: the same number)",
    "commit-count-all": "commits on every branch of this repository",
    "revision": "the built commit's short sha (7 hex digits)",
    "branch": "the branch built (--branch, else the branch checked out here)",
    "branch-unless-master": "the branch, unless it is master or main",
    "date": "the build's UTC date, YYYYMMDD",
    "time": "the build's UTC time, HHMMSS",
    "mix-env": "the mix env (mix) or the rebar3 profile",
}
_ALIASES = {"commit-count-branch": "commit-count", "commit-count-all-branches": "commit-count-all"}
MAIN_BRANCHES = ("master", "main")


def pieces(text: str, what: str = "--auto-version") -> tuple[str, ...]:
    """`commit-count+git-revision` -> ("commit-count", "revision"); edeliver's optional `append-`,
    `git-` and `build-` prefixes are accepted. An unknown piece is named (InvalidInput)."""
    found: list[str] = []
    for raw in str(text).split("+"):
        name = raw.strip().lower().removeprefix("append-")
        name = name.removeprefix("git-").removeprefix("build-")
        name = _ALIASES.get(name, name)
        if name not in PIECES:
            raise v.InvalidInput(f"{what}: unknown piece {raw.strip()!r}; use pieces joined by +: "
                                 f"{', '.join(PIECES)}")
        if name in found:
            raise v.InvalidInput(f"{what}: piece {name!r} given twice")
        found.append(name)
    return tuple(found)


@dataclass(frozen=True)
class Facts:
    """What the pieces are made of, gathered before the build."""
    sha: str
    commit_count: int
    commit_count_all: int
    branch: str | None  # None: the commit's branch is not known (a tag or revision build)
    now: datetime  # UTC
    env: str  # mix env or rebar3 profile


def _clean(text: str) -> str:
    """A branch as version metadata: letters, digits and `-` only (feature/x -> feature-x)."""
    return re.sub(r"[^0-9A-Za-z]+", "-", text).strip("-") or "branch"


def suffix(chosen: tuple[str, ...], facts: Facts) -> str:
    """`+3027-82a5834-feature` for the chosen pieces ("" when every piece is empty, e.g.
    branch-unless-master on master)."""
    out: list[str] = []
    for name in chosen:
        if name in ("branch", "branch-unless-master"):
            if facts.branch is None:
                raise v.InvalidInput(f"auto-version piece {name}: the branch built is not known "
                                     "(a tag or revision build): give --branch")
            if name == "branch-unless-master" and facts.branch in MAIN_BRANCHES:
                continue
            out.append(_clean(facts.branch))
        else:
            out.append({"commit-count": str(facts.commit_count),
                        "commit-count-all": str(facts.commit_count_all),
                        "revision": facts.sha[:7],
                        "date": facts.now.strftime("%Y%m%d"),
                        "time": facts.now.strftime("%H%M%S"),
                        "mix-env": _clean(facts.env)}[name])
    return ("+" + "-".join(out)) if out else ""


def applied(base: str, extra: str, where: str) -> str:
    """base + suffix, refused when the project's version already carries build metadata."""
    if extra and "+" in base:
        raise v.InvalidInput(f"{where}: version {base} already carries build metadata (+…): "
                             "auto-version appends its own; remove it from the project")
    return v.version(base + extra)


def ordered(a: str, b: str) -> bool:
    """Whether a and b have an order (see the module docstring): False when they differ first in
    a piece of their metadata that is not a number on both sides."""
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return True  # not PEP 440: the natural order of versions.version_key applies
    if va.public != vb.public or va.local is None or vb.local is None:
        return True  # without metadata, a version is older than the same one with it
    la, lb = (va.local or "").split("."), (vb.local or "").split(".")
    for x, y in zip(la, lb, strict=False):
        if x != y:
            return x.isdigit() and y.isdigit()
    return True  # one is a prefix of the other: the shorter one is older


# The version a build produces, in the project's own files (each: one literal to rewrite).
MIX_VERSION = (re.compile(r'(@version\s+")([^"]+)(")'),
               re.compile(r'(\bversion:\s*")([^"]+)(")'))
APP_SRC_VSN = re.compile(r'(\{\s*vsn\s*,\s*")([^"]+)(")')


def _relx_vsn(release: str) -> re.Pattern[str]:
    return re.compile(r"(\{\s*release\s*,\s*\{\s*'?" + re.escape(release) + r"'?\s*,\s*\")([^\"]+)(\")")


def rewrite(text: str, kind: str, extra: str, where: str, release: str = "") -> tuple[str, str]:
    """(new text, base version) of one project file with its version + extra. kind: `mix`
    (mix.exs: `@version "X"`, else `version: "X"`), `relx` (rebar.config's release entry named
    `release`) or `app_src` (`{vsn, "X"}`). Exactly one literal must be there: anything else
    (a version computed in code, `{vsn, git}`) is refused with the file named."""
    options = {"mix": MIX_VERSION, "relx": (_relx_vsn(release),), "app_src": (APP_SRC_VSN,)}[kind]
    for pattern in options:
        found = pattern.findall(text)
        if len(found) == 1:
            base = found[0][1]
            new = applied(base, extra, where)
            return pattern.sub(lambda m, new=new: m.group(1) + new + m.group(3), text, count=1), base
        if len(found) > 1:
            raise v.InvalidInput(f"{where}: {len(found)} version strings match; auto-version "
                                 "needs exactly one to rewrite")
    shape = {"mix": '@version "X" or version: "X"', "app_src": '{vsn, "X"}',
             "relx": f'{{release, {{{release}, "X"}}, ...}}'}[kind]
    raise v.InvalidInput(f"{where}: no literal version ({shape}) to rewrite for auto-version")
