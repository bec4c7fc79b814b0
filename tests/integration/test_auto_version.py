"""Auto-versions as edeliver users run them: `mix new autov --sup` made at test time, built from
branch main with `--auto-version commit-count+revision+branch-unless-master` (no tag, no version
edit; an asset step in the before_compile hook), deployed, changed, built again, hot-upgraded with `--to latest`, restarted. The user's
repository never changes; versions without an order are refused, not guessed."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from .conftest import Project
from .shop import GIT_CONFIG, _sub, init_repo

APP = "autov"
TEXT = 'defmodule Autov.Text do\n  def text, do: "WORDS"\nend\n'
PIECES = "commit-count+git-revision+branch-unless-master"


def git(d: Path, *args: str) -> str:
    """git with the examples' identity: a fresh machine has no user.name to commit with."""
    return subprocess.run(["git", *GIT_CONFIG, *args], cwd=d, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(d: Path, words: str) -> str:
    """Commit a text change; -> the version an auto-version build of it gets."""
    (d / "lib" / APP / "text.ex").write_text(TEXT.replace("WORDS", words))
    git(d, "add", "--all")
    git(d, "commit", "--quiet", "-m", words)
    return f"0.1.0+{git(d, 'rev-list', '--count', 'HEAD')}-{git(d, 'rev-parse', 'HEAD')[:7]}"


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp(APP)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
    subprocess.run(["mix", "new", APP, "--sup"], cwd=base, check=True, capture_output=True,
                   env=env)
    d = base / APP
    init_repo(d)
    _sub(d / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl]")
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    with (d / ".gitignore").open("a") as ignore:
        ignore.write(".deliver/\n")  # the release store and the tool's state, as users do
    # an asset step as edeliver users have in pre_erlang_clean_compile: in the work tree, after
    # the dependencies are fetched, before the release is assembled (its priv/ goes in)
    (d / "invoke.yaml").write_text(
        f"deliver:\n  app: {APP}\n  hooks:\n"
        "    before_compile: 'echo assets in $(basename $PWD) && mkdir -p priv/static && "
        "echo digested > priv/static/assets.txt'\n"
        "    after_compile: 'echo assembled $(ls _build/prod/rel/autov/releases | grep +)'\n")
    cfg = base / f"{APP}-sandbox.json"
    data = json.loads(write_runtime_config(box, APP, 4087).read_text())
    data["deliver"]["stages"]["sandbox"]["health"] = {
        "url": "", "checks": [{"eval": "is_pid(Process.whereis(Autov.Supervisor))"}]}
    cfg.write_text(json.dumps(data))
    p = Project(APP, d, cfg, box)
    yield p
    p.inv("stop")


def texts(project: Project) -> list[str]:
    out = project.inv("eval", "Autov.Text.text()").ok().out
    return re.findall(r'^\[\S+\] "(\w+ \w+)"$', out, re.M)


def test_builds_get_ordered_versions_and_upgrade_hot_to_the_latest(project: Project) -> None:
    d = project.dir
    first = commit(d, "auto one")
    mix_exs = (d / "mix.exs").read_text()
    built = project.inv("build.release", "--branch", "main", "--auto-version", PIECES).ok()
    assert f"built {APP} {first} from main" in built.out, built.out
    assert git(d, "status", "--porcelain") == "" and (d / "mix.exs").read_text() == mix_exs
    assert "assets in src" in built.out and f"assembled {first}" in built.out, built.out
    with tarfile.open(d / ".deliver" / "releases" / f"{APP}_{first}.release.tar.gz") as tar:
        assert f"lib/{APP}-{first}/priv/static/assets.txt" in tar.getnames()
    again = project.inv("build.release", "--branch", "main", "--auto-version", PIECES).ok()
    assert f"{APP} {first} from main" in again.out and "not built again" in again.out, again.out
    project.inv("deploy.release", "--version", first).ok()
    project.inv("start").ok()
    assert texts(project) == ["auto one"] * 2
    second = commit(d, "auto two")
    project.inv("build.release", "--branch", "main", "--auto-version", PIECES).ok()
    listed = project.inv("releases").ok().out
    assert listed.index(first) < listed.index(second), listed  # oldest first: ordered
    res = project.inv("upgrade", "--from", first, "--to", "latest", timeout=600)
    assert res.rc == 0, res.out
    assert f"--to latest: {second}" in res.out, res.out
    assert f"the commit {second} was built from" in res.out, res.out  # not a tag: its commit
    assert res.out.count(f"hot-upgraded {first} -> {second}, same pid") == 2, res.out
    assert texts(project) == ["auto two"] * 2
    assert project.inv("version").ok().out.count(f"running {second}; {second} boots next") == 2
    project.inv("restart").ok()  # a fresh boot of that version: the same text
    assert texts(project) == ["auto two"] * 2
    assert git(d, "status", "--porcelain") == ""


def test_versions_without_an_order_and_bad_pieces_are_refused(project: Project) -> None:
    d = project.dir
    bad = project.inv("build.release", "--branch", "main", "--auto-version", "commit-count+bogus")
    assert bad.rc == 2 and "unknown piece 'bogus'" in bad.out, bad.out
    git(d, "checkout", "--quiet", "--detach")  # no branch checked out here: none to name
    try:
        unknown = project.inv("build.release", "--revision", git(d, "rev-parse", "HEAD"),
                              "--auto-version", "branch")
    finally:
        git(d, "checkout", "--quiet", "main")
    assert unknown.rc == 2 and "the branch built is not known" in unknown.out, unknown.out
    commit(d, "auto three")
    named = project.inv("build.release", "--branch", "main", "--auto-version", "branch").ok()
    assert f"built {APP} 0.1.0+main from main" in named.out, named.out
    latest = project.inv("upgrade", "--from", "0.1.0+main", "--to", "latest")
    assert latest.rc == 2 and "cannot tell which is latest" in latest.out, latest.out
    running = re.search(r"running (\S+);", project.inv("version").ok().out)[1]
    res = project.inv("upgrade", "--from", running, "--to", "0.1.0+main")
    assert res.rc == 2 and f"cannot tell whether 0.1.0+main is newer than {running}" in res.out
    assert "commit-count" in res.out, res.out  # what to put first


RB = "rb_auto"
RB_TEXT = '-module(rb_auto_text).\n-export([text/0]).\ntext() -> "WORDS".\n'


@pytest.fixture(scope="module")
def relx(box: sb.Sandbox, tmp_path_factory) -> Project:
    """`rebar3 new release rb_auto` as generated (prod profile), plus a module with a text."""
    base = tmp_path_factory.mktemp(RB)
    subprocess.run(["rebar3", "new", "release", RB], cwd=base, check=True, capture_output=True,
                   env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base)})
    d = base / RB
    init_repo(d)
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(
        f"deliver:\n  app: {RB}\n  builder: rebar3\n  rebar3_profile: prod\n")
    with (d / ".gitignore").open("a") as ignore:
        ignore.write(".deliver/\n")
    cfg = base / f"{RB}-sandbox.json"
    data = json.loads(write_runtime_config(box, RB, 4089).read_text())
    data["deliver"]["stages"]["sandbox"]["health"] = {
        "url": "", "checks": [{"eval": f"is_pid(whereis({RB}_sup))"}]}
    cfg.write_text(json.dumps(data))
    p = Project(RB, d, cfg, box)
    yield p
    p.inv("stop")


def rb_commit(d: Path, words: str) -> str:
    (d / "apps" / RB / "src" / "rb_auto_text.erl").write_text(RB_TEXT.replace("WORDS", words))
    git(d, "add", "--all")
    git(d, "commit", "--quiet", "-m", words)
    return f"0.1.0+{git(d, 'rev-list', '--count', 'HEAD')}"


def rb_seen(project: Project, expr: str) -> list[str]:
    """Each host's answer, in the order of the hosts (their lines come as they finish)."""
    out = project.inv("eval", expr).ok().out
    return [value for _, value in sorted(re.findall(r"^\[(\S+)\] (.+)$", out, re.M))]


def test_a_rebar3_release_and_its_app_get_the_version_and_upgrade_hot(relx: Project) -> None:
    """relx's release version and the app's .app.src vsn both get the metadata: the generated
    appup sees a new vsn of rb_auto, and the upgrade goes hot."""
    d = relx.dir
    first = rb_commit(d, "relx one")
    relx.inv("build.release", "--branch", "main", "--auto-version", "commit-count").ok()
    relx.inv("deploy.release", "--version", first).ok()
    relx.inv("start").ok()
    pids = rb_seen(relx, "os:getpid().")
    assert rb_seen(relx, "rb_auto_text:text().") == ['"relx one"'] * 2
    second = rb_commit(d, "relx two")
    built = relx.inv("build.release", "--branch", "main", "--auto-version", "commit-count").ok()
    assert f"built {RB} {second} from main" in built.out, built.out
    res = relx.inv("upgrade", "--from", first, "--to", "latest", timeout=600)
    assert res.rc == 0 and res.out.count(f"hot-upgraded {first} -> {second}") == 2, res.out
    assert f"appup for {RB} (generated)" in res.out, res.out
    assert rb_seen(relx, "rb_auto_text:text().") == ['"relx two"'] * 2
    vsns = [x.replace(" ", "") for x in rb_seen(relx, f"application:get_key({RB}, vsn).")]
    assert vsns == [f'{{ok,"{second}"}}'] * 2
    assert rb_seen(relx, "os:getpid().") == pids  # hot: the same OS processes
    assert git(d, "status", "--porcelain") == ""
