"""Real sshd sandbox on loopback: OpenSSH and paramiko clients, idempotent up, clean down.

Tests in this module share one sandbox and run in file order; the last one tears it down.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from pydeliver_tasks import sandbox as sbx

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(sbx.SSHD).exists(), reason="needs /usr/sbin/sshd"),
]

HOSTS = 2
ROOT = os.geteuid() == 0


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _answers(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


def _procs_mentioning(text: str) -> list[int]:
    """Pids whose command line contains text (e.g. a leaked sshd's config path)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def _free_port(addresses: int) -> int:
    """A 22xx port free on 127.0.0.2.. and not used by another sandbox's users."""
    for port in random.sample(range(2200, 2300), 100):
        if all(_bindable(f"127.0.0.{2 + i}", port) for i in range(addresses)):
            try:
                pwd.getpwnam(sbx.sandbox_user(port, "build"))
            except KeyError:
                return port
    raise RuntimeError("no free 22xx port on loopback")


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left for its parent to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat.rsplit(b")", 1)[-1].split()[0] == b"Z"


def _ssh(sb: sbx.Sandbox, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(sb.ssh_config), "-o", "BatchMode=yes", host, command],
                          capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def port() -> int:
    return _free_port(HOSTS + 2)  # one spare address for the 3-host test


@pytest.fixture(scope="module")
def sandbox(port: int) -> Iterator[sbx.Sandbox]:
    # Not pytest's tmp_path: its /tmp/pytest-of-root is 0700, and sshd reads
    # authorized_keys as the sandbox user, who must be able to reach the dir.
    d = Path(tempfile.mkdtemp(prefix="pdt-sandbox-test-"))
    try:
        yield sbx.up(d, hosts=HOSTS, port=port, fresh=True)
    finally:
        sbx.down(d, purge=True)
        shutil.rmtree(d, ignore_errors=True)


def test_layout(sandbox: sbx.Sandbox, port: int) -> None:
    assert [h.name for h in sandbox.all_hosts] == ["build", "h1", "h2"]
    assert [h.address for h in sandbox.all_hosts] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    if ROOT:
        assert sandbox.hosts[0].user == f"pdt{port}-h1"
        assert sandbox.hosts[0].home == f"/home/pdt{port}-h1"
        for i, h in enumerate(sandbox.all_hosts):  # far from ordinary users, one range per port
            pw = pwd.getpwnam(h.user)
            assert pw.pw_uid == pw.pw_gid == sbx.sandbox_uid(port, i) >= 3_000_000
    else:
        assert sandbox.hosts[0].home == str(sandbox.dir / "homes" / "h1")
    assert sbx.load(sandbox.dir) == sandbox
    assert len(sandbox.known_hosts.read_text().splitlines()) == HOSTS + 1


def test_openssh_client_reaches_each_host_as_its_user(sandbox: sbx.Sandbox) -> None:
    for h in sandbox.all_hosts:
        r = _ssh(sandbox, h.name, "id -un; echo $HOME")
        assert r.returncode == 0, r.stderr
        # without root all hosts share one user, whose login $HOME is its real home
        assert r.stdout.split() == [h.user, h.home if ROOT else os.path.expanduser("~")]
    if ROOT:
        assert len({h.user for h in sandbox.all_hosts}) == HOSTS + 1


def _paramiko(sandbox: sbx.Sandbox, known_hosts: Path) -> paramiko.SSHClient:
    h1 = sandbox.hosts[0]
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(h1.address, port=h1.port, username=h1.user,
                   key_filename=str(sandbox.identity_file), look_for_keys=False,
                   allow_agent=False, timeout=10)
    return client


def test_paramiko_verifies_host_key(sandbox: sbx.Sandbox) -> None:
    client = _paramiko(sandbox, sandbox.known_hosts)
    try:
        _, out, _ = client.exec_command("id -un")
        assert out.read().decode().strip() == sandbox.hosts[0].user
    finally:
        client.close()


def test_paramiko_rejects_unknown_host(sandbox: sbx.Sandbox, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _paramiko(sandbox, empty)


def test_status_and_up_twice_keeps_pids(sandbox: sbx.Sandbox, port: int) -> None:
    before = sandbox.pids()
    assert set(before) == {"build", "h1", "h2"}
    assert [(h.name, pid, ok) for h, pid, ok in sbx.status(sandbox.dir)] == [
        (h.name, before[h.name], True) for h in sandbox.all_hosts]
    again = sbx.up(sandbox.dir, hosts=HOSTS, port=port)
    assert again == sandbox
    assert again.pids() == before


def test_fresh_wipes_homes_without_restart(sandbox: sbx.Sandbox, port: int) -> None:
    before = sandbox.pids()
    marker = Path(sandbox.hosts[0].home) / "marker"
    assert _ssh(sandbox, "h1", f"touch {marker}").returncode == 0
    assert marker.exists()
    sbx.up(sandbox.dir, hosts=HOSTS, port=port, fresh=True)
    assert not marker.exists()
    assert marker.parent.is_dir()
    assert sandbox.pids() == before


def test_other_host_count_restarts(sandbox: sbx.Sandbox, port: int) -> None:
    before = sandbox.pids()
    three = sbx.up(sandbox.dir, hosts=HOSTS + 1, port=port)
    assert [h.name for h in three.hosts] == ["h1", "h2", "h3"]
    assert _ssh(three, "h3", "id -un").stdout.strip() == three.hosts[2].user
    assert all(_gone(pid) for pid in before.values())
    h3_pid = three.pids()["h3"]
    back = sbx.up(sandbox.dir, hosts=HOSTS, port=port)
    assert back == sandbox
    assert set(back.pids()) == {"build", "h1", "h2"}
    assert _gone(h3_pid)
    assert not _answers("127.0.0.5", port)


def test_down_ends_sshd_and_host_processes(sandbox: sbx.Sandbox, port: int) -> None:
    """down ends what the sandbox started (tagged with its id, or a session of its sshd), and
    not a process that merely runs under one of its users' uids (as a process outside a chroot
    would: the uid alone never decides)."""
    tag = f"{sbx.ENV_VAR}={sandbox.tag}"  # every node a deploy starts carries it
    assert sandbox.tag.startswith(f"{sandbox.dir}#") and len(sandbox.tag) > len(str(sandbox.dir)) + 8
    r = _ssh(sandbox, "h1", f"{tag} nohup sleep 300 >/dev/null 2>&1 & echo $!")
    assert r.returncode == 0, r.stderr
    sleep_pid = int(r.stdout.strip())
    assert not _gone(sleep_pid)
    stranger = None
    if ROOT:  # same uid as h1's user, started by this test, not by the sandbox: must survive
        pw = pwd.getpwnam(sandbox.hosts[0].user)
        stranger = subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                                     "--clear-groups", "sleep", "300"],
                                    env={"PATH": os.environ["PATH"],
                                         sbx.ENV_VAR: str(sandbox.dir)})  # an old-style tag
    sshd_pids = sandbox.pids()

    lines = sbx.down(sandbox.dir)
    if stranger is not None:
        try:
            assert stranger.poll() is None, f"down ended a process it did not start: {lines}"
        finally:
            stranger.kill()
            stranger.wait()

    assert f"stopped sshd h1 (pid {sshd_pids['h1']})" in lines
    assert any(line.startswith(f"ended sleep pid {sleep_pid} ") for line in lines), lines
    assert all(_gone(pid) for pid in [*sshd_pids.values(), sleep_pid])
    assert not any(_answers(h.address, h.port) for h in sandbox.all_hosts)
    assert sandbox.pids() == {}
    assert all(pid is None and not ok for _, pid, ok in sbx.status(sandbox.dir))

    lines = sbx.down(sandbox.dir, purge=True)
    assert not sandbox.dir.exists()
    if ROOT:
        for name in ["build", "h1", "h2", "h3"]:  # h3 came from the 3-host test
            with pytest.raises(KeyError):
                pwd.getpwnam(sbx.sandbox_user(port, name))


@pytest.mark.parametrize("trouble", ["listener", "bound", "bad_host_key"])
def test_failed_up_is_clear_and_leaves_nothing_running(trouble: str) -> None:
    # listener/bound: caught before any sshd starts; bad_host_key: h1's sshd exits
    # after build's has started, which must then be found and stopped too.
    port = _free_port(2)
    d = Path(tempfile.mkdtemp(prefix="pdt-sandbox-fail-"))
    with socket.socket() as squatter:
        if trouble == "bad_host_key":
            (d / "keys").mkdir(mode=0o700)
            (d / "keys" / "host_h1_ed25519").write_text("not a key\n")
            (d / "keys" / "host_h1_ed25519.pub").write_text("ssh-ed25519 AAAA bad\n")
        else:
            squatter.bind(("127.0.0.3", port))  # h1's address
            if trouble == "listener":
                squatter.listen()
        try:
            with pytest.raises(sbx.SandboxError, match=r"sshd for h1 \(127\.0\.0\.3:\d+\)"):
                sbx.up(d, hosts=1, port=port)
            assert sbx.load(d).pids() == {}
            assert not _answers("127.0.0.2", port)
            assert not _procs_mentioning(str(d))
        finally:
            sbx.down(d, purge=True)
            shutil.rmtree(d, ignore_errors=True)
