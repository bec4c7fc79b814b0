"""A real HAProxy in front of the sandbox's hosts (`inv sandbox.up --balancer`): run as the `lb`
host's user on that host's own loopback address, its admin socket and pidfile in the sandbox dir.
It carries the sandbox's tag in its environment, so `down()` ends it by pid like every process
the sandbox started; `stop()` ends it alone (by the pid in its pidfile, checked against its
config path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import Sandbox
from .parts import SandboxError, SandboxHost
from .procs import ENV_VAR, _alive, _read, _terminate

BACKEND = "app"


@dataclass(frozen=True)
class Paths:
    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def socket(self) -> Path:
        return self.dir / "admin.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "haproxy.pid"


def paths(box: Sandbox) -> Paths:
    return Paths(box.dir / "haproxy")


def render_config(p: Paths, lb: SandboxHost, hosts: tuple[SandboxHost, ...], http_port: int) -> str:
    """Frontend on lb's address and the app's port; one server per host, named by its address
    (deliver.balancer's default server name), checked on /health every 300 ms. Requests whose
    connection failed or got no answer are retried on another server, as a production config
    would."""
    servers = "".join(f"    server {h.address} {h.address}:{http_port} check inter 300 fall 2 "
                      "rise 2\n" for h in hosts)
    return (f"global\n    stats socket {p.socket} mode 600 level admin\n"
            f"    pidfile {p.pidfile}\n"
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n"
            "    timeout server 30s\n    retries 2\n    option redispatch 1\n"
            "    retry-on conn-failure empty-response response-timeout\n"
            f"frontend fe\n    bind {lb.address}:{http_port}\n    default_backend {BACKEND}\n"
            f"backend {BACKEND}\n    option httpchk GET /health\n{servers}")


def running(box: Sandbox) -> int | None:
    """The pid of this sandbox's HAProxy, when its pidfile names a live process started with
    this sandbox's config."""
    p = paths(box)
    raw = (_read(p.pidfile) or b"").split()
    if not raw or not raw[0].isdigit():
        return None
    pid = int(raw[0])
    cmdline = _read(Path(f"/proc/{pid}/cmdline")) or b""
    return pid if _alive(pid) and str(p.config).encode() in cmdline else None


def start(box: Sandbox, http_port: int) -> Paths:
    """Start (or keep) the HAProxy; returns its paths once the admin socket is there (10 s)."""
    lb = box.balancer
    if lb is None:
        raise SandboxError("this sandbox has no lb host: sandbox.up --balancer")
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        raise SandboxError("haproxy is not installed (apt-get install haproxy)")
    p = paths(box)
    if running(box):
        return p
    p.dir.mkdir(exist_ok=True)
    p.config.write_text(render_config(p, lb, box.hosts, http_port))
    p.socket.unlink(missing_ok=True)
    argv = [haproxy, "-D", "-f", str(p.config)]
    if os.geteuid() == 0:
        shutil.chown(p.dir, lb.user, lb.user)
        shutil.chown(p.config, lb.user, lb.user)
        argv = ["runuser", "-u", lb.user, "--", *argv]
    env = {**os.environ, ENV_VAR: box.tag}
    # cwd: HAProxy returns to its starting directory after reading the config; the lb user
    # may not be allowed into the caller's (a checkout under /root).
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, cwd=p.dir)
    if r.returncode:
        raise SandboxError(f"haproxy exited {r.returncode}: {r.stderr.strip()[-800:]}")
    deadline = time.monotonic() + 10
    while not (p.socket.exists() and running(box)):
        if time.monotonic() > deadline:
            raise SandboxError(f"haproxy did not open {p.socket} within 10 s")
        time.sleep(0.05)
    return p


def stop(box: Sandbox) -> list[str]:
    pid = running(box)
    if pid is None:
        return []
    _terminate([pid])
    return [f"stopped haproxy (pid {pid})"]


def deliver_balancer(box: Sandbox) -> dict[str, object]:
    """The `deliver.balancer` of the sandbox stage."""
    assert box.balancer is not None
    return {"host": box.balancer.spec, "socket": str(paths(box).socket), "backend": BACKEND,
            "drain_timeout": 10}
