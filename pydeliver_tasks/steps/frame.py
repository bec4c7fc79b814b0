"""The run frame every step shares.

Read-only steps: `target(c, stage, host)` — the settings (read and validated once per config),
the stage narrowed to --host, and the builder (mix or rebar3), all checked before any remote.

Host-changing steps run inside `over_stage(...)`: the stage is resolved once, every host must
answer (or is left out with --skip-unreachable), the deploy lock is taken on every host (reused
when this process holds it already: a run inside `update`, or inside a user's `locked(...)`),
the run-level hooks are called, each host is changed by the rollout, and one audit line per host
is written whatever happened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeAlias

from invoke import Context

from .. import config
from ..config import Settings
from ..fleet import hooks, strategy
from ..fleet.hooks import Flow
from ..fleet.host import HostContext
from ..fleet.lock import Guard, guarded
from ..fleet.output import say
from ..fleet.results import HostResult, RunResult, StepFailed
from ..fleet.run import HostStep, for_each_host
from ..model import NextStep, Rollout, Stage
from ..validation import InvalidInput
from .rotation import Rotation

# What a step is given: an Invoke/Fabric context, or a plain dict with a `deliver` subtree.
Ctx: TypeAlias = Context | Mapping[str, object]
_settings: dict[str, Settings] = {}
# the flows that may take a host out of the load balancer's rotation (or put it back)
DRAINING = ("start", "stop", "restart", "rollback", "update", "upgrade")


def settings_of(c: Ctx) -> Settings:
    """The `deliver` subtree of an Invoke context (or a plain dict), validated — once per
    distinct config (and working directory: a relative project_dir depends on it)."""
    raw = c.config if isinstance(c, Context) else c
    deliver = config.plain(raw.get("deliver", {}))
    key = json.dumps([os.getcwd(), deliver], sort_keys=True, default=str)
    if key not in _settings:
        if len(_settings) > 32:
            _settings.clear()
        _settings[key] = config.load(raw)
        for warning in config.short_secrets(_settings[key]):
            say(warning)
    return _settings[key]


def builder_of(settings: Settings) -> str:
    """mix or rebar3: decides the start script's commands (rpc vs eval, log and pipe dirs)."""
    if settings.builder not in ("mix", "rebar3"):
        raise InvalidInput(
            f"cannot tell whether {settings.project_dir} is a mix or rebar3 project "
            "(no mix.exs or rebar.config): set deliver.builder to mix or rebar3"
        )
    return settings.builder


def target(c: Ctx, stage: str | None, host: str | None) -> tuple[Settings, Stage, str]:
    """Settings, the stage narrowed to --host, and the builder — all checked before any remote."""
    settings = settings_of(c)
    return settings, settings.stage(stage, host), builder_of(settings)


@dataclass
class Run:
    """One host-changing run, as `over_stage` hands it to the step: the checked settings, the
    stage (only the hosts that answered), the rollout, and the results so far."""

    action: str
    settings: Settings
    stage: Stage
    builder: str
    rollout: Rollout | None
    dry_run: bool
    json_path: str | None
    skipped: list[HostResult]
    guard: Guard
    flow: Flow
    result: RunResult | None = None
    rotation: Rotation | None = None  # the stage's load balancer (a no-op without one)

    def each(self, fn: HostStep, *, rollback: HostStep | None = None,
             finish: tuple[NextStep, ...] = (), undo: tuple[NextStep, ...] = (),
             step: str | None = None) -> RunResult:
        """fn(hc) on every host by the rollout (plainly in parallel without one); its results
        are the run's (audited). Raises StepFailed after the summary when a host failed."""
        try:
            result = strategy.each(step or self.action, self.settings, self.stage, fn,
                                   self.rollout, dry_run=self.dry_run, json_path=self.json_path,
                                   rollback=rollback, finish=finish, undo=undo,
                                   skipped=self.skipped)
        except StepFailed as exc:
            self.result = exc.result
            raise
        self.result = result
        self.guard.record(result)
        return result

    def out_of_rotation(self, hc: HostContext, back: bool = True) -> AbstractContextManager[None]:
        """Around a stop (and start) of hc's node: drained in the stage's load balancer before,
        back in rotation after (steps.rotation); nothing without a balancer."""
        return self.rotation.out(hc, back) if self.rotation else nullcontext()

    def ask(self, step: str, fn: HostStep) -> RunResult:
        """A question to every host before the change (a pre-check): its own summary, not the
        run's result; raises StepFailed when a host fails it."""
        return for_each_host(step, self.settings, self.stage.name, self.stage.hosts, fn,
                             dry_run=self.dry_run)


@contextmanager
def over_stage(
    c: Ctx, action: str, stage: str | None = None, host: str | None = None,
    rollout: Rollout | None = None, *, flow: str, dry_run: bool = False,
    json_path: str | None = None, from_version: str | None = None,
    to_version: str | None = None, reachable: bool = True,
) -> Iterator[Run]:
    """The frame of a host-changing step: resolve + validate once, reachability (with a
    rollout), the deploy lock, run-level hooks, the audit. Yields a Run; `run.each(fn)` does
    the work. reachable=False: skip the reachability round (e.g. hot rollbacks)."""
    settings, st, builder = target(c, stage, host)
    skipped: list[HostResult] = []
    if reachable:
        st, skipped = strategy.reachable(action, settings, st, rollout, dry_run)
    with guarded(settings, st, action, from_version=from_version, to_version=to_version,
                 dry_run=dry_run, lock_wait=rollout.lock_wait if rollout else 0.0) as guard:
        info = Flow(flow, st, settings, from_version, to_version, dry_run)
        run = Run(action, settings, st, builder, rollout, dry_run, json_path, skipped, guard, info,
                  rotation=Rotation(settings, st))
        if flow in DRAINING and not dry_run:
            run.rotation.check(action)  # a bad balancer refuses the run before any drain
        hooks.run_flow("before", info)
        yield run
        info.result = run.result
        hooks.run_flow("after", info)


@contextmanager
def locked(c: Ctx, action: str, stage: str | None = None, host: str | None = None, *,
           lock_wait: float = 0.0, message: str = "", dry_run: bool = False) -> Iterator[Guard]:
    """Hold the deploy lock on every host of the stage across a chain of steps (build, deploy,
    upgrade...): each step inside reuses it, the lock is released (and one audit line per host
    written, named `action`) at the end, whatever happened.

        with steps.locked(c, "ship"):
            steps.deploy_release(c, "1.2.0")
            steps.restart(c)
    """
    settings = settings_of(c)
    with guarded(settings, settings.stage(stage, host), action, lock_wait=lock_wait,
                 message=message, dry_run=dry_run) as guard:
        yield guard
