"""Rollout strategies on a 3-host sandbox of its own (the rebar3 example): a rolling hot upgrade
batch by batch with no failed request, a canary that fails verification (nothing else touched;
with --auto-rollback it goes back hot), hosts unreachable before the run (refused at once, or
skipped), and a host cut off in the middle of a rolling run. Then behind the sandbox's HAProxy
(its lb host): restarts, update, the restart fallback and a cold rollback without a failed
request, a balancer that is wrong refused before any drain, a failed start that stays drained,
an interrupted run that doctor names, and requests pinning old code drained away."""

from __future__ import annotations

import http.client
import json
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
from pydeliver_tasks.sandbox import balancer as sandbox_balancer

from .conftest import FIRST_ADDRESS, INV, PORT, Project, http_get, make_project

APP = "hello_erl"
FLEET_PORT = PORT + 50  # beside the session sandbox (2 hosts + build at FIRST_ADDRESS..+2)
FLEET_FIRST = FIRST_ADDRESS + 8


@pytest.fixture(scope="module")
def fleet_box():
    d = Path(f"/tmp/pdt-test-fleet-{FLEET_PORT}")
    box = sb.up(d, hosts=3, port=FLEET_PORT, first_address=FLEET_FIRST, fresh=True,
                balancer=True)  # an lb host too: its HAProxy runs in the balancer tests only
    yield box
    sb.down(d, purge=True)


@pytest.fixture(scope="module")
def project(fleet_box, tmp_path_factory):
    p = make_project(APP, fleet_box, tmp_path_factory.mktemp("fleet"), 4080, deployed="0.0.1",
                     versions=("0.0.1", "0.0.2", "0.0.3"))
    data = json.loads(p.config.read_text())  # the balancer tests add it back while it runs
    assert data["deliver"]["stages"]["sandbox"].pop("balancer")["host"] == fleet_box.balancer.spec
    p.config.write_text(json.dumps(data))
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

    def __init__(self, urls: list[str], idle: bool = False, every: float = 0.05):
        super().__init__(daemon=True)
        self.urls, self.sent, self.failed, self.halt = urls, 0, [], threading.Event()
        self.every = every
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
            time.sleep(self.every)


class KeptAlive(threading.Thread):
    """One HTTP/1.1 connection kept open for the whole run, a GET on it every 20 ms; a failed
    request is counted (and the connection opened again)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.parts = urllib.parse.urlsplit(url)
        self.sent, self.failed, self.opened, self.halt = 0, [], 0, threading.Event()

    def run(self) -> None:
        conn = None
        while not self.halt.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=5)
                self.opened += 1
            self.sent += 1
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or b"<h1>" not in body:
                    self.failed.append(f"status {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failed.append(f"kept-alive connection: {exc!r}")
                conn.close()
                conn = None
            time.sleep(0.02)
        if conn is not None:
            conn.close()


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
    sb.up(box.dir, hosts=len(box.hosts), port=box.build.port, first_address=FLEET_FIRST,
          balancer=True)


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


@pytest.fixture
def haproxy(fleet_box: sb.Sandbox, project: Project):
    """The sandbox's own HAProxy (what `inv sandbox.up --balancer` starts) on its lb host, in
    front of the 3 hosts; servers named by the hosts' addresses. Ended by the pid in its
    pidfile."""
    paths = sandbox_balancer.start(fleet_box, project.http_port)
    lb = fleet_box.balancer
    assert lb is not None and sandbox_balancer.running(fleet_box)
    try:
        yield lb, paths.socket, f"http://{lb.address}:{project.http_port}/"
    finally:
        assert sandbox_balancer.stop(fleet_box), "the HAProxy this fixture started had ended"


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
    # refused before any host is drained: a server the backend lacks, a socket that is not
    # there, a balancer host whose key changed — each for a parallel restart of every host
    unknown = project.variant("unknown", with_balancer(lb, sock, servers={first.spec: "nope"}))
    lines = project.box.known_hosts.read_text().splitlines()
    theirs = [ln for ln in lines if not ln.startswith(f"[{lb.address}]")]
    key = theirs[0].split()
    forged = project.dir / "lb_forged_known_hosts"
    forged.write_text("\n".join([f"[{lb.address}]:{lb.port} {key[1]} {key[2]}", *theirs]) + "\n")

    def changed_key(d: dict) -> None:
        with_balancer(lb, sock)(d)
        d["ssh"]["known_hosts"] = str(forged)

    for name, cfg, said in [
            ("unknown server", unknown, "no server 'nope' in backend 'app' of the load balancer"),
            ("no socket", project.variant("no-socket", with_balancer(lb, Path("/nonexistent.sock"))),
             "the load balancer could not show its state"),
            ("changed host key", project.variant("lb-key", changed_key), "is unreachable")]:
        res = project.inv("restart", "--strategy", "parallel", config=cfg)
        assert res.rc == 1 and "restart: refused before any host was drained" in res.out, \
            (name, res.out)
        assert said in res.out and "Traceback" not in res.out, (name, res.out)
        assert "not started 3" in res.out, (name, res.out)
    assert re.search(r"(?i)host key", res.out), res.out
    assert pids(project) == before  # none touched the nodes
    assert set(lb_status(project, project.variant("balanced", with_balancer(lb, sock))).values()) \
        == {"UP"}

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


def test_an_interrupted_run_leaves_a_drained_host_that_doctor_and_version_name(
        project: Project, haproxy) -> None:
    """`inv restart` is killed (SIGKILL) while h1 is drained and its before_stop hook runs: doctor
    says h1 is out of rotation with the command that puts it back (and the stale lock), version
    marks it; after unlock + balancer.enable doctor says healthy."""
    lb, sock, _ = haproxy
    first = project.box.hosts[0]
    cfg = project.variant("balanced", with_balancer(lb, sock))
    project.inv("start", config=cfg).ok()

    def slow_stop(d: dict) -> None:
        with_balancer(lb, sock)(d)
        d["hooks"] = {"before_stop": "sleep 15"}

    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "INVOKE_RUNTIME_CONFIG": str(project.variant("slow-stop", slow_stop))}
    proc = subprocess.Popen([INV, "restart", "--host", first.spec], cwd=project.dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if "draining" in line:
            break
    time.sleep(1.0)  # in the before_stop hook now
    proc.kill()  # the run this test started
    proc.wait()
    assert any("draining" in line for line in seen), seen
    assert lb_status(project, cfg)[first.address] == "DRAIN"
    doctor = project.inv("doctor", "--host", first.spec, config=cfg)
    assert doctor.rc == 1, doctor.out
    assert "verdict: out of rotation: DRAIN in the load balancer" in doctor.out, doctor.out
    assert f"next: inv balancer.enable --host {first.spec}" in doctor.out, doctor.out
    assert "load balancer: app/" in doctor.out and "STALE" in doctor.out, doctor.out
    version = project.inv("version", config=cfg).ok()
    assert version.out.count("OUT OF ROTATION") == 1, version.out
    assert f"inv balancer.enable --host {first.spec}" in version.out, version.out
    project.inv("deploy.unlock", "--force", config=cfg).ok()
    project.inv("balancer.enable", "--host", first.spec, config=cfg).ok()
    assert "verdict: healthy" in project.inv("doctor", "--host", first.spec, config=cfg).ok().out


def test_requests_that_pin_old_code_are_drained_away_and_the_upgrade_stays_hot(
        project: Project, haproxy) -> None:
    """Slow requests through HAProxy (GET /slow: 10 s inside hello_erl_page, which 0.0.2
    replaces) run on the hosts when `upgrade --from 0.0.1 --to 0.0.2` starts: the host that has
    one is drained, those requests end (each answers 200), the install is tried again and is hot
    — same pids, 0.0.2 served — while a GET every 20 ms fails none."""
    lb, sock, url = haproxy
    cfg = project.variant("balanced", with_balancer(lb, sock, drain_timeout=20))
    project.inv("deploy.release", "--version", "0.0.1", config=cfg).ok()
    project.inv("restart", config=cfg).ok()
    before = pids(project)
    answers: list[str] = []

    def slow() -> None:
        try:
            status, body = http_get(url + "slow?ms=10000", timeout=30)
            answers.append(f"{status} {re.search(r'<h1>(.*)</h1>', body)[1]}")
        except OSError as exc:
            answers.append(f"failed: {exc}")

    slows = [threading.Thread(target=slow) for _ in range(6)]  # 2 per server, round robin
    for t in slows:
        t.start()
    time.sleep(1.0)
    loop = RequestLoop([url], every=0.02)
    loop.start()
    try:
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--strategy", "rolling",
                          config=cfg)
    finally:
        loop.halt.set()
        loop.join()
        for t in slows:
            t.join()
    assert res.rc == 0, res.out
    assert re.search(r"holds hello_erl_page .*taking it out of the load balancer's rotation so "
                     r"those requests end, then trying again", res.out), res.out
    assert res.out.count("hot-upgraded 0.0.1 -> 0.0.2, same pid") == 3, res.out
    assert "not hot-upgradable" not in res.out, res.out
    assert pids(project) == before
    assert len(answers) == 6 and all(a.startswith("200 Hello from hello_erl 0.0.1")
                                     for a in answers), answers
    assert loop.failed == [], loop.failed[:5]
    assert set(lb_status(project, cfg).values()) == {"UP"}
    assert all(page(project, h).startswith(f"Howdy from {APP} 0.0.2") for h in project.box.hosts)


def test_upgrade_drain_keeps_each_host_out_of_rotation_for_its_hot_upgrade(
        project: Project, haproxy) -> None:
    """`upgrade --drain`: each host drained before its (hot) upgrade and back once verified, one
    at a time; same pids; no failed request. On a stage without a balancer --drain is refused
    before anything."""
    lb, sock, url = haproxy
    cfg = project.variant("balanced", with_balancer(lb, sock))
    project.inv("downgrade", "--to", "0.0.1", config=cfg).ok()  # hot, after the test before
    before = pids(project)
    loop = RequestLoop([url], every=0.02)
    loop.start()
    try:
        res = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--drain", config=cfg)
    finally:
        loop.halt.set()
        loop.join()
    assert res.rc == 0, res.out
    assert res.out.count("draining") == 3 and res.out.count("back in rotation") == 3, res.out
    assert res.out.count("hot-upgraded 0.0.1 -> 0.0.2, same pid") == 3, res.out
    assert pids(project) == before and loop.failed == [], loop.failed[:5]
    refused = project.inv("upgrade", "--from", "0.0.1", "--to", "0.0.2", "--drain")
    assert refused.rc == 2 and "--drain needs a load balancer" in refused.out, refused.out


def test_every_path_that_restarts_loses_no_request_behind_the_balancer(
        project: Project, haproxy) -> None:
    """Through HAProxy, a GET every 20 ms plus one kept-alive connection, while: `update`
    (deploy + restart by batches), a rolling restart, an upgrade that is not hot-upgradable (it
    adds an application: the restart fallback) and a cold rollback. Not one request fails;
    every host was drained and put back each time; the versions are read back."""
    lb, sock, url = haproxy
    cfg = project.variant("balanced", with_balancer(lb, sock))
    project.inv("deploy.release", "--version", "0.0.2", config=cfg).ok()
    project.inv("restart", config=cfg).ok()
    built = project.inv("build.upgrade", "--from", "0.0.2", "--to", "0.0.3")  # before the clients
    assert "0.0.3 built; 0.0.2 -> 0.0.3 is NOT hot-upgradable" in built.out, built.out  # exit 1
    loop, kept = RequestLoop([url], every=0.02), KeptAlive(url)
    loop.start()
    kept.start()
    runs = []
    try:
        for args in [("update", "--tag", "0.0.2"), ("restart", "--strategy", "rolling"),
                     ("upgrade", "--from", "0.0.2", "--to", "0.0.3"), ("rollback",)]:
            runs.append((args, project.inv(*args, config=cfg)))
    finally:
        loop.halt.set()
        kept.halt.set()
        loop.join()
        kept.join()
    for args, res in runs:
        assert res.rc == 0, (args, res.out)
        assert res.out.count("draining") == 3 and res.out.count("back in rotation") == 3, \
            (args, res.out)
    assert "not hot-upgradable" in runs[2][1].out, runs[2][1].out
    assert loop.sent > 200 and loop.failed == [], (loop.sent, loop.failed[:5])
    assert kept.sent > 200 and kept.failed == [], (kept.sent, kept.failed[:5])
    assert set(lb_status(project, cfg).values()) == {"UP"}
    assert all(page(project, h).startswith(f"Howdy from {APP} 0.0.2") for h in project.box.hosts)
