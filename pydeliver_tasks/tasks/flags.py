"""What every task shares: the flag help texts, and `deliver_task`, the one decorator that makes
a task — Invoke's @task, the rollout flags (built into a Rollout for the step), and the wording
of what a failed run left: the steps return data (`RunResult.finish` / `undo`), the hints as
command lines are written here, the only layer that knows the CLI."""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable

from invoke import Context, Task, task

from ..fleet import StepFailed, say, strategy
from ..model import NextStep
from ..steps import settings_of

STAGE = "stage to act on (default: deliver.stage, or the only stage)"
HOST = "act on this host only (as written in the stage's hosts, or its address)"
DRY = "print what would run on each host; change nothing, connect nowhere"
JSON = "also write the per-host summary as JSON to this file ('-' = stdout)"

# Rollout flags of host-changing tasks (deploy.release, start, restart, update, upgrade,
# rollback): name -> (default, help).
ROLLOUT_FLAGS: dict[str, tuple[object, str]] = {
    "strategy": (None, "parallel, rolling (batches, each verified before the next) or canary "
                       "(first host(s) alone, then the rest); default: the stage's strategy config"),
    "batch": (None, "hosts per batch: N or P% (rolling default 1; canary: the rest, default all)"),
    "pause": (None, "seconds to wait between batches"),
    "canary": (None, "hosts in the canary batch (default 1)"),
    "keep_going": (False, "after a failure, still start new batches/hosts"),
    "auto_rollback": (False, "return a failed batch's hosts to the previous version, verified"),
    "skip_unreachable": (False, "go on without hosts that do not answer before the run "
                                "(else: refuse)"),
    "lock_wait": (None, "seconds to wait when another run holds the deploy lock (default: "
                        "refuse)"),
}

Body = Callable[..., object]


def command_line(step: NextStep, host: str) -> str:
    """A NextStep as the command a user types, for one host."""
    words = ["inv", step.task]
    for flag, value in step.flags:
        words.append(f"--{flag}")
        if value:
            words.append(shlex.quote(value))
    return " ".join([*words, "--host", shlex.quote(host)])


def hints(exc: StepFailed) -> list[str]:
    """The commands that finish each unfinished host (and undo each done one) of a failed run."""
    r = exc.result
    lines = []
    if r.finish:
        lines += [f"  to finish {h}: " + " && ".join(command_line(s, h) for s in r.finish)
                  for h in r.failed + r.waiting]
    if r.undo and r.done:
        lines += [f"  to roll back {h}: " + " && ".join(command_line(s, h) for s in r.undo)
                  for h in r.done]
    return lines


def _with_rollout(body: Body, names: list[str]) -> Body:
    """body(c, ..., rollout=Rollout): the rollout flags become parameters of the task, and are
    resolved over the stage's strategy config (bad values: exit 2) before the step runs."""
    sig = inspect.signature(body)
    params = [p for p in sig.parameters.values() if p.name != "rollout"]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=ROLLOUT_FLAGS[n][0]) for n in names]

    @functools.wraps(body)
    def wrapper(c: Context, *args: object, **kwargs: object) -> object:
        flags = {n: kwargs.pop(n, ROLLOUT_FLAGS[n][0]) for n in names}
        stage, host = kwargs.get("stage"), kwargs.get("host")
        st = settings_of(c).stage(str(stage) if stage else None, str(host) if host else None)
        kwargs["rollout"] = strategy.resolve(st, **flags)  # type: ignore[arg-type]
        return body(c, *args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def _worded(body: Body) -> Body:
    @functools.wraps(body)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return body(*args, **kwargs)
        except StepFailed as exc:
            for line in hints(exc):
                say(line)
            raise

    return wrapper


def deliver_task(*, help: dict[str, str], rollout: bool = False, auto_rollback: bool = True,
                 **task_options: object) -> Callable[[Body], Task]:
    """@task for our tasks: help for every flag, the rollout flags when `rollout`, and the
    finish/roll-back hints printed after a failed run."""
    names = [n for n in ROLLOUT_FLAGS if rollout and (auto_rollback or n != "auto_rollback")]

    def make(body: Body) -> Task:
        wrapped = _worded(_with_rollout(body, names) if names else body)
        if not names:
            wrapped.__signature__ = inspect.signature(body)  # type: ignore[attr-defined]
        flag_help = {**help, **{n: ROLLOUT_FLAGS[n][1] for n in names}}
        return task(help=flag_help, **task_options)(wrapped)  # type: ignore[arg-type]

    return make
