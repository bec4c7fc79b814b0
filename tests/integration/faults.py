"""Faults injected for real into our remote scripts, run by bash on a real release root: a shim
on PATH stands in for every external command the script itself calls (mv, cp, tar, rm, …); the
Nth call fails, kills the script with SIGKILL, or runs on a disk just filled up. Calls made by programs the script starts (erl's
own shell script) are passed through, so each injection point is one line of our script."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pydeliver_tasks.commands import shell
from pydeliver_tasks.sandbox import descendants

SHIMMED = ("mv", "cp", "tar", "rm", "mkdir", "sed", "cut", "sha256sum", "sync", "ls", "head",
           "flock", "tr", "grep", "awk")

_SHIM = r"""#!/bin/bash
# no fork but the exec (and the fault): the script runs ~50 of these per run, ~500 runs a test
name=${0##*/}
PATH=$SHIM_REALPATH
mapfile -d '' pdt_args < "/proc/$PPID/cmdline" 2>/dev/null
if [ "${pdt_args[1]:-}" = "$SHIM_SCRIPT" ]; then
  # one line a call, appended at once: calls in one pipeline run side by side, so the call's
  # number is the log's length right after (no read-modify-write of a counter to race on)
  line="$name $*"; echo "${line//$'\n'/ }" >> "$SHIM_LOG"
  mapfile -t pdt_log < "$SHIM_LOG"; n=${#pdt_log[@]}
  if [ "$n" = "$SHIM_AT" ]; then
    echo "$name $*" > "$SHIM_HIT"
    if [ "$SHIM_MODE" = kill ]; then kill -9 "$PPID"; sleep 1; fi
    if [ "$SHIM_MODE" = fill ]; then cat /dev/zero >> "$SHIM_FILL" 2>/dev/null; exec "$name" "$@"; fi
    echo "injected failure of $name" >&2; exit 1
  fi
fi
exec "$name" "$@"
"""


class Injector:
    """Runs scripts under the shims in `work` (a scratch dir of the test)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.calls: list[str] = []
        self.bin = work / "shims"
        self.bin.mkdir(parents=True, exist_ok=True)
        shim = self.bin / "pdt-shim"
        shim.write_text(_SHIM)
        shim.chmod(0o755)
        for name in SHIMMED:
            link = self.bin / name
            if not link.exists():
                link.symlink_to(shim)

    def run(self, script: str, at: int = 0, mode: str = "fail",
            fill: Path | None = None) -> tuple[int, int, str, str]:
        """(exit code, calls counted, the call hit or "", stderr) of `script` run by bash with
        call `at` failing (mode "fail"), killing the script (mode "kill") or, mode "fill", run
        after the file `fill` has taken all the room left on its filesystem (every later write
        there fails with ENOSPC); at=0: no fault. `self.calls` then lists the calls made, one
        "name args" line each."""
        assert (mode == "fill") == (fill is not None), "mode fill needs the file to fill with"
        path = self.work / "pdt-script.sh"
        path.write_text(script)
        hit, log = self.work / "hit", self.work / "calls"
        log.write_text("")
        hit.unlink(missing_ok=True)
        real = os.environ["PATH"]
        env = {**os.environ, "PATH": f"{self.bin}:{real}", "SHIM_REALPATH": real,
               "SHIM_SCRIPT": str(path), "SHIM_HIT": str(hit),
               "SHIM_AT": str(at), "SHIM_MODE": mode, "SHIM_LOG": str(log),
               "SHIM_FILL": str(fill or "")}
        res = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True,
                             timeout=120, cwd=self.work)
        self.calls = log.read_text().splitlines()
        return (res.returncode, len(self.calls),
                hit.read_text().strip() if hit.exists() else "", res.stderr)

    def plain(self, script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                              cwd=self.work)


def kept_is_true(kept: Path) -> None:
    """A kept sha256 ("<sha256> <size> <ctime> <inode>") that still matches its tarball's stat
    names that tarball's real sha256."""
    sha, _, key = kept.read_text().strip().partition(" ")
    tarball = kept.with_name(kept.name.removesuffix(".sha256-kept"))
    if tarball.exists():
        st = tarball.stat()
        if key == f"{st.st_size} {int(st.st_ctime)} {st.st_ino}":
            assert sha == hashlib.sha256(tarball.read_bytes()).hexdigest(), kept


def tree(root: Path) -> dict[str, str]:
    """Every path under root -> "/" for a dir, "-> target" for a link, for a small file its mode
    and sha256, for a big one its size, mode and mtime (copies are made with cp -a, extraction
    sets the tarball's times: two trees agree only when every file is the same one); the empty activation lock (kept for flock) is
    not state, nor is the sha256 the host keeps of a tarball (a cache, checked here never to
    name another sha256 for the file it describes)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if rel == ".deliver/activation.lock":
                continue
            if rel.endswith(".sha256-kept"):
                kept_is_true(p)
                continue
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "/"
            else:
                st = p.stat()
                small = st.st_size < 8192  # RELEASES, start_erl.data: written anew each run
                out[rel] = (f"{st.st_mode:o} " + hashlib.sha256(p.read_bytes()).hexdigest() if small
                            else f"{st.st_size} {st.st_mode:o} {st.st_mtime_ns}")
    return out


def diff(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """A few paths that differ, for an assertion message."""
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return keys[:12]


class PsWatch:
    """Samples every process's command line (as `ps` shows it to anyone on the host) while a
    block runs: what the tool's own shells (`<shell> -c COMMAND` started by sshd or by the run's
    shell loop) showed, so a test can assert no secret stood there — and that the tool's commands
    were seen at all. The release's own programs (erl, beam) are not the tool's commands; the Erlang VMs
    seen are kept apart (`vms`), to count the helper VMs a step boots."""

    def __init__(self, uids: set[int], period: float = 0.01) -> None:
        self.uids, self.period = uids, period
        self.shells: set[str] = set()
        self.vms: dict[int, str] = {}  # every Erlang VM seen: pid -> command line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PsWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _from_sshd(entry: Path) -> bool:
        """A command sshd started for a client (its parent is sshd), or one the run's shell loop
        (commands/shell.py, itself started by sshd) started — not one a release runs."""
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if Path(f"/proc/{ppid}/comm").read_text().strip() == "sshd":
                return True
            return (shell.UNAVAILABLE.encode() in Path(f"/proc/{ppid}/cmdline").read_bytes()
                    and PsWatch._from_sshd(Path(f"/proc/{ppid}")))
        except (OSError, IndexError):
            return False

    @staticmethod
    def _forked_by_a_vm(entry: Path) -> bool:
        """A VM's child between fork and exec (erl_child_setup's start) still shows the VM's
        command line: it is not another VM."""
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            return Path(f"/proc/{ppid}/comm").read_text().strip() == "beam.smp"
        except (OSError, IndexError):
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if entry.stat().st_uid not in self.uids:
                        continue
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    # the program, whatever argv[0] says (relx names its BEAM after bin/<app>)
                    program = (entry / "comm").read_text().strip()
                except OSError:
                    continue
                if len(argv) > 2 and argv[1] == b"-c" and self._from_sshd(entry):
                    self.shells.add(b" ".join(argv).decode(errors="replace"))
                elif program == "beam.smp" and not self._forked_by_a_vm(entry):
                    self.vms.setdefault(int(entry.name), b" ".join(argv).decode(errors="replace"))
            self._stop.wait(self.period)


@contextmanager
def tmpfs(path: Path, size: str, owner: Path) -> Iterator[Path]:
    """A small filesystem of its own at `path` (owned like `owner`), to fill up for real; skips
    the test where mounting is not allowed."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        st = owner.stat()
        os.chown(path, st.st_uid, st.st_gid)
        yield path
    finally:
        unmount(path)
        path.rmdir()


def unmount(path: Path, seconds: float = 10.0) -> None:
    """Unmount `path`, waiting while it is busy (the host's processes of a session the test cut
    can hold it for a moment); detached (lazy) as the last resort, so no test mount outlives
    its test."""
    deadline = time.monotonic() + seconds
    while True:
        res = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if res.returncode == 0:
            return
        if time.monotonic() >= deadline:
            subprocess.run(["umount", "-l", str(path)], check=True)
            return
        time.sleep(0.2)


def kill_sessions(listener: int) -> list[int]:
    """SIGKILL the sshd processes serving sessions (descendants of the host's sshd listener,
    which the sandbox started, that are sshd themselves — the shell running our script is left
    alone, as when a network drops); returns the pids killed."""
    killed = []
    for pid in descendants({listener}):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                os.kill(pid, 9)
                killed.append(pid)
        except (OSError, ProcessLookupError):
            pass
    return killed
