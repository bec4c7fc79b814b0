"""One host's side of a hot upgrade: pre-check, staging, install, verification, the way back.

Order matters for "never a gamble": the new release is installed but not made permanent until
its code is verified on the node, so until then a crash or restart still boots the old one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import otp
from ..commands import activation as acmd
from ..fleet import HostContext, HostFailure
from ..model import Release, Replacing
from ..validation import parsed_version
from . import activation, equal
from .control import force_stop_node, start_node, verify_started
from .deploy import arrive, upload
from .equal import ask
from .evidence import InstallFailed, NodeDied, dead
from .health import health
from .probe import boot_version, log_tail, probe
from .retention import mark

# A downgrade or a way back has no plan: no module list for the old-code check.
NOTHING_KNOWN = Replacing()


def releases(hc: HostContext, builder: str) -> dict[str, str]:
    """{version: status} as release_handler on the node sees them ({} when it does not run)."""
    return otp.parse_releases(ask(hc, builder, otp.release_state_expr()).get("releases", "error:"))


def precheck(hc: HostContext, builder: str, from_version: str,
             to_version: str) -> tuple[str, dict[str, Any]]:
    """The node must run from_version with our app started; say whether release_handler can take
    it hot."""
    if hc.dry_run:
        hc.say(f"would check: the node runs {from_version}, its application is started, "
               "release_handler knows it")
        return "would check", {}
    p = probe(hc, builder, cheap_first=True)
    if not p.app_started:
        what = "does not answer" if p.beams else "is not running"
        raise HostFailure(f"the node {what}: nothing to upgrade from {from_version}",
                          p.output[-800:], f"inv doctor --host {hc.host.name}")
    facts = p.facts or {}
    if facts["vsn"] == to_version:  # a re-run after a partial fleet: this host is done already
        return f"already runs {to_version} (pid {facts['pid']})", {"pid": facts["pid"], "done": True}
    if facts["vsn"] != from_version:
        raise HostFailure(
            f"runs {facts['vsn']}, not {from_version}: refusing (the relup only upgrades from "
            f"{from_version})", hint=_other_version_hint(hc.host.name, facts["vsn"], to_version),
            data={"running": facts["vsn"]},
        )
    rels = releases(hc, builder)
    blocker = ""
    if not rels:
        blocker = "release_handler does not run on the node (add sasl to the release)"
    elif rels.get(from_version) not in ("permanent", "current"):
        seen = ", ".join(f"{k} {s}" for k, s in rels.items())
        blocker = (f"release_handler does not list {from_version} as running ({seen}): the node booted "
                   "before releases/RELEASES described it; one restart fixes that")
    data = {"pid": facts["pid"], "running": from_version, "hot_blocker": blocker}
    note = f"; cannot go hot: {blocker}" if blocker else ""
    return f"runs {from_version} (pid {facts['pid']}){note}", data


def _other_version_hint(host: str, running: str, to_version: str) -> str:
    """What to run on a host that runs neither FROM nor TO: an upgrade from what it runs — or,
    when it already runs something newer than TO, nothing to upgrade (a rollback goes back)."""
    now, goal = parsed_version(running), parsed_version(to_version)
    if now is not None and goal is not None and now > goal:
        return (f"it already runs {running}, newer than {to_version}: nothing to upgrade; to run "
                f"{to_version} instead: inv rollback --to {to_version} --host {host}")
    return f"inv upgrade --from {running} --to {to_version} --host {host}"


def stage(hc: HostContext, upgrade: Release, from_version: str, new_lib_dirs: list[str]) -> str:
    """Upload the upgrade tarball (sha256-verified, skipped when present) and put its files
    beside the running release; nothing that boots or runs changes."""
    uploaded = upload(hc, upgrade)
    root = hc.host.deploy_path
    res = hc.run(acmd.stage_upgrade(root, upgrade.app, from_version, upgrade.version, upgrade.sha256,
                                        uploaded, new_lib_dirs))
    if not res.ok:
        what = "sha256 check failed" if res.exited == 3 else f"staging failed (exit {res.exited})"
        raise HostFailure(f"{what} for {upgrade.file_name}", res.tail(),
                          "build it again (inv build.upgrade); nothing was installed")
    return "uploaded" if uploaded else "upload skipped (same sha256 on host)"


def verify_code(hc: HostContext, builder: str, apps: list[str], pid: str, vsn: str,
                want_dirs: list[str]) -> str:
    """The checks that make a hot upgrade "verified": same OS pid, release_handler runs `vsn`,
    every module of `apps` is loaded from the new beams with no old code left, health passes."""
    p = probe(hc, builder)
    facts = p.facts or {}
    if not p.facts and not p.beams:
        raise NodeDied(f"the node died (no BEAM of this release runs) before {vsn} was verified",
                       log_tail(hc))
    if facts.get("pid") != pid:
        raise HostFailure(f"the node's OS pid changed ({pid} -> {facts.get('pid', 'gone')}): "
                          "it was restarted, not upgraded", log_tail(hc))
    if facts.get("vsn") != vsn:
        raise HostFailure(f"release_handler says the node runs {facts.get('vsn')}, not {vsn}")
    code = ask(hc, builder, otp.code_check_expr(apps))
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


def install(hc: HostContext, builder: str, to_version: str, pid: str, apps: list[str],
            want_dirs: list[str], replacing: Replacing = NOTHING_KNOWN,
            before_permanent: Callable[[HostContext], str] | None = None) -> str:
    """Install to_version (an upgrade, or a downgrade) on the running node. Before the point of
    no return: the env of a fresh boot, processes that would lose code (NotHotSafe), the
    supervision trees. Then release_handler install -> verify (code, env, trees, health) ->
    before_permanent (upgrade --migrate: the migrations, on the new code) -> make_permanent ->
    switch bin/ -> check what boots."""
    app = hc.settings.release
    root = hc.host.deploy_path
    env_apps = equal.fresh_env(hc, builder, to_version)
    seen, before = equal.survey(hc, builder, replacing)
    hc.say(f"computed the env a boot of {to_version} has here ({env_apps}); {seen}")
    r = equal.watch_and(hc, builder, otp.hot_install_expr(app, to_version))
    try:
        if r.get("ok") != "true":
            dead(hc, builder, f"during the install of {to_version}")
            raise InstallFailed(f"release_handler could not install {to_version}: "
                                f"{r.get('result') or r.get('no_answer', 'no answer')}",
                                log_tail(hc))
        if r.get("watching") != "true":
            raise HostFailure("could not watch the node's error reports during the install: "
                              f"{r.get('watch_result', 'no answer')}")
        checked = verify_code(hc, builder, apps, pid, to_version, want_dirs)
    except HostFailure:
        equal.watched(hc, builder)  # ends the watch; the failure is what is reported
        raise
    checked += "; " + equal.check(hc, builder, to_version, env_apps, before, replacing)
    if before_permanent:
        checked += "; " + before_permanent(hc)
    r = ask(hc, builder, otp.make_permanent_expr(to_version))
    if r.get("ok") != "true":
        dead(hc, builder, f"before make_permanent({to_version})")
        raise HostFailure(f"make_permanent({to_version}) failed: {r.get('result') or r}")
    res = hc.run(acmd.activate_bin(root, to_version))
    if not res.ok:  # the journal finishes or undoes the switch; say what the host has now
        state = activation.read_back(hc)
        now = state.sentence() if state else "the host could not be reached again"
        raise HostFailure(f"could not switch bin/ to {to_version}'s start script ({now})",
                          res.tail())
    status = releases(hc, builder).get(to_version)
    boots = boot_version(hc)
    if status != "permanent" or boots != to_version:
        raise HostFailure(f"{to_version} is {status} in release_handler and {boots} boots next; "
                          f"expected {to_version} permanent")
    return f"{checked}; {to_version} permanent"


def settle(hc: HostContext, builder: str, from_version: str) -> str:
    """After a failed install: release_handler restarts the VM in place (same OS pid, state
    reset) or lets it stop when an instruction failed after the point of no return. Wait for
    that, then make sure `old` serves: verified in either case."""
    time.sleep(2.0)  # it acts right after replying to us
    p = probe(hc, builder, cheap_first=True)
    if not p.beams:
        hc.say(f"release_handler took the node down: starting {from_version} again")
        return "the node had stopped; " + start_node(hc, builder, from_version)
    return verify_started(hc, builder, from_version)


def back_to(hc: HostContext, builder: str, from_version: str, to_version: str) -> str:
    """Make from_version serve again after a failed hot upgrade: hot-downgrade when the node
    runs to_version, or start from_version when release_handler took the node down (it reboots
    the VM when an instruction fails after the point of no return). Verified either way."""
    p = probe(hc, builder, cheap_first=True)
    if not p.facts:
        if p.beams:
            raise HostFailure(f"the node (BEAM pid {p.beams[0]}) does not answer after the failed "
                              "upgrade", log_tail(hc), f"inv restart --force --host {hc.host.name}")
        hc.say(f"the node went down during the upgrade: starting {from_version} again")
        if boot_version(hc) != from_version:
            raise HostFailure(f"the node is down and {boot_version(hc)} would boot, not "
                              f"{from_version}", log_tail(hc), f"inv deploy.release --version "
                              f"{from_version} && inv start --host {hc.host.name}")
        return "node was down; " + start_node(hc, builder, from_version)
    if p.facts["vsn"] == to_version:
        apps = sorted({hc.settings.app, *hc.settings.upgrade.apps})
        checked = install(hc, builder, from_version, p.facts["pid"], apps, [])
        how = (f"hot-downgraded {to_version} -> {from_version}, same pid {p.facts['pid']}; "
               f"{checked}")
    else:
        how = f"still running {p.facts['vsn']} (pid {p.facts['pid']})"
    after = probe(hc, builder)
    if not after.facts or after.facts.get("vsn") != from_version:
        raise HostFailure(f"after going back, the node runs {after.facts and after.facts['vsn']}, "
                          f"not {from_version}", log_tail(hc))
    if hc.host.health.enabled:
        ok, seen = health(hc)
        if not ok:
            raise HostFailure(f"{from_version} is back but the health check fails: {seen}",
                              log_tail(hc))
    return how + ", verified"


def as_it_is(hc: HostContext, builder: str) -> str:
    """What the host is now, read back (after a failure nothing is reported from assumptions):
    what runs (or that nothing does) and what boots next."""
    p = probe(hc, builder, cheap_first=True)
    boots = boot_version(hc) or "nothing"
    if p.facts:
        started = "" if p.app_started else ", its application NOT started"
        return f"the node runs {p.facts['vsn']} (pid {p.facts['pid']}{started}); {boots} boots next"
    if p.beams:
        return f"a BEAM (pid {p.beams[0]}) runs but does not answer; {boots} boots next"
    return f"the node is DOWN (no BEAM of this release runs); {boots} boots next"


def restart_into(hc: HostContext, builder: str, to_release: Release,
                 from_release: Release | None) -> str:
    """Cold fallback: deploy to_release as a full release and do a verified restart into it. The
    version that ran serves until the stop; if the new one does not come up, from_release is put
    back."""
    arrive(hc, to_release)
    force_stop_node(hc, builder)
    try:
        started = start_node(hc, builder, to_release.version)
        mark(hc, to_release.version, failed=False)
        return f"restarted into {to_release.version}: {started}"
    except HostFailure as exc:
        mark(hc, to_release.version, failed=True)
        if from_release is None:
            raise
        hc.say(f"{to_release.version} did not come up ({exc.message}): putting "
               f"{from_release.version} back")
        arrive(hc, from_release)
        force_stop_node(hc, builder)
        back = start_node(hc, builder, from_release.version)
        raise HostFailure(f"restart into {to_release.version} failed: {exc.message}; "
                          f"{from_release.version} serves again ({back})", exc.detail,
                          f"inv boot-check --host {hc.host.name}") from exc


class RestartGate:
    """Restart fallbacks of one run, one host at a time, each verified before the next starts,
    and none after one failed: on a stage with several hosts a fallback never takes them all
    down together. serial=False (the user asked for --strategy parallel) lets them overlap."""

    def __init__(self, serial: bool) -> None:
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
