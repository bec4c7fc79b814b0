"""Rollout strategies for host-changing tasks: parallel, rolling batches, canary first.

Each batch runs through the same executor (and the same per-host verification) as a plain run;
the next batch starts only when every host of this one passed. On a failure the run stops before
new batches (unless keep_going), optionally returns the failed batch to the previous version
(auto_rollback), and the summary says which hosts are done, failed, rolled back or not started,
with the steps that finish the run or roll it back (data: the task layer words them).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace

from .. import validation as v
from ..config import Settings
from ..model import Host, NextStep, Rollout, Stage
from .output import say
from .results import HostResult, RunResult, StepFailed
from .run import HostStep, for_each_host

STRATEGIES = ("parallel", "rolling", "canary")
_BATCH_RE = re.compile(r"^(\d+)(%?)$")


def resolve(stage: Stage, strategy: str | None = None, batch: str | None = None,
            pause: float | None = None, canary: int | None = None, keep_going: bool = False,
            auto_rollback: bool = False, skip_unreachable: bool = False,
            lock_wait: float | None = None) -> Rollout:
    """The rollout of this run: flags over the stage's `strategy` config, checked."""
    d = stage.rollout
    return check(Rollout(
        strategy=strategy or d.strategy, batch=str(batch if batch is not None else d.batch),
        pause=_number("pause", pause, d.pause, float),
        canary=int(_number("canary", canary, d.canary, int)),
        keep_going=keep_going, auto_rollback=auto_rollback, skip_unreachable=skip_unreachable,
        lock_wait=_number("lock-wait", lock_wait, 0, float), asked=strategy is not None,
    ))


def _number(flag: str, value: object, default: float, cast: type[float] | type[int]) -> float:
    if value is None or value == "":
        return cast(default)
    try:
        return cast(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise v.InvalidInput(f"--{flag} must be a number, got {value!r}") from None


def check(s: Rollout) -> Rollout:
    """Refuse a bad strategy before any connection (exit 2)."""
    if s.strategy not in STRATEGIES:
        raise v.InvalidInput(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                             f"got {s.strategy!r}")
    if s.batch and (not _BATCH_RE.match(s.batch) or int(_BATCH_RE.match(s.batch)[1]) < 1
                    or (s.batch.endswith("%") and int(s.batch[:-1]) > 100)):
        raise v.InvalidInput(f"--batch must be a number of hosts (>= 1) or a percentage "
                             f"(1%-100%), got {s.batch!r}")
    if s.pause < 0:
        raise v.InvalidInput(f"--pause must be >= 0 seconds, got {s.pause}")
    if s.lock_wait < 0:
        raise v.InvalidInput(f"--lock-wait must be >= 0 seconds, got {s.lock_wait}")
    if s.canary < 1:
        raise v.InvalidInput(f"--canary must be >= 1 host, got {s.canary}")
    return s


def batch_size(batch: str, total: int, default: int) -> int:
    if not batch:
        return max(1, default)
    n, pct = _BATCH_RE.match(batch).groups()  # type: ignore[union-attr]
    return max(1, -(-total * int(n) // 100)) if pct else int(n)


def batches(hosts: Sequence[Host], s: Rollout) -> list[list[Host]]:
    """The hosts in the order and groups they are changed in."""
    hosts = list(hosts)
    if s.strategy == "parallel" or not hosts:
        return [hosts] if hosts else []
    if s.strategy == "canary":
        first, rest = hosts[:s.canary], hosts[s.canary:]
        size = batch_size(s.batch, len(rest), len(rest))
        return [first] + [rest[i:i + size] for i in range(0, len(rest), size)]
    size = batch_size(s.batch, len(hosts), 1)
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


def _reachable(step: str, settings: Settings, stage: str, hosts: list[Host],
               s: Rollout) -> tuple[list[Host], list[HostResult]]:
    """Connect to every host first: an unreachable one stops the run before anything changes
    (or, with skip_unreachable, is left out and reported)."""
    seen = for_each_host(f"{step}: reachability", settings, stage, hosts,
                         lambda hc: hc.run("true", changes=False).ok and "reachable",
                         raise_on_failure=False)
    down = {r.host for r in seen if not r.ok}
    if not down:
        return hosts, []
    skipped = [HostResult(r.host, False, f"skipped: unreachable before the run ({r.message})", 0.0)
               for r in seen if not r.ok]
    if not s.skip_unreachable:
        waiting = [HostResult(h.name, False, "not started: another host is unreachable "
                              "(--skip-unreachable goes on without it)", 0.0)
                   for h in hosts if h.name not in down]
        for r in waiting:
            say(f"  {r.host}: {r.message}")
        unreachable = [HostResult(r.host, False, f"unreachable before the run ({r.message})", 0.0)
                       for r in seen if not r.ok]
        result = RunResult(step, stage, [*unreachable, *waiting])
        say(summary(result, set()))
        raise StepFailed(step, result)
    return [h for h in hosts if h.name not in down], skipped


def run(
    step: str, settings: Settings, stage: str, hosts: Sequence[Host], fn: HostStep, s: Rollout,
    *, rollback: HostStep | None = None, finish: tuple[NextStep, ...] = (),
    undo: tuple[NextStep, ...] = (), json_path: str | None = None, reachable: bool = True,
    skipped: Sequence[HostResult] = (),
) -> RunResult:
    """Run fn per host by the rollout; raise StepFailed (after the summary) on any failure.

    reachable: first connect to every host (an unreachable one stops the run, or is skipped).
    finish/undo: the steps that finish an unfinished host / undo a done one (for the hints)."""
    hosts, results = (_reachable(step, settings, stage, list(hosts), s) if reachable
                      else (list(hosts), list(skipped)))
    groups = batches(hosts, s)
    stopped = False
    rolled: set[str] = set()
    for i, group in enumerate(groups, 1):
        names = ", ".join(h.name for h in group)
        if stopped:
            for h in group:
                results.append(HostResult(h.name, False, "not started: an earlier batch failed",
                                          0.0))
                say(f"  {h.name}: not started: an earlier batch failed")
            continue
        label = "canary" if s.strategy == "canary" and i == 1 else f"batch {i}/{len(groups)}"
        if len(groups) > 1:
            say(f"== {step}: {label}: {names}")
        got = for_each_host(f"{step} ({label})" if len(groups) > 1 else step, settings, stage,
                            group, fn, raise_on_failure=False, keep_going=s.keep_going)
        results += got
        if got.ok:
            if s.pause and i < len(groups):
                say(f"== {step}: {label} verified; pausing {s.pause:g}s before the next batch")
                time.sleep(s.pause)
            continue
        if s.auto_rollback and rollback is None:
            say(f"== {step}: {label} failed; --auto-rollback: {step} has no previous version to "
                "return to (use it with update or upgrade), nothing rolled back")
        if s.auto_rollback and rollback is not None:
            say(f"== {step}: {label} failed: rolling its hosts back (--auto-rollback)")
            back = for_each_host(f"{step}: auto-rollback", settings, stage, group, rollback,
                                 raise_on_failure=False)
            rolled |= {r.host for r in back if r.ok}
            for r in back:
                say(f"   {r.host}: rollback {'ok' if r.ok else 'FAILED'}: {r.message}")
        stopped = not s.keep_going
    result = RunResult(step, stage, [replace(r, message=f"{r.message} [rolled back]")
                                     if r.host in rolled else r for r in results],
                       finish=finish, undo=undo)
    say(summary(result, rolled))
    if json_path:
        result.write_json(json_path)
    if not result.ok:
        raise StepFailed(step, result)
    return result


def summary(result: RunResult, rolled: set[str]) -> str:
    """One line: which hosts are done, failed, not started (and rolled back)."""
    done, failed, waiting = result.done, result.failed, result.waiting
    return (f"{result.step}: done {len(done)} ({', '.join(done) or '-'}); failed {len(failed)} "
            f"({', '.join(failed) or '-'}); not started {len(waiting)} "
            f"({', '.join(waiting) or '-'})"
            + (f"; rolled back: {', '.join(sorted(rolled))}" if rolled else ""))


def reachable(step: str, settings: Settings, stage: Stage, s: Rollout | None,
              dry_run: bool = False) -> tuple[Stage, list[HostResult]]:
    """Before the lock is taken and anything changes: every host must answer (else the run is
    refused), or with skip_unreachable the stage narrowed to the hosts that do, plus the
    results that report the others. No check for the Python API's plain runs (s None)."""
    if s is None or dry_run:
        return stage, []
    hosts, skipped = _reachable(step, settings, stage.name, list(stage.hosts), s)
    return replace(stage, hosts=tuple(hosts)), skipped


def each(
    step: str, settings: Settings, stage: Stage, fn: HostStep, s: Rollout | None, *,
    dry_run: bool = False, json_path: str | None = None, rollback: HostStep | None = None,
    finish: tuple[NextStep, ...] = (), undo: tuple[NextStep, ...] = (),
    skipped: Sequence[HostResult] = (),
) -> RunResult:
    """A step over the stage's hosts: plainly in parallel (s None: the steps' Python API), or by
    the rollout, which first checks that every host answers."""
    if s is None or dry_run:
        if s is not None and s.strategy != "parallel":
            groups = batches(stage.hosts, s)
            say(f"would run {step} {s.strategy} in {len(groups)} batch(es): "
                + " | ".join(", ".join(h.name for h in g) for g in groups))
        result = for_each_host(step, settings, stage.name, stage.hosts, fn, dry_run=dry_run,
                               json_path=json_path, raise_on_failure=False,
                               keep_going=True if s is None else s.keep_going)
        result.finish, result.undo = finish, undo
        if not result.ok:
            raise StepFailed(step, result)
        return result
    return run(step, settings, stage.name, stage.hosts, fn, s, rollback=rollback, finish=finish,
               undo=undo, json_path=json_path, reachable=False, skipped=skipped)
