"""A hot upgrade must leave the node equal to a fresh boot of the new version on that host.

Before the point of no return: the env a boot would have is computed on the host (and swapped in
while release_handler installs, see otp_fresh), processes that would lose their code or funs are
looked for, and the supervision trees are snapshotted. After the install, before make_permanent:
the node's env must equal the computed one and every supervised process must still be there
(same pid) with every child the new supervisors declare running.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from .. import commands, otp
from ..fleet import HostContext, HostFailure
from ..model import Replacing
from ..otp import fresh as otp_fresh
from ..otp import watch as otp_watch


class NotHotSafe(HostFailure):
    """Found before the point of no return: this host cannot be upgraded hot (nothing changed)."""


class HoldsOldCode(NotHotSafe):
    """Processes run, or hold funs of, code the upgrade replaces — often requests in flight,
    which end once no new ones come (see upgrade_host: drained and tried again)."""


@dataclass
class Tree:
    """Supervised processes: path (app/child id/...) -> (pid or `undefined`, worker|supervisor,
    restart type or -)."""

    children: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def not_running(self) -> list[str]:
        """Permanent children their supervisor declares that do not run."""
        return [path for path, (pid, *rest) in sorted(self.children.items())
                if pid in ("undefined", "restarting") and rest[-1:] == ["permanent"]]

    def lasting(self) -> dict[str, tuple[str, ...]]:
        """Children with an identity that outlives a request: not a dynamic child (its id is
        `undefined`: a connection or request handler under a simple_one_for_one or
        DynamicSupervisor, or anything below one) and not a temporary one; those come and go with
        the traffic, so their absence or a new pid says nothing about the upgrade."""
        return {path: row for path, row in self.children.items()
                if "undefined" not in path.split("/")[1:] and row[2:3] != ("temporary",)}


def ask(hc: HostContext, builder: str, *exprs: str) -> dict[str, str]:
    """Evaluate our expression(s) on the running node in one rpc; every PDT{...} marker's keys
    merged ({"no_answer": output tail} when there is none)."""
    h = hc.host
    expr = exprs[0] if len(exprs) == 1 else otp.combined(*exprs)
    res = hc.run(commands.node_eval(h.deploy_path, hc.settings.release, builder, h.env, expr))
    return (otp.parse_markers(res.stdout + res.stderr)
            or {"no_answer": (res.stdout + res.stderr)[-800:]})


def fresh_env(hc: HostContext, builder: str, vsn: str) -> str:
    """Write releases/<vsn>/pdt_fresh.config on the host: the env a boot of <vsn> there has.
    Returns the applications it holds computed (comma-separated), for `check`.

    mix: a fresh VM of <vsn> (`bin/<app> eval`) with the stage's env, so runtime.exs and other
    config providers run as at boot; relx: on the node, from the release's files (sys.config.src
    rendered with the stage's env over the node's)."""
    h, app = hc.host, hc.settings.release
    if builder == "mix":
        expr = otp_fresh.fresh_env_expr(app, vsn, booted=True)
        res = hc.run(commands.fresh_eval(h.deploy_path, app, h.env, vsn, expr))
        found = otp.parse_marker(res.stdout + res.stderr) or {}
        tail = (res.stdout + res.stderr)[-800:]
    else:
        found = ask(hc, builder, otp_fresh.fresh_env_expr(app, vsn, booted=False))
        tail = found.get("no_answer", "")
    if found.get("ok") != "true":
        why = found.get("result") or "the new version's configuration could not be evaluated"
        raise NotHotSafe(f"cannot compute the application env a boot of {vsn} would have: {why}",
                         tail, "fix the release's runtime configuration; what a boot says: "
                         f"inv boot-check --host {h.name}")
    return found.get("apps", "")


def survey(hc: HostContext, builder: str, replacing: Replacing) -> tuple[str, Tree]:
    """Before anything changes: the supervision trees, and a refusal (NotHotSafe) when a process
    would lose code the upgrade replaces — it holds a fun made by a replaced module, or runs that
    module's code. Asked twice, 1 s apart, so a request just passing through is not counted."""
    if not replacing.modules:
        return "no module replaced", tree(hc, builder)
    expr = otp_fresh.holders_expr(list(replacing.modules), list(replacing.suspended))
    first = _holders(ask(hc, builder, expr, otp_fresh.tree_expr()))
    if "tree" not in first:
        raise NotHotSafe("could not read the supervision trees", str(first)[-800:])
    found = {tuple(line) for line in otp_fresh.decode_lines(first["holders"])}
    if found:  # a second look must answer too: no answer is not "nobody holds it"
        time.sleep(1.0)
        again = _holders(ask(hc, builder, expr))
        found &= {tuple(line) for line in otp_fresh.decode_lines(again["holders"])}
    if found:
        named = "; ".join(f"{name} ({pid}, application {app}) holds {module} in {where}"
                          for pid, name, app, where, module in (row[:5] for row in sorted(found)[:5]))
        raise HoldsOldCode(f"processes would keep code the upgrade replaces: {named}",
                         hint="convert those funs in code_change/3 (and ship an appup that "
                         "updates the process), or let it restart")
    return "no process holds code or funs of the replaced modules", _tree(first)


def _holders(found: dict[str, str]) -> dict[str, str]:
    """The node's answer to holders_expr, or NotHotSafe when it could not say."""
    if "holders" not in found:
        raise NotHotSafe("could not inspect the node's processes for old code",
                         found.get("no_answer", ""))
    if found.get("not_inspected", "0") != "0":
        raise NotHotSafe(f"{found['not_inspected']} processes could not be inspected for old "
                         "code within 15 s: the node is too busy to tell whether a hot upgrade "
                         "keeps them")
    return found


def tree(hc: HostContext, builder: str) -> Tree:
    return _tree(ask(hc, builder, otp_fresh.tree_expr()))


def _tree(found: dict[str, str]) -> Tree:
    if "tree" not in found:
        raise HostFailure("could not read the supervision trees", found.get("no_answer", ""))
    return Tree({row[0]: tuple(row[1:]) for row in otp_fresh.decode_lines(found["tree"])
                 if len(row) >= 3})


def tree_changes(before: Tree, after: Tree, restarting_apps: tuple[str, ...] = ()) -> list[str]:
    """What differs from an in-place upgrade: a process gone or replaced (restarted by its
    supervisor) and a declared child that does not run. Apps whose user appup restarts things
    on purpose may change pids."""
    problems = []
    for path, (pid, *_) in sorted(before.lasting().items()):
        if pid == "undefined" or path.split("/", 1)[0] in restarting_apps:
            continue
        now = after.children.get(path)
        if now is None:
            problems.append(f"{path} ({pid}) is gone")
        elif now[0] != pid:
            problems.append(f"{path} was restarted ({pid} -> {now[0]})")
    for path, (pid, *_) in sorted(after.lasting().items()):
        if pid in ("undefined", "restarting") and before.children.get(path, ("",))[0] != pid:
            problems.append(f"{path} is declared by its supervisor but not running")
    return problems


def check(hc: HostContext, builder: str, vsn: str, apps: str, before: Tree,
          replacing: Replacing) -> str:
    """After install, before make_permanent, in one rpc (which ends the error-report watch):
    env (of `apps`, as fresh_env computed them) and supervision trees equal a fresh boot's, and
    no error report was logged."""
    found = ask(hc, builder, otp_fresh.env_check_expr(vsn, [a for a in apps.split(",") if a]),
                    otp_fresh.tree_expr(), otp_watch.watch_end_expr())
    if "differ" not in found:
        raise HostFailure("could not compare the node's application env with a fresh boot's",
                          found.get("no_answer", ""))
    if found["differ"]:
        raise HostFailure(f"application env differs from a fresh boot of {vsn}: "
                          f"{found['differ']}", hint="the release's config (runtime.exs, "
                          "sys.config) and the running node disagree; a restart applies it")
    problems = tree_changes(before, _tree(found), replacing.restarting_apps)
    if problems:
        raise HostFailure("supervision tree differs from before the upgrade: "
                          + "; ".join(problems[:6]), hint="an appup must start/stop these "
                          "children (supervisor:restart_child), or let it restart")
    errors = _errors(found)
    if errors:
        raise HostFailure(f"the node logged {len(errors)} error report(s) during the upgrade: "
                          f"{errors[0][:300]}", "\n".join(errors[-10:]),
                          f"all of them: inv logs --host {hc.host.name}")
    return (f"env equals a fresh boot ({found['apps']} apps), {len(before.children)} supervised "
            "processes kept, no error reports")


def watch_and(hc: HostContext, builder: str, expr: str) -> dict[str, str]:
    """Start keeping the node's error reports, then evaluate expr, in one rpc; the answer has
    `watching` (true when the watch runs) besides expr's own keys."""
    return ask(hc, builder, otp_watch.watch_start_expr(), expr)


def watched(hc: HostContext, builder: str) -> list[str]:
    """End the watch (when a failure comes first); the error reports logged since."""
    return _errors(ask(hc, builder, otp_watch.watch_end_expr()))


def _errors(found: dict[str, str]) -> list[str]:
    if "errors" not in found:
        return [f"could not read the node's error reports: {found.get('no_answer', '')[-300:]}"]
    text = base64.b64decode(found["errors"]).decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()]


def drift(hc: HostContext, builder: str, vsn: str) -> list[str]:
    """How a running node differs from a fresh boot of `vsn` (for doctor): application env
    against the release's config as a boot here computes it, and permanent children that their
    supervisor declares but that do not run. Writes releases/<vsn>/pdt_fresh.config."""
    found = []
    try:
        apps = fresh_env(hc, builder, vsn)
    except HostFailure as exc:
        found.append(f"could not compare the application env with the release's config: "
                     f"{exc.message}")
        apps = ""
    compare = [otp_fresh.env_check_expr(vsn, apps.split(","))] if apps else []
    seen = ask(hc, builder, otp_fresh.tree_expr(), *compare)
    if seen.get("differ"):
        found.append(f"application env differs from the release's config: {seen['differ']}")
    missing = _tree(seen).not_running()
    if missing:
        found.append("supervision tree is missing children the release declares: "
                     + ", ".join(missing[:6]))
    return found
