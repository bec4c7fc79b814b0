"""A mix umbrella as `mix new --umbrella` makes it, with two applications made by `mix new --sup`
and the release files `mix release.init` generates (rel/env.sh.eex, rel/vm.args.eex), all at
test time. The release is named after the project (`deliver.release: my_umb`), not after an
application (`deliver.app: umb_web` is the one whose start is checked); the other child is listed
in `upgrade.apps`. Build, deploy, start, a hot upgrade of a text change in the other child, a
restart — and what env.sh and vm.args give the node holds throughout."""

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

RELEASE = "my_umb"
TEXT = 'defmodule UmbCore.Text do\n  def text, do: "WORDS"\nend\n'
CONFIG = f"""deliver:
  app: umb_web
  release: {RELEASE}
  upgrade:
    apps: [umb_core]
"""
# what the user's generated release files are made to carry (appended, nothing else touched)
ENV_SH = 'export UMB_SHAPE="set by env.sh"\n'
VM_ARGS = "-umb_core greeting from_vm_args\n"


def make_umbrella(base: Path) -> Path:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}

    def mix(*args: str, cwd: Path) -> None:
        subprocess.run(["mix", *args], cwd=cwd, check=True, capture_output=True, env=env)

    mix("new", RELEASE, "--umbrella", cwd=base)
    d = base / RELEASE
    for child in ("umb_core", "umb_web"):
        mix("new", child, "--sup", cwd=d / "apps")
    mix("release.init", cwd=d)
    init_repo(d)
    # an umbrella must name its release (mix refuses `mix release` without it): the one edit
    _sub(d / "mix.exs", "deps: deps()\n", "deps: deps(),\n      releases: [my_umb: "
         "[applications: [umb_core: :permanent, umb_web: :permanent]]]\n")
    _sub(d / "apps" / "umb_web" / "mix.exs", "extra_applications: [:logger]",
         "extra_applications: [:logger, :sasl]")
    with (d / "rel" / "env.sh.eex").open("a") as f:
        f.write(ENV_SH)
    with (d / "rel" / "vm.args.eex").open("a") as f:
        f.write(VM_ARGS)
    (d / "apps" / "umb_core" / "lib" / "umb_core" / "text.ex").write_text(
        TEXT.replace("WORDS", "core one"))
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(CONFIG)
    commit_version(d, RELEASE, "0.1.0")
    # 0.1.1: the release and the changed child get a version bump, and the text changes
    _sub(d / "mix.exs", 'version: "0.1.0"', 'version: "0.1.1"')
    _sub(d / "apps" / "umb_core" / "mix.exs", 'version: "0.1.0"', 'version: "0.1.1"')
    (d / "apps" / "umb_core" / "lib" / "umb_core" / "text.ex").write_text(
        TEXT.replace("WORDS", "core two"))
    commit_version(d, RELEASE, "0.1.1")
    return d


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp(RELEASE)
    d = make_umbrella(base)
    cfg = base / f"{RELEASE}-sandbox.json"
    data = json.loads(write_runtime_config(box, RELEASE, 4083).read_text())
    data["deliver"]["stages"]["sandbox"]["health"] = {
        "url": "", "checks": [{"eval": "is_pid(Process.whereis(UmbWeb.Supervisor))"}]}
    cfg.write_text(json.dumps(data))
    p = Project(RELEASE, d, cfg, box)
    yield p
    p.inv("stop")


def seen(project: Project) -> list[str]:
    """What each node serves and was given: the text, env.sh's variable, vm.args' app env."""
    expr = ('Enum.join([UmbCore.Text.text(), System.get_env("UMB_SHAPE"), '
            'Application.get_env(:umb_core, :greeting)], "|")')
    out = project.inv("eval", expr).ok().out
    return re.findall(r'^\[\S+\] "([^"]*)"$', out, re.M)


def test_an_umbrella_release_builds_deploys_and_upgrades_hot(project: Project) -> None:
    built = project.inv("build.release", "--tag", "0.1.0").ok()
    assert f"built {RELEASE} 0.1.0 from 0.1.0" in built.out, built.out
    assert (project.dir / ".deliver" / "releases" / f"{RELEASE}_0.1.0.release.tar.gz").exists()
    project.inv("deploy.release", "--version", "0.1.0").ok()
    started = project.inv("start").ok()
    assert started.out.count("application started") == 2, started.out
    assert seen(project) == ["core one|set by env.sh|from_vm_args"] * 2
    res = project.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1", timeout=600)
    assert res.rc == 0 and res.out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, res.out
    assert seen(project) == ["core two|set by env.sh|from_vm_args"] * 2
    project.inv("restart").ok()
    assert seen(project) == ["core two|set by env.sh|from_vm_args"] * 2
    pinged = project.inv("ping").ok().out
    assert len(re.findall(r"pong: my_umb@\S+ \(pid \d+, 0\.1\.1\)", pinged)) == 2, pinged


def test_a_stopped_umbrella_child_is_not_called_started(project: Project, tmp_path: Path) -> None:
    """The started check asks for deliver.app (umb_web), not the release's name."""
    data = json.loads(project.config.read_text())
    data["deliver"]["timeouts"] = {"start": 1}  # a node up for over 1 s is not "booting"
    (quick := tmp_path / "quick.json").write_text(json.dumps(data))
    assert project.inv("doctor", config=quick).ok().out.count("verdict: healthy") == 2
    project.inv("eval", "Application.stop(:umb_web)").ok()
    res = project.inv("doctor", config=quick)
    assert res.rc != 0 and res.out.count("verdict: application not started") == 2, res.out
    project.inv("restart").ok()
    assert project.inv("doctor", config=quick).ok().out.count("verdict: healthy") == 2
