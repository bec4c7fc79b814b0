"""SSH connections that verify host keys — Fabric's default auto-adds every key, we must not.

`strict` (default) refuses unknown and changed keys; `accept-new` records an unknown key in the
known_hosts file (like OpenSSH's StrictHostKeyChecking=accept-new) but still refuses a changed one.
The same policy is applied to every ProxyJump gateway and to the git push (see `git_ssh_command`).
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config as FabricConfig
from fabric import Connection

from ..config import SshSettings
from ..model import Host

_known_hosts_lock = threading.Lock()


class UnknownHostKey(paramiko.SSHException):
    """Raised by the strict policy; the message says how to trust the host on purpose."""


def known_hosts_path(ssh: SshSettings) -> Path:
    return Path(os.path.expanduser(ssh.known_hosts or "~/.ssh/known_hosts"))


def ssh_config_path(ssh: SshSettings) -> str | None:
    if ssh.config_file:
        return os.path.expanduser(ssh.config_file)
    return None


def _host_key_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class StrictPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        fingerprint = key.fingerprint if hasattr(key, "fingerprint") else key.get_name()
        host, _, port = hostname.strip("[").partition("]:")
        raise UnknownHostKey(
            f"unknown host key for {hostname} ({fingerprint}): not in {self.known_hosts}; "
            f"check the fingerprint, then add it (ssh-keyscan -p {port or 22} {host} >> "
            f"{self.known_hosts}) or set deliver.ssh.host_key_policy: accept-new"
        )


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Trust on first use: append the key to our known_hosts file; changed keys stay refused."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _known_hosts_lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.known_hosts.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def secure(conn: Connection, ssh: SshSettings) -> Connection:
    """Replace Fabric's AutoAddPolicy by ours on the connection and every gateway hop."""
    known = known_hosts_path(ssh)
    if known.exists():
        conn.client.load_host_keys(str(known))
    policy = AcceptNewPolicy(known) if ssh.host_key_policy == "accept-new" else StrictPolicy(known)
    conn.client.set_missing_host_key_policy(policy)
    if isinstance(conn.gateway, Connection):
        # Fabric builds ProxyJump hops itself, without our identity: give them the same key.
        conn.gateway.connect_kwargs = {**connect_kwargs(ssh), **conn.gateway.connect_kwargs}
        secure(conn.gateway, ssh)
    return conn


class _AckingSocket(socket.socket):
    """A TCP socket that acknowledges each read at once (Linux's TCP_QUICKACK, which the kernel
    turns off again by itself). sshd leaves Nagle on for a session without a terminal: right
    after the login it sends small messages, holds the reply to the first channel open until
    they are acknowledged, and a delayed acknowledgment made every connection wait ~40 ms."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if _QUICKACK is not None:
            try:
                self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass  # closed meanwhile: the next read says so
        return data


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def low_latency_socket(address: str, port: int, timeout: float | None) -> socket.socket:
    """A connected TCP socket for SSH's requests and replies: no Nagle delay on what we send
    (each command is a small request waiting for its answer), and quick acknowledgments."""
    plain = socket.create_connection((address, port), timeout=timeout)
    sock = _AckingSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
    sock.settimeout(timeout)  # the descriptor is non-blocking under a timeout: say so again
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class LowLatencyConnection(Connection):
    """A Fabric Connection on a low_latency_socket: on loopback, a login and first command took
    ~115 ms, now ~35 ms. Connections through a gateway or a ProxyCommand stay Fabric's own."""

    def open(self) -> Any:  # noqa: ANN401 - Fabric's own return value, passed on
        if self.is_connected or self.gateway or "sock" in self.connect_kwargs:
            return super().open()
        own, sock = self.connect_kwargs, low_latency_socket(self.host, int(self.port),
                                                           self.connect_timeout)
        self.connect_kwargs = {**own, "sock": sock}
        try:
            return super().open()
        except BaseException:
            sock.close()
            raise
        finally:
            self.connect_kwargs = own


def fabric_config(ssh: SshSettings) -> FabricConfig:
    cfg = FabricConfig(runtime_ssh_path=ssh_config_path(ssh), lazy=True)
    cfg.load_ssh_config()
    return cfg


def connect_kwargs(ssh: SshSettings) -> dict[str, object]:
    if not ssh.identity_file:
        return {}
    # An explicit identity means only that key: like OpenSSH's IdentitiesOnly.
    return {
        "key_filename": [os.path.expanduser(ssh.identity_file)],
        "look_for_keys": False,
        "allow_agent": False,
    }


def connection(host: Host | tuple[str, str | None, int | None], ssh: SshSettings) -> Connection:
    """A not-yet-opened Fabric Connection with our host key policy in place."""
    address, user, port = (
        (host.address, host.user, host.port) if isinstance(host, Host) else host
    )
    conn = LowLatencyConnection(
        address,
        user=user,
        port=port,
        config=fabric_config(ssh),
        connect_timeout=ssh.connect_timeout,
        connect_kwargs=connect_kwargs(ssh),
    )
    return secure(conn, ssh)


def git_ssh_command(ssh: SshSettings, port: int | None) -> str:
    """GIT_SSH_COMMAND for pushes to the build host, with the same key and host key policy."""
    argv = [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known_hosts_path(ssh)}",
        "-o", "StrictHostKeyChecking="
        + ("accept-new" if ssh.host_key_policy == "accept-new" else "yes"),
        "-o", f"ConnectTimeout={ssh.connect_timeout}",
    ]
    if ssh.config_file:
        argv += ["-F", os.path.expanduser(ssh.config_file)]
    if ssh.identity_file:
        argv += ["-i", os.path.expanduser(ssh.identity_file), "-o", "IdentitiesOnly=yes"]
    if port:
        argv += ["-p", str(port)]
    return shlex.join(argv)
