"""Rollout strategies on a 3-host sandbox of its own (the rebar3 example): a rolling hot upgrade
batch by batch with no failed request, a canary that fails verification (nothing else touched;
with --auto-rollback it goes back hot), hosts unreachable before the run (refused at once, or
skipped), and a host cut off in the middle of a rolling run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb

from .conftest import FIRST_ADDRESS, INV, PORT, Project, http_get, make_project

APP = "hello_erl"
FLEET_PORT = PORT + 50  # beside the session sandbox (2 hosts + build at FIRST_ADDRESS..+2)
FLEET_FIRST = FIRST_ADDRESS + 8


@pytest.fixture(scope="module")
def fleet_box():
    d = Path(f"/tmp/pdt-test-fleet-{FLEET_PORT}")
    box = sb.up(d, hosts=3, port=FLEET_PORT, first_address=FLEET_FIRST, fresh=True)
    yield box
    sb.down(d, purge=True)


@pytest.fixture(scope="module")
def project(fleet_box, tmp_path_factory):
    p = make_project(APP, fleet_box, tmp_path_factory.mktemp("fleet"), 4080, deployed="0.0.1")
    p.inv("start").ok()
    p.inv("build.upgrade", "--from", "0.0.1", "--to", "0.0.2").ok()
    yield p
    p.inv("stop")


def pids(project: Project) -> dict[str, int]:
    out = project.inv("ping").ok().out
    return {m[0]: int(m[1]) for m in re.findall(r"^\s+(\S+)\s+ok\s+.*pid (\d+)", out, re.M)}


def page(project: Project, host: sb.SandboxHost) -> str:
    return re.search(r"<h1>(.*)</h1>", http_get(project.url(host))[1])[1]


class RequestLoop(threading.Thread):
    """GET every host's page every 50 ms; counts failures (any error, non-200, no page).
    With `idle`, it also keeps a connection open to each host that sends nothing, replaced by a
    new one every round, so the node always has a connection handler that a moment later is
    another process — as under real traffic."""

    def __init__(self, urls: list[str], idle: bool = False):
        super().__init__(daemon=True)
        self.urls, self.sent, self.failed, self.halt = urls, 0, [], threading.Event()
        self.idle: dict[str, socket.socket] | None = {} if idle else None

    def reconnect(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        fresh = socket.create_connection((parts.hostname, parts.port), timeout=2)
        old = self.idle.pop(url, None)
        self.idle[url] = fresh
        if old is not None:
            old.close()

    def run(self) -> None:
        try:
            self.round()
        finally:
            for conn in (self.idle or {}).values():
                conn.close()

    def round(self) -> None:
        while not self.halt.is_set():
            for url in self.urls:
                if self.idle is not None:
                    try:
                        self.reconnect(url)
                    except OSError as exc:
                        self.failed.append(f"{url} (idle connection): {exc}")
                self.sent += 1
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        if resp.status != 200 or b"<h1>" not in resp.read():
                            self.failed.append(f"{url}: status {resp.status}")
                except OSError as exc:
                    self.failed.append(f"{url}: {exc}")
            time.sleep(0.05)


def test_rolling_hot_upgrade_batch_by_batch_without_a_failed_request(project: Project) -> None:
    before = pids(project)
    loop = RequestLoop([project.url(h) for h in project.box.hosts], idle=True)
    loop.start()
    try:
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--strategy", "rolling",
                          "--batch", "1").ok()
    finally:
        loop.halt.set()
        loop.join()
    assert loop.sent > 20 and loop.failed == [], loop.failed[:5]
    names = [h.spec for h in project.box.hosts]
    starts = [res.out.index(f"== upgrade: batch {i}/3: {n}") for i, n in enumerate(names, 1)]
    done = [res.out.index(f"upgrade (batch {i}/3) — stage sandbox") for i in (1, 2, 3)]
    assert starts[0] < done[0] < starts[1] < done[1] < starts[2] < done[2], res.out
    assert "upgrade: done 3" in res.out
    assert pids(project) == before
    audit = {h.name: (project.root(h) / ".deliver" / "audit.log").read_text().splitlines()[-1]
             for h in project.box.hosts}
    for line in audit.values():  # time, who, action, from, to, result, duration
        assert line.split("\t")[2:6] == ["upgrade", "0.0.1", "0.0.2", "ok"], line
    shown = project.inv("history", "--lines", "1").ok()
    assert shown.out.count("upgrade  0.0.1 -> 0.0.2  ok") == 3, shown.out
    assert all(page(project, h).startswith(f"Howdy from {APP} 0.0.2") for h in project.box.hosts)


def test_failing_canary_leaves_the_rest_untouched_and_auto_rollback_brings_it_back(
        project: Project) -> None:
    project.inv("downgrade", "--to", "0.0.1").ok()
    canary, *rest = project.box.hosts

    def canary_needs_old_page(d: dict) -> None:  # verification fails on the canary only
        d["stages"]["sandbox"]["hosts"][0]["health"] = {
            "url": "http://{host}:{env[HTTP_PORT]}/", "contains": f"Hello from {APP}"}

    cfg = project.variant("canary-breaks", canary_needs_old_page)
    before = pids(project)
    args = ["upgrade", "--from", "0.0.1", "--to", "0.0.2", "--strategy", "canary",
            "--on-failure", "abort"]
    res = project.inv(*args, config=cfg)
    assert res.rc == 1, res.out
    assert "health check fails after the upgrade" in res.out, res.out
    assert res.out.count("not started: an earlier batch failed") == 2, res.out
    assert re.search(r"upgrade: done 0 .*; failed 1 .*; not started 2", res.out), res.out
    for h in rest:
        assert f"to finish {h.spec}: inv upgrade --from 0.0.1 --to 0.0.2 --host {h.spec}" in res.out
        assert page(project, h).startswith(f"Hello from {APP} 0.0.1")
    after = pids(project)
    assert after == before  # nobody restarted; the canary runs 0.0.2 unverified (abort)
    assert page(project, canary).startswith(f"Howdy from {APP} 0.0.2")
    project.inv("downgrade", "--to", "0.0.1", "--host", canary.spec).ok()

    res = project.inv(*args, "--auto-rollback", config=cfg)
    assert res.rc == 1, res.out
    assert "rolling its hosts back (--auto-rollback)" in res.out, res.out
    assert f"{canary.spec}: rollback ok: hot-downgraded 0.0.2 -> 0.0.1, same pid" in res.out
    assert "rolled back: " + canary.spec in res.out
    assert pids(project) == before
    assert all(page(project, h).startswith(f"Hello from {APP} 0.0.1") for h in project.box.hosts)


def cut_off(box: sb.Sandbox, host: sb.SandboxHost) -> None:
    """The host stops answering SSH: its sshd listener and every session of its user end (by
    pid: the sandbox's pid for the listener, /proc for `sshd: <user>` session processes)."""
    victims = [box.pids()[host.name]]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmd.startswith(f"sshd: {host.user}"):
                victims.append(int(proc.name))
    for pid in victims:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{p}").exists() for p in victims) and time.monotonic() < deadline:
        time.sleep(0.1)


def reconnect(box: sb.Sandbox) -> None:
    sb.up(box.dir, hosts=len(box.hosts), port=box.build.port, first_address=FLEET_FIRST)


def test_unreachable_host_is_refused_at_once_or_skipped(project: Project) -> None:
    *up, cut = project.box.hosts
    before = pids(project)
    cut_off(project.box, cut)
    try:
        res = project.inv("restart", "--strategy", "rolling")
        assert res.rc == 1, res.out
        assert re.search(rf"{re.escape(cut.spec)}\s+FAILED", res.out), res.out
        assert res.out.count("not started: another host is unreachable") == 2, res.out
        assert "stopped (pid" not in res.out
        for h in up:
            assert page(project, h).startswith(f"Hello from {APP} 0.0.1")
        res = project.inv("restart", "--skip-unreachable")
        assert res.rc == 1, res.out
        assert res.out.count("stopped (pid") == 2, res.out
        assert re.search(r"restart: done 2 .*; failed 0 .*; not started 1", res.out), res.out
        assert f"to finish {cut.spec}: inv restart --host {cut.spec}" in res.out
    finally:
        reconnect(project.box)
    after = pids(project)
    assert after[cut.spec] == before[cut.spec]  # untouched
    assert all(after[h.spec] != before[h.spec] for h in up)


def test_host_cut_off_in_the_middle_of_a_rolling_upgrade(project: Project) -> None:
    *up, cut = project.box.hosts
    env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(project.config), "PYTHONUNBUFFERED": "1"}
    args = [INV, "upgrade", "--from", "0.0.1", "--to", "0.0.2", "--strategy", "rolling",
            "--pause", "4"]
    proc = subprocess.Popen(args, cwd=project.dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    out: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            out.append(line)
            if line.startswith("== upgrade: batch 2/3"):
                cut_off(project.box, cut)  # the run already holds a connection to it
                break
        out += proc.stdout.readlines()  # type: ignore[union-attr]
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        reconnect(project.box)
    text = "".join(out)
    assert rc == 1, text
    assert re.search(r"upgrade: done 2 .*; failed 1 ", text), text
    assert f"to finish {cut.spec}: inv upgrade --from 0.0.1 --to 0.0.2 --host {cut.spec}" in text
    for h in up:
        assert page(project, h).startswith(f"Howdy from {APP} 0.0.2")
    root = project.root(cut)
    assert page(project, cut).startswith(f"Hello from {APP} 0.0.1")  # nothing half-installed:
    assert (root / "releases" / "start_erl.data").read_text().split()[1] == "0.0.1"
    assert not (root / ".deliver" / "staging").exists() or not any(
        (root / ".deliver" / "staging").iterdir())
    # the run could not release its lock on the host it lost: shown as stale, removed with --force
    status = project.inv("deploy.lock-status").out
    assert "STALE" in status and cut.spec in status, status
    refused = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--host", cut.spec)
    assert refused.rc == 1 and "stale" in refused.out.lower(), refused.out
    project.inv("deploy.unlock", "--force", "--host", cut.spec).ok()
    project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--host", cut.spec).ok()
    assert page(project, cut).startswith(f"Howdy from {APP} 0.0.2")


def test_a_second_run_is_refused_with_the_holder_then_lock_wait_gets_its_turn(
        project: Project) -> None:
    env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(project.config), "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([INV, "restart", "--strategy", "rolling", "--pause", "2"],
                             cwd=project.dir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        for line in first.stdout:  # type: ignore[union-attr]
            if line.startswith("== restart: batch 1/3"):
                break
        drain = threading.Thread(target=first.stdout.read, daemon=True)  # type: ignore[union-attr]
        drain.start()
        second = project.inv("stop")
        assert second.rc == 1, second.out
        assert "locked" in second.out.lower() and "restart" in second.out, second.out
        assert "stopped (pid" not in second.out
        # read-only: never takes the lock (the node being restarted right now may not answer)
        waited = project.inv("ping")
        assert "refused" not in waited.out and "lock" not in waited.out, waited.out
        assert "pong: " in waited.out, waited.out
        started = time.monotonic()
        third = project.inv("restart", "--host", project.box.hosts[0].spec, "--lock-wait", "90")
        assert third.rc == 0, third.out
        assert first.poll() is not None, "the waiting run started before the first one ended"
        assert time.monotonic() - started > 1
    finally:
        if first.poll() is None:
            first.wait(timeout=120)
    assert first.returncode == 0


LB_PORT = 4180  # the balancer's frontend, on the build host's address


@pytest.fixture
def haproxy(fleet_box: sb.Sandbox, project: Project):
    """A real HAProxy (Debian's) in front of the 3 hosts, run as the build host's user (its own
    socket, its own port on loopback); servers are named by the hosts' addresses. Ended by the
    pid in its pidfile."""
    lb = fleet_box.build
    d = Path(lb.home) / "haproxy"
    d.mkdir(exist_ok=True)
    servers = "\n".join(f"    server {h.address} {h.address}:{project.http_port} check inter 300 "
                        "fall 2 rise 2" for h in fleet_box.hosts)
    (d / "haproxy.cfg").write_text(
        f"global\n    stats socket {d}/admin.sock mode 600 level admin\n"
        f"    pidfile {d}/haproxy.pid\n"
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n"
        "    timeout server 10s\n    retries 2\n"
        f"frontend fe\n    bind {lb.address}:{LB_PORT}\n    default_backend app\n"
        f"backend app\n    option httpchk GET /health\n{servers}\n")
    subprocess.run(["chown", "-R", lb.user, str(d)], check=True)
    subprocess.run(["runuser", "-u", lb.user, "--", "haproxy", "-D", "-f", str(d / "haproxy.cfg")],
                   check=True)
    pid = int((d / "haproxy.pid").read_text().split()[0])
    try:
        yield lb, d / "admin.sock", f"http://{lb.address}:{LB_PORT}/"
    finally:
        os.kill(pid, signal.SIGTERM)  # the haproxy this fixture started


def with_balancer(lb: sb.SandboxHost, socket_path: Path, **over: object):
    def edit(d: dict) -> None:
        d["balancer"] = {"host": lb.spec, "socket": str(socket_path), "backend": "app",
                         "drain_timeout": 5, **over}
    return edit


def lb_status(project: Project, cfg: Path) -> dict[str, str]:
    out = project.inv("balancer.status", config=cfg).ok().out
    return dict(re.findall(r"^app/(\S+) \(\S+\): (\w+)", out, re.M))


def test_restarts_behind_the_balancer_lose_no_request(project: Project, haproxy) -> None:
    lb, sock, url = haproxy
    project.inv("start").ok()
    cfg = project.variant("balanced", with_balancer(lb, sock))
    deadline = time.monotonic() + 10
    while set(lb_status(project, cfg).values()) != {"UP"} and time.monotonic() < deadline:
        time.sleep(0.3)
    assert set(lb_status(project, cfg).values()) == {"UP"}
    before = pids(project)
    loop = RequestLoop([url])
    loop.start()
    try:
        res = project.inv("restart", config=cfg)  # the default (parallel) strategy
    finally:
        loop.halt.set()
        loop.join()
    assert res.rc == 0, res.out
    assert loop.sent > 20 and loop.failed == [], loop.failed[:5]
    assert res.out.count("draining") == 3 and res.out.count("back in rotation") == 3, res.out
    after = pids(project)
    assert all(after[h] != before[h] for h in before), (before, after)  # really restarted
    assert set(lb_status(project, cfg).values()) == {"UP"}


def test_the_balancer_refuses_and_keeps_a_failed_host_drained(project: Project, haproxy) -> None:
    lb, sock, url = haproxy
    first = project.box.hosts[0]
    before = pids(project)
    last = project.variant("min-up", with_balancer(lb, sock, min_up=3))
    res = project.inv("restart", "--host", first.spec, config=last)
    assert res.rc == 1 and "refusing to take" in res.out and "min_up is 3" in res.out, res.out
    unknown = project.variant("unknown", with_balancer(lb, sock, servers={first.spec: "nope"}))
    res = project.inv("restart", "--host", first.spec, config=unknown)
    assert res.rc == 1 and "no server 'nope' in backend 'app'" in res.out, res.out
    assert pids(project) == before  # neither touched the node

    def failing(d: dict) -> None:  # its start verification fails: the page lacks this text
        with_balancer(lb, sock)(d)
        d["stages"]["sandbox"]["hosts"][0]["health"] = {
            "url": "http://{host}:{env[HTTP_PORT]}/", "contains": "no such text"}
        d["timeouts"] = {"start": 8, "stop": 30}  # it never passes: wait 8 s, not 60

    loop = RequestLoop([url])
    loop.start()
    try:
        res = project.inv("restart", "--host", first.spec, config=project.variant("fails", failing))
    finally:
        loop.halt.set()
        loop.join()
    assert res.rc == 1 and "stays drained in the load balancer" in res.out, res.out
    assert f"inv balancer.enable --host {first.spec}" in res.out, res.out
    assert loop.failed == [], loop.failed[:5]  # the others served
    cfg = project.variant("balanced", with_balancer(lb, sock))
    assert lb_status(project, cfg)[first.address] == "DRAIN"
    project.inv("balancer.enable", "--host", first.spec, config=cfg).ok()
    assert lb_status(project, cfg)[first.address] == "UP"
