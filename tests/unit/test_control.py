"""The node's control channel (otp.control, commands.node_eval) against a real Erlang node and the
real erl_call: answers, errors, a stale cookie, a node killed mid-request, a hung node. The
release's own client (the slow path) is a stand-in script here that says it was used; the
integration tests run the real one."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydeliver_tasks import commands, otp
from pydeliver_tasks.otp import control

ERL = shutil.which("erl")
CALLS = sorted(Path("/usr/lib/erlang").glob("erts-*/bin/erl_call")) if ERL else []
pytestmark = pytest.mark.skipif(not (ERL and CALLS), reason="needs erl and erl_call (OTP >= 23)")
APP = "hello"
SLOW = "#!/bin/sh\necho 'PDT{slow=used}'\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """An Erlang node of ours (epmd of its own, on a free port), ended by pid."""

    def __init__(self, home: Path, env: dict[str, str], cookie: str) -> None:
        self.name = f"pdtctl{secrets.token_hex(4)}"
        self.cookie = cookie
        self.proc = subprocess.Popen(
            [ERL or "erl", "-sname", self.name, "-setcookie", cookie, "-noshell",
             "-start_epmd", "false"], env=env, cwd=home, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.host = socket.gethostname().split(".")[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("ctl")
    port = _free_port()
    env = {**os.environ, "ERL_EPMD_PORT": str(port), "HOME": str(home)}
    epmd = subprocess.Popen(["epmd", "-port", str(port)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes: list[Node] = []
    try:
        yield {"home": home, "env": env, "nodes": nodes}
    finally:
        for n in nodes:
            n.stop()
        os.kill(epmd.pid, signal.SIGKILL)
        epmd.wait(10)


def _root(world: dict, node: Node, name: str, cookie: str | None = None,
          key_env: dict[str, str] | None = None) -> Path:
    """A release root: a stand-in bin/hello (the slow path), and the control file as a node's
    setup leaves it (with `cookie`, the node's own unless given)."""
    root = world["home"] / name
    (root / "bin").mkdir(parents=True)
    (root / "bin" / APP).write_text(SLOW)
    (root / "bin" / APP).chmod(0o755)
    ctl = root / control.CONTROL_DIR
    ctl.mkdir(parents=True, mode=0o700)
    (ctl / ".erlang.cookie").write_text(cookie or node.cookie)
    (ctl / ".erlang.cookie").chmod(0o400)
    key = commands.control_key(APP, "rebar3", key_env or {})
    (ctl / key).write_text(f"{node.name}@{node.host} sname {CALLS[-1]}\n")
    return root


def _started(world: dict) -> Node:
    node = Node(world["home"], world["env"], secrets.token_hex(8))
    world["nodes"].append(node)
    probe = "erlang:node().\n"
    for _ in range(100):
        res = subprocess.run([str(CALLS[-1]), "-sname", node.name, "-c", node.cookie, "-R",
                              "-timeout", "2", "-e"], input=probe, capture_output=True,
                             text=True, env=world["env"])
        if node.name in res.stdout:
            return node
        time.sleep(0.1)
    raise AssertionError("the test node did not come up")


@pytest.fixture(scope="module")
def node(world: dict) -> Node:
    return _started(world)


def ask(world: dict, root: Path, expr: str, timeout: float = 30,
        question_timeout: int = commands.QUESTION_TIMEOUT, client: bool = True) -> tuple[int, str]:
    cmd = commands.node_eval(str(root), APP, "rebar3", {}, expr, question_timeout, client)
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=world["env"],
                         timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def test_an_answer_comes_through_erl_call_whole(world: dict, node: Node) -> None:
    root = _root(world, node, "answer")
    rc, out = ask(world, root, 'lists:flatten(io_lib:format("PDT{node=~s;text=~ts}", '
                                '[node(), [8364, $", $\\\\]])).')
    assert rc == 0 and "slow=used" not in out
    assert otp.parse_marker(out) == {"node": f"{node.name}@{node.host}", "text": '€"\\'}


def test_without_a_control_file_or_with_a_stale_cookie_the_release_client_is_used(
        world: dict, node: Node) -> None:
    expr = 'lists:flatten(io_lib:format("PDT{node=~s}", [node()])).'
    root = _root(world, node, "stale", cookie="not-the-cookie")
    assert otp.parse_marker(ask(world, root, expr)[1]) == {"slow": "used"}
    shutil.rmtree(root / control.CONTROL_DIR)
    assert otp.parse_marker(ask(world, root, expr)[1]) == {"slow": "used"}


def test_without_the_client_until_epmd_knows_the_node(world: dict, node: Node) -> None:
    """What a start asks while its node boots (client=False): a node not yet in epmd gets no
    question, and nothing is booted to hear nodedown; once it is in epmd, a node erl_call cannot
    reach (here: a stale cookie) is asked through the release's client."""
    expr = 'lists:flatten(io_lib:format("PDT{node=~s}", [node()])).'
    root = _root(world, node, "held", cookie="not-the-cookie")
    assert otp.parse_marker(ask(world, root, expr, client=False)[1]) == {"slow": "used"}
    key = root / control.CONTROL_DIR / commands.control_key(APP, "rebar3", {})
    key.write_text(f"notyet{node.name}@{node.host} sname {CALLS[-1]}\n")  # not in epmd
    rc, out = ask(world, root, expr, client=False)
    assert rc != 0 and "slow=used" not in out and otp.parse_marker(out) is None
    root = _root(world, node, "held-ok")  # the right cookie: erl_call answers
    rc, out = ask(world, root, expr, client=False)
    assert rc == 0 and otp.parse_marker(out) == {"node": f"{node.name}@{node.host}"}


def test_another_stage_env_uses_another_control_file(world: dict, node: Node) -> None:
    root = _root(world, node, "otherenv", key_env={"RELEASE_COOKIE": "older"})
    assert otp.parse_marker(ask(world, root, "\"PDT{x=1}\".")[1]) == {"slow": "used"}
    assert commands.control_key(APP, "rebar3", {"A": "1"}) != commands.control_key(
        APP, "rebar3", {"A": "2"}) != commands.control_key(APP, "mix", {"A": "2"})


def test_an_error_is_reported_and_not_asked_again_the_slow_way(world: dict, node: Node) -> None:
    root = _root(world, node, "error")
    rc, out = ask(world, root, "erlang:error(pdt_boom).")
    assert "pdt_boom" in out and "slow=used" not in out and otp.parse_marker(out) is None


def test_a_node_killed_mid_request_fails_it_without_asking_again(world: dict) -> None:
    doomed = _started(world)
    root = _root(world, doomed, "killed")
    killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {doomed.proc.pid}"])
    t0 = time.monotonic()
    rc, out = ask(world, root, 'timer:sleep(20000), "PDT{done=yes}".')
    killer.wait(10)
    assert rc != 0 and time.monotonic() - t0 < 10
    assert "slow=used" not in out and otp.parse_marker(out) is None


def test_a_hung_node_is_not_waited_for_by_the_connection_check(world: dict) -> None:
    hung = _started(world)
    root = _root(world, hung, "hung")
    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        _, out = ask(world, root, '"PDT{x=1}".')
        took = time.monotonic() - t0
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)
    assert otp.parse_marker(out) == {"slow": "used"} and took < 15


def test_a_node_that_hangs_mid_request_ends_the_question_at_its_timeout(world: dict) -> None:
    stuck = _started(world)
    root = _root(world, stuck, "stuck")
    stopper = subprocess.Popen(["sh", "-c", f"sleep 1; kill -STOP {stuck.proc.pid}"])
    t0 = time.monotonic()
    try:
        rc, out = ask(world, root, 'timer:sleep(3000), "PDT{done=yes}".', question_timeout=4)
    finally:
        stopper.wait(10)
        os.kill(stuck.proc.pid, signal.SIGCONT)
    took = time.monotonic() - t0
    assert rc != 0 and 3.5 < took < 15, (rc, took, out)
    assert "slow=used" not in out and otp.parse_marker(out) is None


def test_the_stage_env_reaches_erl_call(world: dict, node: Node) -> None:
    """The node's epmd port comes from the env file (as in the sandbox), not from our env."""
    env = {"ERL_EPMD_PORT": world["env"]["ERL_EPMD_PORT"]}
    root = _root(world, node, "envfile", key_env=env)
    (root / commands.ENV_FILE).write_text(commands.env_file_text(env))
    cmd = commands.node_eval(str(root), APP, "rebar3", env, '"PDT{x=fast}".')
    bare = {k: v for k, v in world["env"].items() if k != "ERL_EPMD_PORT"}
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=bare, timeout=30)
    assert otp.parse_marker(res.stdout) == {"x": "fast"}, res.stdout + res.stderr


def test_no_secret_reaches_the_command_line(world: dict, node: Node) -> None:
    env = {"RELEASE_COOKIE": "sekrit-cookie-value"}
    cmd = commands.node_eval("/srv/r", APP, "mix", env, '"PDT{x=1}".')
    assert "sekrit" not in cmd and commands.control_key(APP, "mix", env) in cmd


def test_setup_writes_what_erl_call_needs_in_a_private_dir(world: dict, node: Node) -> None:
    """The setup expression on a real node whose root is a temp dir: 0700 dir, 0400 cookie,
    `node kind erl_call` line; an older file is replaced."""
    root = world["home"] / "setup-root"
    (root / "bin").mkdir(parents=True)
    os.symlink(CALLS[-1], root / "bin" / "erl_call")
    old = root / control.CONTROL_DIR
    old.mkdir(parents=True)
    (old / "stalefile").write_text("x")
    expr = control.setup_expr("ab12").replace("code:root_dir()", f'"{root}"')
    res = subprocess.run([str(CALLS[-1]), "-sname", node.name, "-c", node.cookie, "-R", "-e"],
                         input=expr + "\n", capture_output=True, text=True, env=world["env"])
    assert res.stdout.strip() == '{ok, ""}' or res.stdout.strip() == "{ok, []}", res.stdout
    ctl = root / control.CONTROL_DIR
    assert sorted(p.name for p in ctl.iterdir()) == [".erlang.cookie", "ab12"]
    assert ctl.stat().st_mode & 0o777 == 0o700
    assert (ctl / ".erlang.cookie").stat().st_mode & 0o777 == 0o400
    assert (ctl / ".erlang.cookie").read_text() == node.cookie
    assert (ctl / "ab12").read_text() == f"{node.name}@{node.host} sname {root}/bin/erl_call\n"
    rc, out = ask(world, root.parent / "answer", '"PDT{again=1}".')
    assert otp.parse_marker(out) == {"again": "1"}


def test_setup_refuses_a_key_that_is_not_hex() -> None:
    with pytest.raises(ValueError):
        control.setup_expr("../x")
