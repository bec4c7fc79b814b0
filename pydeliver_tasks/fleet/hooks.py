"""Hooks: user code around steps, as Python callables or shell commands from config.

Per host, around a sub-step (push, build, fetch, upload, extract, start, stop) — registered in the
user's tasks.py or given as `deliver.hooks` shell commands (e.g. `before_start: ["./bin/check"]`,
run on that host in the release root, build dir for build-side steps, with the stage's env):

    from pydeliver_tasks import hooks

    @hooks.before("start")
    def warn_chat(hc):
        hc.say("starting")           # hc: the HostContext of the host being started

Per run, around a whole flow (deploy, start, stop, restart, update, upgrade, downgrade, rollback,
cleanup, migrate), once, on this machine, under the deploy lock — like a Capistrano flow:

    @hooks.before_run("upgrade")
    def announce(run):
        post(f"upgrading {run.stage.name} to {run.to_version}")   # run: a hooks.Flow

    @hooks.after_run("deploy")
    def record(run):
        print(run.result.ok)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from .. import commands
from ..config import HOOK_STEPS, Settings
from ..model import Stage
from .host import HostContext, HostFailure
from .output import say
from .results import RunResult

FLOWS = ("deploy", "start", "stop", "restart", "update", "upgrade", "downgrade", "rollback",
         "cleanup", "migrate")


@dataclass
class Flow:
    """What a run-level hook is told: the flow, its stage (hosts), versions, and after the run
    its result (None in a before hook, or when the run raised)."""

    flow: str
    stage: Stage
    settings: Settings
    from_version: str | None = None
    to_version: str | None = None
    dry_run: bool = False
    result: RunResult | None = None


HostHook = Callable[[HostContext], object]
FlowHook = Callable[[Flow], object]
_host_hooks: dict[str, list[HostHook]] = defaultdict(list)
_flow_hooks: dict[str, list[FlowHook]] = defaultdict(list)


def register(when: str, step: str, fn: HostHook) -> HostHook:
    if when not in ("before", "after") or step not in HOOK_STEPS:
        raise ValueError(f"unknown hook {when}_{step}: steps are {', '.join(HOOK_STEPS)}")
    _host_hooks[f"{when}_{step}"].append(fn)
    return fn


def register_run(when: str, flow: str, fn: FlowHook) -> FlowHook:
    if when not in ("before", "after") or flow not in FLOWS:
        raise ValueError(f"unknown run hook {when}_run({flow!r}): flows are {', '.join(FLOWS)}")
    _flow_hooks[f"{when}_{flow}"].append(fn)
    return fn


def before(step: str) -> Callable[[HostHook], HostHook]:
    return lambda fn: register("before", step, fn)


def after(step: str) -> Callable[[HostHook], HostHook]:
    return lambda fn: register("after", step, fn)


def before_run(flow: str) -> Callable[[FlowHook], FlowHook]:
    return lambda fn: register_run("before", flow, fn)


def after_run(flow: str) -> Callable[[FlowHook], FlowHook]:
    return lambda fn: register_run("after", flow, fn)


def registered(when: str, step: str) -> list[str]:
    """The names of the Python hooks registered for when_step."""
    return [getattr(fn, "__name__", str(fn)) for fn in _host_hooks.get(f"{when}_{step}", [])]


def present(hc: HostContext, when: str, step: str) -> bool:
    """Whether `run` would run anything for when_step on this host (so what was read before it
    may have changed)."""
    name = f"{when}_{step}"
    return bool(_host_hooks.get(name) or hc.settings.hooks.get(name))


def clear() -> None:
    _host_hooks.clear()
    _flow_hooks.clear()


def run(hc: HostContext, when: str, step: str, root: str) -> None:
    """Run the Python hooks, then the configured shell hooks; a failing hook fails the step."""
    name = f"{when}_{step}"
    for fn in _host_hooks.get(name, []):
        if hc.dry_run:  # a Python hook may do anything: a dry run only names it
            hc.say(f"would call {name} hook {getattr(fn, '__name__', fn)!s}")
            continue
        fn(hc)
    for cmd in hc.settings.hooks.get(name, ()):
        res = hc.run(commands.hook(root, hc.host.env, cmd))
        if not res.ok:
            raise HostFailure(
                f"{name} hook failed (exit {res.exited}): {cmd}", res.tail(),
                f"fix the hook or remove it from deliver.hooks.{name}",
            )
        if res.stdout.strip():
            hc.say(res.stdout.rstrip())


def run_flow(when: str, flow: Flow) -> None:
    """The run-level hooks of this flow; an exception from one ends the run (audited)."""
    name = f"{when}_{flow.flow}"
    for fn in _flow_hooks.get(name, []):
        if flow.dry_run:
            say(f"would call {when}_run({flow.flow!r}) hook {getattr(fn, '__name__', fn)!s}")
            continue
        fn(flow)
