"""Rollout strategies for host-changing tasks: parallel, rolling batches, canary first.

Each batch runs through the same executor (and the same per-host verification) as a plain run;
the next batch starts only when every host of this one passed. On a failure the run stops before
new batches (unless keep_going), optionally returns the failed batch to the previous version
(auto_rollback), and the summary says which hosts are done, failed, rolled back or not started,
with the commands that finish the run or roll it back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import validation as v
from .fleet import NOT_STARTED, HostContext, HostResult, StepFailed, for_each_host, say, write_json
from .model import Host, Stage

KINDS = ("parallel", "rolling", "canary")
_BATCH_RE = re.compile(r"^(\d+)(%?)$")


@dataclass(frozen=True)
class Strategy:
    kind: str = "parallel"
    batch: str = ""  # "N" hosts or "P%" of the hosts; rolling default 1, canary's rest default all
    pause: float = 0.0  # seconds between batches
    canary: int = 1  # hosts in the canary batch
    keep_going: bool = False  # start new batches after a failure
    auto_rollback: bool = False  # return a failed batch to the previous version
    skip_unreachable: bool = False  # go on without hosts that do not answer before the run
    lock_wait: float = 0.0  # seconds to wait for another run's deploy lock
    asked: bool = False  # the kind came from the run's flag, not from the stage's config


def resolve(stage: Stage, kind: str | None = None, batch: str | None = None,
            pause: float | None = None, canary: int | None = None, keep_going: bool = False,
            auto_rollback: bool = False, skip_unreachable: bool = False,
            lock_wait: float | None = None) -> Strategy:
    """The strategy of this run: flags over the stage's `strategy` config, checked."""
    d = stage.rollout
    return check(Strategy(
        kind=kind or d.kind, batch=str(batch if batch is not None else d.batch),
        pause=_number("pause", pause, d.pause, float),
        canary=int(_number("canary", canary, d.canary, int)),
        keep_going=keep_going, auto_rollback=auto_rollback, skip_unreachable=skip_unreachable,
        lock_wait=_number("lock-wait", lock_wait, 0, float), asked=kind is not None,
    ))


def _number(flag: str, value: Any, default: float, kind: type) -> Any:
    if value is None or value == "":
        return kind(default)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise v.InvalidInput(f"--{flag} must be a number, got {value!r}") from None


def check(s: Strategy) -> Strategy:
    """Refuse a bad strategy before any connection (exit 2)."""
    if s.kind not in KINDS:
        raise v.InvalidInput(f"--strategy must be one of {', '.join(KINDS)}, got {s.kind!r}")
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


def batches(hosts: Sequence[Host], s: Strategy) -> list[list[Host]]:
    """The hosts in the order and groups they are changed in."""
    hosts = list(hosts)
    if s.kind == "parallel" or not hosts:
        return [hosts] if hosts else []
    if s.kind == "canary":
        first, rest = hosts[:s.canary], hosts[s.canary:]
        size = batch_size(s.batch, len(rest), len(rest))
        return [first] + [rest[i:i + size] for i in range(0, len(rest), size)]
    size = batch_size(s.batch, len(hosts), 1)
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


def _reachable(step: str, settings: Any, stage: str, hosts: list[Host],
               s: Strategy) -> tuple[list[Host], list[HostResult]]:
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
        _summary(step, [*unreachable, *waiting], set(), "", "")
        raise StepFailed(step, [*unreachable, *waiting])
    return [h for h in hosts if h.name not in down], skipped


def run(
    step: str, settings: Any, stage: str, hosts: Sequence[Host],
    fn: Callable[[HostContext], Any], s: Strategy, *,
    rollback: Callable[[HostContext], Any] | None = None, command: str = "",
    rollback_command: str = "", json_path: str | None = None, reachable: bool = True,
    skipped: Sequence[HostResult] = (),
) -> list[HostResult]:
    """Run fn per host by the strategy; raise StepFailed (after the summary) on any failure.

    reachable: first connect to every host (an unreachable one stops the run, or is skipped)."""
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
        label = "canary" if s.kind == "canary" and i == 1 else f"batch {i}/{len(groups)}"
        if len(groups) > 1:
            say(f"== {step}: {label}: {names}")
        got = for_each_host(f"{step} ({label})" if len(groups) > 1 else step, settings, stage,
                            group, fn, raise_on_failure=False, keep_going=s.keep_going)
        results += got
        if all(r.ok for r in got):
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
    results = [replace(r, message=f"{r.message} [rolled back]") if r.host in rolled else r
               for r in results]
    _summary(step, results, rolled, command, rollback_command)
    if json_path:
        write_json(json_path, step, stage, results)
    if not all(r.ok for r in results):
        raise StepFailed(step, results)
    return results


def _summary(step: str, results: list[HostResult], rolled: set[str], command: str,
             rollback_command: str) -> None:
    done = [r.host for r in results if r.ok]
    waiting = [r.host for r in results if not r.ok and r.message.startswith(NOT_STARTED)]
    failed = [r.host for r in results if not r.ok and r.host not in waiting]
    say(f"{step}: done {len(done)} ({', '.join(done) or '-'}); failed {len(failed)} "
        f"({', '.join(failed) or '-'}); not started {len(waiting)} ({', '.join(waiting) or '-'})"
        + (f"; rolled back: {', '.join(sorted(rolled))}" if rolled else ""))
    if (failed or waiting) and command:
        for host in failed + waiting:
            say(f"  to finish {host}: {_for_host(command, host)}")
    if done and (failed or waiting) and rollback_command:
        for host in done:
            say(f"  to roll back {host}: {_for_host(rollback_command, host)}")


def _for_host(command: str, host: str) -> str:
    return command.format(host=host) if "{host}" in command else f"{command} --host {host}"



def reachable(step: str, settings: Any, stage: Stage, s: Strategy | None,
              dry_run: bool = False) -> tuple[Stage, list[HostResult]]:
    """Before the lock is taken and anything changes: every host must answer (else the run is
    refused), or with skip_unreachable the stage narrowed to the hosts that do, plus the
    results that report the others. No check for the Python API's plain runs (s None)."""
    if s is None or dry_run:
        return stage, []
    hosts, skipped = _reachable(step, settings, stage.name, list(stage.hosts), s)
    return replace(stage, hosts=tuple(hosts)), skipped


def each(
    step: str, settings: Any, stage: Stage, fn: Callable[[HostContext], Any],
    s: Strategy | None, *, dry_run: bool = False, json_path: str | None = None,
    rollback: Callable[[HostContext], Any] | None = None, command: str = "",
    rollback_command: str = "", skipped: Sequence[HostResult] = (),
) -> list[HostResult]:
    """A step over the stage's hosts: plainly in parallel (s None: the steps' Python API), or by
    the strategy, which first checks that every host answers."""
    plain = s is None
    if plain or dry_run:
        if s is not None and s.kind != "parallel":
            groups = batches(stage.hosts, s)
            say(f"would run {step} {s.kind} in {len(groups)} batch(es): "
                + " | ".join(", ".join(h.name for h in g) for g in groups))
        return for_each_host(step, settings, stage.name, stage.hosts, fn, dry_run=dry_run,
                             json_path=json_path, keep_going=True if s is None else s.keep_going)
    return run(step, settings, stage.name, stage.hosts, fn, s, rollback=rollback,
               command=command, rollback_command=rollback_command, json_path=json_path,
               reachable=False, skipped=skipped)
