"""Config reading and input validation: every bad value is refused with its key path, all at once."""

from __future__ import annotations

import copy

import pytest

from pydeliver_tasks import config
from pydeliver_tasks import validation as v
from pydeliver_tasks.config import ConfigError, load


def cfg(**deliver) -> dict:
    base = copy.deepcopy(config.DEFAULTS)
    base.update(app="hello", builder="mix",
                stages={"prod": {"hosts": ["deploy@a.example.com:2200", "b.example.com"]}})
    base.update(deliver)
    return {"deliver": base}


@pytest.mark.parametrize("value", ["0.0.1", "1.2.3-rc.1", "1.0.0+build.7", "2024.1", "v1"])
def test_good_versions(value: str) -> None:
    assert v.version(value) == value


@pytest.mark.parametrize("value", ["", "1.0;rm -rf /", "../1", "1 0", "$(id)", "1.0\n", "-1", "a" * 80,
                                   "1..2", "`x`", "1.0|x"])
def test_bad_versions(value: str) -> None:
    with pytest.raises(v.InvalidInput, match="invalid version"):
        v.version(value)


@pytest.mark.parametrize("value", ["main", "release/1.0", "0.0.1", "v2.1.0"])
def test_good_refs(value: str) -> None:
    assert v.git_ref(value) == value


@pytest.mark.parametrize("value", ["", "x;y", "../x", "a..b", "-x", "a b", "x.lock", "a//b", "a@{1}", "x/"])
def test_bad_refs(value: str) -> None:
    with pytest.raises(v.InvalidInput):
        v.git_ref(value)


def test_revision_and_app_and_stage() -> None:
    assert v.revision("abc123") == "abc123"
    for bad in ("zzzz", "ABC", "abc", "x" * 41):
        with pytest.raises(v.InvalidInput):
            v.revision(bad)
    for bad in ("", "Hello", "1app", "a-b", "a b", "a;b"):
        with pytest.raises(v.InvalidInput):
            v.app_name(bad)
    with pytest.raises(v.InvalidInput):
        v.stage_name("bad stage")


@pytest.mark.parametrize(("text", "host", "user", "port"), [
    ("h", "h", None, None),
    ("deploy@h.example.com", "h.example.com", "deploy", None),
    ("deploy@10.0.0.1:2222", "10.0.0.1", "deploy", 2222),
    ("u@[::1]:22", "[::1]", "u", 22),
])
def test_host_addresses(text: str, host: str, user: str | None, port: int | None) -> None:
    a = v.host_address(text)
    assert (a.host, a.user, a.port) == (host, user, port)
    assert a.spec == text


@pytest.mark.parametrize("text", ["", "a b@c", "u@h:0", "u@h:99999", "u@h:x", "U$@h", "u@-h", "u@h;x",
                                  "u@127.0.0.429", "u@[zz]", "@h"])
def test_bad_host_addresses(text: str) -> None:
    with pytest.raises(v.InvalidInput, match="invalid host"):
        v.host_address(text)


def test_load_reads_stages_hosts_env_and_health() -> None:
    s = load(cfg(env={"RELEASE_COOKIE": "c"}, health={"url": "http://{host}:{env[PORT]}/h"},
                 stages={"prod": {"env": {"PORT": "80"}, "hosts": [
                     "a", {"host": "u@b:2200", "env": {"PORT": "81"}, "deploy_path": "/srv/x"}]}}))
    a, b = s.stage("prod").hosts
    assert (a.deploy_path, a.env) == ("apps/hello", {"RELEASE_COOKIE": "c", "PORT": "80"})
    assert (b.user, b.port, b.deploy_path, b.env["PORT"]) == ("u", 2200, "/srv/x", "81")
    assert b.health_url() == "http://b:81/h"
    assert a.secrets == ("c",)
    assert s.stage().name == "prod", "the only stage is the default"
    assert s.stage("prod", host="u@b:2200").hosts == (b,)
    assert s.stage("prod", host="b").hosts == (b,)


def test_every_problem_is_reported_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        load(cfg(app="", builder="make", parallel=0, stage="qa", ssh={"host_key_policy": "no"},
                 hooks={"before_lunch": "x"}, timeouts={"start": -1},
                 stages={"prod": {"hosts": ["a b@c", "ok", "ok"], "env": {"1X": "y"}},
                         "bad stage": {"hosts": ["x"]}, "empty": {"hosts": []}}))
    text = str(err.value)
    for expected in ["deliver.app is empty", "deliver.builder:", "deliver.parallel:", "deliver.stage: 'qa'",
                     "deliver.ssh.host_key_policy", "deliver.hooks.before_lunch", "deliver.timeouts.start",
                     "deliver.stages.prod.hosts[0]: invalid host 'a b@c'", "'ok' is listed twice",
                     "deliver.stages.prod.env.1X", "deliver.stages.bad stage", "deliver.stages.empty.hosts"]:
        assert expected in text, expected
    assert len(err.value.problems) >= 12


def test_stage_selection_errors() -> None:
    s = load(cfg(stages={"a": {"hosts": ["x"]}, "b": {"hosts": ["y"]}}))
    with pytest.raises(v.InvalidInput, match="no stage given"):
        s.stage()
    with pytest.raises(v.InvalidInput, match="no stage 'c'"):
        s.stage("c")
    with pytest.raises(v.InvalidInput, match="no host 'z' in stage 'a'"):
        s.stage("a", host="z")


def test_builder_auto_detects_the_project(tmp_path) -> None:
    (tmp_path / "rebar.config").write_text("{relx, []}.")
    s = load(cfg(builder="auto", project_dir=str(tmp_path)))
    assert s.builder == "rebar3"
    assert s.store == tmp_path / ".deliver" / "releases"


def test_log_files_are_plain_paths_or_globs() -> None:
    assert load(cfg(log_files=["log/app.log", "/var/log/x/*.log"])).log_files == (
        "log/app.log", "/var/log/x/*.log")
    with pytest.raises(ConfigError, match=r"deliver.log_files\[0\]: 'a;b'"):
        load(cfg(log_files=["a;b"]))
    with pytest.raises(ConfigError, match="expected a list"):
        load(cfg(log_files="log/app.log"))


def test_health_checks_are_read_with_stage_and_host_inheritance() -> None:
    checks = [{"url": "http://{host}:4000/", "contains": "Shop"},
              {"eval": "MyShop.Keeper.show(\"x\") == \"v1:x\""}]
    s = load(cfg(health={"url": "http://{host}:4000/health", "checks": checks}))
    h = s.stages["prod"].hosts[0]
    assert h.health.enabled and len(h.health.checks) == 2
    assert h.health_url(h.health.checks[0].url) == "http://a.example.com:4000/"
    assert h.health.checks[1].eval.startswith("MyShop.Keeper")
    only = load(cfg(health={"checks": [{"eval": "true"}]})).stages["prod"].hosts[0].health
    assert only.enabled and not only.url


@pytest.mark.parametrize(("checks", "message"), [
    ("x", "health.checks: expected a list"),
    ([{"status": 200}], "health.checks[0]: each check has either url"),
    ([{"url": "http://a/", "eval": "true"}], "health.checks[0]: each check has either url"),
    ([{"url": "ftp://a/"}], "health.checks[0].url: must start with http://"),
    ([{"eval": "true", "contains": "x"}], "health.checks[0]: an eval check has no status"),
    ([{"url": "http://a/", "expect": 1}], "health.checks[0].expect: unknown key"),
    ([{"url": "http://{env[NOPE]}/"}], "health.checks[0].url: cannot fill"),
])
def test_bad_health_checks_are_refused_with_their_path(checks, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(cfg(health={"checks": checks}))
    assert message in str(err.value), str(err.value)


def test_a_missing_app_is_one_problem_not_a_cascade() -> None:
    with pytest.raises(ConfigError) as err:
        config.load({"deliver": {"app": "", "builder": "mix",
                                 "stages": {"prod": {"hosts": ["a@h1"]}}}})
    assert err.value.problems == ["deliver.app is empty: set it in invoke.yaml (your OTP application)"]


def test_the_release_name_defaults_to_the_app_and_names_paths_when_it_differs() -> None:
    same = load(cfg())
    assert same.release == same.app
    umbrella = load(cfg(app="shop_web", release="shop"))
    assert (umbrella.app, umbrella.release) == ("shop_web", "shop")
    assert umbrella.build.path == "pydeliver-build/shop"
    assert umbrella.stages["prod"].hosts[0].deploy_path == "apps/shop"
    with pytest.raises(ConfigError) as err:
        load(cfg(release="My-Shop"))
    assert any(p.startswith("deliver.release: ") for p in err.value.problems), err.value.problems


def test_the_documented_known_keys_are_the_real_ones() -> None:
    from pathlib import Path

    from pydeliver_tasks.settings import DEFAULTS

    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    line = next(x for x in text.splitlines() if "deliver.stagse: unknown key (known: " in x)
    listed = line.split("(known: ", 1)[1].split(")", 1)[0].split(", ")
    assert listed == sorted(DEFAULTS)


def test_env_values_a_program_could_not_receive_are_refused_with_their_key_path() -> None:
    """A NUL, or NAME=value over Linux's MAX_ARG_STRLEN (every node command would fail with
    `Argument list too long`), is refused before any host is asked; all problems at once."""
    limit = v.ENV_ENTRY_MAX - len("BIG=") - 1
    assert load(cfg(env={"BIG": "x" * limit})).stages["prod"].hosts[0].env["BIG"] == "x" * limit
    bad = cfg(env={"BIG": "x" * 200_000, "NUL": "a\0b", "1X": "y", "A-B": "z", "OK": "fine"})
    with pytest.raises(ConfigError) as err:
        load(bad)
    text = str(err.value)
    assert "deliver.env.BIG: the value is 200005 bytes; Linux passes at most 131072" in text
    assert "deliver.env.NUL: the value holds a NUL byte" in text
    assert "deliver.env.1X: invalid environment variable name" in text
    assert "deliver.env.A-B: invalid environment variable name" in text
    assert "OK" not in text
