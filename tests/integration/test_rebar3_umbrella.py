"""A rebar3 umbrella (`apps/*`) with two own applications, made at test time: `rebar3 new umbrella
rb_umb`, then `rebar3 new app rb_umb_core` in its apps/. The product work: rb_umb_core joins the
relx release and gets a module returning a text; relx's config moves to the `.src` forms the
generated rebar.config suggests (config/sys.config.src, config/vm.args.src). Nothing else of what
rebar3 generated is edited, except version bumps; invoke.yaml sets `rebar3_profile: prod` and
lists rb_umb_core in `deliver.upgrade.apps`. 0.1.1 changes the core app's text (its vsn and the
release version bumped). On 2 hosts: build, deploy and start 0.1.0; `inv upgrade --from 0.1.0
--to 0.1.1` goes hot on both with a generated appup for rb_umb_core (the same OS pid then serves
the new text and runs rb_umb_core 0.1.1); after `inv restart` a new node boots 0.1.1 and serves
the new text.

The same generator makes rb_min, whose prod profile takes relx's minimal mode (the generated
comment's `{mode, minimal}`): its tarball carries no ERTS. With a stage PATH that has no erl,
`inv deploy.release` refuses on both hosts before the upload (exit 1; no tarball and no
releases/0.1.0 on the hosts); with the normal PATH it deploys, says it runs on the host's Erlang,
and each started node's emulator is the host's (its OS process runs <OTP root>/erts-<vsn>/bin/
beam.smp, the root and vsn the deploy read back) while its applications load from the release
dir (relx's minimal mode still carries kernel, stdlib and sasl, and sets ROOTDIR to the release
dir, so code:root_dir() is not the host's OTP root)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from .conftest import Project
from .shop import _sub, commit_version, init_repo

APP = "rb_umb"
CORE = f"{APP}_core"
MIN = "rb_min"  # the same generator in relx's minimal mode: a release without ERTS
TEXT = '-module(CORE_text).\n-export([text/0]).\ntext() -> "WORDS".\n'


def _rebar3(cwd: Path, *args: str, home: Path) -> None:
    subprocess.run(["rebar3", "new", *args], cwd=cwd, check=True, capture_output=True,
                   env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home)})


def make_umbrella(base: Path, app: str = APP, minimal: bool = False) -> Path:
    """The umbrella with tags 0.1.0 and 0.1.1, as described above (minimal: the prod profile
    in relx's minimal mode, no ERTS in the release)."""
    core = f"{app}_core"
    _rebar3(base, "umbrella", app, home=base)
    d = base / app
    _rebar3(d / "apps", "app", core, home=base)
    core_src = d / "apps" / core / "src"
    assert (core_src / f"{core}.app.src").exists()  # `rebar3 new app` in apps/ made apps/<core>
    init_repo(d)
    # the product change: the core app joins the release
    _sub(d / "rebar.config", f"[{app},\n", f"[{app},\n          {core},\n")
    if minimal:  # the generated comment's `use minimal mode to exclude ERTS`, taken up
        _sub(d / "rebar.config", "{mode, prod}", "%% {mode, prod}")
        _sub(d / "rebar.config", "%% {mode, minimal}", "{mode, minimal}")
    # the .src config forms, as the generated rebar.config's comment suggests
    _sub(d / "rebar.config", '{sys_config, "./config/sys.config"},\n'
         '        {vm_args, "./config/vm.args"}',
         '{sys_config_src, "./config/sys.config.src"},\n'
         '        {vm_args_src, "./config/vm.args.src"}')
    for name in ("sys.config", "vm.args"):
        (d / "config" / name).rename(d / "config" / f"{name}.src")
    text = TEXT.replace("CORE", core)
    (core_src / f"{core}_text.erl").write_text(text.replace("WORDS", "core one"))
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(
        f"deliver:\n  app: {app}\n  builder: rebar3\n  rebar3_profile: prod\n"
        f"  upgrade:\n    apps: [{core}]\n")
    commit_version(d, app, "0.1.0")
    # 0.1.1: the core app's text changes; its vsn and the release version are bumped
    _sub(d / "rebar.config", f'{{{app}, "0.1.0"}}', f'{{{app}, "0.1.1"}}')
    _sub(core_src / f"{core}.app.src", '{vsn, "0.1.0"}', '{vsn, "0.1.1"}')
    (core_src / f"{core}_text.erl").write_text(text.replace("WORDS", "core two"))
    commit_version(d, app, "0.1.1")
    return d


def umbrella_project(box: sb.Sandbox, base: Path, app: str, http_port: int,
                     minimal: bool = False) -> Project:
    """The umbrella as a user's project, with its own sandbox config (release dir apps/<app>)."""
    d = make_umbrella(base, app, minimal)
    cfg = base / f"{app}-sandbox.json"
    data = json.loads(write_runtime_config(box, app, http_port).read_text())
    # the generated release serves no HTTP: the smoke check asks the node for both apps' trees
    data["deliver"]["stages"]["sandbox"]["health"] = {"url": "", "checks": [
        {"eval": f"is_pid(whereis({app}_sup)) andalso is_pid(whereis({app}_core_sup))"}]}
    cfg.write_text(json.dumps(data))
    cfg.chmod(0o600)  # holds the sandbox cookie
    return Project(app, d, cfg, box)


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = umbrella_project(box, tmp_path_factory.mktemp(APP), APP, 4079)
    yield p
    p.inv("stop")


@pytest.fixture(scope="module")
def minimal(box: sb.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = umbrella_project(box, tmp_path_factory.mktemp(MIN), MIN, 4073, minimal=True)
    yield p
    p.inv("stop")


def evals(project: Project, expr: str, value: str) -> dict[str, str]:
    """{host: what its node printed for expr}, for the lines matching the regex value."""
    out = project.inv("eval", expr).ok().out
    return dict(re.findall(rf"^\[(\S+)\] ({value})$", out, re.M))


def texts(project: Project) -> list[str]:
    return sorted(evals(project, f"{CORE}_text:text().", r'"core \w+"').values())


def core_vsns(project: Project) -> list[str]:
    found = evals(project, f"application:get_key({CORE}, vsn).", r'\{ok, ?"[\d.]+"\}')
    return [v.replace(" ", "") for v in found.values()]


def os_pids(project: Project) -> dict[str, str]:
    return evals(project, "os:getpid().", r'"\d+"')


def test_an_umbrella_app_upgrades_hot_and_boots_the_new_version(project: Project) -> None:
    built = project.inv("build.release", "--tag", "0.1.0").ok()
    assert f"built {APP} 0.1.0 from 0.1.0" in built.out, built.out
    project.inv("deploy.release", "--version", "0.1.0").ok()
    project.inv("start").ok()
    assert texts(project) == ['"core one"'] * 2
    assert core_vsns(project) == ['{ok,"0.1.0"}'] * 2
    pids = os_pids(project)
    assert len(pids) == 2, pids

    res = project.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1", timeout=600)
    assert res.rc == 0 and res.out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, res.out
    assert f"appup for {CORE} (generated)" in res.out, res.out
    assert res.out.count(f"md5 match {CORE}-0.1.1") == 2, res.out
    assert texts(project) == ['"core two"'] * 2
    assert core_vsns(project) == ['{ok,"0.1.1"}'] * 2
    assert os_pids(project) == pids  # the same OS processes: hot, not restarted

    project.inv("restart").ok()
    restarted = os_pids(project)
    assert restarted.keys() == pids.keys() and not set(restarted.values()) & set(pids.values())
    assert texts(project) == ['"core two"'] * 2
    assert core_vsns(project) == ['{ok,"0.1.1"}'] * 2
    version = project.inv("version").ok().out
    assert version.count("running 0.1.1; 0.1.1 boots next") == 2, version


def host_erlang() -> tuple[str, str]:
    """(OTP root, erts-<vsn>) of the Erlang on the hosts' PATH (the sandbox hosts share this
    machine's /usr/bin/erl)."""
    out = subprocess.run(
        ["erl", "-noshell", "-eval",
         'io:format("~s erts-~s", [code:root_dir(), erlang:system_info(version)]), halt().'],
        check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.split()
    return out[0], out[1]


def test_a_release_without_erts_needs_and_runs_on_the_hosts_erlang(minimal: Project) -> None:
    built = minimal.inv("build.release", "--tag", "0.1.0").ok()
    assert f"built {MIN} 0.1.0 from 0.1.0" in built.out, built.out
    assert "(it carries no ERTS: every host needs erts-" in built.out, built.out
    roots = [Path(h["deploy_path"]) for h in minimal.settings()["stages"]["sandbox"]["hosts"]]
    assert len(roots) == 2 and all(str(r).endswith(f"/apps/{MIN}") for r in roots), roots

    # a stage PATH without erl: refused on each host before the upload, nothing changed there
    data = json.loads(minimal.config.read_text())
    data["deliver"]["stages"]["sandbox"]["env"]["PATH"] = "/nonexistent"
    no_erl = minimal.config.with_name(f"{MIN}-no-erl.json")
    no_erl.write_text(json.dumps(data))
    no_erl.chmod(0o600)
    res = minimal.inv("deploy.release", "--version", "0.1.0", config=no_erl)
    assert res.rc == 1, res.out
    refusals = re.findall(rf"^\[(\S+)\].*{MIN}\S* carries no ERTS, so it needs erts-[\d.]+ from the "
                          r"host, and the host has no erl on its PATH; nothing was uploaded", res.out,
                          re.M)
    assert len(set(refusals)) == 2, res.out
    assert "inv build.release --tag 0.1.0 --rebuild" in res.out, res.out
    for root in roots:
        assert not (root / "releases" / "0.1.0").exists(), root
        assert not (root / "bin").exists() and not (root / "lib").exists(), root
        assert not list(root.glob(".deliver/releases/*")), list(root.glob(".deliver/releases/*"))

    # the normal PATH: the host's erl has the ERTS the release names, so it deploys and boots
    otp, erts = host_erlang()
    res = minimal.inv("deploy.release", "--version", "0.1.0").ok()
    said = re.findall(r"carries no ERTS: it runs on the host's Erlang \((\S+), (erts-[\d.]+), "
                      r"read back\)", res.out)
    assert said == [(otp, erts)] * 2, res.out
    for root in roots:
        assert (root / "releases" / "0.1.0").is_dir(), root
        assert list(root.glob(f".deliver/releases/{MIN}_0.1.0*")), root
        assert not list(root.glob("erts-*")), list(root.glob("erts-*"))  # none came with it
    minimal.inv("start").ok()
    try:
        # booted on the host's Erlang: each node's OS process runs the host's emulator
        pids = os_pids(minimal)
        assert len(pids) == 2, pids
        exes = {os.readlink(f"/proc/{pid.strip(chr(34))}/exe") for pid in pids.values()}
        assert exes == {f"{otp}/{erts}/bin/beam.smp"}, exes
        bindirs = evals(minimal, 'os:getenv("BINDIR").', r'"[^"]*"')
        assert sorted(bindirs.values()) == [f'"{otp}/{erts}/bin"'] * 2, bindirs
        libs = evals(minimal, f"code:lib_dir({MIN}_core).", r'"[^"]*"')
        assert sorted(libs.values()) == sorted(f'"{r}/lib/{MIN}_core-0.1.0"' for r in roots), libs
    finally:
        minimal.inv("stop").ok()
