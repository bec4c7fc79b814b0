"""`doctor`: what is really going on on each host, in plain words, with the next command to run.

The manual fixes edeliver users were told to do by hand ("SSH in, kill the Erlang process, start
it again") start from a diagnosis: which BEAMs of this release run, what epmd knows, what ping
says, what boots next, and what the logs and crash dump say.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..commands import diagnose as dcmd
from ..fleet import lock
from ..fleet.host import HostContext, HostFailure
from ..fleet.output import size_text
from ..fleet.results import RunResult
from ..fleet.run import for_each_host
from . import activation
from .equal import drift
from .frame import Ctx, target
from .health import health
from .probe import Probe, Survey, parse_survey, probe
from .rotation import InRotation, Rotation

HEALTHY = "healthy"


@dataclass
class Diagnosis:
    verdict: str
    findings: list[str]
    next: str

    @property
    def healthy(self) -> bool:
        return self.verdict == HEALTHY


_CRASH_RE = re.compile(r"Kernel pid terminated|init terminating in do_boot|"
                       r"Application \w+ exited with reason|crash_report|eaddrinuse")


def classify(s: Survey, p: Probe, seen_health: tuple[bool, str] | None, env: dict[str, str],
             app: str, host: str, start_timeout: float,
             drift: Sequence[str] = ()) -> Diagnosis:
    """The verdict for one host from what was seen; pure, so every branch is unit-tested.
    drift: how the running node differs from a fresh boot of its version (equal.drift)."""
    if not s.deployed:
        return Diagnosis("not deployed", ["the deploy path does not exist or holds no releases/"],
                         "inv deploy.release --version VERSION")
    f = _findings(s, p)
    h = f"--host {host}"
    if p.facts:
        return _answering(s, p, seen_health, start_timeout, drift, f, h)
    if s.vms:
        return _unreachable(s, env, f, h)
    return _down(s, f, h)


def _findings(s: Survey, p: Probe) -> list[str]:
    running = p.facts["vsn"] if p.facts else None
    f = [f"version: running {running or '-'}, boots next {s.boot_version or '-'}"]
    for vm in s.vms:
        f.append(f"process: pid {vm.pid}, up {vm.uptime}s, node {vm.flag('name') or vm.flag('sname')}")
    f.append("epmd: " + ("; ".join(s.epmd) if s.epmd else "no answer"))
    if s.disk_kb is not None:
        # df's KiB, said in the units of every other size this tool prints (MB = 10^6 bytes)
        f.append(f"disk: {size_text(s.disk_kb * 1024)} free on the deploy path"
                 + (" — LOW" if s.disk_kb * 1024 < 200e6 else ""))
    if s.pipe:
        f.append(f"pipe dir: {s.pipe}")
    if s.crash:
        ago = s.now - s.crash[0] if s.now else 0
        f.append(f"crash dump: erl_crash.dump written {ago}s ago, {s.crash[1] or 'no slogan'}")
    return f


def _answering(s: Survey, p: Probe, seen_health: tuple[bool, str] | None, start_timeout: float,
               drift: Sequence[str], f: list[str], h: str) -> Diagnosis:
    """The node answers: booting, app down, unhealthy, mismatch, drifted — or healthy."""
    running = (p.facts or {}).get("vsn")
    uptime = min((vm.uptime for vm in s.vms), default=0)
    if not p.app_started:
        if uptime < start_timeout:
            return Diagnosis("booting", f, f"wait, then inv ping {h}")
        return Diagnosis("application not started", f, f"inv logs {h}; then inv restart {h}")
    if seen_health and not seen_health[0]:
        f.append(f"health: {seen_health[1]}")
        return Diagnosis("unhealthy: the health check fails", f, f"inv logs {h}")
    if s.boot_version and running != s.boot_version:
        return Diagnosis(f"version mismatch: runs {running}, {s.boot_version} boots next", f,
                         f"inv restart {h} (to boot {s.boot_version})")
    if drift:
        f.extend(drift)
        return Diagnosis(f"differs from a fresh boot of {running}: {drift[0]}", f,
                         f"inv restart {h} (a boot applies the release's config and starts "
                         "every child)")
    return Diagnosis(HEALTHY, f, "nothing to do")


def _unreachable(s: Survey, env: dict[str, str], f: list[str], h: str) -> Diagnosis:
    """A BEAM of this release runs but does not answer: name, epmd or cookie — or booting."""
    vm = s.vms[0]
    uptime = min(x.uptime for x in s.vms)
    actual = vm.flag("name") or vm.flag("sname") or ""
    wanted = env.get("RELEASE_NODE") or env.get("NODE_NAME") or ""
    short = actual.split("@")[0]
    if wanted and actual and wanted.split("@")[0] != short:
        return Diagnosis(f"running but unreachable: node name mismatch (the process runs as "
                         f"{actual}, the stage env says {wanted})", f,
                         f"fix the node name in the stage env, or inv stop --force {h}")
    if not s.epmd_running or (short and not s.epmd_has(short)):
        return Diagnosis("running but unreachable: not registered in epmd (epmd was killed "
                         "or restarted under it)", f, f"inv restart --force {h}")
    cookie = env.get("RELEASE_COOKIE") or env.get("COOKIE")
    their = vm.flag("setcookie")
    if uptime < 5 and not (their and cookie and their != cookie):
        return Diagnosis("booting", f, f"wait, then inv ping {h}")
    return Diagnosis("running but unreachable: cookie mismatch (the process runs and epmd has "
                     "its name, but ping says pang)", f,
                     f"fix the cookie in the stage env, or inv stop --force {h}")


def _down(s: Survey, f: list[str], h: str) -> Diagnosis:
    """No BEAM of this release: crashed at its last boot, or simply not running."""
    if s.run_erls:
        f.append(f"run_erl pid {s.run_erls[0].pid} runs without a node")
    if s.log:
        f.append("log tail: " + " | ".join(line.strip() for line in s.log[-3:]))
    # Only evidence from the last boot counts: run_erl marks each start in its log, and each
    # boot of this tool marks the host, so a crash dump older than that mark belongs to an
    # earlier life of the node. Without the mark (a node booted by an older version of this
    # tool), a dump older than the log's last write by more than a few seconds is earlier.
    starts = [i for i, line in enumerate(s.log) if "LOGGING STARTED" in line]
    last_boot = s.log[starts[-1]:] if starts else s.log
    log_time = s.logfile[1] if s.logfile else 0
    dump_of_last_boot = s.crash is not None and (
        s.crash_since_boot if s.crash_since_boot is not None else s.crash[0] >= log_time - 5)
    crashed = any(_CRASH_RE.search(line) for line in last_boot) or dump_of_last_boot
    if crashed:
        return Diagnosis("crashed at boot", f, f"inv boot-check {h} (shows the boot error)")
    return Diagnosis("not running", f, f"inv start {h}")


def in_rotation(d: Diagnosis, seen: InRotation | None, host: str) -> Diagnosis:
    """The load balancer's view (a stage with deliver.balancer): a finding, and a healthy node
    that is not in rotation (left drained by an interrupted run, or drained by hand) is not
    healthy for its users."""
    if seen is None:
        return d
    d.findings.append(f"load balancer: {seen.sentence}")
    if d.healthy and seen.state is not None and not seen.state.serving:
        return Diagnosis(f"out of rotation: {seen.state.status} in the load balancer", d.findings,
                         f"inv balancer.enable --host {host}")
    return d


def doctor_host(hc: HostContext, builder: str,
                seen: InRotation | None = None) -> tuple[str, dict[str, Any]]:
    h = hc.host
    journal = activation.recover(hc) if not hc.dry_run else None  # says it when it acted
    p = probe(hc, builder)
    s = parse_survey(hc.run(dcmd.survey(h.deploy_path, h.env), changes=False).stdout)
    health_seen = health(hc) if (p.app_started and h.health.enabled) else None
    running = p.facts.get("vsn") if p.facts and p.app_started else None
    found = drift(hc, builder, running) if running and running == s.boot_version else []
    d = in_rotation(classify(s, p, health_seen, h.env, hc.settings.app, h.name,
                             hc.settings.start_timeout, found), seen, h.name)
    if journal is not None and journal.recovered:
        d.findings.append(f"activation: {journal.sentence()}")
    for path, kb in s.leftovers:
        d.findings.append(f"leftover of an interrupted run: {path} ({size_text(kb * 1024)}; the next "
                          "deploy removes or resumes it)")
    if s.lock is not None:
        d.findings.append(f"deploy lock: {lock.describe(s.lock)}")
    hc.say(f"verdict: {d.verdict}")
    for line in d.findings:
        hc.say(f"  {line}")
    if s.logfile and not d.healthy:
        hc.say(f"  last lines of {s.logfile[0]}:")
        for line in s.log[-10:]:
            hc.say(f"    {line}")
    hc.say(f"  next: {d.next}")
    data = {"verdict": d.verdict, "next": d.next, "findings": [hc.redact(x) for x in d.findings],
            "pids": [vm.pid for vm in s.vms], "running": p.facts.get("vsn") if p.facts else None,
            "boots_next": s.boot_version or None, "checked_at": int(time.time())}
    if seen is not None:
        data["balancer"] = seen.data()
    if not d.healthy:
        raise HostFailure(d.verdict, hint=d.next, data=data)
    return d.verdict, data


def doctor(c: Ctx, stage: str | None = None, host: str | None = None,
           json_path: str | None = None) -> RunResult:
    """Diagnose every host of the stage; fails (exit 1) when any host is not healthy."""
    settings, st, builder = target(c, stage, host)
    seen = Rotation(settings, st).seen()  # read once, before the hosts
    return for_each_host("doctor", settings, st.name, st.hosts,
                         lambda hc: doctor_host(hc, builder, seen.get(hc.host.name)),
                         json_path=json_path)
