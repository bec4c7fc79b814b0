"""Pure parts of the loopback sandbox: config text, names, addresses, /proc parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sbx
from pydeliver_tasks.config import load
from pydeliver_tasks.sandbox import SandboxError, SandboxHost
from pydeliver_tasks.sandbox import balancer as sbl
from pydeliver_tasks.sandbox.config import deliver_config

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx0 pdt-sandbox-h1\n"


def test_host_names_build_first() -> None:
    assert sbx.host_names(2) == ["build", "h1", "h2"]
    assert sbx.host_names(0) == ["build"]


def test_host_address_counts_from_first() -> None:
    assert sbx.host_address(2, 0) == "127.0.0.2"
    assert sbx.host_address(2, 2) == "127.0.0.4"
    assert sbx.host_address(10, 1) == "127.0.0.11"


@pytest.mark.parametrize(("first", "index"), [(0, 0), (250, 5), (255, 0)])
def test_host_address_out_of_range(first: int, index: int) -> None:
    with pytest.raises(SandboxError):
        sbx.host_address(first, index)


def test_sandbox_user_includes_port() -> None:
    assert sbx.sandbox_user(2222, "h1") == "pdt2222-h1"
    assert sbx.sandbox_user(2301, "build") == "pdt2301-build"
    assert len(sbx.sandbox_user(65535, "h99")) <= 32  # useradd limit
    uids = {sbx.sandbox_uid(port, i) for port in (2222, 2223) for i in range(4)}
    assert len(uids) == 8 and min(uids) >= 3_000_000 and max(uids) < 2**31
    assert sbx.sandbox_uid(65535, 63) < sbx.sandbox_uid(65536, 0) < 2**31


def test_spec() -> None:
    h = SandboxHost("h1", "127.0.0.3", 2222, "pdt2222-h1", "/home/pdt2222-h1")
    assert h.spec == "pdt2222-h1@127.0.0.3:2222"


def test_sshd_config_directives() -> None:
    text = sbx.render_sshd_config("127.0.0.3", 2222, Path("/sb/keys/host_h1_ed25519"),
                                  Path("/sb/run/h1.pid"), Path("/sb/authorized_keys"))
    lines = text.splitlines()
    for want in [
        "ListenAddress 127.0.0.3",
        "Port 2222",
        'HostKey "/sb/keys/host_h1_ed25519"',
        'PidFile "/sb/run/h1.pid"',
        'AuthorizedKeysFile "/sb/authorized_keys/%u"',
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "SetEnv LANG=C.UTF-8",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
    ]:
        assert want in lines
    assert text.endswith("\n")


def test_config_rejects_quote_in_path() -> None:
    with pytest.raises(SandboxError):
        sbx.render_sshd_config("127.0.0.3", 2222, Path('/s"b/k'), Path("/p"), Path("/a"))


def test_ssh_config_blocks() -> None:
    hosts = [SandboxHost("build", "127.0.0.2", 2250, "pdt2250-build", "/home/pdt2250-build"),
             SandboxHost("h1", "127.0.0.3", 2250, "pdt2250-h1", "/home/pdt2250-h1")]
    text = sbx.render_ssh_config(hosts, Path("/sb/keys/client"), Path("/sb/known_hosts"))
    blocks = text.split("\n\n")
    assert len(blocks) == 2
    h1 = [line.strip() for line in blocks[1].splitlines()]
    assert h1 == [
        "Host h1",
        "HostName 127.0.0.3",
        "Port 2250",
        "User pdt2250-h1",
        'IdentityFile "/sb/keys/client"',
        'UserKnownHostsFile "/sb/known_hosts"',
        "StrictHostKeyChecking yes",
        "IdentitiesOnly yes",
    ]
    assert blocks[0].startswith("Host build\n")


def test_known_hosts_line_brackets_port() -> None:
    line = sbx.known_hosts_line("127.0.0.3", 2222, PUB)
    assert line == "[127.0.0.3]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx0"
    assert sbx.known_hosts_line("127.0.0.3", 22, PUB).startswith("127.0.0.3 ssh-ed25519 ")


def test_parse_status_uid_takes_real_uid() -> None:
    status = "Name:\tbeam.smp\nState:\tS (sleeping)\nUid:\t1001\t0\t0\t0\nGid:\t1001\t1001\n"
    assert sbx.parse_status_uid(status) == 1001
    assert sbx.parse_status_uid("Name:\tx\n") is None


def test_is_sshd_cmdline_plain_and_retitled() -> None:
    cfg = Path("/sb/config/h1.sshd_config")
    plain = b"/usr/sbin/sshd\0-f\0/sb/config/h1.sshd_config\0-E\0/sb/log/h1.log\0"
    titled = (b"sshd: /usr/sbin/sshd -f /sb/config/h1.sshd_config -E /sb/log/h1.log "
              b"[listener] 0 of 10-100 startups\0")
    assert sbx.is_sshd_cmdline(plain, cfg)
    assert sbx.is_sshd_cmdline(titled, cfg)


def test_is_sshd_cmdline_rejects_others() -> None:
    cfg = Path("/sb/config/h1.sshd_config")
    assert not sbx.is_sshd_cmdline(b"sshd: /usr/sbin/sshd -f /sb/config/h11.sshd_config\0", cfg)
    assert not sbx.is_sshd_cmdline(b"sshd: /usr/sbin/sshd -D [listener]\0", cfg)
    assert not sbx.is_sshd_cmdline(b"vi\0-f\0/sb/config/h1.sshd_config\0", cfg)
    assert not sbx.is_sshd_cmdline(b"sshd: pdt2222-h1 [priv]\0", cfg)


def test_environ_has_exact_match() -> None:
    env = b"HOME=/x\0PYDELIVER_SANDBOX=/tmp/sb\0LANG=C\0"
    assert sbx.environ_has(env, sbx.ENV_VAR, "/tmp/sb")
    assert not sbx.environ_has(env, sbx.ENV_VAR, "/tmp/s")
    assert not sbx.environ_has(b"PYDELIVER_SANDBOX=/tmp/sb2\0", sbx.ENV_VAR, "/tmp/sb")


def test_load_without_state_is_clear(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="state.json"):
        sbx.load(tmp_path)


def test_down_without_state_does_nothing(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("x")
    assert "nothing done" in sbx.down(tmp_path, purge=True)[0]
    assert (tmp_path / "keep").exists()


def test_the_sandbox_balancer_config_fronts_every_host_and_names_servers_by_address(
        tmp_path: Path) -> None:
    hosts = tuple(sbx.SandboxHost(f"h{i}", f"127.0.0.{10 + i}", 2299, f"pdt2299-h{i}", f"/h{i}")
                  for i in (1, 2))
    lb = sbx.SandboxHost("lb", "127.0.0.13", 2299, "pdt2299-lb", "/lb")
    box = sbx.Sandbox(tmp_path, sbx.SandboxHost("build", "127.0.0.10", 2299, "u", "/b"), hosts,
                     tmp_path / "id", tmp_path / "kh", tmp_path / "sc", "tag", lb)
    assert box.all_hosts[-1] == lb and box.hosts == hosts
    text = sbl.render_config(sbl.paths(box), lb, hosts, 4000)
    assert "bind 127.0.0.13:4000" in text and f"stats socket {tmp_path}/haproxy/admin.sock" in text
    assert "server 127.0.0.11 127.0.0.11:4000 check" in text
    assert "server 127.0.0.12 127.0.0.12:4000 check" in text and "option httpchk GET /health" in text
    d = deliver_config(box, "hello", 4000)
    assert d["stages"]["sandbox"]["balancer"] == {
        "host": "pdt2299-lb@127.0.0.13:2299", "socket": f"{tmp_path}/haproxy/admin.sock",
        "backend": "app", "drain_timeout": 10}
    stage = load({"deliver": {**d, "app": "hello", "builder": "mix"}}).stage("sandbox", None)
    assert stage.balancer is not None
    assert [stage.balancer.server(h) for h in stage.hosts] == ["127.0.0.11", "127.0.0.12"]
    plain = sbx.Sandbox(tmp_path, box.build, hosts, box.identity_file, box.known_hosts,
                       box.ssh_config, "tag")
    assert "balancer" not in deliver_config(plain, "hello", 4000)["stages"]["sandbox"]
