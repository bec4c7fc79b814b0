"""The reader side of the run's one shell per host (commands/shell.py is the loop on the host):
a command sent to it costs a fork there instead of an SSH session. One command at a time; a
caller that finds it busy (the lock heartbeat beside a step) uses an SSH exec of its own."""

from __future__ import annotations

import re
import secrets
import select
import threading
import time
from typing import TYPE_CHECKING

from ..commands import shell as cmds

if TYPE_CHECKING:
    from paramiko import Transport

_READ = 65536
_EXIT_RE = re.compile(rb"(-?\d+)\n")


class ShellTimeout(Exception):
    """The command did not end in time; the shell is closed (the command may still run)."""


class RemoteShell:
    """One shell loop on a host over an open SSH transport (paramiko's)."""

    def __init__(self, transport: Transport) -> None:
        self.channel = transport.open_session()
        self.channel.exec_command(cmds.DRIVER)
        self.lock = threading.Lock()
        self.usable = True  # False once it ended, timed out or said it cannot serve

    def close(self) -> None:
        self.usable = False
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001 - a channel of a dead connection may fail to close
            pass

    def run(self, command: str, timeout: float | None = None) -> tuple[bytes, bytes, int] | None:
        """(stdout, stderr, exit status) of `command`; exit status -1 when the shell ended before
        the command did (as an SSH exec whose connection dropped). None: the host cannot run
        this shell (no base64) and nothing ran: use an SSH exec."""
        rid = "PDT" + secrets.token_hex(8)
        self.channel.sendall(cmds.request(rid, command))
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        out_at = err_at = -1
        while out_at < 0 or err_at < 0:
            ch = self.channel
            if ch.recv_ready():
                out += ch.recv(_READ)
                out_at = _end(out, cmds.stdout_end(rid), out_at)
                continue
            if ch.recv_stderr_ready():
                err += ch.recv_stderr(_READ)
                err_at = err.find(cmds.stderr_end(rid)) if err_at < 0 else err_at
                continue
            if ch.eof_received or ch.closed:
                self.close()
                if bytes(out).strip() == cmds.UNAVAILABLE.encode():
                    return None
                return bytes(out), bytes(err), -1
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.close()
                raise ShellTimeout(f"Command did not complete within {timeout} seconds!")
            select.select([ch], [], [], min(1.0, left) if left is not None else 1.0)
        status = _EXIT_RE.match(out, out_at + len(cmds.stdout_end(rid)))
        return bytes(out[:out_at]), bytes(err[:err_at]), int(status[1]) if status else -1


def _end(buf: bytearray, marker: bytes, found: int) -> int:
    """Where `marker` followed by a whole exit-status line starts in buf, or -1 (not yet)."""
    if found >= 0:
        return found
    at = buf.find(marker)
    if at >= 0 and _EXIT_RE.match(buf, at + len(marker)):
        return at
    return -1
