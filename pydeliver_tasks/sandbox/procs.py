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


def end_sandbox_processes(dir: Path, users: list[str], root: bool) -> list[str]:
    """End processes of sandbox users (root) or tagged ENV_VAR=dir (non-root), by pid."""
    uids: dict[int, str] = {}
    for user in users if root else []:
        try:
            uids[pwd.getpwnam(user).pw_uid] = user
        except KeyError:
            pass
    spare, lines = ancestors(os.getpid()), []
    # A sandbox in a chroot sees the same pids, and its users may have our users' uids: only
    # processes that share our root directory can be this sandbox's.
    our_root = os.readlink("/proc/self/root")
    for _ in range(3):  # a dying parent may have spawned more: rescan
        victims: dict[int, str] = {}
        for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
            if pid in spare or not _alive(pid):  # zombies cannot be ended, only reaped
                continue
            try:
                if os.readlink(f"/proc/{pid}/root") != our_root:
                    continue
            except OSError:
                continue
            if root:
                uid = parse_status_uid((_read(Path(f"/proc/{pid}/status")) or b"").decode())
                if uid in uids:
                    victims[pid] = f"user {uids[uid]}"
            elif environ_has(_read(Path(f"/proc/{pid}/environ")) or b"", ENV_VAR, str(dir)):
                victims[pid] = f"{ENV_VAR}={dir}"
        if not victims:
            break
        names = {p: (_read(Path(f"/proc/{p}/comm")) or b"?").decode().strip() for p in victims}
        _terminate(list(victims))
        lines += [f"ended {names[p]} pid {p} ({why})" for p, why in victims.items()]
    return lines
