"""Loopback SSH sandbox: N real OpenSSH "hosts" (one sshd per 127.0.0.x) plus a build host.

The demo and the integration tests deploy over real SSH without real machines. Everything lives
in one directory, except (as root) one Unix user + home per host: each "host" then has its own
home, and `down()` can find the processes deploys left there by uid and end them by pid.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .parts import (  # noqa: F401  (re-exported: part of the sandbox's API)
    SSHD,
    SandboxError,
    SandboxHost,
    _bindable,
    _check_traversable,
    _ensure_user,
    _keygen,
    _must,
    _our_sshd_pid,
    _paths,
    _port_open,
    _q,
    _sshd_pids_by_config,
    _wipe_home,
    host_address,
    host_names,
    known_hosts_line,
    render_ssh_config,
    render_sshd_config,
    sandbox_uid,
    sandbox_user,
)
from .procs import (  # noqa: F401  (re-exported: part of the sandbox's API)
    ENV_VAR,
    _alive,
    _read,
    _terminate,
    descendants,
    end_sandbox_processes,
    environ_has,
    is_sshd_cmdline,
    parse_status_uid,
)


@dataclass(frozen=True)
class Sandbox:
    dir: Path
    build: SandboxHost
    hosts: tuple[SandboxHost, ...]
    identity_file: Path
    known_hosts: Path
    ssh_config: Path
    tag: str = ""  # ENV_VAR's value on everything this sandbox starts: its dir and a random id
    balancer: SandboxHost | None = None  # `lb`, the load balancer's host (up(balancer=True))

    @property
    def all_hosts(self) -> tuple[SandboxHost, ...]:
        """Build host first, then h1..hN (then lb)."""
        return (self.build, *self.hosts, *([self.balancer] if self.balancer else []))

    def pids(self) -> dict[str, int]:
        """Host name -> sshd pid; hosts whose pid file is missing or stale are left out."""
        found = {h.name: _our_sshd_pid(self.dir, h.name) for h in self.all_hosts}
        return {name: pid for name, pid in found.items() if pid is not None}


def _read_state(dir: Path) -> dict | None:
    raw = _read(dir / "state.json")
    return json.loads(raw) if raw else None


def load(dir: Path) -> Sandbox:
    """Sandbox described by state.json, written by up()."""
    dir = Path(dir).resolve()
    if (st := _read_state(dir)) is None:
        raise SandboxError(f"no sandbox in {dir} (state.json missing): run up() first")
    hosts = [SandboxHost(**h) for h in st["hosts"]]
    lb = hosts.pop() if st.get("balancer") else None
    return Sandbox(dir, hosts[0], tuple(hosts[1:]), Path(st["identity_file"]),
                   Path(st["known_hosts"]), Path(st["ssh_config"]), _tag(dir, st), lb)


def _tag(dir: Path, state: dict) -> str:
    return f"{dir}#{state.get('id', '')}"


def up(dir: Path, hosts: int = 2, port: int = 2222, first_address: int = 2,
       fresh: bool = False, balancer: bool = False) -> Sandbox:
    """Bring up (or reuse, if already running as asked) build + h1..hN sshds on loopback, and
    with balancer an `lb` host after them (sandbox.balancer starts its HAProxy)."""
    dir, root = Path(dir).resolve(), os.geteuid() == 0
    if hosts < 0:
        raise SandboxError("hosts must be >= 0")
    old = _read_state(dir) or {}
    names = host_names(hosts) + (["lb"] if balancer else [])
    if old and (old["port"], old["first_address"], len(old["hosts"]), bool(old.get("balancer"))) \
            != (port, first_address, len(names), balancer):
        down(dir)  # different layout: stop everything, then start afresh
    users: list[str] = list(old.get("users", []))  # every user ever made here, for purge
    for sub in ("config", "run", "log", "authorized_keys"):
        (dir / sub).mkdir(parents=True, exist_ok=True)
    (dir / "keys").mkdir(mode=0o700, exist_ok=True)
    if root:
        dir.chmod(0o755)
        _check_traversable(dir)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    made: list[SandboxHost] = []
    sid = old.get("id") or secrets.token_hex(8)
    for i, name in enumerate(names):
        if root:
            user = sandbox_user(port, name)
            home = _ensure_user(user, sandbox_uid(port, i))
            users += [user] if user not in users else []
        else:
            user, home = pwd.getpwuid(os.geteuid()).pw_name, str(dir / "homes" / name)
            Path(home).mkdir(parents=True, exist_ok=True)
        made.append(SandboxHost(name, host_address(first_address, i), port, user, home))
    if fresh:
        end_sandbox_processes(dir, users, root, _tag(dir, {"id": sid}))
        for h in made:
            _wipe_home(Path(h.home))
    identity = dir / "keys" / "client_ed25519"
    client_pub = _keygen(identity, "pydeliver-sandbox-client")
    for user in dict.fromkeys(h.user for h in made):
        (ak := dir / "authorized_keys" / user).write_text(client_pub)
        ak.chmod(0o644)
    known = []
    for h in made:
        key = dir / "keys" / f"host_{h.name}_ed25519"
        known.append(known_hosts_line(h.address, port, _keygen(key, f"pdt-sandbox-{h.name}")))
        cfg, pid_file, _ = _paths(dir, h.name)
        cfg.write_text(render_sshd_config(h.address, port, key, pid_file, dir / "authorized_keys"))
    lb = made[-1] if balancer else None
    deploy = made[1:-1] if balancer else made[1:]
    sb = Sandbox(dir, made[0], tuple(deploy), identity, dir / "known_hosts",
                 dir / "ssh_config", _tag(dir, {"id": sid}), lb)
    sb.known_hosts.write_text("\n".join(known) + "\n")
    sb.ssh_config.write_text(render_ssh_config(made, identity, sb.known_hosts))
    state = {"version": 1, "id": sid, "port": port, "first_address": first_address, "root": root,
             "users": users, "hosts": [asdict(h) for h in made], "balancer": balancer,
             **{k: str(getattr(sb, k)) for k in ("identity_file", "known_hosts", "ssh_config")}}
    (dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    _start_sshds(sb)
    return sb


def _start_sshds(sb: Sandbox) -> None:
    """Start each sshd not already running; wait for its pid file and open port (10 s)."""
    starting = [h for h in sb.all_hosts if h.name not in sb.pids()]
    started: list[SandboxHost] = []

    def fail(h: SandboxHost, why: str) -> SandboxError:
        deadline = time.monotonic() + 3.0  # the sshds started so far write pid files async
        while any(not _our_sshd_pid(sb.dir, s.name) for s in started) and (
                time.monotonic() < deadline):
            time.sleep(0.05)
        down(sb.dir)
        log = (_read(_paths(sb.dir, h.name)[2]) or b"").decode(errors="replace")
        tail = "\n".join(log.splitlines()[-15:])
        return SandboxError(f"sshd for {h.name} ({h.address}:{h.port}) {why}; log tail:\n{tail}")

    for h in starting:
        _paths(sb.dir, h.name)[1].unlink(missing_ok=True)
        if strays := _sshd_pids_by_config(sb.dir, h.name):  # ours, but their pid file is lost
            _terminate(strays)
        if not _bindable(h.address, h.port):
            raise fail(h, "cannot start: the address is already in use by another process")
    for h in starting:
        cfg, _, log = _paths(sb.dir, h.name)
        r = subprocess.run([SSHD, "-f", str(cfg), "-E", str(log)], capture_output=True,
                           text=True, timeout=30)
        if r.returncode:
            raise fail(h, f"exited {r.returncode} {r.stderr.strip()}".strip())
        started.append(h)
    deadline = time.monotonic() + 10.0
    for h in starting:
        while not (_our_sshd_pid(sb.dir, h.name) and _port_open(h.address, h.port)):
            if time.monotonic() > deadline:
                raise fail(h, "not ready after 10 s")
            time.sleep(0.05)


def down(dir: Path, purge: bool = False) -> list[str]:
    """Stop our sshds, end sandbox users' processes (by pid); purge: remove users and dir."""
    dir = Path(dir).resolve()
    if (st := _read_state(dir)) is None:
        return [f"no sandbox state in {dir}; nothing done"]
    lines: list[str] = []
    sshds = {p for h in st["hosts"] for p in [*_sshd_pids_by_config(dir, h["name"]),
                                              _our_sshd_pid(dir, h["name"])] if p is not None}
    sessions = descendants(sshds)  # found before the sshds go: their sessions are ours too
    for h in st["hosts"]:
        pids = set(_sshd_pids_by_config(dir, h["name"]))
        if (pid := _our_sshd_pid(dir, h["name"])) is not None:
            pids.add(pid)
        if pids:
            _terminate(sorted(pids))
            lines.append(f"stopped sshd {h['name']} (pid {', '.join(map(str, sorted(pids)))})")
        _paths(dir, h["name"])[1].unlink(missing_ok=True)
    lines += end_sandbox_processes(dir, st["users"], st["root"], _tag(dir, st), sessions)
    if purge:
        for user in st["users"] if st["root"] else []:
            r = subprocess.run(["userdel", "-r", user], capture_output=True, text=True, timeout=60)
            lines.append({0: f"removed user {user}", 6: f"user {user} already absent"}.get(
                r.returncode, f"userdel {user} failed ({r.returncode}): {r.stderr.strip()}"))
        shutil.rmtree(dir)
        lines.append(f"removed {dir}")
    return lines


def status(dir: Path) -> list[tuple[SandboxHost, int | None, bool]]:
    """(host, our sshd pid or None, port answering) per host, build first."""
    sb = load(dir)
    return [(h, _our_sshd_pid(sb.dir, h.name), _port_open(h.address, h.port))
            for h in sb.all_hosts]
