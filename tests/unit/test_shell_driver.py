"""The shell loop of commands/shell.py run by a real sh (and bash): each request's output ends
with its own markers, exit statuses pass through, the loop survives `exit`, stdin is /dev/null,
and a host without base64 is told apart before anything runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pydeliver_tasks.commands import shell as cmds

SHELLS = [s for s in ("/bin/sh", "/bin/bash") if Path(s).exists()]


def run_loop(shell: str, requests: list[tuple[str, str]], path: str | None = None
             ) -> tuple[bytes, bytes]:
    env = {**os.environ, "SHELL": shell}
    if path is not None:
        env["PATH"] = path
    data = b"".join(cmds.request(rid, command) for rid, command in requests)
    res = subprocess.run([shell, "-c", cmds.DRIVER], input=data, capture_output=True, env=env,
                         timeout=30)
    return res.stdout, res.stderr


def split(out: bytes, err: bytes, rid: str) -> tuple[bytes, bytes, int]:
    """One request's (stdout, stderr, status) cut out of the loop's streams: what follows the
    previous request's markers up to its own."""
    m = re.search(rb"(?s)(?:^|\nPDT\w+ -?\d+\n)((?:(?!\nPDT\w+ -?\d+\n).)*?)"
                  + re.escape(cmds.stdout_end(rid)) + rb"(-?\d+)\n", out)
    e = re.split(rb"\nPDT\w+\n", err.split(cmds.stderr_end(rid))[0])[-1]
    assert m, out
    return m[1], e, int(m[2])


@pytest.mark.parametrize("shell", SHELLS)
def test_each_request_ends_with_its_markers(shell: str) -> None:
    reqs = [("PDTa1", "printf 'a\\nb'"), ("PDTb2", "echo out; echo err >&2; exit 7"),
            ("PDTc3", "printf '%s\\n' \"é €\" 'it'\"'\"'s'"), ("PDTd4", "cat; echo after-cat"),
            ("PDTe5", "printf ''"), ("PDTf6", "echo PDTf6 0; echo more")]
    out, err = run_loop(shell, reqs)
    assert split(out, err, "PDTa1") == (b"a\nb", b"", 0)
    assert split(out, err, "PDTb2") == (b"out\n", b"err\n", 7)
    assert split(out, err, "PDTc3")[0] == "é €\nit's\n".encode()
    assert split(out, err, "PDTd4") == (b"after-cat\n", b"", 0)  # stdin is /dev/null: no wait
    assert split(out, err, "PDTe5") == (b"", b"", 0)
    # the id alone at a line start is not the end marker: the marker is preceded by a newline
    # the loop adds, and a command cannot know the id (random per request in the reader)
    assert split(out, err, "PDTf6")[2] == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_a_long_multi_line_command_arrives_whole(shell: str) -> None:
    script = "set -eu\n" + "".join(f"x{i}={i}\n" for i in range(3000)) + 'echo "$x2999"\n'
    out, err = run_loop(shell, [("PDTlong", script)])
    assert split(out, err, "PDTlong") == (b"2999\n", b"", 0)


def test_a_host_without_base64_is_told_apart_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bare = tmp_path / "bin"
    bare.mkdir()
    out, _ = run_loop("/bin/sh", [("PDTx", f"touch {marker}")], path=str(bare))
    assert out.strip() == cmds.UNAVAILABLE.encode()
    assert not marker.exists()
    assert shutil.which("base64"), "this machine has base64: the other tests use it"


def test_request_ids_are_plain_words() -> None:
    with pytest.raises(AssertionError):
        cmds.request("PDT 1", "true")
