"""Operator tasks on real sandbox hosts with a running release on each: exec, eval, logs (and
--follow), remote-console (printed, and --exec in a real pty) and their bad input."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import INV, Project, accepted_logins, make_project, one_app

APPS = {"hello_ex": 4030, "hello_erl": 4031}

# Until tasks.py registers them, the project adds the operator tasks itself (a no-op after).
TASKS_PY = """\
from pydeliver_tasks import ns  # noqa: F401
from pydeliver_tasks.tasks import ops as _ops

for _t in (_ops.logs, _ops.exec_, _ops.eval_, _ops.remote_console):
    if _t.name not in ns.task_names:
        ns.add_task(_t)
"""


@pytest.fixture(scope="module", params=sorted(APPS))
def project(request, box, tmp_path_factory) -> Iterator[Project]:
    p = make_project(request.param, box, tmp_path_factory.mktemp(request.param), APPS[request.param],
                     deployed="0.0.1")
    (p.dir / "tasks.py").write_text(TASKS_PY)
    p.inv("start").ok()
    yield p
    p.inv("stop")


def mix(project: Project) -> bool:
    return project.app == "hello_ex"


def log_path(project: Project, h) -> Path:
    return project.root(h) / ("tmp/log" if mix(project) else "log") / "erlang.log.1"


def test_exec_runs_in_the_deploy_path_with_the_stage_env(project: Project) -> None:
    res = project.inv("exec", "--", "echo hi from $HTTP_IP; ls releases").ok()
    for h in project.box.hosts:
        assert f"[{h.spec}] hi from {h.address}\n" in res.out, res.out
        assert f"[{h.spec}] 0.0.1\n" in res.out, "ls ran in the deploy path"
        assert re.search(rf"{re.escape(h.spec)}\s+ok\s+[\d.]+s\s+exit 0", res.out), res.out
    res = project.inv("exec", "--cmd", "pwd").ok()
    for h in project.box.hosts:
        assert f"[{h.spec}] {project.root(h)}\n" in res.out


def test_exec_failing_on_one_host_names_it_and_exits_non_zero(project: Project) -> None:
    h1, h2 = project.box.hosts
    res = project.inv("exec", "--", f"test $HTTP_IP = {h1.address}")
    assert res.rc == 1, res.out
    assert re.search(rf"{re.escape(h1.spec)}\s+ok\s+[\d.]+s\s+exit 0", res.out), res.out
    assert re.search(rf"{re.escape(h2.spec)}\s+FAILED\s+[\d.]+s\s+exit 1", res.out), res.out
    assert f"exec failed on 1 of 2 host(s): {h2.spec}" in res.out


def test_eval_prints_the_value_from_every_node(project: Project) -> None:
    res = project.inv("eval", "1 + 2" if mix(project) else "1 + 2.").ok()
    for h in project.box.hosts:
        assert f"[{h.spec}] 3\n" in res.out, res.out
    res = project.inv("eval", "node()").ok()  # relx: the final dot is added
    for h in project.box.hosts:
        name = f'{project.app}@{h.address}'
        shown = f':"{name}"' if mix(project) else f"'{name}'"
        assert f"[{h.spec}] {shown}\n" in res.out, res.out
        assert re.search(rf"{re.escape(h.spec)}\s+ok\s+[\d.]+s\s+{re.escape(shown)}", res.out)


def test_eval_errors_fail_the_host_with_the_error(project: Project) -> None:
    res = project.inv("eval", "1 +" if mix(project) else "1 +.")
    assert res.rc == 1, res.out
    wanted = ("error: ** (TokenMissingError)" if mix(project)
              else "error: syntax error before: '.'")
    for h in project.box.hosts:
        assert re.search(rf"{re.escape(h.spec)}\s+FAILED\s+[\d.]+s\s+{re.escape(wanted)}", res.out), res.out
    assert "eval failed on 2 of 2 host(s)" in res.out
    boom = project.inv("eval", 'raise "boom"' if mix(project) else "erlang:error(boom)")
    assert boom.rc == 1, boom.out
    assert ("error: ** (RuntimeError) boom" if mix(project) else "error: exception boom") in boom.out


def test_eval_on_a_node_that_does_not_run_says_not_running(project: Project) -> None:
    h1 = project.box.hosts[0]

    def other_node(d: dict) -> None:
        env = d["stages"]["sandbox"]["hosts"][0]["env"]
        env["RELEASE_NODE"] = env["NODE_NAME"] = f"nobody@{h1.address}"

    res = project.inv("eval", "1", "--host", h1.spec, config=project.variant("no-node", other_node))
    assert res.rc == 1, res.out
    assert re.search(rf"{re.escape(h1.spec)}\s+FAILED\s+.*not running", res.out), res.out


def test_logs_shows_the_last_lines_prefixed_per_host(project: Project) -> None:
    res = project.inv("logs", "--lines", "5").ok()
    for h in project.box.hosts:
        lines = [ln for ln in res.out.splitlines() if ln.startswith(f"[{h.spec}] ")]
        assert lines[0] == f"[{h.spec}] == {log_path(project, h)}", res.out
        assert 2 <= len(lines) <= 6, res.out
        assert re.search(rf"{re.escape(h.spec)}\s+ok\s+.*last \d line\(s\) of {log_path(project, h)}",
                         res.out), res.out


def test_logs_also_shows_configured_log_files(project: Project) -> None:
    cfg = project.variant("log-files", lambda d: d.update(
        log_files=["releases/start_erl.data", "releases/*/sys.config", "no/such.log"]))
    res = project.inv("logs", "--lines", "1", config=cfg).ok()
    for h in project.box.hosts:
        assert f"[{h.spec}] == releases/start_erl.data" in res.out, res.out
        assert f"[{h.spec}] == releases/0.0.1/sys.config" in res.out
        assert re.search(rf"\[{re.escape(h.spec)}\] \S+ 0\.0\.1$", res.out, re.M)  # start_erl.data
    assert "no/such.log" not in res.out


def test_logs_without_a_deploy_or_a_log(project: Project) -> None:
    h1, h2 = project.box.hosts

    def paths(d: dict) -> None:
        hosts = d["stages"]["sandbox"]["hosts"]
        hosts[0]["deploy_path"] = f"{h1.home}/no-such-dir"
        hosts[1]["deploy_path"] = h2.home  # exists, but no node ever ran there

    res = project.inv("logs", config=project.variant("no-logs", paths))
    assert res.rc == 1, res.out
    assert re.search(rf"{re.escape(h1.spec)}\s+FAILED\s+.*no deploy path {h1.home}/no-such-dir", res.out)
    assert re.search(rf"{re.escape(h2.spec)}\s+ok\s+.*no node log in {h2.home}/log or {h2.home}/tmp/log",
                     res.out), res.out


def remote_tails(project: Project) -> list[str]:
    users = ",".join(h.user for h in project.box.hosts)
    out = subprocess.run(["ps", "-o", "args=", "-u", users], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.startswith("tail -n 3 -F")]


def test_logs_follow_streams_new_lines_until_interrupted(project: Project) -> None:
    h1, h2 = project.box.hosts
    env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(project.config)}
    proc = subprocess.Popen([INV, "logs", "--follow", "--lines", "3"], cwd=project.dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()

    def wait_for(text: str, prefix: str = "", timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line and line.startswith(prefix) for line in list(seen)):
                return True
            time.sleep(0.1)
        return False

    marker = f"pdt-follow-marker-{time.time_ns()}"
    try:
        for h in (h1, h2):
            assert wait_for(f"[{h.spec}] == {log_path(project, h)}"), "".join(seen)
        with log_path(project, h1).open("a") as fh:  # as if the node logged a line
            fh.write(marker + "\n")
        # relx's log may end in the shell prompt without a newline ("(node)1> "): the marker
        # then ends that line, so it is looked for in a line of h1, not at its start
        assert wait_for(marker, prefix=f"[{h1.spec}] "), "".join(seen)
        assert len(remote_tails(project)) == 2
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    out = "".join(seen)
    assert proc.returncode == 0, out
    assert "stopped following the logs" in out
    for h in (h1, h2):
        assert re.search(rf"{re.escape(h.spec)}\s+ok\s+.*stopped following \(interrupted\)", out), out
    deadline = time.monotonic() + 10
    while remote_tails(project) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert remote_tails(project) == [], "the remote tails end with the connection"


def test_remote_console_prints_ssh_commands_without_secrets(project: Project) -> None:
    """The printed line holds no secret (the env comes from the host's env file, written by this
    run: 0600) and works as printed."""
    for h in project.box.hosts:
        (project.root(h) / ".deliver" / "env").unlink(missing_ok=True)
    res = project.inv("remote-console").ok()
    assert project.cookie() not in res.out
    verb = "remote" if mix(project) else "remote_console"
    for h in project.box.hosts:
        line = next(ln for ln in res.out.splitlines() if ln.startswith(f"[{h.spec}] ssh "))
        argv = shlex.split(line.removeprefix(f"[{h.spec}] "))
        assert argv[:2] == ["ssh", "-t"]
        assert argv[argv.index("-p") + 1] == str(h.port)
        assert argv[argv.index("-i") + 1] == str(project.box.identity_file)
        assert f"UserKnownHostsFile={project.box.known_hosts}" in argv
        assert "StrictHostKeyChecking=yes" in argv
        assert argv[-2] == f"{h.user}@{h.address}"
        remote = shlex.split(argv[-1])
        assert remote[:6] == ["cd", str(project.root(h)), "&&", ".", "./.deliver/env", "&&"]
        assert remote[-2:] == [f"bin/{project.app}", verb]
        env_file = project.root(h) / ".deliver" / "env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        text = env_file.read_text()
        assert f"export RELEASE_COOKIE={project.cookie()}" in text and f"HTTP_IP={h.address}" in text
        got = subprocess.run(argv[:-1] + [argv[-1].replace(f"bin/{project.app} {verb}",
                                                          'echo "$HTTP_IP"')],
                             capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert got.stdout.strip() == h.address, got.stderr


def test_remote_console_exec_opens_a_shell_on_the_node(project: Project) -> None:
    """--exec replaces inv by ssh; in a real pty the shell answers node() from the node itself."""
    h1 = project.box.hosts[0]
    # the pty is our terminal: say which (with TERM=dumb, as in CI, IEx ignores --remsh)
    env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(project.config), "TERM": "xterm"}
    master, slave = pty.openpty()
    proc = subprocess.Popen([INV, "remote-console", "--exec", "--host", h1.spec], cwd=project.dir,
                            env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""

    def read_until(text: bytes, timeout: float = 40) -> bool:
        nonlocal out
        deadline = time.monotonic() + timeout
        while text not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    return False
                if not chunk:
                    return False
                out += chunk
        return text in out

    name = f"{project.app}@{h1.address}"
    try:
        assert read_until(b"1> "), out.decode(errors="replace")
        os.write(master, b"node()\n" if mix(project) else b"node().\n")
        shown = f':"{name}"' if mix(project) else f"'{name}'"
        assert read_until(shown.encode()), out.decode(errors="replace")
    finally:
        proc.terminate()  # by now the process is ssh: it closes the connection and exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)
    text = out.decode(errors="replace")
    assert project.cookie() not in text
    assert f"({name})1> " in text or f"iex({name})1> " in text, "the prompt is the node's own"


def logins(project: Project) -> dict[str, int]:
    return {h.name: accepted_logins(project.box, h.name) for h in project.box.hosts}


BAD_INPUTS = [
    (["exec", "--", ""], "error: empty command"),
    (["exec", "--", "  "], "error: empty command"),
    (["exec"], "error: empty command"),
    (["exec", "--cmd", ""], "error: empty command"),
    (["exec", "--cmd", "ls", "--", "ls"], "not both"),
    (["eval", ""], "error: empty expression"),
    (["eval", " "], "error: empty expression"),
    (["logs", "--lines", "-5"], "error: invalid --lines -5"),
    (["logs", "--lines", "0"], "error: invalid --lines 0"),
    (["logs", "--lines", "100001", "--follow"], "error: invalid --lines 100001"),
    (["remote-console", "--exec"], "error: --exec opens one console: pick its host with --host"),
    (["eval", "1", "--host", "nothere"], "no host 'nothere'"),
]


def test_bad_input_exits_2_before_any_ssh_login(project: Project) -> None:
    one_app(project)
    before = logins(project)
    for args, message in BAD_INPUTS:
        res = project.inv(*args)
        assert res.rc == 2, (args, res.out)
        assert message in res.out, (args, res.out)
        assert "Traceback" not in res.out
    assert logins(project) == before
