"""Loopback SSH sandbox: N real OpenSSH "hosts" (one sshd per 127.0.0.x) plus a build host.

The demo and the integration tests deploy over real SSH without real machines. Everything lives
in one directory, except (as root) one Unix user + home per host: each "host" then has its own
home, and `down()` can find the processes deploys left there by uid and end them by pid.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .sandbox_procs import (  # noqa: F401  (re-exported: part of the sandbox's API)
    ENV_VAR,
    _alive,
    _read,
    _terminate,
    end_sandbox_processes,
    environ_has,
    is_sshd_cmdline,
    parse_status_uid,
)

SSHD = "/usr/sbin/sshd"


class SandboxError(RuntimeError):
    """The sandbox could not be brought up, loaded or inspected."""


@dataclass(frozen=True)
class SandboxHost:
    name: str
    address: str
    port: int
    user: str
    home: str

    @property
    def spec(self) -> str:
        """Fabric-style host string."""
        return f"{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class Sandbox:
    dir: Path
    build: SandboxHost
    hosts: tuple[SandboxHost, ...]
    identity_file: Path
    known_hosts: Path
    ssh_config: Path

    @property
    def all_hosts(self) -> tuple[SandboxHost, ...]:
        """Build host first, then h1..hN."""
        return (self.build, *self.hosts)

    def pids(self) -> dict[str, int]:
        """Host name -> sshd pid; hosts whose pid file is missing or stale are left out."""
        found = {h.name: _our_sshd_pid(self.dir, h.name) for h in self.all_hosts}
        return {name: pid for name, pid in found.items() if pid is not None}


# ---- pure helpers (unit-tested without root) ----

def host_names(hosts: int) -> list[str]:
    """'build' plus h1..hN."""
    return ["build", *(f"h{i}" for i in range(1, hosts + 1))]


def host_address(first_address: int, index: int) -> str:
    """Loopback address of the index-th host (build is index 0)."""
    if first_address < 1 or first_address + index > 254:
        raise SandboxError(f"127.0.0.{first_address + index} is not a usable loopback address")
    return f"127.0.0.{first_address + index}"


def sandbox_user(port: int, name: str) -> str:
    """Per-host Unix user; the port keeps parallel sandboxes apart."""
    return f"pdt{port}-{name}"


def _q(path: Path | str) -> str:
    """Double-quote a path for ssh(d)_config, which cannot escape a quote itself."""
    if '"' in str(path) or "\n" in str(path):
        raise SandboxError(f"path not usable in an ssh config: {path!r}")
    return f'"{path}"'


def render_sshd_config(address: str, port: int, host_key: Path, pid_file: Path,
                       authorized_keys_dir: Path) -> str:
    """One sshd per host, key-only; LogLevel VERBOSE logs each accepted connection."""
    return f"""ListenAddress {address}
Port {port}
HostKey {_q(host_key)}
PidFile {_q(pid_file)}
AuthorizedKeysFile {_q(Path(authorized_keys_dir) / "%u")}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
SetEnv LANG=C.UTF-8
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def render_ssh_config(hosts: list[SandboxHost], identity_file: Path, known_hosts: Path) -> str:
    """Client config so `ssh -F <file> h1` works with strict host key checking."""
    return "\n".join(
        f"Host {h.name}\n  HostName {h.address}\n  Port {h.port}\n  User {h.user}\n"
        f"  IdentityFile {_q(identity_file)}\n  UserKnownHostsFile {_q(known_hosts)}\n"
        "  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n"
        for h in hosts)


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    """known_hosts entry; OpenSSH writes non-22 ports as [addr]:port."""
    key_type, key_b64 = public_key.split()[:2]
    return f"{address if port == 22 else f'[{address}]:{port}'} {key_type} {key_b64}"


def _paths(dir: Path, name: str) -> tuple[Path, Path, Path]:
    """(sshd_config, pid file, log) of one host."""
    return (dir / "config" / f"{name}.sshd_config", dir / "run" / f"{name}.pid",
            dir / "log" / f"{name}.log")


def _our_sshd_pid(dir: Path, name: str) -> int | None:
    """Pid from the pid file, only if that process really is this sandbox's sshd."""
    cfg, pid_file, _ = _paths(dir, name)
    raw = (_read(pid_file) or b"").strip()
    if not raw.isdigit():
        return None
    cmdline = _read(Path(f"/proc/{int(raw)}/cmdline"))
    return int(raw) if cmdline and is_sshd_cmdline(cmdline, cfg) and _alive(int(raw)) else None


def _sshd_pids_by_config(dir: Path, name: str) -> list[int]:
    """Listener sshds started with this host's config, found even when the pid file is lost."""
    cfg = _paths(dir, name)[0]
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (cmd := _read(d / "cmdline")) and is_sshd_cmdline(cmd, cfg):
            if b"[listener]" in cmd or b"-E" in cmd.split(b"\0"):
                found.append(int(d.name))
    return [p for p in found if _alive(p)]


def _port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _bindable(address: str, port: int) -> bool:
    """Could sshd bind here? (sshd binds after daemonising, so its exit code can't tell.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd: TIME_WAIT is fine
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


# ---- users, keys, state ----

def _must(argv: list[str]) -> None:
    """Run a program (argv list, no shell); raise with its stderr if it fails."""
    for _ in range(20):  # useradd/usermod of a parallel sandbox may hold /etc/passwd's lock
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if not (r.returncode and "lock" in r.stderr):
            break
        time.sleep(0.25)
    if r.returncode:
        raise SandboxError(f"{argv[0]} failed ({r.returncode}): {r.stderr.strip()}")


def _keygen(path: Path, comment: str) -> str:
    """ed25519 key without passphrase, generated once and reused; returns the public key."""
    if not path.exists():
        _must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return Path(f"{path}.pub").read_text()


def _ensure_user(user: str) -> str:
    """Create the host's user if missing; '*' password since sshd without PAM refuses '!'."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        _must(["useradd", "-m", "-d", f"/home/{user}", "-s", "/bin/bash", user])
    _must(["usermod", "-p", "*", user])
    pw = pwd.getpwnam(user)
    Path(pw.pw_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(pw.pw_dir, pw.pw_uid, pw.pw_gid)
    return pw.pw_dir


def _wipe_home(home: Path) -> None:
    """Empty a home so a test starts clean; the dir itself (and its owner) stays."""
    home.mkdir(parents=True, exist_ok=True)
    for child in home.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _check_traversable(dir: Path) -> None:
    """sshd reads authorized_keys as the target user: every parent must be world-searchable."""
    for p in [dir, *dir.parents]:
        if not p.stat().st_mode & 0o001:
            raise SandboxError(f"{p} is not searchable by other users, so sandbox users cannot "
                               f"read {dir}/authorized_keys; use a dir under e.g. /tmp or /srv")


def _read_state(dir: Path) -> dict | None:
    raw = _read(dir / "state.json")
    return json.loads(raw) if raw else None


def load(dir: Path) -> Sandbox:
    """Sandbox described by state.json, written by up()."""
    dir = Path(dir).resolve()
    if (st := _read_state(dir)) is None:
        raise SandboxError(f"no sandbox in {dir} (state.json missing): run up() first")
    hosts = [SandboxHost(**h) for h in st["hosts"]]
    return Sandbox(dir, hosts[0], tuple(hosts[1:]), Path(st["identity_file"]),
                   Path(st["known_hosts"]), Path(st["ssh_config"]))


def up(dir: Path, hosts: int = 2, port: int = 2222, first_address: int = 2,
       fresh: bool = False) -> Sandbox:
    """Bring up (or reuse, if already running as asked) build + h1..hN sshds on loopback."""
    dir, root = Path(dir).resolve(), os.geteuid() == 0
    if hosts < 0:
        raise SandboxError("hosts must be >= 0")
    old = _read_state(dir) or {}
    if old and (old["port"], old["first_address"], len(old["hosts"])) != (
            port, first_address, hosts + 1):
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
    for i, name in enumerate(host_names(hosts)):
        if root:
            user = sandbox_user(port, name)
            home = _ensure_user(user)
            users += [user] if user not in users else []
        else:
            user, home = pwd.getpwuid(os.geteuid()).pw_name, str(dir / "homes" / name)
            Path(home).mkdir(parents=True, exist_ok=True)
        made.append(SandboxHost(name, host_address(first_address, i), port, user, home))
    if fresh:
        end_sandbox_processes(dir, users, root)
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
    sb = Sandbox(dir, made[0], tuple(made[1:]), identity, dir / "known_hosts", dir / "ssh_config")
    sb.known_hosts.write_text("\n".join(known) + "\n")
    sb.ssh_config.write_text(render_ssh_config(made, identity, sb.known_hosts))
    state = {"version": 1, "port": port, "first_address": first_address, "root": root,
             "users": users, "hosts": [asdict(h) for h in made],
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
    for h in st["hosts"]:
        pids = set(_sshd_pids_by_config(dir, h["name"]))
        if (pid := _our_sshd_pid(dir, h["name"])) is not None:
            pids.add(pid)
        if pids:
            _terminate(sorted(pids))
            lines.append(f"stopped sshd {h['name']} (pid {', '.join(map(str, sorted(pids)))})")
        _paths(dir, h["name"])[1].unlink(missing_ok=True)
    lines += end_sandbox_processes(dir, st["users"], st["root"])
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
