"""Rollout strategies: batches, flag checking, stage defaults from config, the run's summary."""

from __future__ import annotations

import copy

import pytest

from pydeliver_tasks import config
from pydeliver_tasks.config import ConfigError
from pydeliver_tasks.fleet import HostFailure, StepFailed, strategy
from pydeliver_tasks.fleet.results import HostResult, RunResult
from pydeliver_tasks.fleet.strategy import batches
from pydeliver_tasks.model import NextStep, Rollout
from pydeliver_tasks.tasks.flags import command_line, hints
from pydeliver_tasks.validation import InvalidInput


def settings(n: int = 5, **extra):
    d = copy.deepcopy(config.DEFAULTS)
    d.update(app="hello", builder="mix", stages={"s": {"hosts": [f"h{i}" for i in range(1, n + 1)],
                                                       **extra}})
    return config.load({"deliver": d})


def names(groups) -> list[list[str]]:
    return [[h.name for h in g] for g in groups]


def test_batches_per_kind() -> None:
    hosts = settings(5).stage("s").hosts
    assert names(batches(hosts, Rollout())) == [["h1", "h2", "h3", "h4", "h5"]]
    assert names(batches(hosts, Rollout("rolling"))) == [["h1"], ["h2"], ["h3"], ["h4"], ["h5"]]
    assert names(batches(hosts, Rollout("rolling", "2"))) == [["h1", "h2"], ["h3", "h4"], ["h5"]]
    assert names(batches(hosts, Rollout("rolling", "50%"))) == [["h1", "h2", "h3"], ["h4", "h5"]]
    assert names(batches(hosts, Rollout("canary"))) == [["h1"], ["h2", "h3", "h4", "h5"]]
    assert names(batches(hosts, Rollout("canary", "2", canary=2))) == [
        ["h1", "h2"], ["h3", "h4"], ["h5"]]
    assert batches([], Rollout("rolling")) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"strategy": "yolo"}, "--strategy must be one of"),
    ({"strategy": "rolling", "batch": "0"}, "--batch must be"),
    ({"strategy": "rolling", "batch": "150%"}, "--batch must be"),
    ({"strategy": "rolling", "batch": "two"}, "--batch must be"),
    ({"strategy": "rolling", "pause": -1}, "--pause must be >= 0"),
    ({"strategy": "canary", "canary": 0}, "--canary must be >= 1"),
])
def test_bad_strategies_are_refused(kwargs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        strategy.check(Rollout(**kwargs))


def test_flags_override_the_stage_default_and_numbers_are_checked() -> None:
    st = settings(3, strategy={"kind": "rolling", "batch": "2", "pause": 1.5}).stage("s")
    assert strategy.resolve(st) == Rollout("rolling", "2", 1.5, 1)
    assert strategy.resolve(st, strategy="canary", canary="2", pause="0").strategy == "canary"
    assert strategy.resolve(st, strategy="canary", canary="2", pause="0").canary == 2
    with pytest.raises(InvalidInput, match="--pause must be a number"):
        strategy.resolve(st, pause="soon")
    narrowed = settings(3, strategy={"kind": "canary"}).stage("s", "h2")
    assert narrowed.rollout.strategy == "canary"  # --host keeps the stage's strategy


def test_strategy_config_problems_are_reported() -> None:
    with pytest.raises(ConfigError) as err:
        settings(2, strategy={"kind": "zigzag", "batch": "-1", "pause": -2, "canary": 0,
                              "speed": 1})
    text = str(err.value)
    for part in ("stages.s.strategy.kind: must be parallel", "stages.s.strategy.batch",
                 "stages.s.strategy.pause", "stages.s.strategy.canary", "stages.s.strategy.speed"):
        assert part in text, text


def test_rolling_stops_after_a_failed_batch_and_names_what_is_left(capsys) -> None:
    s = settings(4)
    ran: list[str] = []

    def fn(hc):
        ran.append(hc.host.name)
        if hc.host.name == "h2":
            raise HostFailure("verification failed")
        return "ok"

    rolled: list[str] = []
    with pytest.raises(StepFailed) as err:
        strategy.run("restart", s, "s", s.stage("s").hosts, fn, Rollout("rolling"),
                     rollback=lambda hc: rolled.append(hc.host.name) or "back",
                     finish=(NextStep("restart"),), undo=(NextStep("rollback"),),
                     reachable=False)
    assert ran == ["h1", "h2"] and rolled == []
    assert "failed on 1 of 4 host(s): h2; not started: h3, h4" in str(err.value)
    out = capsys.readouterr().out
    assert "restart: done 1 (h1); failed 1 (h2); not started 2 (h3, h4)" in out
    # the step hands back data; the task layer words it as commands
    assert err.value.result.waiting == ["h3", "h4"] and err.value.result.failed == ["h2"]
    lines = hints(err.value)
    assert "  to finish h3: inv restart --host h3" in lines
    assert "  to finish h2: inv restart --host h2" in lines
    assert "  to roll back h1: inv rollback --host h1" in lines


def test_hints_quote_flag_values_and_chain_steps() -> None:
    step = NextStep("deploy.release", (("version", "1.0.0+build 7"),))
    assert command_line(step, "h1") == "inv deploy.release --version '1.0.0+build 7' --host h1"
    failed = StepFailed("update", RunResult("update", "s", [HostResult("h1", False, "boom", 0.0)],
                                            finish=(step, NextStep("restart"))))
    assert hints(failed) == ["  to finish h1: inv deploy.release --version '1.0.0+build 7' "
                             "--host h1 && inv restart --host h1"]


def test_auto_rollback_returns_the_failed_batch_and_keep_going_continues(capsys) -> None:
    s = settings(3)
    rolled: list[str] = []

    def fn(hc):
        if hc.host.name == "h1":
            raise HostFailure("canary broke")
        return "ok"

    with pytest.raises(StepFailed):
        strategy.run("upgrade", s, "s", s.stage("s").hosts, fn,
                     Rollout("canary", auto_rollback=True, keep_going=True),
                     rollback=lambda hc: rolled.append(hc.host.name) or "back", reachable=False)
    out = capsys.readouterr().out
    assert rolled == ["h1"] and "rolled back: h1" in out
    assert "upgrade: done 2 (h2, h3); failed 1 (h1)" in out
