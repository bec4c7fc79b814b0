"""A dependency that ships its own appup in src/ (as erlang.mk libraries do; neither mix nor
rebar3 3.19 copies it to ebin/), written with several terms (OTP reads the first): `mix new
my_vend --sup` with a vendored path dependency made by `mix new` too, both at test time. The
upgrade bumps the dependency's version and changes its Erlang module; it goes hot with the appup
the library ships, and the node then runs the new library code — as a fresh boot would."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from .conftest import Project
from .shop import _sub, commit_version, init_repo

APP = "my_vend"
DEP_APPUP = '''{"0.2.0",
 [{"0.1.0", [{load_module, tinydep_text}]}],
 [{"0.1.0", [{load_module, tinydep_text}]}]}.
%% the library keeps its older release lines below; OTP reads only the first term
{"0.1.0", [], []}.
'''
TEXT = '-module(tinydep_text).\n-export([text/0]).\ntext() -> "WORDS".\n'


def make_vend(base: Path) -> Path:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
    subprocess.run(["mix", "new", APP, "--sup"], cwd=base, check=True, capture_output=True, env=env)
    d = base / APP
    (d / "vendor").mkdir()
    subprocess.run(["mix", "new", "tinydep"], cwd=d / "vendor", check=True, capture_output=True,
                   env=env)
    dep = d / "vendor" / "tinydep"
    (dep / "src").mkdir()
    (dep / "src" / "tinydep_text.erl").write_text(TEXT.replace("WORDS", "dep one"))
    init_repo(d)
    _sub(d / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl]")
    _sub(d / "mix.exs", "# {:dep_from_hexpm", '{:tinydep, path: "vendor/tinydep"},\n      # {:x')
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(f"deliver:\n  app: {APP}\n")
    commit_version(d, APP, "0.1.0")
    # 0.1.1: the library moves to 0.2.0 with new code and the appup for it, in its src/
    _sub(d / "mix.exs", 'version: "0.1.0"', 'version: "0.1.1"')
    _sub(dep / "mix.exs", 'version: "0.1.0"', 'version: "0.2.0"')
    (dep / "src" / "tinydep_text.erl").write_text(TEXT.replace("WORDS", "dep two"))
    (dep / "src" / "tinydep.appup").write_text(DEP_APPUP)
    commit_version(d, APP, "0.1.1")
    return d


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp(APP)
    d = make_vend(base)
    cfg = base / f"{APP}-sandbox.json"
    data = json.loads(write_runtime_config(box, APP, 4075).read_text())
    data["deliver"]["stages"]["sandbox"]["health"] = {
        "url": "", "checks": [{"eval": "is_pid(Process.whereis(MyVend.Supervisor))"}]}
    cfg.write_text(json.dumps(data))
    p = Project(APP, d, cfg, box)
    p.inv("build.release", "--tag", "0.1.0").ok()
    p.inv("deploy.release", "--version", "0.1.0").ok()
    p.inv("start").ok()
    yield p
    p.inv("stop")


def texts(project: Project) -> list[str]:
    out = project.inv("eval", ":erlang.list_to_binary(:tinydep_text.text())").ok().out
    return re.findall(r'^\[\S+\] "(dep \w+)"$', out, re.M)


def test_a_dependency_upgrades_hot_with_the_appup_it_ships_in_src(project: Project) -> None:
    assert texts(project) == ["dep one"] * 2
    res = project.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1", timeout=600)
    assert res.rc == 0, res.out
    assert "appup for tinydep: the one it ships, " in res.out
    assert "vendor/tinydep/src/tinydep.appup" in res.out
    assert res.out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, res.out
    assert texts(project) == ["dep two"] * 2
    shown = project.inv("show.appup", "--from", "0.1.0", "--to", "0.1.1").ok().out
    assert "tinydep.appup (shipped)" in shown and "tinydep: 0.1.0 -> 0.2.0" in shown
    versions = project.inv("eval", "Application.spec(:tinydep, :vsn)").ok().out
    assert len(re.findall(r"""^\[\S+\] (?:~c"0\.2\.0"|'0\.2\.0')$""", versions, re.M)) == 2, versions
