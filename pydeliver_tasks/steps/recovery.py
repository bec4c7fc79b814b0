"""Recovery: force stop (the "SSH in and kill the Erlang process" fix) and the foreground boot
check (the boot error a daemon start never shows, edeliver #286) — on this release root only."""

from __future__ import annotations

import time
from typing import Any

from .. import commands
from ..commands import diagnose as dcmd
from ..fleet import HostContext, HostFailure, HostResult, for_each_host
from .common import target
from .doctor import Survey, parse_survey
from .node import POLL_SECONDS, probe, stop_node

TERM_GRACE_SECONDS = 5.0
BOOT_CHECK_SECONDS = 10


def survey(hc: HostContext) -> Survey:
    return parse_survey(hc.run(dcmd.survey(hc.host.deploy_path, hc.host.env), changes=False).stdout)


def _wait_gone(hc: HostContext, pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        left = [int(x) for x in hc.run(dcmd.alive(pids), changes=False).stdout.split() if x.isdigit()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_SECONDS)


def force_stop_node(hc: HostContext, kind: str) -> str:
    """Clean stop if the node answers; then TERM, and after a grace period KILL, every VM and
    run_erl of THIS root (matched by `-root ROOT` / its pipe path, never by name); then clear stale
    pipe files and verify nothing of this release is left."""
    if hc.dry_run:
        hc.say("would try a clean stop, then TERM/KILL the BEAM and run_erl pids of this root "
               "and clear stale pipe files")
        hc.run(dcmd.clear_pipes(hc.host.deploy_path, hc.host.env))
        return "would force stop"
    done: list[str] = []
    if probe(hc, kind).facts:
        try:
            done.append(stop_node(hc, kind))
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


def boot_output(hc: HostContext, kind: str, seconds: int) -> tuple[int, str]:
    """Run the release in the foreground for at most `seconds`; (exit code, console output)."""
    h = hc.host
    res = hc.run(dcmd.foreground(h.deploy_path, hc.settings.app, kind, h.env, seconds),
                 timeout=seconds + 30)
    lines = (res.stdout + res.stderr).splitlines()
    rc = next((int(x.split("=", 1)[1]) for x in reversed(lines)
               if x.startswith(commands.RC_MARK) and x.split("=", 1)[1].isdigit()), res.exited)
    leftover = survey(hc)
    if leftover.pids:  # `timeout` signals the script; make sure its VM went with it
        hc.run(dcmd.signal(leftover.pids, "KILL"))
    return rc, "\n".join(x for x in lines if not x.startswith(commands.RC_MARK))


def boot_check_node(hc: HostContext, kind: str, seconds: int = BOOT_CHECK_SECONDS) -> str:
    if hc.dry_run:
        hc.run(dcmd.foreground(hc.host.deploy_path, hc.settings.app, kind, hc.host.env, seconds))
        return "would boot in the foreground and show the console"
    p = probe(hc, kind)
    if p.facts or p.beams:
        raise HostFailure("the node is running: a boot check needs it stopped",
                          hint=f"inv stop --host {hc.host.name} (or inv doctor)")
    rc, output = boot_output(hc, kind, seconds)
    hc.say(f"console output of a foreground boot (limit {seconds}s):")
    hc.say(output or "(no output)")
    if rc in (124, 137):  # ran until the limit (137: it ignored TERM and was killed)
        return (f"booted and ran {seconds}s without crashing; stopped again. Start it normally: "
                f"inv start --host {hc.host.name}")
    raise HostFailure(f"the release exits during a foreground boot (exit {rc}): see the console "
                      "output above", hint=f"fix the error, then inv start --host {hc.host.name}")


def boot_check(c: Any, stage: str | None = None, host: str | None = None, seconds: int = 10,
               dry_run: bool = False, json: str | None = None) -> list[HostResult]:
    """Boot the release in the foreground with a time limit and show its console output."""
    from ..validation import InvalidInput

    if not 1 <= int(seconds) <= 600:
        raise InvalidInput("--seconds must be between 1 and 600")
    settings, st, kind = target(c, stage, host)
    return for_each_host("boot-check", settings, st.name, st.hosts,
                         lambda hc: boot_check_node(hc, kind, int(seconds)),
                         dry_run=dry_run, json_path=json)
