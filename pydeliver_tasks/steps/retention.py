"""Retention: what each host has, cleanup of old versions (hosts and the local store), failed marks
(rollback, in steps/rollback.py, uses the same definitions).

Definitions (the same everywhere):
- *on the host*: `releases/<vsn>/` or a tarball `.deliver/releases/<app>_<vsn>.*.tar.gz`.
- *failed*: named in `<root>/.deliver/failed` (`mark_failed`, called when a version fails its
  verification). A failed version is never "good": rollback skips it, cleanup removes it first.
- *previous good*: the newest version on the host older than the running one (when the node does
  not run: than the one that boots next) that is not marked failed. For `rollback --hot` it is
  chosen among the releases release_handler knows as `old`: only those can be downgraded to.
- *cleanup --keep N*: keeps the N newest good versions; and always the running one, the one that
  boots next, the one the running VM booted from (init:restart boots it again), release_handler's
  permanent/current one, the previous good one and any version a deploy is staging right now
  (`.deliver/staging/<vsn>`) or the caller protects. Everything else goes, failed ones first.
  Versions release_handler knows are forgotten through it on the running node (remove_release,
  or set_removed when releases it does not know share its lib dirs), then their files go; with
  the node down, or a deploy waiting for a restart, they are skipped and say so.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import otp_retention as ort
from .. import store
from .. import validation as v
from ..commands import retention as rcmd
from ..fleet import HostContext, HostFailure, HostResult, for_each_host, say
from ..model import release_file_name
from .common import locked, settings_of, target
from .equal import ask
from .node import probe
from .upgrade_build import manifest_path

DEFAULT_KEEP = 5
_FLAGS = {"dir", "rel", "release_tar", "upgrade_tar", "bin", "staging", "failed"}
_PIECES = re.compile(r"(\d+)")
_VSN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")  # what validation.version accepts


def keep_count(value: Any) -> int:
    """--keep: a whole number >= 1 (the running version always stays anyway)."""
    try:
        n = int(str(value).strip())
    except ValueError:
        raise v.InvalidInput(f"--keep must be a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise v.InvalidInput(f"--keep must be at least 1, got {n}: the running version stays")
    return n


def version_key(vsn: str) -> tuple[Any, ...]:
    """Sort key: PEP 440 order where it applies (0.0.10 > 0.0.9, 1.0.0rc1 < 1.0.0), else a
    natural order of the digit and non-digit runs; PEP 440 versions sort first."""
    parsed = v.parsed_version(vsn)
    if parsed is not None:
        return (0, parsed)
    return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in _PIECES.split(vsn) if p))


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


@dataclass
class HostState:
    """A host's versions on disk (with flags), boot, RELEASES, and the node's view if it answers."""

    deployed: bool = True
    versions: dict[str, set[str]] = field(default_factory=dict)
    boots_next: str | None = None
    listed: set[str] = field(default_factory=set)
    running: str | None = None
    pid: str | None = None
    silent_beam: int | None = None  # a BEAM of this root runs but does not answer
    statuses: dict[str, str] = field(default_factory=dict)
    booted: str | None = None
    ignored: list[str] = field(default_factory=list)

    @property
    def failed(self) -> set[str]:
        return {x for x, f in self.versions.items() if "failed" in f}

    def previous_good(self) -> str | None:
        return previous_good(self.versions, self.running or self.boots_next, self.failed)


def parse_listing(output: str) -> HostState:
    s = HostState()
    for line in output.splitlines():
        if line.strip() == rcmd.NOROOT_MARK:
            s.deployed = False
        elif line.startswith(rcmd.BOOT_MARK):
            words = line[len(rcmd.BOOT_MARK):].split()
            s.boots_next = words[1] if len(words) == 2 else None
        elif line.startswith(rcmd.KNOWN_MARK):
            s.listed.add(line[len(rcmd.KNOWN_MARK):].strip())
        elif line.startswith(rcmd.VSN_MARK):
            vsn, *flags = line[len(rcmd.VSN_MARK):].split(" ")
            if set(flags) <= _FLAGS and _VSN.fullmatch(vsn) and ".." not in vsn:
                s.versions[vsn] = set(flags)
            else:
                s.ignored.append(line[len(rcmd.VSN_MARK):])
    return s


def look(hc: HostContext, kind: str) -> HostState:
    """The listing (one round trip), then the node: facts and release_handler's state."""
    s = parse_listing(hc.run(rcmd.listing(hc.host.deploy_path, hc.settings.app),
                             changes=False).stdout)
    if s.deployed:
        p = probe(hc, kind, cheap_first=True)
        if p.facts:
            s.running, s.pid = p.facts.get("vsn"), p.facts.get("pid")
            s.booted, s.statuses = ort.parse_state(ask(hc, kind, ort.retention_state_expr()))
        elif p.beams:
            s.silent_beam = p.beams[0]
    return s


def answering(hc: HostContext, s: HostState) -> None:
    if s.silent_beam:
        raise HostFailure(f"BEAM pid {s.silent_beam} of this release runs but does not answer: which "
                          "version runs is unknown, so nothing was changed",
                          hint=f"inv doctor --host {hc.host.name}")


def mark_failed(hc: HostContext, version: str) -> None:
    """Mark VERSION failed on this host: rollback never picks it, cleanup removes it first."""
    v.version(version)
    res = hc.run(rcmd.mark_failed(hc.host.deploy_path, version))
    if not res.ok:
        raise HostFailure(f"could not mark {version} failed in .deliver/failed", res.tail())


def host_releases(c: Any, stage: str | None = None, host: str | None = None,
                  json: str | None = None) -> list[HostResult]:
    """Per host: the versions on disk, which runs, which boots next, which are marked failed,
    release_handler's status of each (when the node runs) and the previous good one."""
    settings, st, kind = target(c, stage, host)

    def one(hc: HostContext) -> tuple[str, dict[str, Any]]:
        s = look(hc, kind)
        if not s.deployed:
            return "nothing deployed", {"versions": {}}
        prev, rows = s.previous_good(), {}
        for x in sorted(s.versions, key=version_key, reverse=True):
            flags = s.versions[x]
            files = [n for f, n in (("dir", f"releases/{x}"), ("release_tar", "tarball"),
                                    ("upgrade_tar", "upgrade tarball"), ("bin", "bin")) if f in flags]
            state = [w for w, yes in (("running", x == s.running), ("boots next", x == s.boots_next),
                                      ("VM booted from it", x == s.booted != s.running),
                                      ("previous good", x == prev), ("FAILED", "failed" in flags),
                                      ("deploy in progress", "staging" in flags)) if yes]
            state += [f"release_handler: {s.statuses.get(x)}"] * (x in s.statuses)
            hc.say(f"{x:<14} {', '.join(files) or '-':<46}  {', '.join(state)}")
            rows[x] = {"files": files, "failed": "failed" in flags, "state": state,
                       "release_handler": s.statuses.get(x)}
        for odd in s.ignored:
            hc.say(f"ignored (not a version name): {odd!r}")
        node = (f"running {s.running} (pid {s.pid})" if s.running else
                f"BEAM pid {s.silent_beam} does not answer" if s.silent_beam else "not running")
        failed = sorted(s.failed, key=version_key)
        return (f"on disk: {', '.join(rows) or 'none'}; {node}; {s.boots_next or 'nothing'} boots "
                f"next; previous good: {prev or 'none'}"
                + (f"; marked failed: {', '.join(failed)}" if failed else ""),
                {"versions": rows, "running": s.running, "pid": s.pid, "boots_next": s.boots_next,
                 "booted": s.booted, "previous_good": prev, "failed": failed})

    return for_each_host("releases", settings, st.name, st.hosts, one, json_path=json)


def cleanup_host(hc: HostContext, kind: str, keep: int,
                 protect: Iterable[str] = ()) -> tuple[str, dict[str, Any]]:
    """One host's cleanup (also what a deploy calls afterwards, protecting what it deployed)."""
    if hc.dry_run:
        hc.say(f"would list the versions here, keep the {keep} newest good ones (and the running, "
               "boots-next, permanent, previous good ones), remove the rest, failed ones first")
        return "would clean up", {}
    s = look(hc, kind)
    if not s.deployed:
        return "nothing deployed", {"removed": []}
    answering(hc, s)
    plan = plan_cleanup(
        s.versions, keep, running=s.running, boots_next=s.boots_next, booted=s.booted,
        permanent={x: st for x, st in s.statuses.items() if st in ("permanent", "current")},
        previous=s.previous_good(), failed=s.failed,
        needed={x for x, f in s.versions.items() if "staging" in f} | set(protect))
    removed, skipped = [], {}
    for x in plan.remove:
        how = ""
        if x in s.statuses or (not s.running and x in s.listed):
            if not s.running or s.running != s.boots_next:
                skipped[x] = ("release_handler knows it: " + ("start the node, then clean up"
                              if not s.running else f"restart into {s.boots_next} first"))
                continue
            rest = set(s.versions) - set(removed) - {x}
            expr = ort.remove_release_expr if rest <= set(s.statuses) else ort.set_removed_expr
            r = ask(hc, kind, expr(x))
            if r.get("ok") != "true":
                raise HostFailure(f"release_handler could not remove {x}: "
                                  f"{r.get('result') or r.get('no_answer', 'no answer')}")
            how = " through release_handler, then its files"
        res = hc.run(rcmd.remove_version(hc.host.deploy_path, hc.settings.app, x))
        if res.exited in (rcmd.REFUSED_BOOTS_NEXT, rcmd.REFUSED_RELEASE_HANDLER, rcmd.REFUSED_BOOTED):
            skipped[x] = res.stderr.strip().removeprefix("refusing: ")
            continue
        if not res.ok or f"PDT{{removed={x}}}" not in res.stdout:
            raise HostFailure(f"removing {x}'s files failed (exit {res.exited})", res.tail())
        gone = [ln[len(rcmd.RM_MARK):] for ln in res.stdout.splitlines() if ln.startswith(rcmd.RM_MARK)]
        hc.say(f"removed {x}{' (failed)' if x in s.failed else ''}{how}: {', '.join(gone) or '-'}")
        removed.append(x)
    kept = ", ".join(f"{x} ({', '.join(r)})" for x, r in plan.keep.items())
    note = "".join(f"; skipped {x}: {why}" for x, why in skipped.items())
    return (f"removed {', '.join(removed) or 'nothing'}; kept {kept or 'nothing'}{note}",
            {"removed": removed, "kept": {x: list(r) for x, r in plan.keep.items()},
             "skipped": skipped})


def cleanup(c: Any, keep: int | None = None, stage: str | None = None, host: str | None = None,
            dry_run: bool = False, json: str | None = None) -> list[HostResult]:
    """Remove old versions from every host, keeping the KEEP newest good ones (default 5) and
    never the running, boots-next, permanent or previous good one; failed ones go first."""
    settings, st, kind = target(c, stage, host)
    n = keep_count(getattr(settings, "keep_releases", DEFAULT_KEEP) if keep is None else keep)
    with locked(settings, st, "cleanup", dry_run=dry_run) as audit:  # no deploy meanwhile
        results = for_each_host("cleanup", settings, st.name, st.hosts,
                                lambda hc: cleanup_host(hc, kind, n), dry_run=dry_run, json_path=json)
        audit.record(results)
        return results


def cleanup_store(c: Any, keep: int = DEFAULT_KEEP, dry_run: bool = False) -> list[str]:
    """Remove all but the KEEP newest releases from the local store (with their upgrades and
    checksums). A kept version's stored upgrade starts from an older release: that release stays
    too (its own upgrade files go, so no stored manifest names a removed version)."""
    n, settings = keep_count(keep), settings_of(c)
    app, where, found = settings.app, settings.store, store.listing(settings.store, settings.app)
    kept = {r.version: f"newest {n}" for r in found[-n:]}
    for new in list(kept):
        try:
            old = str(jsonlib.loads(manifest_path(where, app, new).read_text())["old"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if any(r.version == old for r in found):
            kept.setdefault(old, f"{new}'s stored upgrade starts from it")
    removed, what = [], "would remove" if dry_run else "removed"
    for r in found:
        why = kept.get(r.version, "")
        kinds = () if why.startswith("newest") else ("upgrade",) if why else ("upgrade", "release")
        names = [release_file_name(app, r.version, k) + x for k in kinds for x in ("", ".sha256", ".part")]
        paths = [where / x for x in names + [manifest_path(where, app, r.version).name] * bool(kinds)
                 if (where / x).exists()]
        for path in paths if not dry_run else ():
            path.unlink()
        if paths:
            say(f"{what} {', '.join(x.name for x in paths)}")
        removed += [] if why else [r.version]
    say(f"store {where}: {what} {', '.join(removed) or 'nothing'}"
        f"; kept {', '.join(f'{x} ({why})' for x, why in kept.items()) or 'nothing'}")
    return removed
