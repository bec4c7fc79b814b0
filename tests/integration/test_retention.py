"""Retention and rollback as a user lives them, for a rebar3 app on the 2 sandbox hosts: what each
host has (`inv releases --stage`), a verified cold rollback and forward again, a hot rollback with
the same OS pid, cleanup that never removes the running or previous good version (checked on the
hosts' disks), failed versions removed first (through release_handler when it knows them) and
skipped by rollback, both refused while the deploy lock is held, and bad input refused before any
SSH login."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pydeliver_tasks import config, fleet
from pydeliver_tasks.steps import retention

from .conftest import Project, accepted_logins, assert_refused, http_get, project_fixture

APP = "hello_erl"
project = project_fixture({APP: 4070}, deployed="0.0.1", versions=("0.0.1", "0.0.2", "0.0.3"))


@pytest.fixture(autouse=True)
def running(project: Project) -> None:
    """Every test starts from running nodes (a no-op when they already run)."""
    project.inv("start").ok()


def pids(project: Project) -> dict[str, int]:
    out = project.inv("ping").ok().out
    return {m[0]: int(m[1]) for m in re.findall(r"^\s+(\S+)\s+ok\s+.*pid (\d+)", out, re.M)}


def pages(project: Project) -> set[str]:
    """The page's headline on every host, without the visit counter."""
    return {re.search(r"<h1>(.*?) \(visits", http_get(project.url(h))[1])[1] for h in project.box.hosts}


def hosts_view(project: Project) -> dict[str, dict]:
    """`inv releases --stage sandbox --json`: each host's data."""
    path = project.dir / "releases.json"
    project.inv("releases", "--stage", "sandbox", "--json", str(path)).ok()
    return {h["host"]: h["data"] for h in json.loads(path.read_text())["hosts"]}


def on_disk(project: Project, vsn: str) -> dict[str, set[str]]:
    """Per host, which of a version's files exist."""
    found = {}
    for h in project.box.hosts:
        root = project.root(h)
        paths = {"releases": root / "releases" / vsn, "lib": root / "lib" / f"{APP}-{vsn}",
                 "bin": root / ".deliver" / "bin" / vsn,
                 "tarball": root / ".deliver" / "releases" / f"{APP}_{vsn}.release.tar.gz"}
        found[h.name] = {k for k, p in paths.items() if p.exists()}
    return found


def shared_libs_everywhere(project: Project) -> bool:
    return all(list((project.root(h) / "lib").glob("kernel-*")) and
               list((project.root(h) / "lib").glob("stdlib-*")) for h in project.box.hosts)


def mark_failed(project: Project, vsn: str) -> None:
    """What a deploy or upgrade that failed verification calls: steps.retention.mark."""
    settings = config.load({"deliver": {**project.settings(), "app": APP,
                                        "project_dir": str(project.dir)}})
    for host in settings.stage("sandbox").hosts:
        retention.mark(fleet.HostContext(host, settings, dry_run=False), vsn, failed=True)
    fleet.close_connections()


def test_bad_input_is_refused_before_any_login(project: Project) -> None:
    names = [h.name for h in project.box.hosts]
    before = {n: accepted_logins(project.box, n) for n in names}
    assert_refused(project, [
        (["cleanup", "--keep", "0"], "--keep must be at least 1"),
        (["cleanup", "--keep", "many"], "--keep must be a whole number"),
        (["releases.cleanup", "--keep", "0"], "--keep must be at least 1"),
        (["rollback", "--to", "../x"], "invalid version"),
        (["rollback", "--hot", "--to", "1;reboot"], "invalid version"),
        (["rollback", "--stage", "prod"], "no stage 'prod'"),
        (["releases", "--stage", "prod"], "no stage 'prod'"),
    ])
    dry = project.inv("rollback", "--dry-run").ok()
    assert dry.out.count("would make the previous good version boot next") == 2, dry.out
    dry = project.inv("cleanup", "--keep", "1", "--dry-run").ok()
    assert dry.out.count("would list the versions here, keep the 1 newest") == 2, dry.out
    assert {n: accepted_logins(project.box, n) for n in names} == before


def test_releases_shows_what_each_host_has(project: Project) -> None:
    project.inv("build.release", "--tag", "0.0.2").ok()
    project.inv("deploy.release", "--version", "0.0.2").ok()
    project.inv("restart").ok()
    view = hosts_view(project)
    assert len(view) == 2
    for data in view.values():
        assert list(data["versions"]) == ["0.0.2", "0.0.1"]
        assert data["running"] == "0.0.2" and data["boots_next"] == "0.0.2"
        assert data["previous_good"] == "0.0.1" and data["failed"] == []
        assert data["versions"]["0.0.2"]["release_handler"] == "permanent"
        assert data["versions"]["0.0.1"]["files"] == ["releases/0.0.1", "tarball", "bin"]
    text = project.inv("releases", "--stage", "sandbox").ok().out
    assert text.count("on disk: 0.0.2, 0.0.1; running 0.0.2 (pid") == 2, text
    store = project.inv("releases").ok().out  # without --stage: the local store, as before
    assert f"{APP} 0.0.1" in store and f"{APP} 0.0.2" in store and "boots next" not in store


def test_cold_rollback_and_forward_again_verified(project: Project) -> None:
    before = pids(project)
    res = project.inv("rollback").ok()
    assert res.out.count("rolled back 0.0.2 -> 0.0.1") == 2, res.out
    assert "health ok" in res.out
    after = pids(project)
    assert all(after[h] != before[h] for h in before), "a restart: new OS pids"
    assert pages(project) == {f"Hello from {APP} 0.0.1"}
    assert {d["boots_next"] for d in hosts_view(project).values()} == {"0.0.1"}
    res = project.inv("rollback", "--to", "0.0.2").ok()
    assert res.out.count("rolled back 0.0.1 -> 0.0.2") == 2, res.out
    assert pages(project) == {f"Howdy from {APP} 0.0.2"}
    again = project.inv("rollback", "--to", "0.0.2").ok()
    assert again.out.count("no change: already running 0.0.2 (pid") == 2, again.out


def test_hot_rollback_keeps_the_os_pid(project: Project) -> None:
    project.inv("rollback").ok()  # 0.0.1 runs (booted cold: release_handler knows it permanent)
    before = pids(project)
    project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2").ok()
    assert pages(project) == {f"Howdy from {APP} 0.0.2"} and pids(project) == before
    res = project.inv("rollback", "--hot").ok()
    assert res.out.count("hot-downgraded 0.0.2 -> 0.0.1, same pid") == 2, res.out
    assert pids(project) == before
    assert pages(project) == {f"Hello from {APP} 0.0.1"}
    for data in hosts_view(project).values():
        assert data["running"] == data["boots_next"] == "0.0.1"
        assert data["versions"]["0.0.2"]["release_handler"] == "old"


def test_failed_version_goes_first_through_release_handler(project: Project) -> None:
    before = pids(project)
    res = project.inv("cleanup").ok()  # keep 5: nothing to remove
    assert res.out.count("removed nothing") == 2, res.out
    mark_failed(project, "0.0.2")
    view = hosts_view(project)
    assert all(d["failed"] == ["0.0.2"] for d in view.values()), view
    res = project.inv("cleanup").ok()
    assert res.out.count("removed 0.0.2 (failed) through release_handler") == 2, res.out
    assert on_disk(project, "0.0.2") == {h.name: set() for h in project.box.hosts}
    assert on_disk(project, "0.0.1") == {h.name: {"releases", "lib", "bin", "tarball"}
                                         for h in project.box.hosts}
    assert not any((project.root(h) / ".deliver" / "releases" / f"{APP}_0.0.2.upgrade.tar.gz")
                   .exists() for h in project.box.hosts)
    assert shared_libs_everywhere(project)
    assert pids(project) == before and pages(project) == {f"Hello from {APP} 0.0.1"}
    for data in hosts_view(project).values():
        assert list(data["versions"]) == ["0.0.1"] and data["failed"] == []
        assert data["versions"]["0.0.1"]["release_handler"] == "permanent"
    res = project.inv("rollback")
    assert res.rc == 1 and res.out.count("nothing to roll back to") >= 2, res.out


def test_cleanup_keeps_running_and_previous_good_and_rollback_still_works(project: Project) -> None:
    project.inv("deploy.release", "--version", "0.0.2").ok()
    project.inv("update", "--tag", "0.0.3").ok()
    assert pages(project) == {f"Howdy from {APP} 0.0.3"}
    res = project.inv("cleanup", "--keep", "1").ok()
    assert res.out.count("removed 0.0.1: releases/0.0.1") == 2, res.out
    assert res.out.count("kept 0.0.3 (running, boots next, release_handler: permanent), "
                         "0.0.2 (previous good)") == 2, res.out
    assert on_disk(project, "0.0.1") == {h.name: set() for h in project.box.hosts}
    for vsn in ("0.0.2", "0.0.3"):
        assert on_disk(project, vsn) == {h.name: {"releases", "lib", "bin", "tarball"}
                                         for h in project.box.hosts}, vsn
    assert shared_libs_everywhere(project)
    assert all(list((project.root(h) / "lib").glob("greeter-*")) for h in project.box.hosts)
    again = project.inv("cleanup", "--keep", "1").ok()
    assert again.out.count("removed nothing") == 2, again.out
    res = project.inv("rollback").ok()
    assert res.out.count("rolled back 0.0.3 -> 0.0.2") == 2, res.out
    assert pages(project) == {f"Howdy from {APP} 0.0.2"}
    project.inv("rollback", "--to", "0.0.3").ok()
    assert pages(project) == {f"Howdy from {APP} 0.0.3"}


def test_rollback_skips_a_failed_version_and_cleanup_removes_it(project: Project) -> None:
    project.inv("deploy.release", "--version", "0.0.1").ok()
    project.inv("deploy.release", "--version", "0.0.3").ok()  # 0.0.3 boots next again
    mark_failed(project, "0.0.2")
    for data in hosts_view(project).values():
        assert data["previous_good"] == "0.0.1" and data["failed"] == ["0.0.2"]
    res = project.inv("rollback").ok()
    assert res.out.count("rolled back 0.0.3 -> 0.0.1") == 2, res.out
    assert pages(project) == {f"Hello from {APP} 0.0.1"}
    project.inv("rollback", "--to", "0.0.3").ok()
    res = project.inv("cleanup", "--keep", "1").ok()
    assert res.out.count("removed 0.0.2 (failed): releases/0.0.2") == 2, res.out
    assert on_disk(project, "0.0.2") == {h.name: set() for h in project.box.hosts}
    assert on_disk(project, "0.0.1") == {h.name: {"releases", "lib", "bin", "tarball"}
                                         for h in project.box.hosts}, "previous good stays"
    assert pages(project) == {f"Howdy from {APP} 0.0.3"}


def test_cleanup_and_rollback_are_refused_while_the_stage_is_locked(
        project: Project) -> None:
    """A deploy (or a hand-taken lock) holds the stage: nothing it may need is removed."""
    before = {v: on_disk(project, v) for v in ("0.0.1", "0.0.3")}
    project.inv("deploy.lock", "--message", "deploy in progress").ok()
    try:
        for args in (["cleanup", "--keep", "1"], ["rollback"]):
            res = project.inv(*args)
            assert res.rc == 1 and "refused: the deploy lock of stage sandbox" in res.out, res.out
    finally:
        project.inv("deploy.unlock").ok()
    assert {v: on_disk(project, v) for v in ("0.0.1", "0.0.3")} == before
    assert pages(project) == {f"Howdy from {APP} 0.0.3"}
    history = project.inv("history").ok().out
    assert "rollback" in history and "cleanup" in history, history


def test_a_deploy_cleans_up_beyond_keep_releases(project: Project) -> None:
    project.inv("deploy.unlock", "--force")
    for vsn in ("0.0.1", "0.0.2", "0.0.3"):  # default keep_releases 5: nothing removed
        res = project.inv("deploy.release", "--version", vsn).ok()
        assert "cleanup" not in res.out, res.out
    project.inv("restart").ok()  # runs 0.0.3; 0.0.2 is the previous good one
    keep_one = project.variant("keep-one", lambda d: d.update(keep_releases=1))
    res = project.inv("deploy.release", "--version", "0.0.3", config=keep_one).ok()
    assert res.out.count("cleanup (keep 1)") == 2, res.out
    for h in project.box.hosts:
        on_disk = sorted(p.name for p in (project.root(h) / "releases").iterdir() if p.is_dir())
        assert on_disk == ["0.0.2", "0.0.3"], on_disk


def test_store_cleanup(project: Project) -> None:
    res = project.inv("releases.cleanup", "--keep", "1").ok()
    assert "kept 0.0.3 (newest 1)" in res.out, res.out
    left = sorted(p.name for p in Path(project.dir / ".deliver" / "releases").glob("*.tar.gz"))
    assert left == [f"{APP}_0.0.3.release.tar.gz"], left
