"""The sandbox's pieces that hold no state: names, addresses and users of hosts, the sshd and ssh
configs it writes, and small checks of ports, keys and directories."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .procs import _alive, _read, is_sshd_cmdline

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


UID_BASE = 3_000_000  # far above ordinary users (1000-59999) and the usual subuid ranges
UIDS_PER_PORT = 64


def sandbox_uid(port: int, index: int) -> int:
    """The uid (and gid) of a sandbox's index-th host user (build = 0): from a range derived
    from the port, so it never is an ordinary user's, nor another port's sandbox's."""
    if not 0 <= index < UIDS_PER_PORT:
        raise SandboxError(f"a sandbox has at most {UIDS_PER_PORT - 1} deploy hosts")
    return UID_BASE + int(port) * UIDS_PER_PORT + index


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


def _ensure_user(user: str, uid: int) -> str:
    """Create the host's user (uid = gid = `uid`) if missing, or move an existing one to that
    uid; '*' password since sshd without PAM refuses '!'."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        _must(["groupadd", "-g", str(uid), user])
        _must(["useradd", "-m", "-d", f"/home/{user}", "-s", "/bin/bash", "-u", str(uid),
               "-g", str(uid), user])
    else:
        if pw.pw_uid != uid:  # made by an older sandbox: its files move along
            _must(["groupmod", "-g", str(uid), user])
            _must(["usermod", "-u", str(uid), "-g", str(uid), user])
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


