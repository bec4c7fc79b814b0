"""Node control: start, stop, restart, ping, version — each effect verified on the host.

start never reports success on hope (edeliver #329): the node must answer, run our OTP application
and pass the health check; a node still booting is polled until the start timeout (#164); a node
that dies while booting is reported at once with its log tail. stop waits for the OS process to be
gone (mix's `stop` returns before the VM exits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .. import commands, hooks, otp, strategy
from ..fleet import HostContext, HostFailure, HostResult, for_each_host
from ..strategy import Strategy
from .common import locked, target
from .health import health

POLL_SECONDS = 0.5


@dataclass
class Probe:
    """One look at a host: the node's facts (None if it did not answer) and the OS processes
    whose command line names the release root."""

    facts: dict[str, str] | None
    procs: list[tuple[int, str]] = field(default_factory=list)
    output: str = ""

    @property
    def beams(self) -> list[int]:
        return [pid for pid, _ in self.procs]

    @property
    def app_started(self) -> bool:
        return bool(self.facts and self.facts.get("app") == "true")


def parse_probe(output: str) -> Probe:
    procs: list[tuple[int, str]] = []
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(commands.PROC_MARK):
            pid, _, args = line[len(commands.PROC_MARK):].strip().partition(" ")
            if pid.isdigit():
                procs.append((int(pid), args))
        elif not line.startswith(commands.RC_MARK):
            lines.append(line)
    return Probe(otp.parse_marker(output), procs, "\n".join(lines))


def probe(hc: HostContext, kind: str, cheap_first: bool = False, ask: bool = True) -> Probe:
    """Ask the node (an rpc, which boots a helper VM: ~0.4 CPU-s) and list this root's VMs.

    cheap_first: list the VMs first and skip the rpc when there are none to ask.
    ask=False: only list the VMs (facts stay None).
    """
    h = hc.host
    if cheap_first or not ask:
        res = hc.run(commands.vms(h.deploy_path), changes=False)
        listed = parse_probe(res.stdout)
        if not listed.procs or not ask:
            return listed
    res = hc.run(commands.probe(h.deploy_path, hc.settings.app, kind, h.env), changes=False)
    return parse_probe(res.stdout + res.stderr)


def log_tail(hc: HostContext, lines: int = 30) -> str:
    return hc.run(commands.log_tail(hc.host.deploy_path, lines), changes=False).stdout.strip()


def start_node(hc: HostContext, kind: str, expect: str | None = None) -> str:
    """Start the node unless it already runs, then verify it within the start timeout
    (and, with expect, that it runs that release version)."""
    h, app = hc.host, hc.settings.app
    if not hc.dry_run:
        before = probe(hc, kind, cheap_first=True)
        if before.facts and not before.app_started:
            hc.say("the node answers but its application is not started yet: waiting for it")
            return verify_started(hc, kind, expect)
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
    hooks.run(hc, "before", "start", h.deploy_path)
    wait = int(min(hc.settings.start_timeout, 20))
    res = hc.run(commands.start(h.deploy_path, app, kind, h.env, wait), timeout=wait + 10)
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
    message = verify_started(hc, kind, expect)
    hooks.run(hc, "after", "start", h.deploy_path)
    return message


def verify_started(hc: HostContext, kind: str, expect: str | None = None) -> str:
    """Poll until the node answers, runs our app and passes health — or fail saying which not.

    While a health check is configured and failing, only the cheap checks run (VM list + HTTP);
    the rpc that proves the app is started is asked once health passes.
    """
    timeout = hc.settings.start_timeout
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    gone_since: float | None = None
    while True:
        health_seen = health(hc) if hc.host.health.enabled else (True, "")
        p = probe(hc, kind) if health_seen[0] else probe(hc, kind, ask=False)
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
        time.sleep(POLL_SECONDS)


def stop_node(hc: HostContext, kind: str) -> str:
    """Stop the node and wait until its OS process is gone."""
    h, app = hc.host, hc.settings.app
    if hc.dry_run:
        hooks.run(hc, "before", "stop", h.deploy_path)
        hc.run(commands.stop(h.deploy_path, app, kind, h.env))
        hc.say("would verify: the node's OS process is gone")
        return "would stop and verify"
    p = probe(hc, kind)
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
    res = hc.run(commands.stop(h.deploy_path, app, kind, h.env), timeout=hc.settings.stop_timeout)
    if not res.ok:
        raise HostFailure(f"bin/{app} stop failed (exit {res.exited})", res.tail(),
                          f"inv stop --force --host {h.name}")
    deadline = time.monotonic() + hc.settings.stop_timeout
    while hc.run(commands.process_alive(pid), changes=False).ok:
        if time.monotonic() >= deadline:
            raise HostFailure(
                f"pid {pid} still runs {hc.settings.stop_timeout:.0f}s after stop",
                log_tail(hc), f"raise deliver.timeouts.stop, or inv stop --force --host {h.name}",
            )
        time.sleep(POLL_SECONDS)
    hooks.run(hc, "after", "stop", h.deploy_path)
    return f"stopped (pid {pid} is gone)"


def _each(step: str, c: Any, stage: str | None, host: str | None, dry_run: bool,
          json: str | None, fn: Any, rollout: Strategy | None = None,
          changes: bool = False, to_version: str | None = None) -> list[HostResult]:
    """fn(hc, kind) on the stage's hosts; with a rollout strategy (start/restart), by it.
    changes: a host-changing step, run under the deploy lock and written to the audit log."""
    settings, st, kind = target(c, stage, host)
    if not changes:
        return for_each_host(step, settings, st.name, st.hosts, lambda hc: fn(hc, kind),
                             dry_run=dry_run, json_path=json)
    st, skipped = strategy.reachable(step, settings, st, rollout, dry_run)
    with locked(settings, st, step, to_version=to_version, dry_run=dry_run,
                lock_wait=rollout.lock_wait if rollout else 0.0) as audit:
        results = strategy.each(step, settings, st, lambda hc: fn(hc, kind), rollout,
                                dry_run=dry_run, json_path=json, command=f"inv {step}",
                                skipped=skipped)
        audit.record(results)
        return results


def start(c: Any, stage: str | None = None, host: str | None = None,
          dry_run: bool = False, json: str | None = None,
          foreground_check: bool = False, rollout: Strategy | None = None) -> list[HostResult]:
    """Start the node on every host and verify it (steps' API of `inv start`).

    foreground_check: when a start fails, boot the release in the foreground for a few seconds
    and add its console output (the real boot error) to that host's failure.
    """

    def one(hc: HostContext, kind: str) -> str:
        try:
            return start_node(hc, kind)
        except HostFailure as exc:
            if not foreground_check or hc.dry_run:
                raise
            from .recovery import BOOT_CHECK_SECONDS, boot_output

            if probe(hc, kind, ask=False).procs:  # a VM of this root runs: not a boot failure
                exc.detail += "\n(foreground check skipped: a VM of this release is running)"
                raise
            rc, output = boot_output(hc, kind, BOOT_CHECK_SECONDS)
            exc.detail += f"\n== foreground boot (exit {rc}):\n{output}"
            raise

    return _each("start", c, stage, host, dry_run, json, one, rollout, changes=True)


def stop(c: Any, stage: str | None = None, host: str | None = None,
         dry_run: bool = False, json: str | None = None, force: bool = False) -> list[HostResult]:
    """Stop the node on every host and verify its OS process is gone.

    force: when the node does not answer (or will not stop), end the BEAM and run_erl processes
    of this release root by pid (TERM, then KILL) and clear stale pipe files.
    """
    from .recovery import force_stop_node

    return _each("stop", c, stage, host, dry_run, json, force_stop_node if force else stop_node,
                 changes=True)


def restart(c: Any, stage: str | None = None, host: str | None = None,
            dry_run: bool = False, json: str | None = None, force: bool = False,
            expect_version: str | None = None, rollout: Strategy | None = None) -> list[HostResult]:
    """Verified stop (forced with force=True), then verified start — so a newly deployed release
    really boots (not init:restart, which would not load it). The node must come up running the
    version start_erl.data names (or expect_version)."""
    from .recovery import force_stop_node

    def both(hc: HostContext, kind: str) -> str:
        boot = expect_version or boot_version(hc)  # what must run after the restart
        stopped = (force_stop_node if force else stop_node)(hc, kind)
        return f"{stopped}; {start_node(hc, kind, boot)}"

    return _each("restart", c, stage, host, dry_run, json, both, rollout, changes=True,
                 to_version=expect_version)


def ping_node(hc: HostContext, kind: str) -> str:
    p = probe(hc, kind)
    if p.facts:
        return f"pong: {p.facts['node']} (pid {p.facts['pid']}, {p.facts['vsn']})"
    if p.beams:
        raise HostFailure(f"no answer, though BEAM pid {p.beams[0]} of this release runs",
                          p.output[-1500:], "it may be booting; or check node name/cookie")
    raise HostFailure("not running: no answer and no BEAM of this release", p.output[-800:],
                      f"inv start --host {hc.host.name}")


def ping(c: Any, stage: str | None = None, host: str | None = None,
         json: str | None = None) -> list[HostResult]:
    """Ask every node whether it answers."""
    return _each("ping", c, stage, host, False, json, ping_node)


def boot_version(hc: HostContext) -> str | None:
    """The release version releases/start_erl.data names (what the next start boots)."""
    if hc.dry_run:
        return None
    words = hc.run(commands.boot_version(hc.host.deploy_path), changes=False).stdout.split()
    return words[1] if len(words) == 2 else None


def version_of(hc: HostContext, kind: str) -> tuple[str, dict[str, Any]]:
    """Running version vs the one start_erl.data would boot (edeliver #314/#328)."""
    p = probe(hc, kind, cheap_first=True)
    boot = boot_version(hc) or "none"
    data: dict[str, Any] = {"running": p.facts["vsn"] if p.facts else None, "boots_next": boot}
    if not p.facts:
        if p.beams:
            raise HostFailure(f"BEAM pid {p.beams[0]} of this release runs but does not answer, "
                              f"so its version is unknown; {boot} boots next", p.output[-800:],
                              f"inv doctor --host {hc.host.name}", data)
        return f"not running; {boot} boots next", data
    running = p.facts["vsn"]
    if running != boot:
        return (f"running {running}, but {boot} boots next: MISMATCH (inv restart boots {boot})",
                data)
    return f"running {running}; {boot} boots next", data


def version(c: Any, stage: str | None = None, host: str | None = None,
            json: str | None = None) -> list[HostResult]:
    """Report the running release version and the one that would boot next, per host."""
    return _each("version", c, stage, host, False, json, version_of)
