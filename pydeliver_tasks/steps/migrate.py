"""migrate / migrations: the project's migrations (`deliver.migrations`) run with the release's
own code and env, on ONE host of the stage — the first whose node answers, or --host.

- `migrate` (under the deploy lock) and `migrations` (read-only) evaluate the expression on that
  host's running node (commands.node_eval, as our own questions to nodes go) and print its value.
- `update --migrate` runs it in a fresh VM of the new version, deployed but not running yet,
  before any node restarts (`fresh`); `upgrade --migrate` on the node once release_handler has
  installed the new version, before it is made permanent. `Once` makes sure a multi-host run
  migrates on one host only.

The expressions are Elixir for mix, Erlang for rebar3; `{to}` in `down` gets --to's value,
which is checked before any connection (InvalidInput: exit 2).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from .. import commands
from ..commands.migrations import fresh_vm_eval
from ..config import Settings
from ..fleet import HostContext, HostFailure, HostResult, RunResult, StepFailed, for_each_host, say
from ..model import Host, NextStep, Stage
from ..otp.migrations import guarded_expr, parse_result
from ..validation import InvalidInput
from .frame import Ctx, Run, over_stage, target
from .ops import check_text
from .probe import probe

HostFn = Callable[[HostContext], str]
_TO_RE = re.compile(r"[A-Za-z0-9._-]+")
_NOT_RUNNING_RE = re.compile(r"Node is not running|nodedown|Node .* not responding|noconnection",
                             re.I)


def check_to(down: bool, to: str | None) -> str:
    """--to's value for deliver.migrations.down's `{to}`: required with --down, and plain."""
    if to is not None and not down:
        raise InvalidInput(f"--to {to!r} goes with --down: inv migrate --down --to VERSION")
    if not down:
        return ""
    if not to:
        raise InvalidInput("missing --to: --down undoes the migrations down to the one --to "
                           "names: inv migrate --down --to VERSION")
    if not _TO_RE.fullmatch(to):
        raise InvalidInput(f"invalid --to {to!r}: letters, digits, '.', '_' and '-' only (it is "
                           "written into the deliver.migrations.down expression)")
    return to


def _first_lines(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[:lines])


def _shown(hc: HostContext, value: str) -> str:
    """Print the value with the host prefix; one summary line for it."""
    for line in value.splitlines() or [""]:
        hc.say(line)
    one = " ".join(value.split())
    return one if len(one) <= 160 else f"{len(value.splitlines())} lines (above)"


def on_node(hc: HostContext, builder: str, expr: str, key: str, changes: bool = True) -> str:
    """Evaluate deliver.migrations.<key> (`expr`) on the host's running node, print its value."""
    h = hc.host
    if hc.dry_run:
        hc.say(f"would evaluate on the node: {expr}")
        return f"would run deliver.migrations.{key}"
    res = hc.run(commands.node_eval(h.deploy_path, hc.settings.release, builder, h.env,
                                    guarded_expr(builder, expr)), changes=changes)
    out = res.stdout + res.stderr
    found = parse_result(out)
    if found is None:
        if _NOT_RUNNING_RE.search(out):
            raise HostFailure(f"node not running: nothing ran deliver.migrations.{key}",
                              out.strip()[-800:], f"inv start --host {h.name}")
        raise HostFailure(f"no answer from the node to deliver.migrations.{key} (exit "
                          f"{res.exited})", res.tail(), f"inv doctor --host {h.name}")
    ok, text = found
    if not ok:
        first = text.splitlines()[0] if text else "an exception"
        raise HostFailure(f"deliver.migrations.{key} raised: {first}", _first_lines(text),
                          hint=f"check the expression {expr} (deliver.migrations.{key}) and the "
                               f"node log: inv logs --host {h.name}")
    return _shown(hc, text)


def fresh(hc: HostContext, builder: str, version: str, expr: str) -> str:
    """deliver.migrations.run in a fresh VM of VERSION (deployed on this host, not running yet),
    with the stage's env; the running node is left alone."""
    h = hc.host
    if hc.dry_run:
        hc.say(f"would run {expr} in a fresh VM of {version}, before the restart")
        return "would run deliver.migrations.run"
    res = hc.run(fresh_vm_eval(h.deploy_path, hc.settings.release, builder, h.env, version,
                               guarded_expr(builder, expr)))
    found = parse_result(res.stdout + res.stderr)
    stays = f"{version} stays deployed but not running: no node was restarted"
    after = (f"fix the cause and run the same update with --migrate again; or inv restart "
             f"--host {h.name}, then inv migrate")
    if found is None:
        raise HostFailure(f"the migrations could not run in a fresh VM of {version} (exit "
                          f"{res.exited}); {stays}", res.tail(), after)
    ok, text = found
    if not ok:
        first = text.splitlines()[0] if text else "an exception"
        raise HostFailure(f"the migrations ({expr}) failed in a fresh VM of {version}: {first}; "
                          f"{stays}", _first_lines(text), after)
    return _shown(hc, text)


class Once:
    """The migrations of a multi-host run (update, upgrade): the first host to ask runs them,
    a host asking meanwhile waits for the outcome, later ones go on without them — or fail, when
    they failed (so none goes on to run the new version as if they had run)."""

    def __init__(self, settings: Settings, builder: str) -> None:
        self.expr, self.builder = settings.migrations.run, builder
        self._lock = threading.Lock()
        self.host = ""
        self.failure = ""

    def on_node(self, hc: HostContext) -> str:
        """upgrade --migrate: on the node, which runs the new code (installed, not permanent)."""
        return self._once(hc, lambda: on_node(hc, self.builder, self.expr, "run"),
                          "migrations are not undone by a downgrade: what they changed stays")

    def after(self, restart: HostFn) -> HostFn:
        """upgrade's restart fallback, then the migrations on the restarted node (unless a host
        ran them already)."""
        def restarted(hc: HostContext) -> str:
            done = restart(hc)
            try:
                return f"{done}; {self.on_node(hc)}"
            except HostFailure as exc:
                raise HostFailure(f"{done}, but {exc.message}", exc.detail, exc.hint) from exc

        return restarted

    def fresh(self, hc: HostContext, version: str) -> str:
        """update --migrate (rolling): in a fresh VM of VERSION, before this node stops."""
        return self._once(hc, lambda: fresh(hc, self.builder, version, self.expr))

    def _once(self, hc: HostContext, do: Callable[[], str], note: str = "") -> str:
        with self._lock:
            if self.failure:
                raise HostFailure(f"the migrations failed on {self.host}: {self.failure}",
                                  hint=f"inv logs --host {self.host}")
            if self.host:
                return f"migrations ran on {self.host}"
            self.host, self.failure = hc.host.name, "they did not finish"  # until they did
            try:
                done = do()
            except HostFailure as exc:
                self.failure = exc.message
                if not note:
                    raise
                raise HostFailure(f"{exc.message}; {note}", exc.detail, exc.hint) from exc
            self.failure = ""
            return f"migrated: {done}"


def before_restart(run: Run, version: str) -> RunResult:
    """update --migrate (all hosts at once): the migrations in a fresh VM of VERSION on the
    stage's first host, after the deploy and before any node restarts."""
    expr = run.settings.migrations.run

    def one(hc: HostContext) -> str:
        return f"ran {expr} in a fresh VM of {version}: " + fresh(hc, run.builder, version, expr)

    result = for_each_host("migrate", run.settings, run.stage.name, run.stage.hosts[:1], one,
                           raise_on_failure=False)
    run.guard.record(result)
    if not result.ok:
        run.result = result
        raise StepFailed("migrate", result)
    return result


def answering(settings: Settings, stage: Stage, builder: str, step: str,
              finish: tuple[NextStep, ...]) -> Host:
    """The first host of the stage whose node answers, asked one after the other; when none
    does, the run fails naming each host (StepFailed, exit 1)."""
    missed: list[HostResult] = []

    def ask(hc: HostContext) -> tuple[str, dict[str, bool]]:
        p = probe(hc, builder, cheap_first=True)
        if p.facts:
            return "the node answers", {"answers": True}
        what = "does not answer" if p.beams else "is not running"
        hc.say(f"the node {what}: the migrations need a running node")
        return f"the node {what}", {"answers": False}

    for h in stage.hosts:
        asked = for_each_host(step, settings, stage.name, [h], ask, raise_on_failure=False,
                              quiet=True)[0]
        if asked.ok and asked.data.get("answers"):
            return h
        missed.append(HostResult(h.name, False, f"{asked.message}: no node to run the migrations "
                                 f"on — next: inv start --host {h.name}", asked.seconds))
    result = RunResult(step, stage.name, missed, finish=finish)
    say(result.table())
    raise StepFailed(step, result)


def migrate(c: Ctx, down: bool = False, to: str | None = None, stage: str | None = None,
            host: str | None = None, dry_run: bool = False,
            json_path: str | None = None) -> RunResult:
    """Run deliver.migrations.run (or, with down, deliver.migrations.down with `{to}` = TO) on
    the running node of one host: the first whose node answers (or `host`), under the deploy
    lock of the stage."""
    to = check_to(down, to)
    settings, st, builder = target(c, stage, host)
    key = "down" if down else "run"
    expr = check_text(settings.migrations.down.replace("{to}", to) if down
                      else settings.migrations.run, f"deliver.migrations.{key}",
                      "set it in invoke.yaml")
    again = NextStep("migrate", (("down", ""), ("to", to)) if down else ())
    with over_stage(c, "migrate", stage, host, flow="migrate", dry_run=dry_run,
                    json_path=json_path, to_version=to or None) as run:
        chosen = run.stage.hosts[0] if dry_run else answering(
            settings, run.stage, builder, "migrate", (NextStep("start"), again))
        result = for_each_host("migrate", settings, st.name, [chosen],
                               lambda hc: f"ran {expr}: " + on_node(hc, builder, expr, key),
                               dry_run=dry_run, json_path=json_path, raise_on_failure=False)
        run.result = result
        run.guard.record(result)
        run.guard.record([HostResult(h.name, False, f"skipped: the migrations ran on "
                                     f"{chosen.name}", 0.0) for h in st.hosts if h != chosen])
        if not result.ok:
            raise StepFailed("migrate", result)
        return result


def migrations(c: Ctx, stage: str | None = None, host: str | None = None,
               json_path: str | None = None) -> RunResult:
    """Print what deliver.migrations.pending returns, asked on the running node of one host
    (the first whose node answers, or `host`). Read-only: no deploy lock."""
    settings, st, builder = target(c, stage, host)
    expr = check_text(settings.migrations.pending, "deliver.migrations.pending",
                      "set it in invoke.yaml")
    chosen = answering(settings, st, builder, "migrations",
                       (NextStep("start"), NextStep("migrations")))
    return for_each_host("migrations", settings, st.name, [chosen],
                         lambda hc: "pending: " + on_node(hc, builder, expr, "pending",
                                                          changes=False),
                         json_path=json_path)
