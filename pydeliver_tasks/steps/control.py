"""Per-host node control, each effect verified on the host: start (the node answers, runs our
application, passes health), stop (the OS process is gone), force stop (this release root's
processes only, by pid).

start never reports success on hope (edeliver #329): a node still booting is polled until the
start timeout (#164); a node that dies while booting is reported at once with its log tail. stop
waits for the OS process to be gone (mix's `stop` returns before the VM exits).
"""

from __future__ import annotations

import time

from .. import commands
from ..commands import control as ctl
from ..commands import diagnose as dcmd
from ..fleet import hooks
from ..fleet.host import HostContext, HostFailure
from . import activation
from .health import gets_pass, health
from .probe import POLL_SECONDS, log_tail, probe, survey

TERM_GRACE_SECONDS = 5.0
HEALTH_POLL_SECONDS = 0.1  # the shortest pause between two asks of a booting node
CLIENT_HELD_SECONDS = 10.0  # after a start that wrote erl_call's files: no client before epmd


def start_node(hc: HostContext, builder: str, expect: str | None = None) -> str:
    """Start the node unless it already runs, then verify it within the start timeout
    (and, with expect, that it runs that release version)."""
    h, app = hc.host, hc.settings.release
    if not hc.dry_run:
        before = probe(hc, builder, cheap_first=True)
        if before.facts and not before.app_started:
            hc.say("the node answers but its application is not started yet: waiting for it")
            return verify_started(hc, builder, expect)
        if before.app_started:
            facts = before.facts or {}
            msg = f"already running {facts['vsn']} (pid {facts['pid']})"
            if expect and facts["vsn"] != expect:
                raise HostFailure(f"{msg}, not {expect}", hint=f"inv restart --host {h.name}")
            if h.health.enabled:
                ok, seen = health(hc)
                if not ok:
                    raise HostFailure(f"{msg}, but the health check fails: {seen}",
                                      hint=f"inv doctor --host {h.name}")
                msg += ", health ok"
            return msg
        if before.beams:
            raise HostFailure(
                f"a BEAM of this release already runs (pid {before.beams[0]}) but does not "
                "answer: refusing to start a second copy",
                before.output[-1500:],
                "check the node name/cookie in the stage env, or stop that process, then start",
            )
    if not hc.dry_run:
        activation.recover(hc)  # an interrupted activation is finished or rolled back first
    hooks.run(hc, "before", "start", h.deploy_path)
    wait = int(min(hc.settings.start_timeout, 20))
    res = hc.run(commands.start(h.deploy_path, app, builder, h.env, wait), timeout=wait + 10)
    if res.exited == commands.DAEMON_TIMEOUT_RC:
        hc.say(f"bin/{app} daemon did not return within {wait}s (it waits for the node to "
               "answer); checking the node directly")
    elif not res.ok:
        raise HostFailure(f"bin/{app} daemon failed (exit {res.exited})",
                          res.tail() + "\n" + log_tail(hc), "see the output above")
    if hc.dry_run:
        hc.say("would verify: node answers, application started"
               + (", health check" if h.health.enabled else ""))
        return "would start and verify"
    message = verify_started(hc, builder, expect, control_written=ctl.WRITTEN in res.stdout)
    hooks.run(hc, "after", "start", h.deploy_path)
    return message


def verify_started(hc: HostContext, builder: str, expect: str | None = None,
                   control_written: bool = False) -> str:
    """Poll until the node answers, runs our app and passes health — or fail saying which not.

    While a health check is configured and failing, only the cheap checks run (VM list + HTTP,
    the HTTP GETs every 0.1 s between the host's polls); the rpc that proves the app is started
    is asked once health passes, again after twice what it took (0.1-0.5 s).
    control_written: this start wrote erl_call's files (its node's distribution is the plain
    one, in the stage env's epmd), so for up to CLIENT_HELD_SECONDS the release's client is
    asked only once the node is registered with epmd: before that it would boot a helper VM
    just to hear `nodedown`.
    """
    timeout = hc.settings.start_timeout
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    gone_since: float | None = None
    while True:
        polled = time.monotonic()
        client = not control_written or polled - started >= CLIENT_HELD_SECONDS
        health_seen = health(hc) if hc.host.health.enabled else (True, "")
        p = (probe(hc, builder, client=client) if health_seen[0]
             else probe(hc, builder, ask=False))
        if not health_seen[0] and p.procs:
            p.facts = {}  # VMs run; the node is not asked until health passes
        now = time.monotonic()
        if p.app_started:
            facts = p.facts or {}
            msg = f"running {facts['vsn']} (pid {facts['pid']}, node {facts['node']})"
            if expect and facts["vsn"] != expect:
                raise HostFailure(f"the node came up running {facts['vsn']}, not {expect}",
                                  log_tail(hc), "check releases/start_erl.data and bin/ on the host")
            return msg + (", application started, health ok" if hc.host.health.enabled
                          else ", application started")
        elif p.facts == {}:
            gone_since = None
            last = f"BEAM pid {p.beams[0]} is up; health check not passing yet: {health_seen[1]}"
        elif p.facts:
            last = f"node answers but application {hc.settings.app} is not started"
        elif not p.beams:
            gone_since = gone_since or now
            # A BEAM for the root vanished (or never appeared) for 2 s: it crashed while booting.
            if now - gone_since >= 2.0:
                raise HostFailure(
                    f"node is not running: it exited during boot ({now - started:.1f}s after "
                    "daemon); nothing answers and no BEAM of this release is left",
                    log_tail(hc), f"read the log above; then inv start --host {hc.host.name}",
                )
            last = "no BEAM process of this release"
        else:
            gone_since = None
            last = f"BEAM pid {p.beams[0]} is up but the node does not answer yet"
        if now >= deadline:
            raise HostFailure(
                f"node not verified within the start timeout ({timeout:.0f}s): {last}",
                log_tail(hc), "raise deliver.timeouts.start if it boots slowly, or read the log",
            )
        # Asking the node costs the host what the poll took: a cheap answer (erl_call) is asked
        # again soon, one through a helper VM (the release's client) not before 0.5 s.
        gap = (min(POLL_SECONDS, max(HEALTH_POLL_SECONDS if client else POLL_SECONDS / 2,
                                     2 * (now - polled)))
               if health_seen[0] else POLL_SECONDS)
        _pause(hc, health_seen[0], min(deadline, time.monotonic() + gap))


def _pause(hc: HostContext, healthy: bool, until: float) -> None:
    """Sleep until the host's next poll; while the health check's HTTP GETs fail, ask them
    every 0.1 s meanwhile (from this machine: nothing runs on the host) and poll the host as
    soon as they pass, so a start returns when its node is ready, not up to 0.5 s later."""
    asking = hc.host.health.enabled and not healthy
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(HEALTH_POLL_SECONDS, left) if asking else left)
        if asking and (passing := gets_pass(hc, until - time.monotonic())) is not False:
            if passing:
                return
            asking = False  # None: eval checks only, nothing to ask from here; wait for the poll


def stop_node(hc: HostContext, builder: str) -> str:
    """Stop the node and wait until its OS process is gone."""
    h, app = hc.host, hc.settings.release
    if hc.dry_run:
        hooks.run(hc, "before", "stop", h.deploy_path)
        hc.run(commands.stop(h.deploy_path, app, builder, h.env))
        hc.say("would verify: the node's OS process is gone")
        return "would stop and verify"
    p = probe(hc, builder)
    if not p.facts:
        if p.beams:
            raise HostFailure(
                f"a BEAM of this release runs (pid {p.beams[0]}) but does not answer, so it "
                "cannot be stopped cleanly", p.output[-1500:],
                f"check the node name/cookie in the stage env, or inv stop --force --host {h.name}",
            )
        return "not running (nothing to stop)"
    pid = int(p.facts["pid"])
    hooks.run(hc, "before", "stop", h.deploy_path)
    res = hc.run(commands.stop(h.deploy_path, app, builder, h.env), timeout=hc.settings.stop_timeout)
    if not res.ok:
        raise HostFailure(f"bin/{app} stop failed (exit {res.exited})", res.tail(),
                          f"inv stop --force --host {h.name}")
    if _wait_gone(hc, [pid], hc.settings.stop_timeout):
        raise HostFailure(
            f"pid {pid} still runs {hc.settings.stop_timeout:.0f}s after stop",
            log_tail(hc), f"raise deliver.timeouts.stop, or inv stop --force --host {h.name}",
        )
    hooks.run(hc, "after", "stop", h.deploy_path)
    return f"stopped (pid {pid} is gone)"


def _wait_gone(hc: HostContext, pids: list[int], seconds: float) -> list[int]:
    """The pids still there after waiting (on the host, one command) up to `seconds`."""
    res = hc.run(dcmd.wait_gone(pids, seconds), changes=False, timeout=seconds + 30)
    if not res.ok:
        raise HostFailure(f"could not check whether pids {pids} ended (exit {res.exited})",
                          res.tail())
    return [int(x) for x in res.stdout.split() if x.isdigit()]


def force_stop_node(hc: HostContext, builder: str) -> str:
    """Clean stop if the node answers; then TERM, and after a grace period KILL, every VM and
    run_erl of THIS root (matched by `-root ROOT` / its pipe path, never by name); then clear stale
    pipe files and verify nothing of this release is left."""
    if hc.dry_run:
        hc.say("would try a clean stop, then TERM/KILL the BEAM and run_erl pids of this root "
               "and clear stale pipe files")
        hc.run(dcmd.clear_pipes(hc.host.deploy_path, hc.host.env))
        return "would force stop"
    done: list[str] = []
    if probe(hc, builder).facts:
        try:
            done.append(stop_node(hc, builder))
        except HostFailure as exc:
            done.append(f"clean stop failed ({exc.message})")
    s = survey(hc)
    if not s.deployed:
        return "not deployed (nothing to stop)"
    if s.pids:
        hc.say(f"sending TERM to {', '.join(map(str, s.pids))} (processes of this release only)")
        hc.run(dcmd.signal(s.pids, "TERM"))
        left = _wait_gone(hc, s.pids, TERM_GRACE_SECONDS)
        if left:
            hc.say(f"still running after {TERM_GRACE_SECONDS:.0f}s: KILL {', '.join(map(str, left))}")
            hc.run(dcmd.signal(left, "KILL"))
            left = _wait_gone(hc, left, 3.0)
        if left:
            raise HostFailure(f"pids {left} survive SIGKILL", hint="check for a hung kernel task")
        done.append(f"ended pids {', '.join(map(str, s.pids))}")
    hc.run(dcmd.clear_pipes(hc.host.deploy_path, hc.host.env))
    after = survey(hc)
    if after.vms or after.run_erls:
        raise HostFailure("processes of this release are still running after force stop",
                          "\n".join(p.args[:200] for p in after.vms + after.run_erls))
    return "; ".join(done) or "not running (nothing to stop); stale pipe files cleared"


