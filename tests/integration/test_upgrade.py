"""Hot upgrades as a user lives them, for a mix app and a rebar3 app on 2 sandbox hosts: refused
when a host runs another version, hot 0.0.1 -> 0.0.2 (same OS pid, new page, counter state
migrated), verified downgrade and upgrade again (from the store), a broken appup (the old
version serves again; each --on-failure), and a damaged stored upgrade refused."""

from __future__ import annotations

import json
import pwd
import re
import tarfile
from pathlib import Path

import pytest

from . import shop
from .conftest import Project, assert_refused, beam_alive, one_app, project_fixture
from .faults import PsWatch
from .install_faults import staging_at_each_call
from .upgrading import (
    BROKEN_APPUP,
    KILLING_APPUP,
    boots_next,
    killing_health,
    logins,
    page_module,
    pages,
    pids,
)

APPS = {"hello_ex": 4050, "hello_erl": 4051}

# 0.0.3 adds a dependency application (greeter 1.0.0), 0.0.4 changes its version (1.0.1)
project = project_fixture(APPS, deployed="0.0.1", versions=("0.0.1", "0.0.2", "0.0.3", "0.0.4"))


@pytest.fixture(autouse=True)
def running(project: Project) -> None:
    """Every test starts from running nodes (a no-op when they already run)."""
    project.inv("start").ok()

BAD_INPUTS = [
    (["upgrade", "--from", "0.0.2", "--to", "0.0.1"], "0.0.1 is not newer than 0.0.2"),
    (["upgrade", "--from", "0.0.1", "--to", "0.0.1"], "nothing to upgrade"),
    (["upgrade", "--from", "0.0.1"], "missing --to"),
    (["upgrade", "--from", "1;reboot", "--to", "0.0.2"], "invalid version"),
    (["upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-unsafe", "yolo"], "--on-unsafe must"),
    (["upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure", "pray"], "--on-failure must"),
    (["upgrade", "--from", "0.0.1", "--to", "0.0.2", "--stage", "prod"], "no stage 'prod'"),
    (["build.upgrade", "--from", "0.0.1", "--to", "$(id)"], "invalid version"),
    (["deploy.upgrade", "--version", "9.9.9"], "no upgrade tarball"),
    (["show.relup", "--version", "9.9.9"], "no upgrade tarball"),
    (["downgrade"], "missing --to"),
    (["downgrade", "--to", "../0.0.1"], "invalid version"),
]


def test_bad_input_is_refused_and_dry_run_touches_nothing(project: Project) -> None:
    one_app(project)
    before = logins(project)
    assert_refused(project, BAD_INPUTS)
    res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--dry-run").ok()
    assert res.out.count("would stage 0.0.2 beside 0.0.1") == 2, res.out
    assert "dry run: nothing was changed" in res.out
    assert logins(project) == before, "bad input and dry runs open no SSH connection"
    assert not list((project.dir / ".deliver" / "releases").glob("*upgrade*"))


def test_refused_before_any_change_when_a_host_runs_another_version(project: Project) -> None:
    before, seen = pids(project), pages(project)
    res = project.inv("upgrade", "--from", "0.0.2", "--to", "0.0.3")
    assert res.rc == 1, res.out
    assert res.out.count("pre-check FAILED: runs 0.0.1, not 0.0.2: refusing") == 2, res.out
    assert "building" not in res.out and "staging" not in res.out, res.out
    assert not list((project.dir / ".deliver" / "releases").glob("*upgrade*"))
    assert pids(project) == before and boots_next(project) == {"0.0.1"}
    assert [v.split(" (visits")[0] for v in pages(project).values()] == \
        [v.split(" (visits")[0] for v in seen.values()]


def test_hot_upgrade_keeps_pid_changes_page_and_migrates_state(project: Project) -> None:
    app = project.app
    before = pids(project)
    visits = {h: int(re.search(r"visits: (\d+)", t)[1]) for h, t in pages(project).items()}
    uids = {pwd.getpwnam(h.user).pw_uid for h in project.box.hosts}
    with PsWatch(uids) as watch:  # every shell command the tool runs on the hosts, sampled
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--json", "up.json").ok()
    assert res.out.count("hot-upgraded 0.0.1 -> 0.0.2, same pid") == 2, res.out
    # only what 0.0.1 lacks went to the hosts: the changed apps' lib dirs, no ERTS
    store = project.dir / ".deliver" / "releases"
    plan = json.loads((store / f"{app}_0.0.2.upgrade.json").read_text())
    with tarfile.open(store / f"{app}_0.0.2.upgrade.tar.gz") as tar:
        names = [m.name.removeprefix("./") for m in tar.getmembers()]
    assert {n.split("/")[1] for n in names if n.startswith("lib/") and n.count("/")} == \
        {f"{a}-{vs[1]}" for a, vs in plan["changed_apps"].items()} == {f"{app}-0.0.2"}, names
    assert not [n for n in names if n.startswith("erts-")], names
    assert any(". ./.deliver/env" in cmd for cmd in watch.shells), sorted(watch.shells)[:5]
    assert [cmd for cmd in watch.shells if project.cookie() in cmd] == []
    # every question to the nodes went through erl_call (no VM booted to ask); only mix boots
    # one VM per host, on purpose: a fresh VM of 0.0.2 computes the env a boot would have
    helpers = [cmd for pid, cmd in watch.vms.items() if pid not in before.values()]
    assert len(helpers) == (2 if app == "hello_ex" else 0), helpers
    assert "modules' md5 match" in res.out and "0.0.2 permanent" in res.out
    assert "appup for" in res.out and "(generated)" in res.out  # generated, shown
    assert pids(project) == before and all(beam_alive(p) for p in before.values())
    for host, text in pages(project).items():
        # the counter's state changed shape (integer -> map): code_change migrated it, the
        # count goes on (a lost or unmigrated state would restart at 1 or crash the page)
        assert text == f"Howdy from {app} 0.0.2 (visits: {visits[host] + 1})", text
    version = project.inv("version").ok()
    assert version.out.count("running 0.0.2; 0.0.2 boots next") == 2, version.out
    relup = project.inv("show.relup", "--version", "0.0.2").ok()
    assert "point_of_no_return" in relup.out and "code_change" in relup.out
    appup = project.inv("show.appup", "--from", "0.0.1", "--to", "0.0.2").ok()
    assert "{update" in appup.out and "advanced" in appup.out, appup.out
    again = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2").ok()  # re-run: no-op
    assert again.out.count("already runs 0.0.2 (pid") == 2, again.out
    assert "every host already runs 0.0.2: nothing to do" in again.out, again.out
    assert pids(project) == before
    # the hot node equals a fresh boot of 0.0.2 (every app's env, the supervision trees)
    snapshot = shop.SNAPSHOT if app == "hello_ex" else shop.SNAPSHOT_ERL
    hot = shop.snapshots(project.inv("eval", snapshot).ok().out)
    # what boots next was switched too (start_erl.data, relx's bin/ with its baked version)
    restarted = project.inv("restart").ok()
    assert restarted.out.count("running 0.0.2 (pid") == 2, restarted.out
    assert all(t.startswith(f"Howdy from {app} 0.0.2") for t in pages(project).values())
    fresh = shop.snapshots(project.inv("eval", snapshot).ok().out)
    assert len(hot) == 2 and hot == fresh, (hot, fresh, project.inv(
        "eval", shop.SNAPSHOT if app == "hello_ex" else shop.SNAPSHOT_ERL_TERM).out)


def test_downgrade_then_upgrade_again_from_the_store(project: Project) -> None:
    app = project.app
    before = pids(project)
    down = project.inv("downgrade", "--to", "0.0.1").ok()
    assert down.out.count("hot-downgraded 0.0.2 -> 0.0.1, same pid") == 2, down.out
    assert "0.0.1 permanent" in down.out
    assert pids(project) == before
    assert all(t.startswith(f"Hello from {app} 0.0.1") for t in pages(project).values())
    assert boots_next(project) == {"0.0.1"}
    up = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2").ok()
    assert "using the stored upgrade" in up.out and "building" not in up.out, up.out
    assert pids(project) == before
    assert all(t.startswith(f"Howdy from {app} 0.0.2") for t in pages(project).values())
    project.inv("downgrade", "--to", "0.0.1").ok()


def test_failed_verification_downgrades_hot_and_keeps_the_pid(project: Project) -> None:
    """A health check that only the old page passes: the upgrade installs, verification fails,
    --on-failure downgrade goes back hot (same OS pid) and verifies 0.0.1 serves."""
    app = project.app

    def old_page_only(d: dict) -> None:
        d["stages"]["sandbox"]["health"] = {"url": "http://{host}:{env[HTTP_PORT]}/",
                                            "contains": f"Hello from {app}"}

    config = project.variant("old-page-health", old_page_only)
    before = pids(project)
    res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure",
                      "downgrade", config=config)
    assert res.rc == 1, res.out
    failed = [line for line in res.out.splitlines() if "] upgrade FAILED: " in line]
    assert len(failed) == 2, res.out
    assert all("health check fails after the upgrade" in line and
               "hot-downgraded 0.0.2 -> 0.0.1, same pid" in line for line in failed), res.out
    assert pids(project) == before
    assert all(t.startswith(f"Hello from {app} 0.0.1") for t in pages(project).values())
    assert boots_next(project) == {"0.0.1"}
    # --on-failure abort: what is left is read back from the host, not assumed
    res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure", "abort",
                      config=config)
    assert res.rc == 1, res.out
    left = [line for line in res.out.splitlines() if "] upgrade FAILED: " in line]
    assert len(left) == 2 and all(
        re.search(r"left as it is \(--on-failure abort\): the node runs 0\.0\.2 \(pid \d+\); "
                  r"0\.0\.1 boots next; 0\.0\.2 was installed, not verified", line)
        for line in left), res.out
    project.inv("downgrade", "--to", "0.0.1").ok()
    assert pids(project) == before and boots_next(project) == {"0.0.1"}


def test_node_killed_during_verification_is_reported_down_from_evidence(project: Project) -> None:
    """The health check's URL ends both nodes (kill -9 of the pids `inv ping` showed) when
    asked, i.e. mid-verification: the checks after it fail because the node is gone, and the
    report says so from evidence — the node died, DOWN, what boots next, how to start it —
    never that it runs. After a start, the same death with --on-failure restart ends in a
    verified restart into 0.0.2 (new pids, its page), said as such."""
    before = pids(project)
    with killing_health(project, list(before.values())) as (config, killed):
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure", "abort",
                          config=config)
    assert res.rc == 1, res.out
    assert sorted(killed) == sorted(before.values()), res.out
    assert not any(beam_alive(pid) for pid in before.values())
    failed = [line for line in res.out.splitlines() if "] upgrade FAILED: " in line]
    assert len(failed) == 2, res.out
    for line in failed:
        assert "the node died" in line and "the node is DOWN (no BEAM of this release runs); " \
            "0.0.1 boots next; inv start --host" in line, line
        assert "runs 0.0.2" not in line and "UNVERIFIED" not in line, line
    assert boots_next(project) == {"0.0.1"}
    project.inv("start").ok()
    assert all(t.startswith(f"Hello from {project.app} 0.0.1") for t in pages(project).values())

    before = pids(project)
    with killing_health(project, list(before.values())) as (config, killed):
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure",
                          "restart", config=config).ok()
    assert sorted(killed) == sorted(before.values()), res.out
    assert res.out.count("hot upgrade failed (the node died") == 2, res.out
    assert res.out.count("restarted into 0.0.2") == 2, res.out
    after = pids(project)
    assert all(after[h] != before[h] for h in after), (before, after)
    assert all(t.startswith(f"Howdy from {project.app} 0.0.2") for t in pages(project).values())
    assert boots_next(project) == {"0.0.2"}
    project.inv("rollback", "--to", "0.0.1").ok()  # the next test upgrades from it, hot
    assert all(t.startswith(f"Hello from {project.app} 0.0.1") for t in pages(project).values())


def test_node_killed_while_staging_or_installing_is_reported_from_evidence(
        project: Project) -> None:
    """Two more phases, two more policies: (1) a before_upload hook kills the node while the
    upgrade is staged (--on-failure downgrade: nothing runs to go back to hot, so it is left DOWN,
    said with what boots next); (2) an appup instruction kills it inside release_handler's
    install (--on-failure restart: a verified restart into 0.0.2). Each report is checked
    against the pids, the pages and start_erl.data read here."""
    app = project.app
    before = pids(project)
    for h in project.box.hosts:  # the upload (and its hooks) runs only when the host lacks it
        (project.root(h) / ".deliver" / "releases" / f"{app}_0.0.2.upgrade.tar.gz").unlink()
    config = project.variant("killing-hook", lambda d: d.update(hooks={
        "before_upload": 'kill -9 $(pgrep -f -- "-root $(pwd -P) ") 2>/dev/null; true'}))
    res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure", "downgrade",
                      config=config)
    assert res.rc == 1, res.out
    assert not any(beam_alive(pid) for pid in before.values()), res.out
    failed = [line for line in res.out.splitlines() if "] upgrade FAILED: " in line]
    assert len(failed) == 2, res.out
    for line in failed:
        assert "the node died" in line and "left as it is (--on-failure downgrade): the node is " \
            "DOWN (no BEAM of this release runs); 0.0.1 boots next; inv start --host" in line, line
    assert boots_next(project) == {"0.0.1"}
    project.inv("start").ok()
    assert all(t.startswith(f"Hello from {app} 0.0.1") for t in pages(project).values())

    before = pids(project)
    appups = project.dir / "rel" / "appups" / "0.0.1-0.0.2"
    appups.mkdir(parents=True, exist_ok=True)
    (appups / f"{app}.appup").write_text(KILLING_APPUP.format(page=page_module(app)))
    try:
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--rebuild",
                          "--on-failure", "restart").ok()
    finally:
        (appups / f"{app}.appup").unlink()
    assert not any(beam_alive(pid) for pid in before.values()), res.out
    assert res.out.count("hot upgrade failed (the node died") == 2, res.out
    assert res.out.count("restarted into 0.0.2") == 2, res.out
    assert all(t.startswith(f"Howdy from {app} 0.0.2") for t in pages(project).values())
    assert boots_next(project) == {"0.0.2"}
    project.inv("rollback", "--to", "0.0.1").ok()  # the next test upgrades from it, hot
    assert all(t.startswith(f"Hello from {app} 0.0.1") for t in pages(project).values())


def test_broken_appup_leaves_the_old_version_serving(project: Project) -> None:
    app = project.app
    appups = project.dir / "rel" / "appups" / "0.0.1-0.0.2"
    appups.mkdir(parents=True, exist_ok=True)
    (appups / f"{app}.appup").write_text(BROKEN_APPUP.format(page=page_module(app)))
    try:
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--rebuild",
                          "--on-failure", "abort")
        assert res.rc == 1, res.out
        assert "(user)" in res.out and "deliberately_broken" in res.out, res.out
        assert res.out.count("hot upgrade failed") >= 2, res.out
        assert res.out.count("0.0.1 serves again") == 2, res.out
        for h in project.box.hosts:  # rollback never picks it, cleanup removes it first
            assert (project.root(h) / ".deliver" / "failed").read_text().split() == ["0.0.2"]
        assert all(t.startswith(f"Hello from {app} 0.0.1") for t in pages(project).values())
        assert boots_next(project) == {"0.0.1"}

        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure",
                          "downgrade")
        assert res.rc == 1 and "using the stored upgrade" in res.out, res.out
        assert all(t.startswith(f"Hello from {app} 0.0.1") for t in pages(project).values())

        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--on-failure",
                          "restart").ok()
        assert res.out.count("restarted into 0.0.2") == 2, res.out
        for h in project.box.hosts:  # verified running now: the mark is gone
            assert (project.root(h) / ".deliver" / "failed").read_text().split() == []
        assert all(t.startswith(f"Howdy from {app} 0.0.2") for t in pages(project).values())
        assert boots_next(project) == {"0.0.2"}
    finally:
        (appups / f"{app}.appup").unlink()


def test_added_application_falls_back_to_a_verified_restart(project: Project) -> None:
    app = project.app
    before = pids(project)
    res = project.inv("upgrade", "--from", "0.0.2", "--to", "0.0.3").ok()
    assert res.out.count("not hot-upgradable (application greeter is added") == 2, res.out
    assert res.out.count("restarted into 0.0.3") == 2, res.out
    after = pids(project)
    assert all(after[h] != before[h] for h in after)  # a restart, and it says so
    for text in pages(project).values():
        assert text.startswith(f"Howdy from {app} 0.0.3") and text.endswith("greeter 1.0.0")
    assert boots_next(project) == {"0.0.3"}


def test_dependency_version_change_is_refused_or_restarted(project: Project) -> None:
    app = project.app
    before, seen = pids(project), pages(project)
    res = project.inv("upgrade", "--from", "0.0.3", "--to", "0.0.4", "--on-unsafe", "abort")
    assert res.rc == 1, res.out
    assert res.out.count("dependency greeter changes version (1.0.0 -> 1.0.1) and ships no "
                         "appup (looked in its ebin/") >= 2, res.out
    assert res.out.count("nothing was changed (--on-unsafe abort)") >= 2, res.out
    assert pids(project) == before and boots_next(project) == {"0.0.3"}
    assert all(t.endswith("greeter 1.0.0") for t in pages(project).values()), seen
    shown = project.inv("show.appup", "--from", "0.0.3", "--to", "0.0.4").ok()
    assert "NOT hot-upgradable" in shown.out and "greeter" in shown.out, shown.out
    res = project.inv("upgrade", "--from", "0.0.3", "--to", "0.0.4").ok()
    assert "using the stored plan" in res.out, res.out
    assert res.out.count("restarted into 0.0.4") == 2, res.out
    for text in pages(project).values():
        assert text.startswith(f"Hiya from {app} 0.0.4") and text.endswith("greeter 1.0.1")


def test_a_fault_at_any_line_of_staging_leaves_the_running_release_alone(
        project: Project, tmp_path: Path) -> None:
    """The staging script of a hot upgrade (0.0.2's upgrade tarball beside 0.0.1) with each 2nd
    call failing and each 3rd killed: what 0.0.1 uses is unchanged, no staging is left, and a
    re-run stages it all."""
    store = project.dir / ".deliver" / "releases"
    runs = staging_at_each_call(project.app, store / f"{project.app}_0.0.1.release.tar.gz",
                                store / f"{project.app}_0.0.2.upgrade.tar.gz", ("0.0.1", "0.0.2"),
                                tmp_path, {"fail": 2, "kill": 3})
    assert runs > 10, runs


def test_damaged_stored_upgrade_is_refused(project: Project) -> None:
    one_app(project)
    tarball = project.dir / ".deliver" / "releases" / f"{project.app}_0.0.2.upgrade.tar.gz"
    with tarball.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\0corrupt\0")
    res = project.inv("deploy.upgrade", "--version", "0.0.2")
    assert res.rc == 2 and "does not match its .sha256" in res.out, res.out
