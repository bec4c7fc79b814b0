"""The run's SSH connection to each host, opened once and reused by every step of this process,
and the one shell on it that runs the run's commands (fleet/shell.py)."""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

from .. import lazy
from ..config import SshSettings
from ..model import Host
from .shell import RemoteShell

if TYPE_CHECKING:
    from fabric import Connection

ssh = lazy.module("pydeliver_tasks.fleet.ssh")

_pool: dict[tuple[str, str | None, int | None, str], Connection] = {}
_pool_lock = threading.Lock()
# pool key -> (the connection it runs on, its shell; None: the host cannot run one)
_shells: dict[tuple[str, str | None, int | None, str], tuple[Connection, RemoteShell | None]] = {}
_shell_starts: dict[tuple[str, str | None, int | None, str], threading.Lock] = {}


def connection(host: Host, settings: SshSettings) -> Connection:
    """The run's connection to `host`, opened once and reused by every step of this process."""
    key = (host.address, host.user, host.port, repr(settings))
    with _pool_lock:
        conn = _pool.get(key)
        if conn is None or (conn.transport is not None and not conn.transport.is_active()):
            conn = ssh.connection(host, settings)
            _pool[key] = conn
    return conn


def shell_for(host: Host, settings: SshSettings) -> RemoteShell | None:
    """The run's shell on `host` (commands/shell.py), started on the pooled connection at the
    first command that can use it; None when the host cannot run one."""
    conn = connection(host, settings)
    key = (host.address, host.user, host.port, repr(settings))
    with _pool_lock:
        starting = _shell_starts.setdefault(key, threading.Lock())
    with starting:  # one start per host; other hosts' starts go on meanwhile
        with _pool_lock:
            on, shell = _shells.get(key, (None, None))
        if on is conn and (shell is None or shell.usable):
            return shell
        conn.open()
        shell = RemoteShell(conn.transport)
        with _pool_lock:
            _shells[key] = (conn, shell)
        return shell


def no_shell(host: Host, settings: SshSettings) -> None:
    """The host cannot run the shell loop: every command of this connection is an SSH exec."""
    key = (host.address, host.user, host.port, repr(settings))
    with _pool_lock:
        if key in _shells:
            _shells[key] = (_shells[key][0], None)


def drop(host: Host, settings: SshSettings) -> None:
    """Forget (and close) the pooled connection to `host`: the next command opens a new one."""
    key = (host.address, host.user, host.port, repr(settings))
    with _pool_lock:
        conn = _pool.pop(key, None)
        _shells.pop(key, None)
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped
            pass


def close_connections() -> None:
    with _pool_lock:
        for conn in _pool.values():
            conn.close()
        _pool.clear()
        _shells.clear()


atexit.register(close_connections)
