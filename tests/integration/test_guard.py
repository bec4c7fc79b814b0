"""The deploy lock and the audit log on real sandbox hosts: a manual lock refuses a deploy at once
and changes nothing, a crashed run's lock is stale and goes only with --force, --lock-wait waits,
one locked host refuses the whole stage, every guarded run leaves one audit line per host, and
read-only tasks neither lock nor log."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pydeliver_tasks import config, fleet
from pydeliver_tasks.commands import lock as cmds
from pydeliver_tasks.fleet import HostResult, StepFailed
from pydeliver_tasks.fleet import lock as guard

from .conftest import INV, Project, assert_refused, project_fixture

project = project_fixture({"hello_erl": 4060}, deployed="0.0.1")

USER, MACHINE = getpass.getuser(), socket.gethostname()


@pytest.fixture
def proj(project: Project):
    clear_locks(project)
    yield project
    clear_locks(project)
    fleet.close_connections()


def clear_locks(project: Project) -> None:
    for h in project.box.hosts:
        shutil.rmtree(lock_dir(project, h), ignore_errors=True)


def lock_dir(project: Project, h) -> Path:
    return project.root(h) / cmds.LOCK


def audit(project: Project, h) -> list[str]:
    log = project.root(h) / cmds.AUDIT
    return log.read_text().splitlines() if log.exists() else []


def stamps(project: Project) -> dict:
    """What a deploy changes on each host: the tarball and start_erl.data (mtime, content)."""
    out = {}
    for h in project.box.hosts:
        root = project.root(h)
        for f in (root / ".deliver/releases/hello_erl_0.0.1.release.tar.gz",
                  root / "releases/start_erl.data"):
            out[str(f)] = (f.stat().st_mtime_ns, f.read_bytes())
    return out


def settings(project: Project) -> config.Settings:
    d = project.settings()
    d["project_dir"] = str(project.dir)  # the runtime config has none: it is the cwd for inv
    d["app"] = d.get("app") or project.app  # and the app comes from the project's invoke.yaml
    return config.load({"deliver": d})


def test_a_manual_lock_refuses_a_deploy_at_once_naming_the_holder_and_changes_nothing(proj) -> None:
    message = "db migration until 15:00 — it's $(touch pwned) `touch pwned2` \"frozen\""
    res = proj.inv("deploy.lock", "--message", message).ok()
    assert res.out.count(f'locked: "{message}" (inv deploy.unlock releases it)') == 2, res.out
    for h in proj.box.hosts:
        d = lock_dir(proj, h)
        assert d.is_dir() and d.stat().st_uid == proj.root(h).stat().st_uid, "the host user's"
    before = stamps(proj)

    t0 = time.monotonic()
    refused = proj.inv("deploy.release", "--version", "0.0.1")
    took = time.monotonic() - t0
    assert refused.rc == 1, refused.out
    assert took < 15, f"refused at once, not after waiting ({took:.1f}s)"
    assert "held on 2 of 2 host(s) — nothing was changed" in refused.out, refused.out
    for h in proj.box.hosts:
        assert (f"[{h.spec}] locked by {USER}@{MACHINE} (pid " in refused.out
                and "with inv deploy.lock since " in refused.out), refused.out
    assert f'"{message}"' in refused.out and "inv deploy.unlock" in refused.out
    assert "STALE" not in refused.out, "a manual lock is never stale"
    assert stamps(proj) == before, "nothing was uploaded or extracted"
    assert not [p for h in proj.box.hosts for p in Path(h.home).rglob("pwned*")]

    status = proj.inv("deploy.lock-status").ok()
    for h in proj.box.hosts:
        row = rf"{re.escape(h.spec)}\s+ok\s+[\d.]+s\s+locked by {re.escape(f'{USER}@{MACHINE}')} "
        assert re.search(row + r"\(pid \d+\) with inv deploy.lock since ", status.out), status.out
    assert status.out.count(f'"{message}"') == 2, status.out

    res = proj.inv("deploy.unlock").ok()
    assert res.out.count("unlocked (was locked by") == 2, res.out
    assert not any(lock_dir(proj, h).exists() for h in proj.box.hosts)
    assert proj.inv("deploy.lock-status").ok().out.count("  unlocked") == 2
    for h in proj.box.hosts:
        actions = [line.split("\t")[2] for line in audit(proj, h)]
        assert actions[-2:] == ["lock", "unlock"], actions

    again = proj.inv("deploy.release", "--version", "0.0.1").ok()  # unlocked: the deploy runs
    assert again.out.count("0.0.1 upload skipped (same sha256 on host), already installed and "
                           "unchanged since") == 2, again.out
    for h in proj.box.hosts:
        last = audit(proj, h)[-1].split("\t")
        assert last[1:6] == [f"{USER}@{MACHINE}", "deploy.release", "-", "0.0.1", "ok"], last


def test_a_crashed_runs_lock_is_stale_and_goes_only_with_force(proj) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    h1 = proj.box.hosts[0]
    info = {"user": USER, "machine": MACHINE, "pid": dead.pid, "started": "2024-05-01T10:00:00Z",
            "action": "deploy.release", "version": "0.0.2", "message": "", "stage": "sandbox",
            "token": "crashed"}
    root = proj.root(h1)
    subprocess.run(["bash", "-c", cmds.acquire(str(root), info, "crashed")], check=True,
                   capture_output=True)
    owner = root.stat()
    for p in (lock_dir(proj, h1), *lock_dir(proj, h1).iterdir()):
        os.chown(p, owner.st_uid, owner.st_gid)
    before = stamps(proj)

    refused = proj.inv("deploy.release", "--version", "0.0.1")
    assert refused.rc == 1 and "held on 1 of 2 host(s)" in refused.out, refused.out
    assert (f"[{h1.spec}] STALE lock (its run (pid {dead.pid} on this machine) no longer runs; "
            "inv deploy.unlock --force removes it)") in refused.out, refused.out
    assert "inv deploy.unlock --force removes a stale lock" in refused.out
    assert stamps(proj) == before and not lock_dir(proj, proj.box.hosts[1]).exists(), \
        "all or nothing: the free host's lock was given back"

    status = proj.inv("deploy.lock-status").ok()
    assert "STALE lock" in status.out and "for deploy.release 0.0.2" in status.out, status.out

    kept = proj.inv("deploy.unlock")
    assert kept.rc == 1 and "not taken with inv deploy.lock, kept: STALE lock" in kept.out, kept.out
    assert lock_dir(proj, h1).is_dir()
    forced = proj.inv("deploy.unlock", "--force").ok()
    assert "unlocked (was STALE lock" in forced.out and "was not locked" in forced.out, forced.out
    assert not lock_dir(proj, h1).exists()
    assert audit(proj, h1)[-1].split("\t")[2] == "unlock --force"
    proj.inv("deploy.release", "--version", "0.0.1").ok()


def test_lock_wait_waits_for_a_lock_released_meanwhile(proj, capsys) -> None:
    proj.inv("deploy.lock", "--message", "brief hold").ok()
    unlocked: list = []

    def release_later() -> None:
        time.sleep(3)
        unlocked.append(proj.inv("deploy.unlock"))

    s = settings(proj)
    thread = threading.Thread(target=release_later)
    thread.start()
    try:
        t0 = time.monotonic()
        with guard.guarded(s, s.stage(), "test.wait", to_version="0.0.1", lock_wait=20):
            waited = time.monotonic() - t0
            for h in proj.box.hosts:  # held by this process now
                held = json.loads((lock_dir(proj, h) / "info").read_text())
                assert held["pid"] == os.getpid() and held["action"] == "test.wait", held
    finally:
        thread.join()
    assert unlocked and unlocked[0].rc == 0, unlocked
    assert 2.5 < waited < 20, waited
    out = capsys.readouterr().out
    assert "waiting up to 20s for the deploy lock" in out and '"brief hold"' in out
    for h in proj.box.hosts:
        assert not lock_dir(proj, h).exists()
        assert audit(proj, h)[-1].split("\t")[2:6] == ["test.wait", "-", "0.0.1", "ok"]


def test_one_locked_host_refuses_the_stage_and_leaves_no_lock_behind(proj) -> None:
    h1, h2 = proj.box.hosts
    proj.inv("deploy.lock", "--host", h2.spec, "--message", "h2 only").ok()
    s = settings(proj)
    before = audit(proj, h1)
    t0 = time.monotonic()
    with pytest.raises(guard.LockRefused) as err:
        with guard.guarded(s, s.stage(), "test.refused"):
            pytest.fail("the body must not run")
    assert time.monotonic() - t0 < 10 and err.value.code == 1
    assert "held on 1 of 2 host(s)" in str(err.value) and f"[{h2.spec}] locked by" in str(err.value)
    assert not lock_dir(proj, h1).exists(), "the lock taken on h1 was given back"
    assert lock_dir(proj, h2).is_dir() and audit(proj, h1) == before, "a refused run did nothing"
    proj.inv("deploy.unlock").ok()


def test_every_guarded_run_leaves_one_audit_line_per_host_and_history_shows_them(proj) -> None:
    h1, h2 = proj.box.hosts
    s = settings(proj)
    with guard.guarded(s, s.stage(), "test.audit", from_version="0.0.1", to_version="0.0.2") as g:
        time.sleep(0.3)
        with guard.guarded(s, s.stage(), "test.nested"):  # a step inside a step: same lock
            pass
        g.record([HostResult(h1.spec, True, "fine", 0.1), HostResult(h2.spec, False, "boom", 0.1)])
    with pytest.raises(RuntimeError):
        with guard.guarded(s, s.stage(), "test.error"):
            raise RuntimeError("bug")
    with pytest.raises(StepFailed):
        with guard.guarded(s, s.stage(), "test.failed", to_version="0.0.2"):
            raise StepFailed("x", [HostResult(h1.spec, False, "no", 1), HostResult(h2.spec, True, "", 1)])

    for h, audited in ((h1, "ok"), (h2, "failed")):
        assert not lock_dir(proj, h).exists()
        records = [line.split("\t") for line in audit(proj, h)[-8:]]
        started = {f[7]: f for f in records if f[5] == "started"}
        lines = [f for f in records if f[5] != "started"]
        assert [f[2] for f in lines] == ["test.nested", "test.audit", "test.error", "test.failed"]
        # each run wrote `started` (same run id) before its end, so a killed run still shows
        assert all(f[7] in started and records.index(started[f[7]]) < records.index(f)
                   for f in lines), records
        nested, run, error, failed = lines
        assert run[1] == f"{USER}@{MACHINE}" and run[3:6] == ["0.0.1", "0.0.2", audited]
        assert float(run[6].rstrip("s")) >= 0.3 and run[0].endswith("Z") and len(run) == 8
        assert nested[5] == "ok" and error[5] == "error"
        assert failed[5] == ("failed" if h is h1 else "ok")

    res = proj.inv("history", "--lines", "4").ok()
    for h, audited in ((h1, "ok"), (h2, "failed")):
        mine = [line for line in res.out.splitlines() if line.startswith(f"[{h.spec}] ")]
        assert len(mine) == 4, res.out
        assert f"  {USER}@{MACHINE}  test.audit  0.0.1 -> 0.0.2  {audited}  " in mine[1], mine
        assert "test.error  - -> -  error" in mine[2] and "test.failed  - -> 0.0.2" in mine[3]
    assert res.out.count("4 record(s) of ") == 2 and "/.deliver/audit.log" in res.out, res.out
    one = proj.inv("history", "--lines", "1", "--host", h1.spec).ok()
    assert [ln for ln in one.out.splitlines() if ln.startswith("[")] == [
        next(ln for ln in one.out.splitlines() if "test.failed" in ln)], one.out


def test_read_only_tasks_take_no_lock_and_write_no_audit_line(proj) -> None:
    before = {h.name: audit(proj, h) for h in proj.box.hosts}
    proj.inv("deploy.lock", "--message", "read-only check").ok()
    for args in (["ping"], ["version"], ["doctor"], ["logs"], ["deploy.lock-status"], ["history"]):
        res = proj.inv(*args)
        assert "refused" not in res.out and "lock of stage" not in res.out, (args, res.out)
    proj.inv("deploy.unlock").ok()
    for h in proj.box.hosts:
        assert not lock_dir(proj, h).exists()
        added = [line.split("\t")[2] for line in audit(proj, h)[len(before[h.name]):]]
        assert added == ["lock", "unlock"], added


def test_bad_lock_input_is_refused_before_any_host(proj) -> None:
    assert_refused(proj, [
        (["deploy.lock"], "missing --message"),
        (["deploy.lock", "--message", "x" * 501], "too long"),
        (["history", "--lines", "0"], "invalid --lines"),
        (["deploy.lock-status", "--stage", "nope"], "no stage 'nope'"),
    ])
    assert not any(lock_dir(proj, h).exists() for h in proj.box.hosts)


def test_a_run_killed_mid_rolling_is_interrupted_in_history_and_its_lock_stale(proj) -> None:
    """`inv deploy.release --strategy rolling` is killed (SIGKILL: no handler runs) while the first
    host's before_extract hook runs: history shows the run INTERRUPTED on both hosts (its
    `started` lines have no end), the lock names the dead run as STALE and goes with --force;
    nothing was activated on either host, and the same command then completes."""
    h1, h2 = proj.box.hosts
    hook_ran = proj.root(h1).parent / "pdt-hook-ran"
    hook_ran.unlink(missing_ok=True)
    config = proj.variant("slow-hook", lambda d: d.update(
        hooks={"before_extract": "touch ../pdt-hook-ran; sleep 5"}))
    before = stamps(proj)
    env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(config)}
    run = subprocess.Popen([INV, "deploy.release", "--version", "0.0.1", "--strategy", "rolling"],
                           cwd=proj.dir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not hook_ran.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    run.kill()
    out = run.communicate(timeout=60)[0]
    assert hook_ran.exists() and run.returncode == -9, out
    hook_ran.unlink()
    time.sleep(5)  # the hook's sleep on h1 ends on its own
    assert stamps(proj) == before, "killed before the extract: nothing changed"

    history = proj.inv("history", "--lines", "1").ok()
    for h in (h1, h2):
        mine = [ln for ln in history.out.splitlines() if ln.startswith(f"[{h.spec}] ")]
        assert len(mine) == 1 and "deploy.release" in mine[0], history.out
        assert "INTERRUPTED (started, no end recorded)" in mine[0], history.out
    status = proj.inv("deploy.lock-status").ok()
    assert status.out.count(f"STALE lock (its run (pid {run.pid} on this machine) no longer "
                            "runs") == 2, status.out
    refused = proj.inv("deploy.release", "--version", "0.0.1")
    assert refused.rc == 1 and "STALE lock" in refused.out, refused.out
    proj.inv("deploy.unlock", "--force").ok()
    proj.inv("deploy.release", "--version", "0.0.1", "--strategy", "rolling").ok()
    assert not any(lock_dir(proj, h).exists() for h in proj.box.hosts)
