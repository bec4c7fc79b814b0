"""A project in a subdirectory of a bigger git repository (a monorepo): `mix new my_sub --sup` made
at test time under services/, `inv` run from the project's directory. Build, deploy, start, a hot
upgrade of a text change, and a restart — without any setting for where the project sits."""

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

APP = "my_sub"
TEXT = 'defmodule MySub.Text do\n  def text, do: "WORDS"\nend\n'


def make_monorepo(base: Path) -> Path:
    mono = base / "mono"
    (mono / "services").mkdir(parents=True)
    (mono / "docs").mkdir()
    (mono / "docs" / "README.md").write_text("other things live in this repository too\n")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
    subprocess.run(["mix", "new", APP, "--sup"], cwd=mono / "services", check=True,
                   capture_output=True, env=env)
    d = mono / "services" / APP
    init_repo(mono)
    _sub(d / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl]")
    (d / "lib" / APP / "text.ex").write_text(TEXT.replace("WORDS", "sub one"))
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(f"deliver:\n  app: {APP}\n")
    commit_version(mono, APP, "0.1.0")
    _sub(d / "mix.exs", 'version: "0.1.0"', 'version: "0.1.1"')
    (d / "lib" / APP / "text.ex").write_text(TEXT.replace("WORDS", "sub two"))
    commit_version(mono, APP, "0.1.1")
    return d


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp(APP)
    d = make_monorepo(base)
    cfg = base / f"{APP}-sandbox.json"
    data = json.loads(write_runtime_config(box, APP, 4077).read_text())
    data["deliver"]["stages"]["sandbox"]["health"] = {
        "url": "", "checks": [{"eval": "is_pid(Process.whereis(MySub.Supervisor))"}]}
    cfg.write_text(json.dumps(data))
    p = Project(APP, d, cfg, box)
    yield p
    p.inv("stop")


def texts(project: Project) -> list[str]:
    out = project.inv("eval", "MySub.Text.text()").ok().out
    return re.findall(r'^\[\S+\] "(sub \w+)"$', out, re.M)


def test_a_project_in_a_subdirectory_builds_deploys_and_upgrades(project: Project) -> None:
    built = project.inv("build.release", "--tag", "0.1.0").ok()
    assert f"built {APP} 0.1.0 from 0.1.0" in built.out, built.out
    assert (project.dir / ".deliver" / "releases" / f"{APP}_0.1.0.release.tar.gz").exists()
    project.inv("deploy.release", "--version", "0.1.0").ok()
    project.inv("start").ok()
    assert texts(project) == ["sub one"] * 2
    res = project.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1", timeout=600)
    assert res.rc == 0 and res.out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, res.out
    assert texts(project) == ["sub two"] * 2
    project.inv("restart").ok()
    assert texts(project) == ["sub two"] * 2
