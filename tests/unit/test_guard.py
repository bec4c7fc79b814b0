"""The deploy lock and audit log builders, run for real by bash in a temp dir (the host's home),
and the pure parts of guard: staleness, the holder's description, Guard results, dry run."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

from pydeliver_tasks import config
from pydeliver_tasks.commands import lock as cmds
from pydeliver_tasks.fleet import HostResult
from pydeliver_tasks.fleet import lock as guard
from pydeliver_tasks.model import Host
from pydeliver_tasks.validation import InvalidInput

ROOT = "apps/hello"  # relative, like a deploy path: from the SSH user's home (the cwd here)
HOSTILE = ("it's \"quoted\" $(touch pwned1) `touch pwned2`; touch pwned3 && echo $HOME\n"
           "second line\twith tab %s %n \\ \0 | rm -rf . #")


def sh(home: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=home, capture_output=True, text=True,
                          timeout=30)


def info(message: str = "db migration", token: str = "t1", **extra) -> dict:
    base = {"user": "alice", "machine": "laptop", "pid": 4242, "started": "2024-05-01T10:00:00Z",
            "action": "deploy.release", "version": "0.0.2", "message": message, "stage": "prod",
            "token": token}
    return {**base, **extra}


def test_a_second_acquire_is_refused_with_the_holders_details(tmp_path: Path) -> None:
    first = sh(tmp_path, cmds.acquire(ROOT, info(token="t1"), "t1"))
    assert first.returncode == 0 and cmds.TAKEN in first.stdout, first.stderr
    lock = tmp_path / ROOT / cmds.LOCK
    assert (lock / "token").read_text() == "t1\n"
    assert json.loads((lock / "info").read_text())["user"] == "alice"

    second = sh(tmp_path, cmds.acquire(ROOT, info(user="bob", token="t2"), "t2"))
    assert second.returncode == cmds.HELD_RC, second
    holder = cmds.parse_holder(second.stdout)
    assert holder is not None and holder.info["user"] == "alice"
    assert holder.info["message"] == "db migration" and holder.age is not None and holder.age < 60
    assert (lock / "token").read_text() == "t1\n", "the holder's lock is untouched"
    assert not list(lock.parent.glob("lock.*")) and sorted(p.name for p in lock.iterdir()) == [
        "info", "token"]


def test_only_one_of_many_simultaneous_acquires_wins(tmp_path: Path) -> None:
    procs = [subprocess.Popen(["bash", "-c", cmds.acquire(ROOT, info(token=f"t{i}"), f"t{i}")],
                              cwd=tmp_path, stdout=subprocess.PIPE, text=True) for i in range(12)]
    codes = [p.wait(timeout=30) for p in procs]
    for p in procs:
        p.stdout.close()
    assert codes.count(0) == 1 and codes.count(cmds.HELD_RC) == 11, codes
    winner = f"t{codes.index(0)}\n"
    assert (tmp_path / ROOT / cmds.LOCK / "token").read_text() == winner


def test_release_needs_the_token_unless_forced(tmp_path: Path) -> None:
    sh(tmp_path, cmds.acquire(ROOT, info(token="t1"), "t1"))
    lock = tmp_path / ROOT / cmds.LOCK
    wrong = sh(tmp_path, cmds.release(ROOT, "not-mine"))
    assert wrong.returncode == cmds.NOT_OWNER_RC and lock.is_dir()
    assert cmds.parse_holder(wrong.stdout).info["token"] == "t1"
    empty = sh(tmp_path, cmds.release(ROOT, ""))
    assert empty.returncode == cmds.NOT_OWNER_RC and lock.is_dir(), "no token is no match"
    (lock / "token").unlink()  # a lock whose run died before writing its token
    assert sh(tmp_path, cmds.release(ROOT, "")).returncode == cmds.NOT_OWNER_RC and lock.is_dir()
    (lock / "token").write_text("t1\n")

    right = sh(tmp_path, cmds.release(ROOT, "t1"))
    assert right.returncode == 0 and cmds.RELEASED in right.stdout and not lock.exists()
    again = sh(tmp_path, cmds.release(ROOT, "t1"))
    assert again.returncode == 0 and again.stdout.strip() == cmds.UNLOCKED

    sh(tmp_path, cmds.acquire(ROOT, info(token="t3"), "t3"))
    forced = sh(tmp_path, cmds.release(ROOT, force=True))
    assert forced.returncode == 0 and cmds.RELEASED in forced.stdout and not lock.exists()
    assert cmds.parse_holder(forced.stdout).info["token"] == "t3", "says whose lock it removed"
    assert sorted(p.name for p in lock.parent.iterdir()) == [], "nothing left behind"


def test_release_appends_the_end_line_first_and_releases_even_when_it_cannot(
        tmp_path: Path) -> None:
    """A run's end line and its unlock are one request: the line is in the log before the lock
    goes; a log that cannot be written is said on stderr and the lock is released all the same."""
    lock, log = tmp_path / ROOT / cmds.LOCK, tmp_path / ROOT / cmds.AUDIT
    end = cmds.audit_line("2024-05-01T10:00:00Z", "alice@laptop", "deploy.release", None, "0.0.1",
                          "ok", 1.5, "t1")
    sh(tmp_path, cmds.acquire(ROOT, info(token="t1"), "t1"))
    done = sh(tmp_path, cmds.release(ROOT, "t1", audit=end))
    assert done.returncode == 0 and cmds.RELEASED in done.stdout and not lock.exists()
    assert log.read_text() == end + "\n"

    sh(tmp_path, cmds.acquire(ROOT, info(token="t2"), "t2"))
    log.unlink()
    log.mkdir()  # in the way of the append (fails for root too)
    kept = sh(tmp_path, cmds.release(ROOT, "t2", audit=end))
    assert kept.returncode == 0 and not lock.exists()
    assert "could not append to the audit log" in kept.stderr

    sh(tmp_path, cmds.acquire(ROOT, info(token="t3"), "t3"))
    log.rmdir()
    other = sh(tmp_path, cmds.release(ROOT, "not-mine", audit=end))  # another run's lock stays
    assert other.returncode == cmds.NOT_OWNER_RC and lock.is_dir()
    assert log.read_text() == end + "\n"


def test_status_says_unlocked_or_prints_the_holder(tmp_path: Path) -> None:
    none = sh(tmp_path, cmds.status(ROOT))
    assert none.returncode == 0 and none.stdout.strip() == cmds.UNLOCKED
    assert cmds.parse_holder(none.stdout) is None and not (tmp_path / "apps").exists()
    sh(tmp_path, cmds.acquire(ROOT, info(), "t1"))
    held = sh(tmp_path, cmds.status(ROOT))
    assert held.returncode == 0 and cmds.parse_holder(held.stdout).info["version"] == "0.0.2"


def test_a_lock_without_details_is_reported_and_goes_stale(tmp_path: Path) -> None:
    (tmp_path / ROOT / cmds.LOCK).mkdir(parents=True)  # a run died between mkdir and info
    res = sh(tmp_path, cmds.status(ROOT))
    holder = cmds.parse_holder(res.stdout)
    assert holder is not None and holder.info == {}
    assert "no details yet" in cmds.describe(holder)
    assert cmds.stale_reason(holder, "here", lambda pid: True) == ""
    holder.age = 3600
    assert "no details" in cmds.stale_reason(holder, "here", lambda pid: True)


def test_hostile_message_text_stays_inert(tmp_path: Path) -> None:
    message = guard.check_message(HOSTILE)
    assert "\n" not in message and "\t" not in message and "\0" not in message
    res = sh(tmp_path, cmds.acquire(ROOT, info(message=message, user="x'; touch pwned4; '"), "t1"))
    assert res.returncode == 0, res.stderr
    shown = cmds.parse_holder(sh(tmp_path, cmds.status(ROOT)).stdout)
    assert shown.info["message"] == cmds.flat(HOSTILE) == message
    assert shown.info["user"] == "x'; touch pwned4; '"
    assert "$(touch pwned1)" in cmds.describe(shown)
    line = cmds.audit_line("t", "who", "act\nion\tx $(touch pwned5)", "0.0.1", None, "ok", 1.0)
    assert sh(tmp_path, cmds.audit_append(ROOT, line)).returncode == 0
    assert sh(tmp_path, cmds.release(ROOT, "t1'; touch pwned6; '")).returncode == cmds.NOT_OWNER_RC
    assert sorted(p.name for p in tmp_path.rglob("pwned*")) == []
    assert (tmp_path / ROOT / cmds.LOCK).is_dir()


def test_audit_lines_are_appended_and_the_last_ones_tailed(tmp_path: Path) -> None:
    assert sh(tmp_path, cmds.audit_tail(ROOT, 5)).returncode == cmds.NO_AUDIT_RC
    first = cmds.audit_line("2024-05-01T10:00:00Z", "alice@laptop", "deploy.release", None,
                            "0.0.1", "ok", 12.34)
    second = cmds.audit_line("2024-05-01T11:00:00Z", "bob@ci", "upgrade", "0.0.1", "0.0.2",
                             "failed", 3.0)
    for line in (first, second):
        assert sh(tmp_path, cmds.audit_append(ROOT, line)).returncode == 0  # creates .deliver
    log = (tmp_path / ROOT / cmds.AUDIT).read_text()
    assert log == f"{first}\n{second}\n"
    assert first.split("\t") == ["2024-05-01T10:00:00Z", "alice@laptop", "deploy.release", "-",
                                 "0.0.1", "ok", "12.3s"]
    tail = sh(tmp_path, cmds.audit_tail(ROOT, 1))
    assert tail.returncode == 0 and tail.stdout == f"{second}\n"
    rec = cmds.parse_audit(tail.stdout)
    assert rec == {"time": "2024-05-01T11:00:00Z", "who": "bob@ci", "action": "upgrade",
                   "from": "0.0.1", "to": "0.0.2", "result": "failed", "duration": "3.0s",
                   "run": ""}
    assert cmds.shown_audit(rec) == "2024-05-01T11:00:00Z  bob@ci  upgrade  0.0.1 -> 0.0.2  failed  3.0s"
    odd = cmds.audit_line("t", "w", "a\tb\nc", None, None, "ok", 0)
    assert len(odd.split("\t")) == 7 and cmds.parse_audit(odd)["action"] == "a b c"


def test_stale_locks_by_pid_here_or_a_lost_heartbeat_elsewhere_never_by_age_or_manual() -> None:
    dead, alive = (lambda pid: False), (lambda pid: True)
    run = cmds.Holder(info(machine="here"), age=10)
    assert "pid 4242 on this machine" in cmds.stale_reason(run, "here", dead)
    assert cmds.stale_reason(run, "here", alive) == ""
    assert cmds.stale_reason(run, "elsewhere", dead) == "", "another machine's pid says nothing"
    long_run = cmds.Holder(info(machine="here"), age=30 * 86400)
    assert cmds.stale_reason(long_run, "here", alive) == "", "age alone never decides"
    beating = cmds.Holder(info(machine="elsewhere"), age=cmds.HEARTBEAT + 5)
    assert cmds.stale_reason(beating, "here", alive) == ""
    lost = cmds.Holder(info(machine="elsewhere"), age=cmds.HEARTBEAT_LOST + 60)
    assert "heartbeat stopped 6m ago" in cmds.stale_reason(lost, "here", alive)
    manual = cmds.Holder(info(machine="here", action="manual"), age=30 * 86400)
    assert cmds.stale_reason(manual, "here", dead) == ""


def test_heartbeat_touches_only_the_lock_its_run_holds(tmp_path: Path) -> None:
    assert sh(tmp_path, cmds.acquire(ROOT, info(), "t1")).returncode == 0
    lock = tmp_path / ROOT / cmds.LOCK
    os.utime(lock, (1_000_000, 1_000_000))
    assert sh(tmp_path, cmds.heartbeat(ROOT, "other'; touch pwned; '")).returncode == 0
    assert lock.stat().st_mtime == 1_000_000 and not list(tmp_path.rglob("pwned"))
    assert sh(tmp_path, cmds.heartbeat(ROOT, "t1")).returncode == 0
    assert lock.stat().st_mtime > 1_000_000
    holder = cmds.parse_holder(sh(tmp_path, cmds.status(ROOT)).stdout)
    assert holder is not None and holder.age is not None and holder.age < 60


def test_a_run_without_an_end_line_shows_as_interrupted_or_running() -> None:
    """Each run writes `started` first and its result at the end (same run id)."""
    def rec(result: str, run: str) -> dict[str, str]:
        line = cmds.audit_line("t", "w", "upgrade", "0.0.1", "0.0.2", result, 1.0, run)
        parsed = cmds.parse_audit(line)
        assert parsed is not None
        return parsed

    records = [rec(cmds.STARTED, "r1"), rec("ok", "r1"), rec(cmds.STARTED, "r2"),
               rec(cmds.STARTED, "r3")]
    shown = cmds.ended(records, holder_run="r3")
    assert [r["result"] for r in shown] == ["ok", "INTERRUPTED (started, no end recorded)",
                                            "running (holds the lock)"]
    old = "t\tw\tdeploy.release\t-\t0.0.1\tok\t1.0s"  # written before runs had ids
    assert cmds.ended([cmds.parse_audit(old)])[0]["result"] == "ok"


def test_the_holder_is_described_for_people() -> None:
    run = cmds.Holder(info(), age=300)
    text = cmds.describe(run)
    assert text == ('locked by alice@laptop (pid 4242) for deploy.release 0.0.2 since '
                    '2024-05-01T10:00:00Z (5m ago): "db migration"')
    manual = cmds.describe(cmds.Holder(info(action="manual", message="freeze"), age=7200))
    assert "with inv deploy.lock" in manual and "(2h ago)" in manual and '"freeze"' in manual
    stale = cmds.describe(run, "its run (pid 4242 on this machine) no longer runs")
    assert stale.startswith("STALE lock (its run") and "inv deploy.unlock --force removes it" in stale
    refusal = cmds.refusal("prod", [("h1", stale)], 2, stale=True)
    assert "held on 1 of 2 host(s) — nothing was changed" in refusal
    assert "  [h1] STALE lock" in refusal and "inv deploy.unlock --force" in refusal.splitlines()[-1]
    assert "--lock-wait" in cmds.refusal("prod", [("h1", text)], 1, stale=False)


def test_message_checks() -> None:
    assert guard.check_message(" a\nb ") == "a b"
    with pytest.raises(InvalidInput, match="missing --message"):
        guard.check_message("  \n", required=True)
    with pytest.raises(InvalidInput, match="too long"):
        guard.check_message("x" * 501)


def test_guard_results_merge_and_fall_back_to_the_outcome() -> None:
    g = guard.Guard(None, "x")  # type: ignore[arg-type]
    hosts = [Host(n, n, None, None, "apps/x") for n in ("a", "b", "c")]
    g.record([HostResult("a", True, "", 1), HostResult("b", False, "", 1)])
    g.record([HostResult("a", False, "", 1), HostResult("b", True, "", 1)])
    assert [g.result(h, "ok") for h in hosts] == ["failed", "failed", "ok"]
    assert [g.result(h, "failed") for h in hosts] == ["failed", "failed", "failed"]
    assert {g.result(h, "error") for h in hosts} == {"error"}


def test_dry_run_takes_no_lock_and_connects_nowhere(capsys) -> None:
    d = copy.deepcopy(config.DEFAULTS)
    d.update(app="hello", builder="mix", stages={"s": {"hosts": ["nowhere.invalid", "x.invalid"]}})
    settings = config.load({"deliver": d})
    ran = []
    with guard.guarded(settings, settings.stage("s"), "deploy.release", to_version="1.0",
                       dry_run=True) as g:
        ran.append(g)
    out = capsys.readouterr().out
    assert ran and out.count("would take the deploy lock apps/hello/.deliver/lock") == 2
    assert "[nowhere.invalid]" in out and "apps/hello/.deliver/audit.log" in out
