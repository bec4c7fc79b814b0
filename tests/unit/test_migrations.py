"""Migrations without hosts: the `deliver.migrations` config (defaults per builder, every bad key
refused with its path), --to's check, the guarded expression evaluated for real by a local erl /
elixir (value and exception come back in the marker), and the relx fresh-VM command run under sh
against a release root made here (its own erts, boot file, sys.config and env file)."""

from __future__ import annotations

import copy
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke.parser import Parser

from pydeliver_tasks import commands, config, ns
from pydeliver_tasks.commands.migrations import fresh_vm_eval
from pydeliver_tasks.config import ConfigError, load
from pydeliver_tasks.fleet import HostFailure
from pydeliver_tasks.model import NextStep
from pydeliver_tasks.otp import elixir_wrapper
from pydeliver_tasks.otp.migrations import guarded_expr, parse_result
from pydeliver_tasks.steps.migrate import Once, check_to
from pydeliver_tasks.tasks.flags import command_line
from pydeliver_tasks.validation import InvalidInput


def cfg(builder: str = "mix", app: str = "my_shop", **migrations) -> dict:
    base = copy.deepcopy(config.DEFAULTS)
    base.update(app=app, builder=builder, stages={"prod": {"hosts": ["deploy@a.example.com"]}})
    if migrations:
        base["migrations"] = migrations
    return {"deliver": base}


def test_defaults_name_the_release_module_of_the_app() -> None:
    mix = load(cfg()).migrations
    assert (mix.run, mix.down, mix.pending) == (
        "MyShop.Release.migrate()", "MyShop.Release.rollback({to})", "MyShop.Release.pending()")
    erl = load(cfg("rebar3")).migrations
    assert (erl.run, erl.down, erl.pending) == (
        "my_shop_release:migrate()", "my_shop_release:rollback({to})", "my_shop_release:pending()")
    assert load(cfg(app="a2b_c_d")).migrations.run == "A2bCD.Release.migrate()"


def test_given_expressions_win_and_blank_ones_fall_back() -> None:
    m = load(cfg(run="Shop.Repo.Migrate.all()", down="Shop.down({to}, {:all, true})",
                 pending="  ")).migrations
    assert m.run == "Shop.Repo.Migrate.all()"
    assert m.down == "Shop.down({to}, {:all, true})"  # other braces are the language's own
    assert m.pending == "MyShop.Release.pending()"


def test_every_bad_key_is_refused_with_its_path_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load(cfg(run=3, down="Mod.rollback()", pending="ok\0", rollback="x"))
    text = str(err.value)
    assert "deliver.migrations.rollback: unknown key (known: down, pending, run)" in text
    assert "deliver.migrations.run: expected an expression" in text and ", got 3" in text
    assert "deliver.migrations.down: 'Mod.rollback()' has no {to}" in text
    assert "deliver.migrations.pending: expected an expression" in text
    with pytest.raises(ConfigError, match="deliver.migrations: expected a mapping"):
        load({"deliver": {**cfg()["deliver"], "migrations": "x"}})


@pytest.mark.parametrize("value", ["0", "20240101120000", "001_greetings", "v1.2-rc"])
def test_plain_to_values_pass(value: str) -> None:
    assert check_to(True, value) == value


@pytest.mark.parametrize(("down", "to", "message"), [
    (True, None, "missing --to"), (True, "", "missing --to"),
    (True, "$(id)", "invalid --to '$(id)'"), (True, "1;reboot", "invalid --to '1;reboot'"),
    (True, "a b", "invalid --to 'a b'"), (True, "x)", "invalid --to 'x)'"),
    (False, "3", "--to '3' goes with --down"),
])
def test_bad_to_values_are_refused_naming_them(down: bool, to: str | None, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_to(down, to)
    assert message in str(err.value)


@pytest.mark.parametrize("step", [
    NextStep("migrate"), NextStep("migrate", (("down", ""), ("to", "0"))), NextStep("migrations"),
])
def test_finish_steps_are_commands_the_cli_accepts(step: NextStep) -> None:
    argv = shlex.split(command_line(step, "deploy@h1:2222"))[1:]
    Parser(contexts=ns.to_contexts()).parse_argv(argv)


needs_erl = pytest.mark.skipif(not shutil.which("erl"), reason="no erl on this machine")
needs_elixir = pytest.mark.skipif(not shutil.which("elixir"), reason="no elixir on this machine")


def _erl(expr: str) -> str:
    run = f"io:put_chars({expr.rstrip('.')}), io:nl()."
    return subprocess.run(["erl", "-noshell", "-eval", run, "-s", "erlang", "halt"],
                          capture_output=True, text=True, timeout=60).stdout


@needs_erl
def test_an_erlang_expression_answers_its_value_or_its_exception() -> None:
    assert parse_result(_erl(guarded_expr("rebar3", 'lists:seq(1, 3) % "no dot"'))) == \
        (True, "[1,2,3]")
    ok, text = parse_result(_erl(guarded_expr("rebar3", "erlang:error(no_db)")))
    assert not ok and text.startswith("exception error: no_db"), text
    ok, text = parse_result(_erl(guarded_expr("rebar3", "1 +")))
    assert not ok and "syntax error before" in text, text
    assert parse_result("Node is not running!") is None


@needs_elixir
def test_an_elixir_expression_answers_its_value_or_its_exception() -> None:
    def elixir(expr: str) -> str:
        wrapped = elixir_wrapper(guarded_expr("mix", expr))
        return subprocess.run(["elixir", "--eval", wrapped], capture_output=True, text=True,
                              timeout=60).stdout

    assert parse_result(elixir('Enum.map([1, 2], &(&1 * 2)) ++ ["é}"]')) == (True, '[2, 4, "é}"]')
    ok, text = parse_result(elixir('raise "no database"'))
    assert not ok and text.startswith("** (RuntimeError) no database"), text


@needs_erl
def test_the_relx_fresh_vm_boots_that_version_with_its_config_and_env(tmp_path: Path) -> None:
    """A release root like relx's: erts-<v>/bin/erl, releases/start_erl.data naming <v>, the
    version's start_clean boot and sys.config, the stage's env file (a value with a space and a
    quote). The VM starts no distribution and sees both."""
    root = tmp_path / "my root"
    erl_root = Path(subprocess.run(["erl", "-noshell", "-eval",
                                    "io:put_chars(code:root_dir()), halt()."],
                                   capture_output=True, text=True, check=True).stdout)
    (root / "erts-9.9/bin").mkdir(parents=True)
    (root / "erts-9.9/bin/erl").write_text(f'#!/bin/sh\nexec {erl_root}/bin/erl "$@"\n')
    (root / "erts-9.9/bin/erl").chmod(0o755)
    rel = root / "releases" / "1.0.0"
    rel.mkdir(parents=True)
    (root / "releases" / "start_erl.data").write_text("9.9 1.0.0\n")
    shutil.copy(erl_root / "bin" / "start_clean.boot", rel / "start_clean.boot")
    (rel / "sys.config").write_text("[{kernel, [{pdt_greeting, hello}]}].\n")
    (root / ".deliver").mkdir()
    env = {"PDT_X": "it's a b"}
    (root / commands.ENV_FILE).write_text(commands.env_file_text(env))
    expr = guarded_expr("rebar3", '{application:get_env(kernel, pdt_greeting), os:getenv("PDT_X"), '
                                  "node()}")
    cmd = fresh_vm_eval(str(root), "my_app", "rebar3", env, "1.0.0", expr)
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert parse_result(res.stdout) == (True, '{{ok,hello},"it\'s a b",nonode@nohost}'), res
    (rel / "sys.config").unlink()  # no sys.config: booted without one
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert parse_result(res.stdout) == (True, '{undefined,"it\'s a b",nonode@nohost}'), res
    broken = guarded_expr("rebar3", "erlang:error(boom)")
    res = subprocess.run(["sh", "-c", fresh_vm_eval(str(root), "my_app", "rebar3", env, "1.0.0",
                                                    broken)], capture_output=True, text=True,
                         timeout=60)
    assert parse_result(res.stdout)[0] is False and res.returncode == 0


def test_the_mix_fresh_vm_is_the_release_eval_of_that_version() -> None:
    cmd = fresh_vm_eval("/srv/my app", "shop", "mix", {"A": "1"}, "1.2.0", "x().")
    assert cmd == commands.fresh_eval("/srv/my app", "shop", {"A": "1"}, "1.2.0", "x().")
    assert "RELEASE_VSN=1.2.0" in cmd and "cd '/srv/my app'" in cmd


def _hc(name: str) -> SimpleNamespace:
    return SimpleNamespace(host=SimpleNamespace(name=name))


def test_a_run_migrates_once_and_the_other_hosts_hear_how_it_went() -> None:
    settings = load(cfg())
    once, ran = Once(settings, "mix"), []
    assert once._once(_hc("h1"), lambda: ran.append("h1") or '["001"]') == 'migrated: ["001"]'
    assert once._once(_hc("h2"), lambda: ran.append("h2") or "[]") == "migrations ran on h1"
    assert ran == ["h1"]

    def boom() -> str:
        raise HostFailure("deliver.migrations.run raised: boom", "stack", "inv logs --host h2")

    failed = Once(settings, "mix")
    with pytest.raises(HostFailure, match="raised: boom; not undone") as err:
        failed._once(_hc("h2"), boom, "not undone")
    assert (err.value.detail, err.value.hint) == ("stack", "inv logs --host h2")
    with pytest.raises(HostFailure, match="the migrations failed on h2: deliver.migrations.run "
                                          "raised: boom"):
        failed._once(_hc("h1"), lambda: "[]")

    def lost() -> str:
        raise OSError("connection lost")

    cut = Once(settings, "mix")
    with pytest.raises(OSError):
        cut._once(_hc("h1"), lost)
    with pytest.raises(HostFailure, match="the migrations failed on h1: they did not finish"):
        cut._once(_hc("h2"), lambda: "[]")
