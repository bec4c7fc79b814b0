"""relx renders `sys.config.src` only in its start script, so release_handler alone would install
a hot upgrade with no config at all. On a project made by `rebar3 new release` at test time
(switched to sys.config.src as relx's generated rebar.config suggests), 2 hosts: the value from
the stage env survives a hot upgrade, and the node equals a fresh boot (env, tree); a dev-mode
build is refused; its install survives a fault or a full disk at any line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from . import shop
from .conftest import Project
from .install_faults import disk_full_at_each_call, fault_at_each_call, undisturbed


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp("shop_erl")
    d = shop.make_shop_erl(base)
    cfg = base / "shop_erl-sandbox.json"
    data = json.loads(write_runtime_config(box, shop.ERL_APP, 4071).read_text())
    stage = data["deliver"]["stages"]["sandbox"]
    stage["env"]["MOTD"] = "motd from the stage env"
    # the generated release serves no HTTP: its smoke check asks the node itself
    stage["health"] = {"url": "", "checks": [{"eval": "is_pid(whereis(shop_erl_sup))"}]}
    cfg.write_text(json.dumps(data))
    p = Project(shop.ERL_APP, d, cfg, box)
    p.inv("build.release", "--tag", "0.1.0").ok()
    p.inv("deploy.release", "--version", "0.1.0").ok()
    p.inv("start").ok()
    yield p
    p.inv("stop")


def motds(project: Project) -> list[str]:
    out = project.inv("eval", "application:get_env(shop_erl, motd).").ok().out
    return re.findall(r"^\[\S+\] (\{ok,.*\}|undefined)$", out, re.M)


def test_sys_config_src_value_survives_a_hot_upgrade_equal_to_a_fresh_boot(project: Project) -> None:
    assert motds(project) == ['{ok, "motd from the stage env"}'] * 2
    res = project.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1", timeout=600)
    assert res.rc == 0 and res.out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, res.out
    assert "env equals a fresh boot" in res.out, res.out
    assert motds(project) == ['{ok, "motd from the stage env"}'] * 2
    hot = shop.snapshots(project.inv("eval", shop.SNAPSHOT_ERL).ok().out)
    project.inv("restart").ok()
    fresh = shop.snapshots(project.inv("eval", shop.SNAPSHOT_ERL).ok().out)
    assert len(hot) == 2, hot
    assert hot == fresh, project.inv("eval", shop.SNAPSHOT_ERL_TERM).out


def test_a_dev_mode_release_is_refused_before_it_is_packed_or_fetched(project: Project) -> None:
    """`rebar3 new release` makes the default profile relx dev mode: lib/ and sys.config link
    into the build tree. Such a release runs only on the build host: refused, with the fix."""
    dev = project.variant("dev-mode", lambda d: d.update(rebar3_profile="default"))
    stored = project.dir / ".deliver" / "releases" / f"{shop.ERL_APP}_0.1.0.release.tar.gz"
    before = stored.stat().st_mtime_ns
    res = project.inv("build.release", "--tag", "0.1.0", config=dev)
    assert res.rc == 1, res.out
    assert "the release is not self-contained" in res.out and "(profile default)" in res.out
    assert f"./lib/{shop.ERL_APP}-0.1.0 -> " in res.out  # the evidence, from the build host
    assert "deliver.rebar3_profile: prod" in res.out
    assert stored.stat().st_mtime_ns == before  # the stored (prod) 0.1.0 is untouched
    assert "Traceback" not in res.out


def test_a_fault_or_a_full_disk_at_any_line_of_its_install_leaves_one_version(
        project: Project, tmp_path: Path) -> None:
    """The crash tests of the example apps, on what `rebar3 new release` made: the install of
    0.1.1 over 0.1.0 with a failing or killed command at every 3rd/4th call, and with the disk
    filled up before every 3rd: each run leaves the root equal to before or after an
    undisturbed install, never a mix."""
    project.inv("build.release", "--tag", "0.1.1").ok()
    store = project.dir / ".deliver" / "releases"
    tarballs = {v: store / f"{shop.ERL_APP}_{v}.release.tar.gz" for v in ("0.1.0", "0.1.1")}
    (tmp_path / "faults").mkdir()
    ins = undisturbed(shop.ERL_APP, tarballs, tmp_path / "faults", tmp_path / "faults")
    outcomes = fault_at_each_call(ins, {"fail": 3, "kill": 4})
    assert outcomes["old"] > 3 and outcomes["new"] > 3, outcomes
    (tmp_path / "full").mkdir()
    full = disk_full_at_each_call(shop.ERL_APP, tarballs, tmp_path / "full", 3)
    assert full["old"] > 3 and full["new"] > 1, full
