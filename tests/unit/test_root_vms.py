"""The VM list of a release root (commands.vms), run by sh against stand-in processes whose
arguments are a BEAM's: read from /proc, so these are real processes, ended by their pids."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from pydeliver_tasks import commands
from pydeliver_tasks.steps.probe import parse_probe


@contextmanager
def stand_in(*args: str) -> Iterator[int]:
    """A sleeping Python carrying these arguments; ended by its pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def beam(root: Path) -> list[str]:
    return ["--", "-root", str(root), "-bindir", f"{root}/erts-13.1.5/bin", "-progname", "erl"]


def listed(root: Path, shell: str = "sh") -> list[tuple[int, str]]:
    res = subprocess.run([shell, "-c", commands.vms(str(root))], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0 and res.stderr == ""
    return parse_probe(res.stdout).procs


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_every_vm_of_the_root_is_listed_with_its_arguments(tmp_path: Path, shell: str) -> None:
    root = tmp_path / "my app"  # a space in the path
    root.mkdir()
    with ExitStack() as stack:
        pids = [stack.enter_context(stand_in(*beam(root), "-name", f"n{i}@127.0.0.1"))
                for i in range(2)]
        procs = listed(root, shell)
    assert [pid for pid, _ in procs] == sorted(pids)
    assert procs[0][1] == (f"{sys.executable} -c import time; time.sleep(60) -- -root {root} "
                           f"-bindir {root}/erts-13.1.5/bin -progname erl -name n0@127.0.0.1")


def test_other_roots_and_lookalikes_are_not_listed(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (tmp_path / "app2").mkdir()
    with ExitStack() as stack:
        stack.enter_context(stand_in(*beam(tmp_path / "app2")))  # another root, same prefix
        stack.enter_context(stand_in("-root", f"{root}/lib"))  # under the root, not the root
        stack.enter_context(stand_in("-x", str(root), "-y"))  # the root, not after -root
        stack.enter_context(stand_in("-c", f"exec erl -root {root} -progname erl"))  # one arg
        stack.enter_context(stand_in("-root", str(root)))  # the last argument: no VM has that
        assert listed(root) == []
        mine = stack.enter_context(stand_in(*beam(root)))
        assert [pid for pid, _ in listed(root)] == [mine]


def test_a_missing_root_lists_nothing(tmp_path: Path) -> None:
    assert listed(tmp_path / "gone") == []
