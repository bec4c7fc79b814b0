"""Upgrade planning: facts -> appup instructions and unsafe reasons; then the real escript + systools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pydeliver_tasks.otp import appup
from pydeliver_tasks.otp.appup import AppFacts, ModuleFacts, parse_facts, plan

ESCRIPT = Path(appup.__file__).resolve().parent / "erl" / "pdt_upgrade.escript"

# Release 1 and release 2 of `demo`, in the escript's `facts` format (see its header).
OLD = """\
rel 1 13.1.5
app 1 kernel 8.5.3 - 0
app 1 stdlib 4.2 kernel 0
app 1 jason 1.4.0 kernel,stdlib 0
app 1 demo 1 kernel,stdlib,jason 0
mod 1 demo demo_plain p1 - 0 -
mod 1 demo demo_same s1 - 0 -
mod 1 demo demo_gone g1 - 0 -
mod 1 demo demo_server v1 gen_server 0 -
mod 1 demo demo_soft f1 gen_statem 0 -
mod 1 demo demo_sup u1 supervisor 0 4242
mod 1 demo Elixir.Demo.Worker w1 Elixir.GenServer 1 -
mod 1 demo Elixir.Demo.Sup x1 Elixir.Supervisor 0 777
mod 1 jason Elixir.Jason j1 - 0 -
cons 1 Elixir.Enumerable e1
"""

NEW = """\
rel 2 13.1.5
app 2 kernel 8.5.3 - 0
app 2 stdlib 4.2 kernel 0
app 2 jason 1.4.0 kernel,stdlib 0
app 2 demo 2 kernel,stdlib,jason 0
mod 2 demo demo_plain p2 - 0 -
mod 2 demo demo_same s1 - 0 -
mod 2 demo demo_added a2 - 0 -
mod 2 demo demo_server v2 gen_server 1 -
mod 2 demo demo_soft f2 gen_statem 0 -
mod 2 demo demo_sup u2 supervisor 0 4242
mod 2 demo Elixir.Demo.Worker w2 Elixir.GenServer 1 -
mod 2 demo Elixir.Demo.Sup x2 Elixir.Supervisor 0 777
mod 2 jason Elixir.Jason j1 - 0 -
cons 2 Elixir.Enumerable e1
"""

UP = [
    "{add_module, demo_added}",
    "{load_module, demo_plain}",
    "{update, 'Elixir.Demo.Worker', {advanced, []}}",
    "{update, demo_server, {advanced, []}}",
    "{update, demo_soft, soft}",
    "{update, 'Elixir.Demo.Sup', supervisor}",
    "{update, demo_sup, supervisor}",
    "{delete_module, demo_gone}",
]
DOWN = [
    "{add_module, demo_gone}",
    "{load_module, demo_plain}",
    "{update, 'Elixir.Demo.Worker', {advanced, []}}",
    "{update, demo_server, {advanced, []}}",
    "{update, demo_soft, soft}",
    "{update, 'Elixir.Demo.Sup', supervisor}",
    "{update, demo_sup, supervisor}",
    "{delete_module, demo_added}",
]


def both(old: str = OLD, new: str = NEW) -> tuple[appup.ReleaseFacts, appup.ReleaseFacts]:
    facts = parse_facts(old + "\n" + new)
    return facts["1"], facts["2"]


def edit(text: str, old_line: str, new_line: str) -> str:
    assert old_line in text, old_line
    return text.replace(old_line, new_line)


# --- parsing -------------------------------------------------------------------------------------

def test_parse_facts_reads_every_kind_of_line_and_ignores_noise() -> None:
    noise = ("warning: something\nmod 2 nosuchapp m aa - 0 -\napp 2 short\nrel\n"
             "mod 2 demo too few fields\n")
    facts = parse_facts(noise + OLD + NEW)
    assert set(facts) == {"1", "2"}
    old = facts["1"]
    assert old.vsn == "1" and old.erts == "13.1.5"
    assert list(old.apps) == ["kernel", "stdlib", "jason", "demo"]
    assert old.apps["kernel"].deps == () and old.apps["demo"].deps == ("kernel", "stdlib", "jason")
    assert old.apps["demo"].vsn == "1" and not old.apps["demo"].has_appup
    assert old.apps["demo"].modules["demo_server"] == ModuleFacts("v1", ("gen_server",), False, "-")
    assert old.apps["demo"].modules["demo_sup"] == ModuleFacts("u1", ("supervisor",), False, "4242")
    assert old.apps["demo"].modules["Elixir.Demo.Worker"].code_change is True
    assert old.consolidated == {"Elixir.Enumerable": "e1"}
    assert "nosuchapp" not in facts["2"].apps and "too" not in facts["2"].apps["demo"].modules
    assert len(facts["2"].apps["demo"].modules) == 8


def test_parse_facts_keeps_versions_apart() -> None:
    """The same app in two releases is two AppFacts: modules never leak between versions."""
    old, new = both()
    assert "demo_gone" in old.apps["demo"].modules and "demo_gone" not in new.apps["demo"].modules
    assert "demo_added" in new.apps["demo"].modules and "demo_added" not in old.apps["demo"].modules
    has = parse_facts("app 3 x 1 - 1\nmod 3 x m aa a,b 1 -\n")["3"].apps["x"]
    assert has.has_appup and has.modules["m"].behaviours == ("a", "b")


@pytest.mark.parametrize(("behaviours", "kind"), [
    ((), "plain"),
    (("gen_server",), "process"),
    (("gen_statem",), "process"),
    (("gen_event",), "process"),
    (("Elixir.GenServer",), "process"),
    (("supervisor",), "supervisor"),
    (("Elixir.Supervisor",), "supervisor"),
    (("gen_server", "supervisor"), "supervisor"),
    (("application",), "plain"),
    (("Elixir.Application", "Elixir.Plug"), "plain"),
])
def test_module_kind(behaviours: tuple[str, ...], kind: str) -> None:
    assert ModuleFacts("x", behaviours).kind == kind


# --- appup instructions ---------------------------------------------------------------------------

def test_upgrade_instructions_order_and_kinds() -> None:
    old, new = both()
    up, down = appup.appup_instructions(old.apps["demo"], new.apps["demo"])
    assert up == UP
    assert down == DOWN
    assert not any("demo_same" in i for i in up + down), "unchanged modules get no instruction"


def test_gen_server_without_code_change_is_soft_and_with_it_advanced() -> None:
    o = AppFacts("a", "1", modules={"s": ModuleFacts("1", ("gen_server",), True)})
    assert appup.appup_instructions(o, AppFacts("a", "2", modules={
        "s": ModuleFacts("2", ("gen_server",), False)})) == (["{update, s, soft}"], ["{update, s, soft}"])
    assert appup.appup_instructions(o, AppFacts("a", "2", modules={
        "s": ModuleFacts("2", ("gen_server",), True)}))[0] == ["{update, s, {advanced, []}}"]


def test_only_added_and_removed_modules() -> None:
    o = AppFacts("a", "1", modules={"gone": ModuleFacts("1"), "same": ModuleFacts("s")})
    n = AppFacts("a", "2", modules={"new": ModuleFacts("2"), "same": ModuleFacts("s")})
    assert appup.appup_instructions(o, n) == (
        ["{add_module, new}", "{delete_module, gone}"], ["{add_module, gone}", "{delete_module, new}"])
    assert appup.appup_instructions(o, o) == ([], [])


def test_a_module_that_becomes_a_supervisor_is_updated_as_one() -> None:
    o = AppFacts("a", "1", modules={"m": ModuleFacts("1")})
    n = AppFacts("a", "2", modules={"m": ModuleFacts("2", ("supervisor",), False, "9")})
    assert appup.appup_instructions(o, n)[0] == ["{update, m, supervisor}"]


@pytest.mark.parametrize(("name", "literal"), [
    ("demo", "demo"),
    ("demo_sup2", "demo_sup2"),
    ("a@b", "a@b"),
    ("Elixir.Foo.Bar", "'Elixir.Foo.Bar'"),
    ("Demo", "'Demo'"),
    ("_x", "'_x'"),
    ("my-mod", "'my-mod'"),
    ("it's", "'it\\'s'"),
    ("back\\slash", "'back\\\\slash'"),
])
def test_atom_quoting(name: str, literal: str) -> None:
    assert appup.atom(name) == literal


def test_atom_quotes_reserved_words() -> None:
    # `-module('receive').` is a valid module; `{load_module, receive}` is not a valid term.
    assert appup.atom("receive") == "'receive'"


def test_render_appup_text() -> None:
    old, new = both()
    text = appup.render_appup(old.apps["demo"], new.apps["demo"])
    assert text.startswith("%% generated by pydeliver_tasks: demo 1 -> 2\n")
    assert '{"2",\n [{"1",\n    [{add_module, demo_added},\n' in text
    assert text.rstrip().endswith("{delete_module, demo_added}]}]}.")
    assert text.count('{"1",') == 2
    empty = appup.render_appup(AppFacts("a", "1"), AppFacts("a", "1.1"))
    assert '{"1.1",\n [{"1",\n    []}],\n [{"1",\n    []}]}.' in empty


# --- plan -----------------------------------------------------------------------------------------

def test_own_app_changing_version_gets_an_appup_and_is_safe() -> None:
    old, new = both()
    p = plan(old, new, {"demo"})
    assert p.safe and p.unsafe == []
    assert (p.old, p.new) == ("1", "2")
    assert p.changed_apps == {"demo": ("1", "2")}
    assert p.appups == {"demo": appup.render_appup(old.apps["demo"], new.apps["demo"])}


def test_release_version_bump_alone_is_not_hot_upgradable() -> None:
    old, _ = both()
    same = parse_facts(OLD.replace("rel 1 ", "rel 2 ").replace("app 1 ", "app 2 ")
                       .replace("mod 1 ", "mod 2 ").replace("cons 1 ", "cons 2 "))["2"]
    p = plan(old, same, {"demo"})
    assert (p.changed_apps, p.appups, p.safe) == ({}, {}, False)
    assert p.unsafe == ["no application changes version between 1 and 2: a relup would load "
                        "nothing (bump your application's version)"]


@pytest.mark.parametrize(("old_line", "new_line", "reason"), [
    ("rel 2 13.1.5", "rel 2 13.2", "ERTS changes (13.1.5 -> 13.2)"),
    ("app 2 stdlib 4.2 kernel 0", "app 2 stdlib 4.3 kernel 0",
     "OTP/Elixir core application stdlib changes (4.2 -> 4.3)"),
    ("app 2 kernel 8.5.3 - 0", "app 2 kernel 8.6 - 1", "core application kernel changes"),
    ("app 2 jason 1.4.0 kernel,stdlib 0", "app 2 jason 1.4.1 kernel,stdlib 0",
     "dependency jason changes version (1.4.0 -> 1.4.1) and ships no appup"),
    ("app 2 jason 1.4.0 kernel,stdlib 0", "app 2 jason 1.4.0 kernel,stdlib 0\napp 2 extra 1 - 0",
     "application extra is added"),
    ("app 2 jason 1.4.0 kernel,stdlib 0\n", "", "application jason is removed"),
    ("cons 2 Elixir.Enumerable e1", "cons 2 Elixir.Enumerable e2",
     "consolidated protocols change (Elixir.Enumerable)"),
    ("cons 2 Elixir.Enumerable e1", "cons 2 Elixir.Enumerable e1\ncons 2 Elixir.Inspect i2",
     "consolidated protocols change (Elixir.Inspect)"),
    ("mod 2 demo demo_sup u2 supervisor 0 4242", "mod 2 demo demo_sup u2 supervisor 0 4343",
     "supervisor demo_sup of demo changes its init/1"),
    ("mod 2 demo demo_sup u2 supervisor 0 4242", "mod 2 demo demo_sup u2 supervisor 0 -",
     "supervisor demo_sup of demo changes its init/1"),
    ("mod 2 demo Elixir.Demo.Sup x2 Elixir.Supervisor 0 777",
     "mod 2 demo Elixir.Demo.Sup x2 Elixir.Supervisor 0 778",
     "supervisor Elixir.Demo.Sup of demo changes its init/1"),
])
def test_unsafe_reasons(old_line: str, new_line: str, reason: str) -> None:
    old, new = both(new=edit(NEW, old_line, new_line))
    p = plan(old, new, {"demo"})
    assert not p.safe
    assert len(p.unsafe) == 1, p.unsafe
    assert reason in p.unsafe[0]
    # the refusal's hint suggests appups only where an appup can make it hot
    assert appup.appup_helps(p.unsafe[0]) == reason.startswith(("dependency", "supervisor"))


def test_elixir_core_app_change_is_unsafe() -> None:
    old, new = both(OLD + "app 1 elixir 1.14.0 - 0\n", NEW + "app 2 elixir 1.14.1 - 0\n")
    assert [r for r in plan(old, new, {"demo"}).unsafe if "core application elixir" in r]


def test_changed_supervisor_whose_init_hash_is_never_known_is_unsafe() -> None:
    old, new = both(edit(OLD, "u1 supervisor 0 4242", "u1 supervisor 0 -"),
                    edit(NEW, "u2 supervisor 0 4242", "u2 supervisor 0 -"))
    p = plan(old, new, {"demo"})
    assert len(p.unsafe) == 1 and "supervisor demo_sup of demo changes its init/1" in p.unsafe[0]


def test_unchanged_supervisor_with_unknown_init_hash_is_safe() -> None:
    """Only a *changed* supervisor needs its init/1 compared."""
    unknown = "mod 1 demo demo_sup u1 supervisor 0 -"
    old, new = both(edit(OLD, "mod 1 demo demo_sup u1 supervisor 0 4242", unknown),
                    edit(NEW, "mod 2 demo demo_sup u2 supervisor 0 4242", "mod 2 demo demo_sup u1 supervisor 0 -"))
    p = plan(old, new, {"demo"})
    assert p.safe and "{update, demo_sup, supervisor}" not in p.appups["demo"]


def test_changed_supervisor_with_same_init_hash_is_safe() -> None:
    old, new = both()
    assert old.apps["demo"].modules["demo_sup"].md5 != new.apps["demo"].modules["demo_sup"].md5
    p = plan(old, new, {"demo"})
    assert p.safe and "{update, demo_sup, supervisor}" in p.appups["demo"]


def test_supervisor_init_change_is_not_checked_with_a_user_appup() -> None:
    old, new = both(new=edit(NEW, "u2 supervisor 0 4242", "u2 supervisor 0 9999"))
    assert not plan(old, new, {"demo"}).safe
    p = plan(old, new, {"demo"}, overridden={"demo"})
    assert p.safe and p.appups == {} and p.changed_apps == {"demo": ("1", "2")}


def test_dependency_change_with_own_appup_or_user_appup_is_safe() -> None:
    bumped = edit(NEW, "app 2 jason 1.4.0 kernel,stdlib 0", "app 2 jason 1.5.0 kernel,stdlib 1")
    p = plan(*both(new=bumped), {"demo"})
    assert p.safe and p.changed_apps["jason"] == ("1.4.0", "1.5.0") and "jason" not in p.appups
    no_appup = edit(NEW, "app 2 jason 1.4.0 kernel,stdlib 0", "app 2 jason 1.5.0 kernel,stdlib 0")
    assert not plan(*both(new=no_appup), {"demo"}).safe
    p = plan(*both(new=no_appup), {"demo"}, overridden={"jason"})
    assert p.safe and p.changed_apps["jason"] == ("1.4.0", "1.5.0") and "jason" not in p.appups


def test_more_own_apps_get_appups_instead_of_needing_one() -> None:
    no_appup = edit(NEW, "app 2 jason 1.4.0 kernel,stdlib 0", "app 2 jason 1.5.0 kernel,stdlib 0")
    no_appup = edit(no_appup, "mod 2 jason Elixir.Jason j1", "mod 2 jason Elixir.Jason j2")
    p = plan(*both(new=no_appup), {"demo", "jason"})
    assert p.safe and set(p.appups) == {"demo", "jason"}
    assert "{load_module, 'Elixir.Jason'}" in p.appups["jason"]


def test_own_app_shipping_its_own_appup_uses_it() -> None:
    old, new = both(new=NEW.replace("app 2 demo 2 kernel,stdlib,jason 0", "app 2 demo 2 kernel,stdlib,jason 1"))
    p = plan(old, new, {"demo"})
    assert p.safe and p.appups == {} and p.changed_apps == {"demo": ("1", "2")}


def test_own_app_unchanged_version_is_not_planned() -> None:
    old, new = both(new=NEW.replace("app 2 demo 2 ", "app 2 demo 1 "))
    p = plan(old, new, {"demo"})
    assert "demo" not in p.changed_apps and p.appups == {}


def test_changed_code_without_a_version_bump_is_not_silently_safe() -> None:
    # e.g. an umbrella app listed in upgrade.apps that stays at 0.1.0 while its code changes
    old, new = both(new=NEW.replace("app 2 demo 2 ", "app 2 demo 1 "))
    p = plan(old, new, {"demo"})
    assert not p.safe and "demo" not in p.appups
    assert any("application demo changes its code but keeps version 1" in r for r in p.unsafe)


def test_several_reasons_are_all_reported() -> None:
    new = edit(NEW, "rel 2 13.1.5", "rel 2 14.0")
    new = edit(new, "app 2 stdlib 4.2", "app 2 stdlib 5.0")
    new = edit(new, "cons 2 Elixir.Enumerable e1", "")
    p = plan(*both(new=new), {"demo"})
    assert len(p.unsafe) == 3
    assert "ERTS" in p.unsafe[0] and "stdlib" in p.unsafe[1] and "Elixir.Enumerable" in p.unsafe[2]


# --- the real escript and systools ----------------------------------------------------------------

needs_erlc = pytest.mark.skipif(shutil.which("erlc") is None or shutil.which("escript") is None,
                                reason="erlc/escript not installed")

V1 = {
    "demo_plain": "-module(demo_plain).\n-export([f/0]).\nf() -> 1.\n",
    "demo_same": "-module(demo_same).\n-export([g/0]).\ng() -> same.\n",
    "demo_old": "-module(demo_old).\n-export([h/0]).\nh() -> old.\n",
    "Elixir.Demo.Worker": "-module('Elixir.Demo.Worker').\n-export([w/0]).\nw() -> 1.\n",
    "demo_server": """-module(demo_server).
-behaviour(gen_server).
-export([start_link/0, init/1, handle_call/3, handle_cast/2]).
start_link() -> gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).
init([]) -> {ok, 1}.
handle_call(get, _From, S) -> {reply, S, S}.
handle_cast(_, S) -> {noreply, S}.
""",
    "demo_app": """-module(demo_app).
-behaviour(application).
-export([start/2, stop/1]).
start(_Type, _Args) -> supervisor:start_link(demo_sup, children()).
stop(_) -> ok.
children() -> [a].
""",
    "demo_sup": """-module(demo_sup).
-behaviour(supervisor).
-export([start_link/0, init/1, v/0]).
start_link() -> supervisor:start_link({local, ?MODULE}, ?MODULE, []).
v() -> 1.
init([]) ->
    {ok, {#{strategy => one_for_one}, [#{id => s, start => {demo_server, start_link, []}}]}}.
""",
}


def v2_sources(init_changes: bool = False) -> dict[str, str]:
    src = {k: s for k, s in V1.items() if k != "demo_old"}
    src["demo_plain"] = src["demo_plain"].replace("f() -> 1.", "f() -> 2.")
    src["demo_new"] = "-module(demo_new).\n-export([n/0]).\nn() -> new.\n"
    src["Elixir.Demo.Worker"] = src["Elixir.Demo.Worker"].replace("w() -> 1.", "w() -> 2.")
    src["demo_server"] = (src["demo_server"].replace("handle_cast/2]", "handle_cast/2, code_change/3]")
                          + "code_change(_Old, S, _Extra) -> {ok, S + 1}.\n")
    # init/1 moves down two lines (its hash ignores line numbers); v/0 changes the md5
    sup = src["demo_sup"].replace("v() -> 1.", "v() -> 2.\n\n")
    if init_changes:  # and the children that demo_app's start/2 reaches (through a local call)
        sup = sup.replace("one_for_one", "one_for_all")
        src["demo_app"] = src["demo_app"].replace("children() -> [a].", "children() -> [a, b].")
    src["demo_sup"] = sup
    return src


def _erl_eval(expr: str) -> str:
    res = subprocess.run(["erl", "-noshell", "-eval", expr], capture_output=True, text=True,
                         timeout=60, check=True)
    return res.stdout.strip()


def make_release(root: Path) -> Path:
    """A release dir holding demo 1, 2 and 3 (3 = 2 with demo_sup's init/1 changed); kernel,
    stdlib and sasl are the installed ones (a relup needs sasl in the release)."""
    erts, *libs = _erl_eval(
        'io:format("~s", [erlang:system_info(version)]), '
        "[io:format(\" ~s\", [filename:basename(code:lib_dir(A))]) || A <- [kernel, stdlib, sasl]], "
        "[io:format(\" ~s\", [code:lib_dir(A)]) || A <- [kernel, stdlib, sasl]], halt().").split()
    rel = root / "my rel"  # a space: every path must reach erlc/escript as one argument
    (rel / "lib").mkdir(parents=True)
    otp_apps = []
    for name, real in zip(libs[:3], libs[3:], strict=True):
        (rel / "lib" / name).symlink_to(real)
        app, _, vsn = name.partition("-")
        otp_apps.append(f'{{{app}, "{vsn}"}}, ')
    for vsn, sources in (("1", V1), ("2", v2_sources()), ("3", v2_sources(init_changes=True))):
        src = root / f"src{vsn}"
        src.mkdir()
        for mod, text in sources.items():
            (src / f"{mod}.erl").write_text(text)
        ebin = rel / "lib" / f"demo-{vsn}" / "ebin"
        ebin.mkdir(parents=True)
        subprocess.run(["erlc", "+debug_info", "-o", str(ebin), *sorted(map(str, src.glob("*.erl")))],
                       check=True, capture_output=True, timeout=60)
        mods = ", ".join(appup.atom(m) for m in sorted(sources))
        (ebin / "demo.app").write_text(
            f'{{application, demo, [{{description, "demo"}}, {{vsn, "{vsn}"}}, {{modules, [{mods}]}}, '
            f"{{registered, []}}, {{applications, [kernel, stdlib]}}]}}.\n")
        (rel / "releases" / vsn).mkdir(parents=True)
        (rel / "releases" / vsn / "demo.rel").write_text(
            f'{{release, {{"demo", "{vsn}"}}, {{erts, "{erts}"}}, '
            f'[{"".join(otp_apps)}{{demo, "{vsn}"}}]}}.\n')
    return rel


def escript(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["escript", str(ESCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, appup.ReleaseFacts]]:
    """(release dir, facts of demo 1, 2 and 3 as the escript reports them), built once."""
    if shutil.which("erlc") is None or shutil.which("escript") is None:
        pytest.skip("erlc/escript not installed")
    rel = make_release(tmp_path_factory.mktemp("real"))
    res = escript("facts", rel, "demo", "1", "2", "3")
    assert res.returncode == 0, res.stderr
    return rel, parse_facts(res.stdout)


def test_real_facts(real: tuple[Path, dict[str, appup.ReleaseFacts]]) -> None:
    _, facts = real
    assert set(facts) == {"1", "2", "3"}
    old, new = facts["1"], facts["2"]
    assert old.erts == new.erts and old.erts
    assert set(old.apps) == {"kernel", "stdlib", "sasl", "demo"}
    assert old.apps["demo"].deps == ("kernel", "stdlib") and not old.apps["demo"].has_appup
    assert set(old.apps["demo"].modules) == set(V1)
    mods = new.apps["demo"].modules
    assert set(mods) == set(v2_sources())
    assert mods["demo_server"].behaviours == ("gen_server",) and mods["demo_server"].code_change
    assert not old.apps["demo"].modules["demo_server"].code_change
    assert mods["demo_sup"].kind == "supervisor" and mods["demo_sup"].init_hash.isdigit()
    assert mods["demo_sup"].md5 != old.apps["demo"].modules["demo_sup"].md5
    assert mods["demo_sup"].init_hash == old.apps["demo"].modules["demo_sup"].init_hash, \
        "init/1 only moved: its hash ignores line numbers"
    assert facts["3"].apps["demo"].modules["demo_sup"].init_hash != mods["demo_sup"].init_hash
    assert mods["demo_same"].md5 == old.apps["demo"].modules["demo_same"].md5
    assert mods["demo_plain"].md5 != old.apps["demo"].modules["demo_plain"].md5
    assert mods["Elixir.Demo.Worker"].kind == "plain"
    assert "application_controller" in old.apps["kernel"].modules


def test_real_appup_and_relup(real: tuple[Path, dict[str, appup.ReleaseFacts]], tmp_path: Path) -> None:
    rel, facts = real
    old, new = facts["1"], facts["2"]
    p = plan(old, new, {"demo"})
    assert p.unsafe == []
    assert p.changed_apps == {"demo": ("1", "2")}
    up, down = appup.appup_instructions(old.apps["demo"], new.apps["demo"])
    assert up == [
        "{add_module, demo_new}",
        "{load_module, 'Elixir.Demo.Worker'}",
        "{load_module, demo_plain}",
        "{update, demo_server, {advanced, []}}",
        "{update, demo_sup, supervisor}",
        "{delete_module, demo_old}",
    ]
    assert down[0] == "{add_module, demo_old}" and down[-1] == "{delete_module, demo_new}"

    appup_file = tmp_path / "demo.appup"
    appup_file.write_text(p.appups["demo"])
    res = escript("appup", rel, "demo", "2", appup_file)
    assert res.returncode == 0, res.stderr
    installed = rel / "lib" / "demo-2" / "ebin" / "demo.appup"
    assert "'Elixir.Demo.Worker'" in installed.read_text()

    res = escript("relup", rel, "demo", "1", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    relup = (rel / "releases" / "2" / "relup").read_text()
    for mod in ("demo_new", "demo_plain", "'Elixir.Demo.Worker'", "demo_server", "demo_sup",
                "demo_old"):
        assert mod in relup, mod
    assert "demo_same" not in relup
    flat = "".join(relup.split())
    assert "{code_change,up,[{demo_server,[]}]}" in flat
    assert "{code_change,down,[{demo_server,[]}]}" in flat
    assert "{suspend,[demo_server]}" in flat


def test_real_supervisor_init_change_is_unsafe(real: tuple[Path, dict[str, appup.ReleaseFacts]]) -> None:
    _, facts = real
    p = plan(facts["2"], facts["3"], {"demo"})
    assert len(p.unsafe) == 2 and "supervisor demo_sup of demo changes its init/1" in p.unsafe[1]
    assert p.unsafe[0].startswith("demo_app.start/2 of demo changes"), p.unsafe


def test_real_start_hash_follows_local_calls(real: tuple[Path, dict[str, appup.ReleaseFacts]]) -> None:
    _, facts = real
    hashes = [facts[v].apps["demo"].modules["demo_app"].start_hash for v in ("1", "2", "3")]
    assert hashes[0].isdigit() and hashes[0] == hashes[1] != hashes[2]
    assert facts["1"].apps["demo"].modules["demo_plain"].start_hash == "-"


def test_escript_relup_reports_a_bad_appup(real: tuple[Path, dict[str, appup.ReleaseFacts]]) -> None:
    rel, _ = real
    (rel / "lib" / "demo-3" / "ebin" / "demo.appup").write_text('{"3", [{"0.9", []}], [{"0.9", []}]}.\n')
    res = escript("relup", rel, "demo", "1", "3")
    assert res.returncode == 1 and "make_relup:" in res.stderr
    assert not (rel / "releases" / "3" / "relup").exists()


@needs_erlc
@pytest.mark.parametrize(("text", "message"), [
    ("[{load_module, m}].\n", "expected a {Vsn, UpFrom, DownTo} term first"),
    ('{"2", not_a_list, []}.\n', "expected a {Vsn, UpFrom, DownTo} term first"),
    ('{"2", [{"1", [{load_module, m}]}]\n', "demo.appup:"),
])
def test_escript_appup_rejects_what_is_not_one_appup_term(tmp_path: Path, text: str, message: str) -> None:
    ebin = tmp_path / "rel" / "lib" / "demo-2" / "ebin"
    ebin.mkdir(parents=True)
    f = tmp_path / "demo.appup"
    f.write_text(text)
    res = escript("appup", tmp_path / "rel", "demo", "2", f)
    assert res.returncode == 1
    assert message in res.stderr
    assert not (ebin / "demo.appup").exists()


@needs_erlc
def test_escript_appup_copies_a_valid_term_and_refuses_a_missing_file(tmp_path: Path) -> None:
    ebin = tmp_path / "rel" / "lib" / "demo-2" / "ebin"
    ebin.mkdir(parents=True)
    f = tmp_path / "in.appup"
    f.write_text('%% comment\n{"2", [{"1", [{load_module, \'Elixir.A\'}]}], [{"1", []}]}.\n')
    res = escript("appup", tmp_path / "rel", "demo", "2", f)
    assert res.returncode == 0, res.stderr
    assert "'Elixir.A'" in (ebin / "demo.appup").read_text()
    res = escript("appup", tmp_path / "rel", "demo", "2", tmp_path / "missing.appup")
    assert res.returncode == 1 and "no such file" in res.stderr
    # OTP reads an appup's first term (ranch's own src/ranch.appup has several): so do we
    f.write_text('{"2", [{"1", [{load_module, b}]}], [{"1", []}]}.\n{"0", [], []}.\n')
    res = escript("appup", tmp_path / "rel", "demo", "2", f)
    assert res.returncode == 0, res.stderr
    assert "{load_module,b}" in (ebin / "demo.appup").read_text()


# ---- application callbacks (start/2) and what the relup replaces ----------------------------

APP_CB_OLD = "mod 1 demo demo_app c1 application 0 - 111\n"
APP_CB_NEW = "mod 2 demo demo_app c2 application 0 - 222\n"


def test_changed_application_start_is_unsafe_with_the_reason() -> None:
    old, new = both(OLD + APP_CB_OLD, NEW + APP_CB_NEW)
    p = plan(old, new, {"demo"})
    assert appup.appup_helps(p.unsafe[0])
    assert p.unsafe == ["demo_app.start/2 of demo changes (the children it starts, or other work "
                        "done at boot): a relup does not run it again"]


def test_application_module_changed_elsewhere_than_start_is_safe() -> None:
    old, new = both(OLD + APP_CB_OLD, NEW + APP_CB_NEW.replace("222", "111"))
    p = plan(old, new, {"demo"})
    assert p.safe and "{load_module, demo_app}" in p.appups["demo"]


def test_elixir_application_callback_with_unknown_hash_is_unsafe() -> None:
    old, new = both(OLD + "mod 1 demo Elixir.Demo.App c1 Elixir.Application 0 - -\n",
                    NEW + "mod 2 demo Elixir.Demo.App c2 Elixir.Application 0 - -\n")
    assert [r for r in plan(old, new, {"demo"}).unsafe if r.startswith("Elixir.Demo.App.start/2")]


def test_a_user_appup_wins_over_a_start_change() -> None:
    old, new = both(OLD + APP_CB_OLD, NEW + APP_CB_NEW)
    assert plan(old, new, {"demo"}, overridden={"demo"}).safe


def test_eight_column_module_facts_still_parse() -> None:
    facts = parse_facts("rel 1 13\napp 1 demo 1 - 0\nmod 1 demo m md - 0 -\n")
    assert facts["1"].apps["demo"].modules["m"].start_hash == "-"


def test_plan_lists_replaced_and_suspended_modules() -> None:
    p = plan(*both(), {"demo"})
    assert p.replaced == sorted(["Elixir.Demo.Sup", "Elixir.Demo.Worker", "demo_gone",
                                 "demo_plain", "demo_server", "demo_soft", "demo_sup"])
    assert p.suspended == ["Elixir.Demo.Worker", "demo_server", "demo_soft"]


def test_dependency_appups_shipped_in_sources_are_found_installed_and_named(tmp_path: Path) -> None:
    """erlang.mk libraries keep their appup in src/ (rebar3 3.19 does not copy it to ebin/), some
    as .appup.src; a multi-term appup is read as OTP reads it (first term)."""
    rel, src = tmp_path / "rel", tmp_path / "src"
    (rel / "releases" / "2").mkdir(parents=True)
    (rel / "releases" / "2" / "demo.rel").write_text(
        '{release, {"demo", "2"}, {erts, "13.1.5"}, [{kernel, "8.5.3"}, {ranch, "2.1.0"}, '
        '{gen, "1.0"}, {bare, "0.3"}, {demo, "2"}]}.\n')
    for lib in ("ranch-2.1.0", "gen-1.0", "bare-0.3", "demo-2"):
        (rel / "lib" / lib / "ebin").mkdir(parents=True)
    (src / "deps" / "ranch" / "src").mkdir(parents=True)
    (src / "deps" / "ranch" / "src" / "ranch.appup").write_text(
        '{"2.1.0", [{"2.0.0", [{load_module, ranch}]}], [{"2.0.0", [{load_module, ranch}]}]}.\n'
        '%% an older release line, ignored as OTP ignores it\n{"2.0.0", [], []}.\n')
    (src / "_build" / "prod" / "lib" / "gen" / "src").mkdir(parents=True)
    (src / "_build" / "prod" / "lib" / "gen" / "src" / "gen.appup.src").write_text(
        'Vsn = "1.0", {Vsn, [{"0.9", [{load_module, gen}]}], [{"0.9", []}]}.\n')
    (src / "_build" / "prod" / "lib" / "bare" / "src").mkdir(parents=True)
    (src / "apps" / "demo" / "src").mkdir(parents=True)
    (src / "apps" / "demo" / "src" / "demo.appup").write_text("{\"2\", [], []}.\n")  # our own: kept out
    res = escript("depappups", rel, "demo", "2", src, "prod", "demo")
    assert res.returncode == 0, res.stderr
    found, missing = appup.parse_dep_appups(res.stdout)
    assert found == {"ranch": f"{src}/deps/ranch/src/ranch.appup",
                     "gen": f"{src}/_build/prod/lib/gen/src/gen.appup.src"}
    assert missing == {"bare": "_build/prod/lib/bare/src"}
    ranch = (rel / "lib" / "ranch-2.1.0" / "ebin" / "ranch.appup").read_text()
    assert ranch.startswith('{"2.1.0",') and '"2.0.0",[],[]' not in ranch
    assert (rel / "lib" / "gen-1.0" / "ebin" / "gen.appup").read_text().startswith('{"1.0",')
    assert not (rel / "lib" / "demo-2" / "ebin" / "demo.appup").exists()
    (src / "deps" / "ranch" / "src" / "ranch.appup").write_text("not a term")
    (rel / "lib" / "ranch-2.1.0" / "ebin" / "ranch.appup").unlink()
    bad = escript("depappups", rel, "demo", "2", src, "prod", "demo")
    assert bad.returncode == 1 and "ranch.appup: 1: syntax error" in bad.stderr


def test_a_dependency_without_an_appup_says_where_it_was_looked_for() -> None:
    old = appup.parse_facts("rel 1 13.1.5\napp 1 demo 1 - 0\napp 1 bare 0.2 - 0\n")["1"]
    new = appup.parse_facts("rel 2 13.1.5\napp 2 demo 2 - 0\napp 2 bare 0.3 - 0\n")["2"]
    p = appup.plan(old, new, {"demo"}, looked_in={"bare": "_build/prod/lib/bare/src"})
    assert ("dependency bare changes version (0.2 -> 0.3) and ships no appup (looked in its "
            "ebin/, _build/prod/lib/bare/src; or supply one: <appups_dir>/<from>-<to>/"
            "bare.appup; if it is your own application, list it in deliver.upgrade.apps)"
            ) in p.unsafe
