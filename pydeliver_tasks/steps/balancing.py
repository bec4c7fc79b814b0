"""balancer.status / drain / enable: the stage's load balancer by hand (steps.rotation does it
around every stop on its own). drain and enable are host-changing runs: locked and audited."""

from __future__ import annotations

from ..fleet import HostContext, RunResult, say
from ..validation import InvalidInput
from .frame import Ctx, over_stage, target
from .rotation import Rotation


def _needs(stage_name: str, rotation: Rotation) -> None:
    if rotation.balancer is None:
        raise InvalidInput(f"stage {stage_name!r} has no load balancer: set deliver.balancer "
                           "(or the stage's balancer)")


def balancer_status(c: Ctx, stage: str | None = None) -> RunResult:
    """Each server of the backend: status (UP / DRAIN / MAINT / DOWN), sessions, and which
    deploy host it is."""
    settings, st, _ = target(c, stage, None)
    rotation = Rotation(settings, st)
    _needs(st.name, rotation)
    assert rotation.balancer is not None
    hosts = {rotation.balancer.server(h): h.name for h in st.hosts}
    for server, state in sorted(rotation.servers().items()):
        who = f" ({hosts[server]})" if server in hosts else " (not a host of this stage)"
        say(f"{rotation.balancer.backend}/{server}{who}: {state.status}, {state.sessions} "
            "session(s)")
    return RunResult("balancer.status", st.name)


def _by_hand(c: Ctx, action: str, stage: str | None, host: str | None, dry_run: bool) -> RunResult:
    with over_stage(c, action, stage, host, flow="restart", dry_run=dry_run) as run:
        assert run.rotation is not None
        rotation = run.rotation
        _needs(run.stage.name, rotation)

        def one(hc: HostContext) -> str:
            if hc.dry_run:
                return f"would {action.split('.')[1]} {rotation.balancer.server(hc.host)}"  # type: ignore[union-attr]
            return rotation.drain(hc) if action.endswith("drain") else rotation.enable(hc)

        return run.each(one)


def balancer_drain(c: Ctx, stage: str | None = None, host: str | None = None,
                   dry_run: bool = False) -> RunResult:
    """Take hosts out of rotation (min_up checked, sessions waited for), leaving their nodes
    running."""
    return _by_hand(c, "balancer.drain", stage, host, dry_run)


def balancer_enable(c: Ctx, stage: str | None = None, host: str | None = None,
                    dry_run: bool = False) -> RunResult:
    """Put hosts back in rotation, each once the balancer's health check sees it UP."""
    return _by_hand(c, "balancer.enable", stage, host, dry_run)
