"""The foreground boot check: the boot error a daemon start never shows (edeliver #286), on
this release root only. (Force stop, the other half of recovery, is in steps/control.py.)"""

from __future__ import annotations

from .. import commands
from ..commands import diagnose as dcmd
from ..fleet.host import HostContext, HostFailure
from ..fleet.results import RunResult
from ..fleet.run import for_each_host
from ..validation import InvalidInput
from .frame import Ctx, target
from .probe import probe, survey

BOOT_CHECK_SECONDS = 10


def boot_output(hc: HostContext, builder: str, seconds: int) -> tuple[int, str]:
    """Run the release in the foreground for at most `seconds`; (exit code, console output)."""
    h = hc.host
    res = hc.run(dcmd.foreground(h.deploy_path, hc.settings.release, builder, h.env, seconds),
                 timeout=seconds + 30)
    lines = (res.stdout + res.stderr).splitlines()
    rc = next((int(x.split("=", 1)[1]) for x in reversed(lines)
               if x.startswith(commands.RC_MARK) and x.split("=", 1)[1].isdigit()), res.exited)
    leftover = survey(hc)
    if leftover.pids:  # `timeout` signals the script; make sure its VM went with it
        hc.run(dcmd.signal(leftover.pids, "KILL"))
    return rc, "\n".join(x for x in lines if not x.startswith(commands.RC_MARK))


def boot_check_node(hc: HostContext, builder: str, seconds: int = BOOT_CHECK_SECONDS) -> str:
    if hc.dry_run:
        hc.run(dcmd.foreground(hc.host.deploy_path, hc.settings.release, builder, hc.host.env, seconds))
        return "would boot in the foreground and show the console"
    p = probe(hc, builder)
    if p.facts or p.beams:
        raise HostFailure("the node is running: a boot check needs it stopped",
                          hint=f"inv stop --host {hc.host.name} (or inv doctor)")
    rc, output = boot_output(hc, builder, seconds)
    hc.say(f"console output of a foreground boot (limit {seconds}s):")
    hc.say(output or "(no output)")
    if rc in (124, 137):  # ran until the limit (137: it ignored TERM and was killed)
        return (f"booted and ran {seconds}s without crashing; stopped again. Start it normally: "
                f"inv start --host {hc.host.name}")
    raise HostFailure(f"the release exits during a foreground boot (exit {rc}): see the console "
                      "output above", hint=f"fix the error, then inv start --host {hc.host.name}")


def boot_check(c: Ctx, stage: str | None = None, host: str | None = None, seconds: int = 10,
               dry_run: bool = False, json_path: str | None = None) -> RunResult:
    """Boot the release in the foreground with a time limit and show its console output."""
    if not 1 <= int(seconds) <= 600:
        raise InvalidInput("--seconds must be between 1 and 600")
    settings, st, builder = target(c, stage, host)
    return for_each_host("boot-check", settings, st.name, st.hosts,
                         lambda hc: boot_check_node(hc, builder, int(seconds)),
                         dry_run=dry_run, json_path=json_path)
