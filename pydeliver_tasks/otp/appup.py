"""Upgrade planning: compare two releases' facts, say whether a hot upgrade is safe, write appups.

The facts come from `erl/pdt_upgrade.escript facts` run on the build host (one fact a line);
everything decided from them lives here, pure and unit-tested: which applications changed, the
generated `.appup` for each of the project's own changed applications, and the reasons a hot
upgrade would be unsafe (then the caller falls back to a verified restart, or aborts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Behaviours whose processes are suspended and upgraded in place (release_handler finds them by
# the `modules` of their child specs). Elixir's behaviours are modules named Elixir.X.
PROCESS_BEHAVIOURS = {
    "gen_server", "gen_statem", "gen_fsm", "gen_event", "Elixir.GenServer", "Elixir.GenStage",
}
SUPERVISOR_BEHAVIOURS = {"supervisor", "Elixir.Supervisor"}
APPLICATION_BEHAVIOURS = {"application", "Elixir.Application"}
# Applications a relup cannot replace in a running VM: a change means a new OTP/Elixir install.
CORE_APPS = {"kernel", "stdlib", "sasl", "compiler", "elixir", "erts"}


@dataclass(frozen=True)
class ModuleFacts:
    md5: str
    behaviours: tuple[str, ...] = ()
    code_change: bool = False
    init_hash: str = "-"  # supervisors: hash of init/1 (child specs); "-" when unknown
    start_hash: str = "-"  # application callbacks: hash of start/2, stop/1, prep_stop/1

    @property
    def app_callback(self) -> bool:
        return bool(APPLICATION_BEHAVIOURS & set(self.behaviours))

    @property
    def kind(self) -> str:
        """How a changed module is replaced: supervisor, process (suspend/code_change) or plain."""
        if SUPERVISOR_BEHAVIOURS & set(self.behaviours):
            return "supervisor"
        if PROCESS_BEHAVIOURS & set(self.behaviours):
            return "process"
        return "plain"


@dataclass
class AppFacts:
    name: str
    vsn: str
    deps: tuple[str, ...] = ()
    has_appup: bool = False
    modules: dict[str, ModuleFacts] = field(default_factory=dict)


@dataclass
class ReleaseFacts:
    vsn: str
    erts: str = ""
    apps: dict[str, AppFacts] = field(default_factory=dict)
    consolidated: dict[str, str] = field(default_factory=dict)


def appup_helps(reason: str) -> bool:
    """Whether supplying an appup can make a hot upgrade of this refusal reason safe (a changed
    supervisor or start/2, a dependency without one) — not an added or removed application, an
    ERTS or core change, unchanged versions, consolidated protocols or a host's state."""
    return reason.startswith(("supervisor ", "dependency ")) or \
        " changes (the children it starts" in reason


def parse_dep_appups(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """From the escript's `depappups` output: ({app: the appup file it ships, installed},
    {app: the build-tree dirs looked in, for those without one})."""
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for line in text.splitlines():
        w = line.split(maxsplit=4)
        if len(w) == 5 and w[0] == "appup" and w[3] == "found":
            found[w[1]] = w[4]
        elif len(w) == 5 and w[0] == "appup" and w[3] == "none":
            missing[w[1]] = "no build-tree dir of it" if w[4] == "-" else w[4].replace(",", ", ")
    return found, missing


def parse_facts(text: str) -> dict[str, ReleaseFacts]:
    """{release version: facts} from the escript's `facts` output (other lines are ignored)."""
    rels: dict[str, ReleaseFacts] = {}
    apps: dict[tuple[str, str], AppFacts] = {}
    for line in text.splitlines():
        w = line.split()
        if len(w) < 3 or w[0] not in ("rel", "app", "mod", "cons"):
            continue
        rel = rels.setdefault(w[1], ReleaseFacts(w[1]))
        if w[0] == "rel":
            rel.erts = w[2]
        elif w[0] == "app" and len(w) == 6:
            deps = () if w[4] == "-" else tuple(w[4].split(","))
            apps[(w[1], w[2])] = rel.apps[w[2]] = AppFacts(w[2], w[3], deps, w[5] == "1")
        elif w[0] == "mod" and len(w) in (8, 9) and (w[1], w[2]) in apps:
            behaviours = () if w[5] == "-" else tuple(w[5].split(","))
            apps[(w[1], w[2])].modules[w[3]] = ModuleFacts(w[4], behaviours, w[6] == "1", w[7],
                                                          w[8] if len(w) == 9 else "-")
        elif w[0] == "cons" and len(w) == 4:
            rel.consolidated[w[2]] = w[3]
    return rels


@dataclass
class UpgradePlan:
    """What a hot upgrade from `old` to `new` would do, and why it would not be safe (if so)."""

    old: str
    new: str
    changed_apps: dict[str, tuple[str, str]] = field(default_factory=dict)  # app: (old, new vsn)
    appups: dict[str, str] = field(default_factory=dict)  # generated appup text per own app
    unsafe: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # modules whose code changes or goes
    suspended: list[str] = field(default_factory=list)  # process modules updated in place

    @property
    def safe(self) -> bool:
        return not self.unsafe


# Erlang's reserved words: valid atoms only when quoted.
_RESERVED = set(
    "after and andalso band begin bnot bor bsl bsr bxor case catch cond div end fun if let not "
    "of or orelse receive rem try when xor maybe else".split()
)


def atom(name: str) -> str:
    """An Erlang atom literal (quoted unless it is a plain lowercase atom)."""
    if re.fullmatch(r"[a-z][A-Za-z0-9_@]*", name) and name not in _RESERVED:
        return name
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _estr(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def appup_instructions(old: AppFacts, new: AppFacts) -> tuple[list[str], list[str]]:
    """(upgrade, downgrade) instructions, as Erlang terms, for one application.

    Order: new modules are added first (changed code may call them), plain modules are loaded
    before processes are suspended and updated, supervisors last (their init/1 may name the
    updated modules), removed modules deleted at the end. Downgrade mirrors it.
    """
    added = sorted(set(new.modules) - set(old.modules))
    removed = sorted(set(old.modules) - set(new.modules))
    changed = sorted(m for m in set(new.modules) & set(old.modules)
                     if new.modules[m].md5 != old.modules[m].md5)
    plain = [m for m in changed if new.modules[m].kind == "plain"]
    procs = [m for m in changed if new.modules[m].kind == "process"]
    sups = [m for m in changed if new.modules[m].kind == "supervisor"]

    def update(m: str) -> str:
        if new.modules[m].kind == "supervisor":
            return f"{{update, {atom(m)}, supervisor}}"
        if new.modules[m].code_change:
            return f"{{update, {atom(m)}, {{advanced, []}}}}"
        return f"{{update, {atom(m)}, soft}}"

    body = ([f"{{load_module, {atom(m)}}}" for m in plain] + [update(m) for m in procs]
            + [update(m) for m in sups])
    up = [f"{{add_module, {atom(m)}}}" for m in added] + body
    up += [f"{{delete_module, {atom(m)}}}" for m in removed]
    down = [f"{{add_module, {atom(m)}}}" for m in removed] + body
    down += [f"{{delete_module, {atom(m)}}}" for m in added]
    return up, down


def render_appup(old: AppFacts, new: AppFacts) -> str:
    """The text of `<app>.appup` for upgrading old.vsn -> new.vsn (and downgrading back)."""
    up, down = appup_instructions(old, new)

    def block(items: list[str]) -> str:
        return "[" + ",\n     ".join(items) + "]"

    return (f"%% generated by pydeliver_tasks: {new.name} {old.vsn} -> {new.vsn}\n"
            f"{{{_estr(new.vsn)},\n [{{{_estr(old.vsn)},\n    {block(up)}}}],\n"
            f" [{{{_estr(old.vsn)},\n    {block(down)}}}]}}.\n")


def _boot_work_changes(name: str, o: AppFacts, n: AppFacts) -> list[str]:
    """Application callbacks whose start/2 (stop/1, prep_stop/1, or what they call) change: a
    relup never runs them again, so children they start (the `mix new --sup` layout) or work
    they do at boot would differ from a fresh boot."""
    found = []
    for m in sorted(set(o.modules) & set(n.modules)):
        om, nm = o.modules[m], n.modules[m]
        if om.md5 == nm.md5 or not nm.app_callback:
            continue
        if om.start_hash != nm.start_hash or nm.start_hash == "-":
            found.append(f"{m}.start/2 of {name} changes (the children it starts, or other work "
                         "done at boot): a relup does not run it again")
    return found


def plan(old: ReleaseFacts, new: ReleaseFacts, own_apps: set[str] | frozenset[str],
         overridden: set[str] | frozenset[str] = frozenset(),
         looked_in: Mapping[str, str] | None = None) -> UpgradePlan:
    """Classify the upgrade old -> new and generate appups for own changed apps.

    own_apps: the project's applications (appups are generated for them unless they ship one);
    overridden: apps with a user-supplied appup. Any other changed application needs an appup
    it ships itself; looked_in: where that was looked for, per dependency (for the reason).
    """
    p = UpgradePlan(old.vsn, new.vsn)
    if old.erts != new.erts:
        p.unsafe.append(f"ERTS changes ({old.erts} -> {new.erts}): a new VM needs a restart")
    for name in sorted(set(old.apps) - set(new.apps)):
        p.unsafe.append(f"application {name} is removed: the relup cannot stop it cleanly")
    for name in sorted(set(new.apps) - set(old.apps)):
        p.unsafe.append(f"application {name} is added: the relup cannot start it cleanly")
    for name in sorted(set(old.apps) & set(new.apps)):
        o, n = old.apps[name], new.apps[name]
        if o.vsn == n.vsn:
            if any(o.modules.get(m, ModuleFacts("")).md5 != mf.md5 for m, mf in n.modules.items()) \
                    or set(o.modules) - set(n.modules):
                p.unsafe.append(f"application {name} changes its code but keeps version {n.vsn}: "
                                "release_handler cannot tell the two apart (bump its version)")
            continue
        p.changed_apps[name] = (o.vsn, n.vsn)
        p.replaced += sorted(m for m, om in o.modules.items()
                             if m not in n.modules or n.modules[m].md5 != om.md5)
        p.suspended += sorted(m for m, nm in n.modules.items()
                              if nm.kind == "process" and m in o.modules and o.modules[m].md5 != nm.md5)
        if name in CORE_APPS:
            p.unsafe.append(f"OTP/Elixir core application {name} changes ({o.vsn} -> {n.vsn})")
        elif name in overridden or n.has_appup:
            continue  # the user's appup, or the one the application ships, is used as it is
        elif name in own_apps:
            p.appups[name] = render_appup(o, n)
            p.unsafe += _boot_work_changes(name, o, n)
            for m in sorted(set(o.modules) & set(n.modules)):
                om, nm = o.modules[m], n.modules[m]
                if om.md5 == nm.md5 or nm.kind != "supervisor":
                    continue
                if om.init_hash != nm.init_hash or nm.init_hash == "-":
                    p.unsafe.append(f"supervisor {m} of {name} changes its init/1 (child specs) "
                                    "and no appup was supplied")
        else:
            where = (looked_in or {}).get(name)
            p.unsafe.append(f"dependency {name} changes version ({o.vsn} -> {n.vsn}) and "
                            f"ships no appup (looked in its ebin/" + (f", {where}" if where else "")
                            + "; or supply one: <appups_dir>/<from>-<to>/" + f"{name}.appup; "
                            "if it is your own application, list it in deliver.upgrade.apps)")
    if not p.changed_apps and not p.unsafe:
        p.unsafe.append(f"no application changes version between {old.vsn} and {new.vsn}: a "
                        "relup would load nothing (bump your application's version)")
    changed_cons = sorted(m for m in set(old.consolidated) | set(new.consolidated)
                          if old.consolidated.get(m) != new.consolidated.get(m))
    if changed_cons:
        p.unsafe.append("consolidated protocols change (" + ", ".join(changed_cons[:5])
                        + "): a relup does not reload them")
    return p
