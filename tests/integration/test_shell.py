"""The run's one shell per host (fleet/shell.py) on a real sshd host: the commands of a run go
through one SSH session, each answers exactly as its own SSH exec would (stdout byte for byte,
stderr, exit status, home directory, stdin at EOF), a timeout or a lost connection ends in a
HostFailure and the next command works, and a second thread never waits for the first."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from pydeliver_tasks import commands, config, fleet
from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.fleet import HostContext, HostFailure
from pydeliver_tasks.fleet import host as host_module
from pydeliver_tasks.sandbox.config import deliver_config

from .faults import kill_sessions


def sessions(box: sb.Sandbox, name: str) -> int:
    """The command sessions the host's sshd has started (LogLevel VERBOSE logs each)."""
    text = (box.dir / "log" / f"{name}.log").read_text()
    return len(re.findall(r"Starting session: command ", text))


@pytest.fixture()
def hc(box: sb.Sandbox, tmp_path: Path):
    settings = config.load({"deliver": {**deliver_config(box, "shelltest"), "app": "shelltest",
                                        "project_dir": str(tmp_path)}})
    yield HostContext(settings.stage("sandbox").hosts[0], settings, dry_run=False)
    fleet.close_connections()


def exec_alone(hc: HostContext, command: str) -> tuple[str, str, int]:
    """The same command as an SSH exec of its own (what every command was before the shell)."""
    r = hc.conn.run(command, warn=True, hide=True, in_stream=False)
    return r.stdout, r.stderr, r.exited


def test_a_run_s_commands_share_one_session_and_answer_as_an_exec_would(
        box: sb.Sandbox, hc: HostContext) -> None:
    cases = ["printf 'a\\nb'", "echo out; echo err >&2; exit 7", "pwd; echo \"$HOME\"; umask",
             "printf '%s\\n' \"é €\" 'it'\"'\"'s'", "printf ''",
             "set -eu\n" + "".join(f"x{i}={i}\n" for i in range(2000)) + 'echo "$x1999"\n',
             "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo tail >&2"]
    hc.run("true")  # the connection and the shell
    before = sessions(box, "h1")
    for command in cases * 3:
        r = hc.run(command)
        assert (r.stdout, r.stderr, r.exited) == exec_alone(hc, command), command
    # every exec_alone above is one session; the shell's commands added none
    assert sessions(box, "h1") - before == len(cases) * 3
    # stdin is at its end (an SSH exec without input would leave `cat` waiting for ever)
    assert hc.run("cat; echo after-cat", timeout=10).stdout == "after-cat\n"


def test_a_run_that_writes_the_env_file_opens_one_exec_session(
        box: sb.Sandbox, hc: HostContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The env files go by SFTP and their directory is made in the shell: a run's first command
    that sources them opens the shell's session and no other."""
    monkeypatch.setattr(host_module, "_env_written", {})  # as in a new process: written again
    before = sessions(box, "h1")
    root = hc.host.deploy_path
    r = hc.run(f"cd {root} && . ./{commands.ENV_FILE} && echo sourced")
    assert (r.stdout, r.exited) == ("sourced\n", 0), r.stderr
    assert hc.run(f"stat -c %a {root}/{commands.ENV_FILE}").stdout.strip() == "600"
    assert sessions(box, "h1") - before == 1


def test_a_timeout_is_a_host_failure_and_the_next_command_works(hc: HostContext) -> None:
    with pytest.raises(HostFailure, match="did not complete within 1 seconds"):
        hc.run("sleep 5; echo late", timeout=1)
    r = hc.run("echo next")
    assert (r.stdout, r.exited) == ("next\n", 0)


def test_a_lost_connection_fails_that_command_and_a_reconnect_serves_the_next(
        box: sb.Sandbox, hc: HostContext) -> None:
    hc.run("true")
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(_run_or_fail(hc, "sleep 3; echo x")))
    worker.start()
    threading.Event().wait(0.5)
    assert kill_sessions(box.pids()["h1"])
    worker.join(30)
    got = results[0]
    assert isinstance(got, HostFailure) or got.exited == -1, got  # type: ignore[union-attr]
    hc.reconnect()
    r = hc.run("echo again")
    assert (r.stdout, r.exited) == ("again\n", 0)


def _run_or_fail(hc: HostContext, command: str) -> object:
    try:
        return hc.run(command)
    except HostFailure as exc:
        return exc


def test_a_second_thread_does_not_wait_for_the_first(hc: HostContext) -> None:
    """The lock heartbeat runs beside a long step: it gets its own SSH exec at once."""
    hc.run("true")
    slow = threading.Thread(target=lambda: hc.run("sleep 2"))
    slow.start()
    threading.Event().wait(0.3)
    took = _timed(lambda: hc.run("echo beside"))
    slow.join(30)
    assert took < 1.5, took
    outs = []

    def many(tag: str) -> None:
        outs.extend(hc.run(f"echo {tag}{i}").stdout == f"{tag}{i}\n" for i in range(20))
    threads = [threading.Thread(target=many, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outs == [True] * 40


def _timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t
