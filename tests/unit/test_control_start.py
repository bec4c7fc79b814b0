"""erl_call's files written after a start from the started BEAM's command line
(commands.control), run by sh against a stand-in process whose arguments are a BEAM's: written
for one name and one cookie from this root, nothing for anything else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pydeliver_tasks import commands
from pydeliver_tasks.commands import control

KEY = "0123456789abcdef01234567"
COOKIE = "s3cret-cookie"


def release_root(tmp_path: Path, erts: str = "13.1.5") -> Path:
    root = (tmp_path / "app").resolve()
    bindir = root / f"erts-{erts}" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "erl_call").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "erl_call").chmod(0o755)
    return root


def beam_args(root: Path, *flags: str, erts: str = "13.1.5") -> list[str]:
    """A mix BEAM's command line (as its start script makes it) with these flags added."""
    return ["--", "-root", str(root), "-bindir", f"{root}/erts-{erts}/bin", "-progname", "erl",
            "--", "-home", "/home/x", "--", "-noshell", "-mode", "embedded", *flags,
            "-boot", f"{root}/releases/0.0.1/start", "--", "-extra", "--no-halt"]


@contextmanager
def stand_in(args: list[str], env: dict[str, str] | None = None) -> Iterator[int]:
    """A process (a sleeping Python) carrying a BEAM's arguments; ended by its pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args],
                            env=env)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def run(root: Path, tries: int = 20, shell: str = "sh",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shell, "-c", control.from_started_node(KEY, tries)], cwd=root,
                          capture_output=True, text=True, timeout=30, env=env)


def written(root: Path) -> tuple[str | None, str | None]:
    d = root / ".deliver" / "control"
    key, cookie = d / KEY, d / ".erlang.cookie"
    return (key.read_text() if key.exists() else None,
            cookie.read_text() if cookie.exists() else None)


@pytest.mark.parametrize(("kind", "shell"), [("name", "sh"), ("sname", "sh"), ("name", "bash")])
def test_one_name_and_one_cookie_are_written_for_erl_call(tmp_path: Path, kind: str,
                                                         shell: str) -> None:
    root = release_root(tmp_path)
    ctl = root / ".deliver" / "control"
    ctl.mkdir(parents=True)
    (ctl / "an-older-env-key").write_text("old@host name /x/erl_call\n")
    node = "shop@127.0.0.1" if kind == "name" else "shop"
    with stand_in(beam_args(root, "-setcookie", COOKIE, f"-{kind}", node)):
        res = run(root, shell=shell)
    assert res.returncode == 0 and res.stdout == control.WRITTEN + "\n" and res.stderr == ""
    assert written(root) == (f"{node} {kind} {root}/erts-13.1.5/bin/erl_call\n", COOKIE)
    assert (ctl / ".erlang.cookie").stat().st_mode & 0o777 == 0o400
    assert ctl.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in ctl.iterdir()) == [".erlang.cookie", KEY]


@pytest.mark.parametrize("flags", [
    [],  # name and cookie in vm.args only, not on the command line
    ["-setcookie", COOKIE],  # no name
    ["-name", "shop@127.0.0.1"],  # no cookie
    ["-setcookie", COOKIE, "-name", "a@127.0.0.1", "-sname", "b"],  # two names
    ["-setcookie", COOKIE, "-setcookie", "other", "-name", "a@127.0.0.1"],  # two cookies
    ["--hidden", "-hidden", "-setcookie", COOKIE, "-name", "rpc-1a2b-shop@127.0.0.1"],  # rpc's VM
    # distributions erl_call does not reach through the stage env's epmd
    ["-setcookie", COOKIE, "-name", "a@127.0.0.1", "-proto_dist", "inet_tls"],
    ["-setcookie", COOKIE, "-name", "a@127.0.0.1", "-epmd_module", "my_epmd"],
    ["-setcookie", COOKIE, "-name", "a@127.0.0.1", "-start_epmd", "false", "-no_epmd"],
    ["-setcookie", COOKIE, "-name", "a@127.0.0.1", "-erl_epmd_port", "4400"],
])
def test_anything_but_one_name_and_one_cookie_writes_nothing(tmp_path: Path,
                                                            flags: list[str]) -> None:
    root = release_root(tmp_path)
    with stand_in(beam_args(root, *flags)):
        started = time.monotonic()
        res = run(root)
    assert res.returncode == 0 and res.stdout == ""  # no WRITTEN: the start asks the client
    assert written(root) == (None, None)
    assert time.monotonic() - started < 1.5, "a BEAM was found: no waiting for another"
    assert not list((root / ".deliver" / "control").glob(".cookie*"))


@pytest.mark.parametrize(("node_port", "stage_port"), [("4400", None), (None, "4400"),
                                                     ("4400", "4401")])
def test_a_node_in_another_epmd_than_the_stage_envs_gets_nothing(
        tmp_path: Path, node_port: str | None, stage_port: str | None) -> None:
    root = release_root(tmp_path)

    def env(port: str | None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k != "ERL_EPMD_PORT"}
        return {**base, "ERL_EPMD_PORT": port} if port else base

    args = beam_args(root, "-setcookie", COOKIE, "-name", "shop@127.0.0.1")
    with stand_in(args, env(node_port)):
        assert run(root, env=env(stage_port)).stdout == ""
    assert written(root) == (None, None)
    with stand_in(args, env("4400")):  # the same epmd port on both sides: written
        assert run(root, env=env("4400")).stdout == control.WRITTEN + "\n"


def test_flags_after_extra_are_the_programs_not_erls(tmp_path: Path) -> None:
    root = release_root(tmp_path)
    args = beam_args(root, "-name", "shop@127.0.0.1") + ["-setcookie", COOKIE]
    with stand_in(args):
        assert run(root).stdout == ""
    assert written(root) == (None, None)


def test_an_erts_older_than_otp_23_gets_nothing(tmp_path: Path) -> None:
    root = release_root(tmp_path, erts="10.7")
    with stand_in(beam_args(root, "-setcookie", COOKIE, "-name", "shop@127.0.0.1",
                            erts="10.7")):
        assert run(root).stdout == ""
    assert written(root) == (None, None)


def test_a_release_without_erl_call_gets_nothing(tmp_path: Path) -> None:
    root = release_root(tmp_path)
    (root / "erts-13.1.5" / "bin" / "erl_call").unlink()
    with stand_in(beam_args(root, "-setcookie", COOKIE, "-name", "shop@127.0.0.1")):
        assert run(root).stdout == ""
    assert written(root) == (None, None)


def test_another_roots_beam_is_not_read(tmp_path: Path) -> None:
    root = release_root(tmp_path)
    other = release_root(tmp_path / "other")
    with stand_in(beam_args(other, "-setcookie", COOKIE, "-name", "shop@127.0.0.1")):
        started = time.monotonic()
        assert run(root, tries=3).stdout == ""
    assert written(root) == (None, None) and time.monotonic() - started < 2


def test_the_start_command_keeps_the_daemons_exit_status(tmp_path: Path) -> None:
    """The files are written only after a daemon that returned 0; its status is the command's."""
    root = release_root(tmp_path)
    (root / "bin").mkdir()
    for rc in (0, 3, 124):
        (root / "bin" / "shop").write_text(f"#!/bin/sh\nexit {rc}\n")
        (root / "bin" / "shop").chmod(0o755)
        with stand_in(beam_args(root, "-setcookie", COOKIE, "-name", "shop@127.0.0.1")):
            res = subprocess.run(["sh", "-c", commands.start(str(root), "shop", "mix", {})],
                                 capture_output=True, text=True, timeout=30)
        key = commands.control_key("shop", "mix", {})
        assert res.returncode == rc, res.stderr
        assert (root / ".deliver" / "control" / key).exists() == (rc == 0)
        assert (control.WRITTEN in res.stdout) == (rc == 0)
        if rc == 0:
            (root / ".deliver" / "control" / key).unlink()


def test_the_key_must_be_hex() -> None:
    with pytest.raises(ValueError):
        control.from_started_node("x; rm -rf /")

