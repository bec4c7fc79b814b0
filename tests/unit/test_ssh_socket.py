"""The SSH connection's socket (fleet/ssh.py): Nagle off and quick acknowledgments, on a real
loopback TCP connection; a failed login leaves neither the socket open nor the option behind."""

from __future__ import annotations

import socket
import threading

import paramiko
import pytest

from pydeliver_tasks.config import SshSettings
from pydeliver_tasks.fleet import ssh


def listener(answer: bytes) -> tuple[socket.socket, threading.Thread]:
    """A loopback server that accepts one connection, sends `answer` and closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(answer)
            conn.recv(1024)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return server, t


def test_the_socket_sends_without_nagle_and_reads_what_arrives() -> None:
    server, t = listener(b"SSH-2.0-test\r\n")
    with server:
        sock = ssh.low_latency_socket("127.0.0.1", server.getsockname()[1], 5)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert sock.recv(64) == b"SSH-2.0-test\r\n"
            sock.sendall(b"bye")
        t.join(5)


def test_a_closed_port_is_refused_as_an_os_error() -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(OSError):
        ssh.low_latency_socket("127.0.0.1", port, 5)


def test_a_failed_login_closes_the_socket_and_restores_the_connect_arguments() -> None:
    """A server that is not sshd: the open fails as paramiko says, and the Connection keeps no
    socket for its next try (a reconnect makes a new one)."""
    server, t = listener(b"this is not ssh\r\n")
    with server:
        conn = ssh.connection(("127.0.0.1", "nobody", server.getsockname()[1]),
                              SshSettings("", "strict", "", "", 5))
        before = dict(conn.connect_kwargs)
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            conn.open()
        assert conn.connect_kwargs == before and "sock" not in conn.connect_kwargs
        t.join(5)
