"""One host's side of a hot upgrade: pre-check, staging, install, verification, the way back.

Order matters for "never a gamble": the new release is installed but not made permanent until
its code is verified on the node, so until then a crash or restart still boots the old one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import commands, otp
from ..fleet import HostContext, HostFailure
from ..model import Release
from . import equal
from .deploy import extract, upload
from .equal import Replacing, ask
from .health import health
from .node import boot_version, log_tail, probe, start_node, verify_started

# A downgrade or a way back has no plan: no module list for the old-code check.
NOTHING_KNOWN = Replacing()


class InstallFailed(HostFailure):
    """release_handler refused or failed the install (the node may restart: see settle)."""


def releases(hc: HostContext, kind: str) -> dict[str, str]:
    """{version: status} as release_handler on the node sees them ({} when it does not run)."""
    return otp.parse_releases(ask(hc, kind, otp.release_state_expr()).get("releases", "error:"))


def precheck(hc: HostContext, kind: str, old: str, new: str) -> tuple[str, dict[str, Any]]:
    """The node must run `old` with our app started; say whether release_handler can take it hot."""
    if hc.dry_run:
        hc.say(f"would check: the node runs {old}, its application is started, release_handler "
               "knows it")
        return "would check", {}
    p = probe(hc, kind, cheap_first=True)
    if not p.app_started:
        what = "does not answer" if p.beams else "is not running"
        raise HostFailure(f"the node {what}: nothing to upgrade from {old}",
                          p.output[-800:], f"inv doctor --host {hc.host.name}")
    facts = p.facts or {}
    if facts["vsn"] == new:  # a re-run after a partial fleet: this host is done already
        return f"already runs {new} (pid {facts['pid']})", {"pid": facts["pid"], "done": True}
    if facts["vsn"] != old:
        raise HostFailure(
            f"runs {facts['vsn']}, not {old}: refusing (the relup only upgrades from {old})",
            hint=f"inv upgrade --from {facts['vsn']} --to {new}",
            data={"running": facts["vsn"]},
        )
    rels = releases(hc, kind)
    blocker = ""
    if not rels:
        blocker = "release_handler does not run on the node (add sasl to the release)"
    elif rels.get(old) not in ("permanent", "current"):
        seen = ", ".join(f"{k} {s}" for k, s in rels.items())
        blocker = (f"release_handler does not list {old} as running ({seen}): the node booted "
                   "before releases/RELEASES described it; one restart fixes that")
    data = {"pid": facts["pid"], "running": old, "hot_blocker": blocker}
    note = f"; cannot go hot: {blocker}" if blocker else ""
    return f"runs {old} (pid {facts['pid']}){note}", data


def stage(hc: HostContext, upgrade: Release, old: str, new_lib_dirs: list[str]) -> str:
    """Upload the upgrade tarball (sha256-verified, skipped when present) and put its files
    beside the running release; nothing that boots or runs changes."""
    uploaded = upload(hc, upgrade)
    root = hc.host.deploy_path
    res = hc.run(commands.stage_upgrade(root, upgrade.app, old, upgrade.version, upgrade.sha256,
                                        uploaded, new_lib_dirs))
    if not res.ok:
        what = "sha256 check failed" if res.exited == 3 else f"staging failed (exit {res.exited})"
        raise HostFailure(f"{what} for {upgrade.file_name}", res.tail(),
                          "build it again (inv build.upgrade); nothing was installed")
    return "uploaded" if uploaded else "upload skipped (same sha256 on host)"


def verify_code(hc: HostContext, kind: str, apps: list[str], pid: str, vsn: str,
                want_dirs: list[str]) -> str:
    """The checks that make a hot upgrade "verified": same OS pid, release_handler runs `vsn`,
    every module of `apps` is loaded from the new beams with no old code left, health passes."""
    p = probe(hc, kind)
    facts = p.facts or {}
    if facts.get("pid") != pid:
        raise HostFailure(f"the node's OS pid changed ({pid} -> {facts.get('pid', 'gone')}): "
                          "it was restarted, not upgraded", log_tail(hc))
    if facts.get("vsn") != vsn:
        raise HostFailure(f"release_handler says the node runs {facts.get('vsn')}, not {vsn}")
    code = ask(hc, kind, otp.code_check_expr(apps))
    dirs = [d for d in code.get("dirs", "").split(",") if d]
    missing = [d for d in want_dirs if d not in dirs]
    if missing or not code.get("beams", "0").isdigit() or code.get("beams") == "0":
        raise HostFailure(f"code path does not point at {', '.join(missing) or want_dirs}: "
                          f"loaded from {', '.join(dirs) or 'nothing'}", str(code)[-800:])
    for key, what in (("stale", "still runs the OLD code (loaded md5 differs from the new beam)"),
                      ("old_code", "still has old code in memory (a process runs it)"),
                      ("path", "would load from an unexpected path")):
        if code.get(key):
            raise HostFailure(f"modules {code[key]} {what}", hint="check the appup (inv show.appup)")
    checked = f"{code['beams']} modules' md5 match {', '.join(dirs)}"
    if hc.host.health.enabled:
        ok, seen = health(hc)
        if not ok:
            raise HostFailure(f"health check fails after the upgrade: {seen}", log_tail(hc))
        checked += ", health ok"
    return checked


def install(hc: HostContext, kind: str, app_vsn: tuple[str, str], pid: str, apps: list[str],
            want_dirs: list[str], replacing: Replacing = NOTHING_KNOWN) -> str:
    """Before the point of no return: the env of a fresh boot, processes that would lose code
    (NotHotSafe), the supervision trees. Then release_handler install -> verify (code, env,
    trees, health) -> make_permanent -> switch bin/ -> check what boots."""
    app, new = app_vsn
    root = hc.host.deploy_path
    env_apps = equal.fresh_env(hc, kind, new)
    seen, before = equal.survey(hc, kind, replacing)
    hc.say(f"computed the env a boot of {new} has here ({env_apps}); {seen}")
    r = equal.watch_and(hc, kind, otp.hot_install_expr(app, new))
    try:
        if r.get("ok") != "true":
            raise InstallFailed(f"release_handler could not install {new}: "
                                f"{r.get('result') or r.get('no_answer', 'no answer')}",
                                log_tail(hc))
        if r.get("watching") != "true":
            raise HostFailure("could not watch the node's error reports during the install: "
                              f"{r.get('watch_result', 'no answer')}")
        checked = verify_code(hc, kind, apps, pid, new, want_dirs)
    except HostFailure:
        equal.watched(hc, kind)  # ends the watch; the failure is what is reported
        raise
    checked += "; " + equal.check(hc, kind, new, env_apps, before, replacing)
    r = ask(hc, kind, otp.make_permanent_expr(new))
    if r.get("ok") != "true":
        raise HostFailure(f"make_permanent({new}) failed: {r.get('result') or r}")
    res = hc.run(commands.activate_bin(root, new))
    if not res.ok:
        raise HostFailure(f"could not switch bin/ to {new}'s start script", res.tail())
    status = releases(hc, kind).get(new)
    boots = boot_version(hc)
    if status != "permanent" or boots != new:
        raise HostFailure(f"{new} is {status} in release_handler and {boots} boots next; "
                          f"expected {new} permanent")
    return f"{checked}; {new} permanent"


def settle(hc: HostContext, kind: str, old: str) -> str:
    """After a failed install: release_handler restarts the VM in place (same OS pid, state
    reset) or lets it stop when an instruction failed after the point of no return. Wait for
    that, then make sure `old` serves: verified in either case."""
    time.sleep(2.0)  # it acts right after replying to us
    p = probe(hc, kind, cheap_first=True)
    if not p.beams:
        hc.say(f"release_handler took the node down: starting {old} again")
        return "the node had stopped; " + start_node(hc, kind, old)
    return verify_started(hc, kind, old)


def back_to(hc: HostContext, kind: str, old: str, new: str) -> str:
    """Make `old` serve again after a failed hot upgrade: hot-downgrade when the node runs
    `new`, or start `old` when release_handler took the node down (it reboots the VM when an
    instruction fails after the point of no return). Verified either way."""
    p = probe(hc, kind, cheap_first=True)
    if not p.facts:
        if p.beams:
            raise HostFailure(f"the node (BEAM pid {p.beams[0]}) does not answer after the failed "
                              "upgrade", log_tail(hc), f"inv restart --force --host {hc.host.name}")
        hc.say(f"the node went down during the upgrade: starting {old} again")
        if boot_version(hc) != old:
            raise HostFailure(f"the node is down and {boot_version(hc)} would boot, not {old}",
                              log_tail(hc), f"inv deploy.release --version {old} && inv start "
                              f"--host {hc.host.name}")
        return "node was down; " + start_node(hc, kind, old)
    if p.facts["vsn"] == new:
        apps = sorted({hc.settings.app, *hc.settings.upgrade.apps})
        checked = install(hc, kind, (hc.settings.app, old), p.facts["pid"], apps, [])
        how = f"hot-downgraded {new} -> {old}, same pid {p.facts['pid']}; {checked}"
    else:
        how = f"still running {p.facts['vsn']} (pid {p.facts['pid']})"
    after = probe(hc, kind)
    if not after.facts or after.facts.get("vsn") != old:
        raise HostFailure(f"after going back, the node runs {after.facts and after.facts['vsn']}, "
                          f"not {old}", log_tail(hc))
    if hc.host.health.enabled:
        ok, seen = health(hc)
        if not ok:
            raise HostFailure(f"{old} is back but the health check fails: {seen}", log_tail(hc))
    return how + ", verified"


def as_it_is(hc: HostContext, kind: str) -> str:
    """What the host is now, read back (after a failure nothing is reported from assumptions):
    what runs (or that nothing does) and what boots next."""
    p = probe(hc, kind, cheap_first=True)
    boots = boot_version(hc) or "nothing"
    if p.facts:
        started = "" if p.app_started else ", its application NOT started"
        return f"the node runs {p.facts['vsn']} (pid {p.facts['pid']}{started}); {boots} boots next"
    if p.beams:
        return f"a BEAM (pid {p.beams[0]}) runs but does not answer; {boots} boots next"
    return f"the node is DOWN (no BEAM of this release runs); {boots} boots next"


def mark(hc: HostContext, version: str, failed: bool) -> None:
    """Record on the host whether `version` failed here (.deliver/failed): rollback never picks a
    failed version and cleanup removes it first; a later success clears the mark."""
    from ..commands import retention as rcmd

    root = hc.host.deploy_path
    hc.run(rcmd.mark_failed(root, version) if failed else rcmd.unmark_failed(root, version))


def restart_into(hc: HostContext, kind: str, new: Release, old: Release | None) -> str:
    """Cold fallback: deploy `new` as a full release and do a verified restart into it. The old
    version serves until the stop; if the new one does not come up, `old` is put back."""
    from .recovery import force_stop_node

    uploaded = upload(hc, new)
    extract(hc, new, uploaded)
    force_stop_node(hc, kind)
    try:
        started = start_node(hc, kind, new.version)
        mark(hc, new.version, failed=False)
        return f"restarted into {new.version}: {started}"
    except HostFailure as exc:
        mark(hc, new.version, failed=True)
        if old is None:
            raise
        hc.say(f"{new.version} did not come up ({exc.message}): putting {old.version} back")
        extract(hc, old, upload(hc, old))
        force_stop_node(hc, kind)
        back = start_node(hc, kind, old.version)
        raise HostFailure(f"restart into {new.version} failed: {exc.message}; {old.version} "
                          f"serves again ({back})", exc.detail,
                          f"inv boot-check --host {hc.host.name}") from exc


class RestartGate:
    """Restart fallbacks of one run, one host at a time, each verified before the next starts,
    and none after one failed: on a stage with several hosts a fallback never takes them all
    down together. serial=False (the user asked for --strategy parallel) lets them overlap."""

    def __init__(self, serial: bool):
        self._lock = threading.Lock() if serial else None
        self.failed = ""

    @contextmanager
    def turn(self, host: str) -> Iterator[None]:
        if self._lock is None:
            yield
            return
        with self._lock:
            if self.failed:
                raise HostFailure(f"not restarted: the restart of {self.failed} failed first; this "
                                  "host still runs the version it ran", hint=f"inv boot-check "
                                  f"--host {self.failed}")
            try:
                yield
            except HostFailure:
                self.failed = host
                raise
