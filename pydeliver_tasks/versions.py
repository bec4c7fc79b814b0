"""Release versions in order, and which of them to keep: pure functions (no host, no I/O), so
every rule is unit-tested — PEP 440 order where it applies, a natural order otherwise."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.version import Version

from . import autoversion
from . import validation as v

DEFAULT_KEEP = 5
_PIECES = re.compile(r"(\d+)")


def keep_count(value: object) -> int:
    """--keep: a whole number >= 1 (the running version always stays anyway)."""
    try:
        n = int(str(value).strip())
    except ValueError:
        raise v.InvalidInput(f"--keep must be a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise v.InvalidInput(f"--keep must be at least 1, got {n}: the running version stays")
    return n


def version_key(vsn: str) -> tuple[int, Version | tuple[tuple[int, int | str], ...]]:
    """Sort key: PEP 440 order where it applies (0.0.10 > 0.0.9, 1.0.0rc1 < 1.0.0), else a
    natural order of the digit and non-digit runs; PEP 440 versions sort first."""
    parsed = v.parsed_version(vsn)
    if parsed is not None:
        return (0, parsed)
    return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in _PIECES.split(vsn) if p))


UNORDERED = ("their versions differ first in metadata that is not a number: put commit-count, "
             "date or time first in the auto-version pieces")


def latest(versions: Iterable[str]) -> str | None:
    """The newest version (None when there is none); refused when another one has no order
    against it (autoversion.ordered), rather than picking one of them by their text."""
    vs = list(versions)
    if not vs:
        return None
    newest = max(vs, key=version_key)
    tied = sorted(x for x in vs if x != newest and not autoversion.ordered(newest, x))
    if tied:
        raise v.InvalidInput(f"cannot tell which is latest, {newest} or {tied[0]}: {UNORDERED}")
    return newest


def previous_good(versions: Iterable[str], reference: str | None,
                  failed: Iterable[str] = ()) -> str | None:
    """The newest of versions older than reference and not failed (None if there is none)."""
    if reference is None:
        return None
    bad = set(failed)
    older = [x for x in versions if x not in bad and version_key(x) < version_key(reference)]
    return max(older, key=version_key, default=None)


@dataclass(frozen=True)
class CleanupPlan:
    keep: dict[str, tuple[str, ...]]  # version -> why it stays, newest first
    remove: tuple[str, ...]  # in removal order: failed ones first, then oldest first


def plan_cleanup(versions: Iterable[str], keep: int, *, running: str | None = None,
                 boots_next: str | None = None, booted: str | None = None,
                 permanent: dict[str, str] | None = None, previous: str | None = None,
                 failed: Iterable[str] = (), needed: Iterable[str] = ()) -> CleanupPlan:
    """Which versions stay and which go (see the module docstring); pure."""
    bad, vs = set(failed), sorted(set(versions), key=version_key, reverse=True)
    why: dict[str, list[str]] = {x: [] for x in vs}
    for vsn, reason in ((running, "running"), (boots_next, "boots next"), (previous, "previous good"),
                        (booted if booted != running else None, "the running VM booted from it"),
                        *((x, f"release_handler: {s}") for x, s in (permanent or {}).items()),
                        *((x, "in use by a deploy or upgrade") for x in needed)):
        if vsn in why:
            why[vsn].append(reason)
    good = sum(1 for x in vs if why[x] and x not in bad)
    for x in vs:
        if good < keep and not why[x] and x not in bad:
            why[x].append(f"newest {keep}")
            good += 1
    gone = [x for x in reversed(vs) if not why[x]]
    return CleanupPlan({x: tuple(r) for x, r in why.items() if r},
                       tuple([x for x in gone if x in bad] + [x for x in gone if x not in bad]))


