"""Migrations as edeliver users run them — `inv migrations`, `inv migrate [--down --to V]`,
`update --migrate`, `upgrade --migrate` — for a mix app and a rebar3 app on 2 sandbox hosts.

The example apps' migrations are real and file-backed: HelloEx.Release / hello_erl_release keep
a DETS file under the release root (data/hello.dets) with the migrations applied and what they
did; the list of migrations is the release's own (priv/migrations: 0.0.1 has 001, 0.0.2 adds
002). What ran, and where, is read back from each host's DETS file on its disk: the migrations
run on ONE host, with the code of the version they belong to."""

from __future__ import annotations

import re
import subprocess

from .conftest import Project, assert_refused, one_app, project_fixture
from .upgrading import boots_next, logins, pages, pids

APPS = {"hello_ex": 4093, "hello_erl": 4094}

project = project_fixture(APPS, deployed="0.0.1")

FIRST, SECOND = "001_greetings", "002_greetings_lang"


def dets(project: Project, host) -> str:
    """The DETS file of that host's release, every object as ~w prints it ("" when absent)."""
    path = project.root(host) / "data" / "hello.dets"
    if not path.exists():
        return ""
    code = (f'{{ok, T}} = dets:open_file(t, [{{file, "{path}"}}, {{access, read}}]), '
            "io:format(\"~w~n\", [lists:sort(dets:match_object(T, '_'))]), halt().")
    res = subprocess.run(["erl", "-noshell", "-eval", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return res.stdout.strip()


def applied(project: Project, host) -> set[int]:
    return {int(n) for n in re.findall(r"\{\{migration,(\d+)\}", dets(project, host))}


def columns(project: Project, host) -> str:
    m = re.search(r"\{\{table,greetings\},\[([a-z,]*)\]\}", dets(project, host))
    return m[1] if m else ""


def printed(out: str) -> dict[str, list[str]]:
    """The migration names each host printed as a value (a list line: `[host] ["001_..."]`)."""
    found: dict[str, list[str]] = {}
    for host, value in re.findall(r"^\[(\S+)\] (\[.*\])$", out, re.M):
        found.setdefault(host, []).extend(re.findall(r'"(\d{3}_\w+)"', value))
    return found


def test_bad_input_is_refused_before_any_connection(project: Project) -> None:
    one_app(project)
    before = logins(project)
    assert_refused(project, [
        (["migrate", "--down"], "missing --to"),
        (["migrate", "--down", "--to", "$(id)"], "invalid --to '$(id)'"),
        (["migrate", "--down", "--to", "1;reboot"], "invalid --to '1;reboot'"),
        (["migrate", "--to", "0"], "--to '0' goes with --down"),
    ])
    for name, migrations, message in [
        ("unknown-key", {"run": "", "rollback": "x"}, "deliver.migrations.rollback: unknown key"),
        ("no-to", {"down": "Mod.rollback()"}, "deliver.migrations.down: 'Mod.rollback()' has no {to}"),
        ("not-text", {"pending": ["x"]}, "deliver.migrations.pending: expected an expression"),
    ]:
        config = project.variant(name, lambda d, m=migrations: d.update(migrations=m))
        res = project.inv("migrations", config=config)
        assert res.rc == 2 and message in res.out, res.out
    assert logins(project) == before, "bad input opens no SSH connection"


def test_pending_then_migrate_then_down_on_one_host(project: Project) -> None:
    project.inv("start").ok()
    first, second = project.box.hosts
    pending = project.inv("migrations").ok()
    assert printed(pending.out) == {first.spec: [FIRST]}, pending.out
    assert "pending: " in pending.out

    done = project.inv("migrate").ok()
    assert printed(done.out) == {first.spec: [FIRST]}, done.out
    assert applied(project, first) == {1} and columns(project, first) == "id,text"
    assert applied(project, second) == set() and dets(project, second) == ""  # never touched
    audit = {h.name: (project.root(h) / ".deliver" / "audit.log").read_text().splitlines()[-1]
             for h in project.box.hosts}  # the run held the deploy lock of the stage
    assert audit[first.name].split("\t")[2::3] == ["migrate", "ok"], audit
    assert audit[second.name].split("\t")[2::3] == ["migrate", "not started"], audit
    assert printed(project.inv("migrations").ok().out) == {first.spec: []}

    down = project.inv("migrate", "--down", "--to", "0").ok()
    assert printed(down.out) == {first.spec: [FIRST]}, down.out
    assert applied(project, first) == set() and columns(project, first) == ""
    assert printed(project.inv("migrations").ok().out) == {first.spec: [FIRST]}
    there = project.inv("migrations", "--host", second.spec).ok()
    assert printed(there.out) == {second.spec: [FIRST]}, there.out


def test_no_answering_node_is_refused_naming_every_host(project: Project) -> None:
    one_app(project)
    project.inv("stop").ok()
    try:
        res = project.inv("migrate")
        assert res.rc == 1, res.out
        for h in project.box.hosts:
            assert f"no node to run the migrations on — next: inv start --host {h.spec}" in res.out
            assert f"to finish {h.spec}: inv start --host {h.spec} && inv migrate" in res.out
        assert "migrate failed on 2 of 2 host(s)" in res.out, res.out
    finally:
        project.inv("start").ok()


def test_upgrade_migrate_goes_hot_and_migrates_once(project: Project) -> None:
    before = pids(project)
    res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--migrate", timeout=900).ok()
    assert res.out.count("hot-upgraded 0.0.1 -> 0.0.2, same pid") == 2, res.out
    assert pids(project) == before
    assert all(t.startswith(f"Howdy from {project.app} 0.0.2") for t in pages(project).values())
    ran = {h.spec: applied(project, h) for h in project.box.hosts}
    assert sorted(ran.values(), key=len) == [set(), {1, 2}], ran  # on one host, 0.0.2's code
    host = next(h for h, done in ran.items() if done)
    assert printed(res.out) == {host: [FIRST, SECOND]}, res.out
    assert res.out.count(f"migrations ran on {host}") == 1, res.out  # the other did not again
    assert "0.0.2 permanent" in res.out
    assert printed(project.inv("migrations", "--host", host).ok().out) == {host: []}


def test_update_migrate_runs_before_the_restart_and_a_failure_restarts_nothing(
        project: Project) -> None:
    first, second = project.box.hosts
    where = next(h for h in project.box.hosts if applied(project, h))  # the upgrade's host
    down = project.inv("migrate", "--down", "--to", "0", "--host", where.spec).ok()  # on 0.0.2
    assert printed(down.out) == {where.spec: [SECOND, FIRST]}, down.out  # newest first
    project.inv("rollback", "--to", "0.0.1").ok()
    assert {applied(project, h) == set() for h in project.box.hosts} == {True}

    broken = "HelloEx.Release.nope()" if project.app == "hello_ex" else "hello_erl_release:nope()"
    config = project.variant("raising-migration", lambda d: d.update(migrations={"run": broken}))
    before = pids(project)
    res = project.inv("update", "--tag", "0.0.2", "--migrate", config=config, timeout=900)
    assert res.rc == 1, res.out
    assert "0.0.2 stays deployed but not running: no node was restarted" in res.out, res.out
    assert "nope" in res.out and "inv migrate" in res.out, res.out
    assert "restart — stage" not in res.out
    assert pids(project) == before and boots_next(project) == {"0.0.2"}
    assert all(t.startswith(f"Hello from {project.app} 0.0.1") for t in pages(project).values())

    res = project.inv("update", "--tag", "0.0.2", "--migrate", timeout=900).ok()
    assert printed(res.out) == {first.spec: [FIRST, SECOND]}, res.out  # 0.0.2's list
    assert res.out.index("migrate — stage") < res.out.index("restart — stage"), res.out
    assert res.out.index("deploy.release — stage") < res.out.index("migrate — stage"), res.out
    after = pids(project)
    assert all(after[h] != before[h] for h in before), "restarted after the migrations"
    assert all(t.startswith(f"Howdy from {project.app} 0.0.2") for t in pages(project).values())
    assert applied(project, first) == {1, 2} and columns(project, first) == "id,text,lang"
    assert applied(project, second) == set()
    assert printed(project.inv("migrations").ok().out) == {first.spec: []}



def test_rolling_update_migrates_once_in_the_first_batch(project: Project) -> None:
    one_app(project)
    first, second = project.box.hosts
    project.inv("migrate", "--down", "--to", "0", "--host", first.spec).ok()
    project.inv("rollback", "--to", "0.0.1").ok()
    res = project.inv("update", "--tag", "0.0.2", "--migrate", "--strategy", "rolling",
                      timeout=900).ok()
    assert printed(res.out) == {first.spec: [FIRST, SECOND]}, res.out
    rows = {h.spec: re.search(rf"^  {re.escape(h.spec)} +ok +\S+s +(0\.0\.2 deployed.*)$",
                              res.out, re.M)[1] for h in project.box.hosts}  # the summary rows
    assert "0.0.2 deployed; migrated: [" in rows[first.spec], rows  # before its node stopped
    assert f"0.0.2 deployed; migrations ran on {first.spec}; " in rows[second.spec], rows
    assert applied(project, first) == {1, 2} and applied(project, second) == set()
    assert all(t.startswith(f"Howdy from {project.app} 0.0.2") for t in pages(project).values())
