"""Rollback, verified: cold (make the previous good version — or --to — boot next from its files
on the host and restart into it) or hot (release_handler downgrade, through steps.downgrade).

"Previous good" is defined in steps/retention.py: the newest version on the host older than the
running one that is not marked failed; for --hot, among the releases release_handler knows as
`old`, the only ones it can downgrade to.
"""

from __future__ import annotations

from typing import Any

from .. import store
from .. import validation as v
from ..commands import retention as rcmd
from ..fleet import HostContext, HostFailure, RunResult, StepFailed, say
from ..model import NextStep, Rollout
from ..versions import previous_good
from .control import force_stop_node, start_node
from .deploy import extract
from .frame import Ctx, Run, over_stage
from .retention import HostState, answering, look, mark
from .upgrading import downgrade


def _make_boot(hc: HostContext, s: HostState, vsn: str) -> str:
    """Make vsn boot next: from its files on the host, else from its tarball there."""
    flags, h = s.versions.get(vsn, set()), hc.host
    problem = f"releases/{vsn}, its .rel or .deliver/bin/{vsn} are not on the host"
    if {"dir", "rel", "bin"} <= flags:
        res = hc.run(rcmd.activate_version(h.deploy_path, hc.settings.release, vsn))
        if res.ok and f"PDT{{activated={vsn}}}" in res.stdout:
            return "from its files on the host"
        problem = res.tail(5)
    rel = store.get(hc.settings.store, hc.settings.release, vsn)
    if "release_tar" in flags and rel is not None:
        extract(hc, rel, uploaded=False)
        return "extracted again from its tarball on the host (sha256-checked)"
    raise HostFailure(f"cannot make {vsn} boot next: {problem}",
                      hint=f"deploy it: inv deploy.release --version {vsn} --host {h.name}, then "
                      f"inv restart --host {h.name}")


def rollback_host(hc: HostContext, builder: str, to: str | None = None) -> tuple[str, dict[str, Any]]:
    """Cold rollback on one host: make TO (or the previous good version) boot next, stop the node
    (forced if it must be) and start it verified (TO runs, health passes). If TO does not come
    up it is marked failed and the version that ran before is put back, verified."""
    if hc.dry_run:
        hc.say(f"would make {to or 'the previous good version'} boot next from its files here, "
               "stop the node and start it verified")
        return "would roll back", {}
    s, name = look(hc, builder), hc.host.name
    if not s.deployed:
        raise HostFailure("nothing is deployed here", hint=f"inv deploy.release --version X --host {name}")
    answering(hc, s)
    goal = to or s.previous_good()
    if goal is None:
        raise HostFailure(f"nothing to roll back to: no version older than {s.running or s.boots_next}"
                          " that is not marked failed is on the host",
                          hint=f"inv releases --host {name}; or inv deploy.release --version X "
                          f"--host {name} && inv restart --host {name}")
    data = {"from": s.running, "to": goal, "pid_before": s.pid}
    if goal == s.running == s.boots_next:
        return "no change: " + start_node(hc, builder, goal), data  # verified: runs, health
    if goal in s.failed:
        hc.say(f"{goal} is marked failed; rolling back to it because --to names it")
    hc.say(f"{goal} boots next ({_make_boot(hc, s, goal)}); restarting into it")
    stopped = force_stop_node(hc, builder)
    try:
        started = start_node(hc, builder, goal)
    except HostFailure as exc:
        mark(hc, goal, failed=True)
        back, before = "", s.running or s.boots_next
        if before and before != goal:
            try:
                force_stop_node(hc, builder)  # whatever of goal still runs
                _make_boot(hc, s, before)
                back = f"; {before} boots next again (node stopped)"
                if s.running:
                    back = f"; {before} serves again ({start_node(hc, builder, before)})"
            except HostFailure as again:
                back = f"; putting {before} back failed too: {again.message}"
        raise HostFailure(f"rollback to {goal} failed: {exc.message}; {goal} is now marked "
                          f"failed{back}", exc.detail, f"inv doctor --host {name}") from exc
    mark(hc, goal, failed=False)
    return f"rolled back {s.running or '(not running)'} -> {goal}: {stopped}; {started}", data


def rollback(c: Ctx, to: str | None = None, hot: bool = False, stage: str | None = None,
             host: str | None = None, dry_run: bool = False, json_path: str | None = None,
             rollout: Rollout | None = None) -> RunResult:
    """Cold (default): make TO or each host's previous good version boot next and restart into
    it, verified. hot=True: downgrade through release_handler instead (steps.downgrade), to TO or
    to each host's previous good release release_handler knows as old; same pid, verified.
    rollout: batches for the cold rollback (rolling/canary, like restart)."""
    if to is not None:
        v.version(to)
    if hot and rollout is not None and rollout.strategy != "parallel":
        say(f"rollback --hot downgrades all hosts at once (every node keeps serving): the "
            f"{rollout.strategy} strategy applies to cold rollbacks only")
    with over_stage(c, "rollback --hot" if hot else "rollback", stage, host, rollout,
                    flow="rollback", dry_run=dry_run, json_path=json_path, to_version=to,
                    reachable=not hot) as run:
        if hot:
            run.result = _hot(c, run, to, host)
            run.guard.record(run.result)
            return run.result
        def cold(hc: HostContext) -> tuple[str, dict[str, Any]]:
            with run.out_of_rotation(hc):
                return rollback_host(hc, run.builder, to)

        return run.each(cold, finish=(NextStep("rollback", (("to", to),) if to else ()),))


def _hot(c: Ctx, run: Run, to: str | None, host: str | None) -> RunResult:
    """rollback --hot: steps.downgrade to TO, or per host to its previous good `old` release
    (one downgrade run when every host goes to the same version, else one run per host)."""
    st, dry_run, json_path = run.stage, run.dry_run, run.json_path
    if to:
        return downgrade(c, to, stage=st.name, host=host, dry_run=dry_run, json_path=json_path)
    if dry_run:
        def plan(hc: HostContext) -> str:
            hc.say("would hot-downgrade to the previous good release release_handler knows as "
                   "old, verified (same pid, code, health)")
            return "would roll back hot"

        return run.each(plan)

    def choose(hc: HostContext) -> tuple[str, dict[str, Any]]:
        s = look(hc, run.builder)
        answering(hc, s)
        if not s.running:
            raise HostFailure("the node is not running: a hot rollback needs it",
                              hint=f"inv rollback --host {hc.host.name} (cold)")
        goal = previous_good([x for x, stt in s.statuses.items() if stt == "old"], s.running,
                             s.failed)
        if goal is None:
            seen = ", ".join(f"{x} {stt}" for x, stt in s.statuses.items()) or "none"
            raise HostFailure(f"release_handler knows no good release older than {s.running} to "
                              f"go back to ({seen})", hint=f"inv rollback --host {hc.host.name} (cold)")
        return f"runs {s.running}: goes back to {goal}", {"to": goal}

    goals = {r.host: r.data["to"] for r in run.ask("rollback --hot: choose", choose)}
    if len(set(goals.values())) == 1:
        return downgrade(c, next(iter(goals.values())), stage=st.name, host=host,
                         json_path=json_path)
    result = RunResult("rollback --hot", st.name)
    for h in st.hosts:
        try:
            result.hosts += downgrade(c, goals[h.name], stage=st.name, host=h.name)
        except StepFailed as exc:
            result.hosts += exc.results
    if json_path:
        result.write_json(json_path)
    if not result.ok:
        raise StepFailed("rollback --hot", result)
    return result
