"""Retention: what each host has, cleanup of old versions (hosts and the local store), failed marks
(rollback, in steps/rollback.py, uses the same definitions).

Definitions (the same everywhere):
- *on the host*: `releases/<vsn>/` or a tarball `.deliver/releases/<app>_<vsn>.*.tar.gz`.
- *failed*: named in `<root>/.deliver/failed` (`mark`, called when a version fails its
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

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import store
from .. import validation as v
from ..commands import retention as rcmd
from ..fleet import HostContext, HostFailure, RunResult, for_each_host, say
from ..model import Release, UpgradeManifest, release_file_name
from ..otp import retention as ort
from ..versions import DEFAULT_KEEP, keep_count, plan_cleanup, previous_good, version_key
from .equal import ask
from .frame import Ctx, over_stage, settings_of, target
from .probe import probe
from .upgrade_build import manifest_path

_FLAGS = {"dir", "rel", "release_tar", "upgrade_tar", "bin", "staging", "failed"}
_VSN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")  # what validation.version accepts


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


def look(hc: HostContext, builder: str) -> HostState:
    """The listing (one round trip), then the node: facts and release_handler's state."""
    s = parse_listing(hc.run(rcmd.listing(hc.host.deploy_path, hc.settings.release),
                             changes=False).stdout)
    if s.deployed:
        p = probe(hc, builder, cheap_first=True)
        if p.facts:
            s.running, s.pid = p.facts.get("vsn"), p.facts.get("pid")
            s.booted, s.statuses = ort.parse_state(ask(hc, builder, ort.retention_state_expr()))
        elif p.beams:
            s.silent_beam = p.beams[0]
    return s


def answering(hc: HostContext, s: HostState) -> None:
    if s.silent_beam:
        raise HostFailure(f"BEAM pid {s.silent_beam} of this release runs but does not answer: which "
                          "version runs is unknown, so nothing was changed",
                          hint=f"inv doctor --host {hc.host.name}")


def mark(hc: HostContext, version: str, failed: bool) -> None:
    """Record on the host whether VERSION failed here (.deliver/failed): rollback never picks a
    failed version and cleanup removes it first; a later success clears the mark. Said, not
    raised, when the mark cannot be written: it is called on the way to a failure report."""
    v.version(version)
    root = hc.host.deploy_path
    res = hc.run(rcmd.mark_failed(root, version) if failed else rcmd.unmark_failed(root, version))
    if not res.ok:
        hc.say(f"could not {'mark' if failed else 'unmark'} {version} failed in "
               f".deliver/failed (exit {res.exited}): {res.tail(3)}")


def host_releases(c: Ctx, stage: str | None = None, host: str | None = None,
                  json_path: str | None = None) -> RunResult:
    """Per host: the versions on disk, which runs, which boots next, which are marked failed,
    release_handler's status of each (when the node runs) and the previous good one."""
    settings, st, builder = target(c, stage, host)

    def one(hc: HostContext) -> tuple[str, dict[str, Any]]:
        s = look(hc, builder)
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

    return for_each_host("releases", settings, st.name, st.hosts, one, json_path=json_path)


def cleanup_host(hc: HostContext, builder: str, keep: int,
                 protect: Iterable[str] = ()) -> tuple[str, dict[str, Any]]:
    """One host's cleanup (also what a deploy calls afterwards, protecting what it deployed)."""
    if hc.dry_run:
        hc.say(f"would list the versions here, keep the {keep} newest good ones (and the running, "
               "boots-next, permanent, previous good ones), remove the rest, failed ones first")
        return "would clean up", {}
    s = look(hc, builder)
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
            r = ask(hc, builder, expr(x))
            if r.get("ok") != "true":
                raise HostFailure(f"release_handler could not remove {x}: "
                                  f"{r.get('result') or r.get('no_answer', 'no answer')}")
            how = " through release_handler, then its files"
        res = hc.run(rcmd.remove_version(hc.host.deploy_path, hc.settings.release, x))
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


def cleanup(c: Ctx, keep: int | None = None, stage: str | None = None, host: str | None = None,
            dry_run: bool = False, json_path: str | None = None) -> RunResult:
    """Remove old versions from every host, keeping the KEEP newest good ones (default 5) and
    never the running, boots-next, permanent or previous good one; failed ones go first."""
    settings = settings_of(c)
    n = keep_count(settings.keep_releases if keep is None else keep)
    with over_stage(c, "cleanup", stage, host, flow="cleanup", dry_run=dry_run,
                    json_path=json_path) as run:  # under the lock: no deploy meanwhile
        return run.each(lambda hc: cleanup_host(hc, run.builder, n))


def cleanup_store(c: Ctx, keep: int = DEFAULT_KEEP, dry_run: bool = False) -> RunResult:
    """Remove all but the KEEP newest releases from the local store (with their upgrades and
    checksums). A kept version's stored upgrade starts from an older release: that release stays
    too (its own upgrade files go, so no stored manifest names a removed version). The result's
    `releases` are the removed ones."""
    n, settings = keep_count(keep), settings_of(c)
    app, where, found = settings.release, settings.store, store.listing(settings.store, settings.release)
    kept = {r.version: f"newest {n}" for r in found[-n:]}
    for to in list(kept):
        try:
            start = UpgradeManifest.load(manifest_path(where, app, to)).from_version
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if any(r.version == start for r in found):
            kept.setdefault(start, f"{to}'s stored upgrade starts from it")
    removed: list[Release] = []
    what = "would remove" if dry_run else "removed"
    for r in found:
        why = kept.get(r.version, "")
        kinds = () if why.startswith("newest") else ("upgrade",) if why else ("upgrade", "release")
        names = [release_file_name(app, r.version, k) + x for k in kinds
                 for x in ("", ".sha256", ".part", ".source", store.CONTENTS)]
        paths = [where / x for x in names + [manifest_path(where, app, r.version).name] * bool(kinds)
                 if (where / x).exists()]
        for path in paths if not dry_run else ():
            path.unlink()
        if paths:
            say(f"{what} {', '.join(x.name for x in paths)}")
        removed += [] if why else [r]
    say(f"store {where}: {what} {', '.join(r.version for r in removed) or 'nothing'}"
        f"; kept {', '.join(f'{x} ({why})' for x, why in kept.items()) or 'nothing'}")
    return RunResult("releases.cleanup", "", dry_run=dry_run, releases=removed)
