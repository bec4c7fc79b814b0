"""The node flows: start, stop, restart (host-changing: locked, audited, by the rollout), ping
and version (read-only). The per-host work, verified on the host, is in steps/control.py."""

from __future__ import annotations

from typing import Any

from ..fleet.host import HostContext, HostFailure
from ..fleet.results import RunResult
from ..fleet.run import for_each_host
from ..model import NextStep, Rollout
from .control import force_stop_node, start_node, stop_node
from .frame import Ctx, over_stage, target
from .probe import boot_version, probe
from .recovery import BOOT_CHECK_SECONDS, boot_output
from .rotation import InRotation, Rotation


def start(c: Ctx, stage: str | None = None, host: str | None = None,
          dry_run: bool = False, json_path: str | None = None,
          foreground_check: bool = False, rollout: Rollout | None = None) -> RunResult:
    """Start the node on every host and verify it (steps' API of `inv start`).

    foreground_check: when a start fails, boot the release in the foreground for a few seconds
    and add its console output (the real boot error) to that host's failure.
    """

    with over_stage(c, "start", stage, host, rollout, flow="start", dry_run=dry_run,
                    json_path=json_path) as run:

        def one(hc: HostContext) -> str:
            try:
                started = start_node(hc, run.builder)
                if run.rotation and run.rotation.balancer and not hc.dry_run:
                    started += "; " + run.rotation.enable(hc)  # back in rotation, seen UP
                return started
            except HostFailure as exc:
                if not foreground_check or hc.dry_run:
                    raise
                if probe(hc, run.builder, ask=False).procs:  # a VM of this root runs: no boot failure
                    exc.detail += "\n(foreground check skipped: a VM of this release is running)"
                    raise
                rc, output = boot_output(hc, run.builder, BOOT_CHECK_SECONDS)
                exc.detail += f"\n== foreground boot (exit {rc}):\n{output}"
                raise

        return run.each(one, finish=(NextStep("start"),))


def stop(c: Ctx, stage: str | None = None, host: str | None = None,
         dry_run: bool = False, json_path: str | None = None, force: bool = False) -> RunResult:
    """Stop the node on every host and verify its OS process is gone.

    force: when the node does not answer (or will not stop), end the BEAM and run_erl processes
    of this release root by pid (TERM, then KILL) and clear stale pipe files.
    """
    stop_one = force_stop_node if force else stop_node
    with over_stage(c, "stop", stage, host, flow="stop", dry_run=dry_run,
                    json_path=json_path) as run:
        def one(hc: HostContext) -> str:
            with run.out_of_rotation(hc, back=False):  # stays drained until a start
                return stop_one(hc, run.builder)

        return run.each(one, finish=(NextStep("stop"),))


def restart(c: Ctx, stage: str | None = None, host: str | None = None,
            dry_run: bool = False, json_path: str | None = None, force: bool = False,
            expect_version: str | None = None, rollout: Rollout | None = None) -> RunResult:
    """Verified stop (forced with force=True), then verified start — so a newly deployed release
    really boots (not init:restart, which would not load it). The node must come up running the
    version start_erl.data names (or expect_version)."""
    with over_stage(c, "restart", stage, host, rollout, flow="restart", dry_run=dry_run,
                    json_path=json_path, to_version=expect_version) as run:

        def both(hc: HostContext) -> str:
            boot = expect_version or boot_version(hc)  # what must run after the restart
            with run.out_of_rotation(hc):
                stopped = (force_stop_node if force else stop_node)(hc, run.builder)
                return f"{stopped}; {start_node(hc, run.builder, boot)}"

        return run.each(both, finish=(NextStep("restart"),))


def ping_node(hc: HostContext, builder: str) -> str:
    p = probe(hc, builder)
    if p.facts:
        return f"pong: {p.facts['node']} (pid {p.facts['pid']}, {p.facts['vsn']})"
    if p.beams:
        raise HostFailure(f"no answer, though BEAM pid {p.beams[0]} of this release runs",
                          p.output[-1500:], "it may be booting; or check node name/cookie")
    raise HostFailure("not running: no answer and no BEAM of this release", p.output[-800:],
                      f"inv start --host {hc.host.name}")


def ping(c: Ctx, stage: str | None = None, host: str | None = None,
         json_path: str | None = None) -> RunResult:
    """Ask every node whether it answers."""
    settings, st, builder = target(c, stage, host)
    return for_each_host("ping", settings, st.name, st.hosts, lambda hc: ping_node(hc, builder),
                         json_path=json_path)


def version_of(hc: HostContext, builder: str,
               seen: InRotation | None = None) -> tuple[str, dict[str, Any]]:
    """Running version vs the one start_erl.data would boot (edeliver #314/#328), and the load
    balancer's view of the host when the stage has one."""
    said, data = _versions(hc, builder)
    if seen is None:
        return said, data
    data["balancer"] = seen.data()
    said += f"; load balancer: {seen.sentence}"
    if seen.state is not None and not seen.state.serving:
        said += f" — OUT OF ROTATION (inv balancer.enable --host {hc.host.name})"
    return said, data


def _versions(hc: HostContext, builder: str) -> tuple[str, dict[str, Any]]:
    p = probe(hc, builder, cheap_first=True)
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


def version(c: Ctx, stage: str | None = None, host: str | None = None,
             json_path: str | None = None) -> RunResult:
    """Report the running release version and the one that would boot next, per host."""
    settings, st, builder = target(c, stage, host)
    seen = Rotation(settings, st).seen()  # read once, before the hosts
    return for_each_host("version", settings, st.name, st.hosts,
                         lambda hc: version_of(hc, builder, seen.get(hc.host.name)),
                         json_path=json_path)
