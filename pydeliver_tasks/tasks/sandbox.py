"""`sandbox.*` tasks: real sshd "hosts" on loopback for the demo and the tests, and the `deliver`
config that points a project at them (written as an Invoke runtime config file)."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from .. import sandbox as sb
from ..fleet import say
from ..sandbox import balancer as sandbox_balancer
from ..sandbox.config import write_runtime_config
from ..steps import settings_of
from ..validation import InvalidInput

DIR = "sandbox directory (default /tmp/pydeliver-sandbox-PORT)"


def _dir(dir: str, port: int) -> Path:
    """Sandbox users must read authorized_keys in it, so it must not sit under /root."""
    return Path(dir or f"/tmp/pydeliver-sandbox-{port}").resolve()


@task(help={"hosts": "number of deploy hosts (plus one build host)", "port": "sshd port",
            "dir": DIR, "fresh": "wipe the hosts' homes first",
            "first_address": "last octet of the first loopback address (127.0.0.N)",
            "http_port": "HTTP port the app listens on, on every host",
            "balancer": "also an lb host running HAProxy in front of the hosts (as that host's "
                        "user, on its own address and the same HTTP port), in the config as "
                        "deliver.balancer"})
def up(c: Context, hosts: int = 2, port: int = 2222, dir: str = "",
       fresh: bool = False, first_address: int = 2, http_port: int = 4000,
       balancer: bool = False) -> None:
    """Start N sshd hosts + a build host on loopback and write their deliver config."""
    try:
        app = settings_of(c).release
        if not app:
            raise InvalidInput("deliver.app is empty: set it in invoke.yaml (your OTP application)")
        if not 1 <= hosts <= 50 or not 2 <= first_address <= 249 - hosts:
            raise InvalidInput("--hosts must be 1-50 and --first-address leave room for them")
        box = sb.up(_dir(dir, port), hosts=hosts, port=port, first_address=first_address,
                    fresh=fresh, balancer=balancer)
        lb = sandbox_balancer.start(box, http_port) if balancer else None
    except InvalidInput as exc:
        raise Exit(f"error: {exc}", code=2) from exc
    except sb.SandboxError as exc:
        raise Exit(f"sandbox.up failed: {exc}", code=1) from exc
    cfg = write_runtime_config(box, app, http_port)
    say(f"sandbox up in {box.dir}: build host {box.build.spec}, "
          f"hosts {', '.join(h.spec for h in box.hosts)}")
    if lb is not None and box.balancer is not None:
        say(f"balancer: HAProxy pid {sandbox_balancer.running(box)} on the lb host "
            f"{box.balancer.spec}, http://{box.balancer.address}:{http_port}/ in front of the "
            f"hosts; admin socket {lb.socket} (inv balancer.status)")
    say(f"use it with: INVOKE_RUNTIME_CONFIG={cfg} inv <task>   (or inv -f {cfg} <task>)")


@task(help={"dir": DIR, "port": "sshd port of the sandbox",
            "purge": "also remove the sandbox users, their homes and the dir"})
def down(c: Context, dir: str = "", port: int = 2222, purge: bool = False) -> None:
    """Stop exactly what the sandbox started (sshd by pid, and the hosts' nodes and epmds)."""
    for line in sb.down(_dir(dir, port), purge=purge):
        say(line)


@task(help={"dir": DIR, "port": "sshd port of the sandbox"})
def status(c: Context, dir: str = "", port: int = 2222) -> None:
    """Show each sandbox host, its sshd pid and whether it answers."""
    try:
        rows = sb.status(_dir(dir, port))
    except (sb.SandboxError, OSError, ValueError) as exc:
        raise Exit(f"no sandbox: {exc}", code=1) from exc
    bad = False
    for host, pid, answering in rows:
        bad |= not answering
        state = "up" if answering else "DOWN"
        say(f"{host.name:<6} {host.spec:<32} sshd pid {pid or '-':<8} {state}")
    if bad:
        raise Exit("some sandbox hosts are down: inv sandbox.up", code=1)


sandbox = Collection("sandbox", up, down, status)
