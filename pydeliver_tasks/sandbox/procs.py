"""Processes of a sandbox, found and ended by pid — never by name.

A sandbox owns its sshds (matched by their config path) and, as root, every process of its hosts'
Unix users (nodes, epmd, run_erl started by deploys); without root, processes tagged with
PYDELIVER_SANDBOX=<dir> in their environment.
"""

from __future__ import annotations

import os
import pwd
import signal
import time
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "PYDELIVER_SANDBOX"  # exported by the deploy tool on node commands in sandbox stages


def parse_status_uid(status_text: str) -> int | None:
    """Real uid from /proc/<pid>/status text."""
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def is_sshd_cmdline(cmdline: bytes, config: Path) -> bool:
    """Is this /proc cmdline an sshd started with `-f config`? (sshd rewrites it as a title.)"""
    text = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    first = os.path.basename(text.split(" ", 1)[0])
    return first.startswith("sshd") and f" -f {config} " in f"{text} "


def environ_has(environ: bytes, var: str, value: str) -> bool:
    """Does a /proc environ block hold exactly var=value?"""
    return f"{var}={value}".encode() in environ.split(b"\0")


# ---- /proc and processes: always by pid, never by name ----

def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # vanished, or not ours to read
        return None


def _stat_fields(pid: int) -> list[bytes]:
    """/proc/<pid>/stat fields after the command name: [state, ppid, ...]."""
    return (_read(Path(f"/proc/{pid}/stat")) or b")").rsplit(b")", 1)[-1].split()


def _alive(pid: int) -> bool:
    """Alive and not a zombie."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"


def _terminate(pids: list[int], timeout: float = 5.0) -> None:
    """TERM, wait up to timeout, then KILL the stragglers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while (pids := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            return


def ancestors(pid: int) -> set[int]:
    """pid and its parents, so a sweep never ends the caller."""
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        fields = _stat_fields(pid)
        pid = int(fields[1]) if len(fields) > 1 else 0
    return seen


def descendants(pids: set[int]) -> set[int]:
    """Every process below these (a session of our sshd and what it started)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if len(fields) > 1 and fields[1].isdigit():
                parent_of[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = set(pids)
    while frontier:
        frontier = {p for p, parent in parent_of.items() if parent in frontier and p not in found}
        found |= frontier
    return found


def end_sandbox_processes(dir: Path, users: list[str], root: bool, tag: str,
                          sessions: Iterable[int] = ()) -> list[str]:
    """End, by pid, the processes this sandbox started: those carrying ENV_VAR=tag (every node,
    epmd and run_erl a deploy started: the stage env exports it) and `sessions` (below our
    sshds); as root only when they also run as one of its users. A uid alone never decides: a
    sandbox in a chroot sees outside processes (their /proc root reads "/" there too), and
    another sandbox's users may share a uid."""
    uids: dict[int, str] = {}
    for user in users if root else []:
        try:
            uids[pwd.getpwnam(user).pw_uid] = user
        except KeyError:
            pass
    spare, lines, sessions = ancestors(os.getpid()), [], set(sessions)
    for _ in range(3):  # a dying parent may have spawned more: rescan
        victims: dict[int, str] = {}
        for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
            if pid in spare or not _alive(pid):  # zombies cannot be ended, only reaped
                continue
            uid = parse_status_uid((_read(Path(f"/proc/{pid}/status")) or b"").decode())
            if root and uid not in uids:
                continue
            owner = f"user {uids[uid]}, " if root and uid is not None else ""
            if environ_has(_read(Path(f"/proc/{pid}/environ")) or b"", ENV_VAR, tag):
                victims[pid] = f"{owner}{ENV_VAR}={tag}"
            elif pid in sessions:
                victims[pid] = f"{owner}a session of the sandbox's sshd"
        if not victims:
            break
        names = {p: (_read(Path(f"/proc/{p}/comm")) or b"?").decode().strip() for p in victims}
        _terminate(list(victims))
        lines += [f"ended {names[p]} pid {p} ({why})" for p, why in victims.items()]
    return lines
