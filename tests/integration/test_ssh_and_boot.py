"""Slow boots are waited for, not reported down (edeliver #164), but only up to the start timeout;
ssh_config aliases, IdentityFile and ProxyJump gateways work — with the same host key checks."""

from __future__ import annotations

import re

from .conftest import Project, accepted_logins, http_get, one_app, project_fixture

APPS = {"hello_ex": 4020, "hello_erl": 4021}

project = project_fixture(APPS)


def slow(delay_ms: int, start_timeout: int):
    def edit(d: dict) -> None:
        d["stages"]["sandbox"]["env"]["BOOT_DELAY_MS"] = str(delay_ms)
        d["timeouts"] = {"start": start_timeout, "stop": 30}
    return edit


def test_a_slow_boot_is_waited_for_within_the_start_timeout(project: Project) -> None:
    h1 = project.box.hosts[0]
    cfg = project.variant("slow-ok", slow(4000, 30))
    res = project.inv("start", "--host", h1.spec, config=cfg).ok()
    m = re.search(rf"{re.escape(h1.spec)}\s+ok\s+([\d.]+)s\s+running 0\.0\.1", res.out)
    assert m and float(m[1]) >= 4.0, res.out
    assert "Hello from" in http_get(project.url(h1))[1]
    project.inv("stop", "--host", h1.spec).ok()


def test_a_boot_slower_than_the_timeout_fails_and_says_what_was_seen(project: Project) -> None:
    h1 = project.box.hosts[0]
    cfg = project.variant("slow-fail", slow(15000, 3))
    res = project.inv("start", "--host", h1.spec, config=cfg)
    assert res.rc == 1, res.out
    assert re.search(r"node not verified within the start timeout \(3s\): "
                     r"(node answers but application \w+ is not started|BEAM pid \d+ is up)", res.out), res.out
    project.inv("stop", "--host", h1.spec, config=cfg).ok()


def test_ssh_config_aliases_identity_and_proxyjump(project: Project, tmp_path) -> None:
    one_app(project, 'SSH plumbing does not depend on the app')
    box = project.box
    h1, h2 = box.hosts
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"Host alias-h1\n  HostName {h1.address}\n  Port {h1.port}\n  User {h1.user}\n"
        f"  IdentityFile {box.identity_file}\n"
        f"Host via-h1\n  HostName {h2.address}\n  Port {h2.port}\n  User {h2.user}\n"
        f"  IdentityFile {box.identity_file}\n  ProxyJump alias-h1\n"
    )

    def aliases(d: dict) -> None:
        d["ssh"].update(config_file=str(ssh_config), identity_file="")
        a, b = d["stages"]["sandbox"]["hosts"]
        a["host"], b["host"] = "alias-h1", "via-h1"

    cfg = project.variant("aliases", aliases)
    via_before = accepted_logins(box, "h1")
    res = project.inv("version", config=cfg).ok()
    assert re.search(r"alias-h1\s+ok\s+.*boots next", res.out) and re.search(r"via-h1\s+ok\s+.*boots next", res.out)
    assert accepted_logins(box, "h1") == via_before + 2, "h1 served its own login and the jump to h2"

    # the gateway's key is checked too: without h1 in known_hosts, the jump to h2 is refused
    only_h2 = tmp_path / "only_h2"
    only_h2.write_text("".join(ln + "\n" for ln in box.known_hosts.read_text().splitlines()
                               if ln.startswith(f"[{h2.address}]")))

    def gateway_unknown(d: dict) -> None:
        aliases(d)
        d["ssh"]["known_hosts"] = str(only_h2)

    res = project.inv("version", "--host", "via-h1", config=project.variant("gw", gateway_unknown))
    assert res.rc == 1 and f"unknown host key for [{h1.address}]:{h1.port}" in res.out, res.out
