"""The seed's failures, produced for real on sandbox hosts, and the tasks that handle them:
crash at boot (doctor, boot-check, start --foreground-check), wrong cookie / node name (doctor,
stop --force), a BEAM left without its epmd registration (start refuses, restart --force
recovers, another release's node on the same host is never touched), a node still booting."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Project, beam_alive, http_get, make_project

PORTS = {"hello_ex": 4040, "hello_erl": 4041}


@pytest.fixture(scope="module")
def projects(box, tmp_path_factory) -> Iterator[dict[str, Project]]:
    made = {}
    for app, port in PORTS.items():
        made[app] = make_project(app, box, tmp_path_factory.mktemp(app), port, deployed="0.0.1")
    yield made
    for p in made.values():
        p.inv("stop", "--force")


@pytest.fixture(params=sorted(PORTS))
def project(request, projects) -> Project:
    return projects[request.param]


def pid_of(project: Project, host) -> int:
    out = project.inv("ping", "--host", host.spec).ok().out
    return int(re.search(r"pid (\d+)", out)[1])


def test_crash_at_boot_doctor_boot_check_and_foreground_check(project: Project) -> None:
    h1 = project.box.hosts[0]
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((h1.address, project.http_port))
    blocker.listen()
    try:
        started = project.inv("start", "--host", h1.spec, "--foreground-check")
        doctor = project.inv("doctor", "--host", h1.spec, "--json", "doctor.json")
        check = project.inv("boot-check", "--host", h1.spec, "--seconds", "5")
    finally:
        blocker.close()
    assert started.rc == 1 and "== foreground boot (exit" in started.out and "eaddrinuse" in started.out
    assert doctor.rc == 1 and "verdict: crashed at boot" in doctor.out, doctor.out
    assert "next: inv boot-check --host" in doctor.out
    report = (project.dir / "doctor.json").read_text()
    assert '"verdict": "crashed at boot"' in report and project.cookie() not in report
    assert check.rc == 1 and "eaddrinuse" in check.out and "exits during a foreground boot" in check.out
    ok = project.inv("boot-check", "--host", h1.spec, "--seconds", "3").ok()
    assert "booted and ran 3s without crashing" in ok.out
    healthy = project.inv("start", "--host", h1.spec).ok()
    assert "health ok" in healthy.out
    assert "verdict: healthy" in project.inv("doctor", "--host", h1.spec).ok().out
    project.inv("stop").ok()
    assert "verdict: not running" in project.inv("doctor", "--host", h1.spec).out


@pytest.mark.parametrize("what", ["cookie", "node name"])
def test_wrong_cookie_or_node_name_is_named_and_stop_force_recovers(project: Project, what: str) -> None:
    h1 = project.box.hosts[0]
    project.inv("start", "--host", h1.spec).ok()
    pid = pid_of(project, h1)

    def wrong(d: dict) -> None:
        env = d["stages"]["sandbox"]["env"]
        if what == "cookie":
            env["RELEASE_COOKIE"] = env["COOKIE"] = "not-the-cookie"
        else:
            host = d["stages"]["sandbox"]["hosts"][0]["env"]
            host["RELEASE_NODE"] = host["NODE_NAME"] = f"other@{h1.address}"

    cfg = project.variant(f"wrong-{what.replace(' ', '-')}", wrong)
    ping = project.inv("ping", "--host", h1.spec, config=cfg)
    assert ping.rc == 1 and f"no answer, though BEAM pid {pid} of this release runs" in ping.out
    doctor = project.inv("doctor", "--host", h1.spec, config=cfg)
    assert doctor.rc == 1 and f"running but unreachable: {what} mismatch" in doctor.out, doctor.out
    assert "not-the-cookie" not in doctor.out and project.cookie() not in doctor.out
    refused = project.inv("start", "--host", h1.spec, config=cfg)
    assert refused.rc == 1 and "refusing to start a second copy" in refused.out
    forced = project.inv("stop", "--force", "--host", h1.spec, config=cfg).ok()
    assert f"ended pids {pid}" in forced.out and not beam_alive(pid)
    project.inv("start", "--host", h1.spec).ok()
    assert "Hello from" in http_get(project.url(h1))[1]
    project.inv("stop", "--host", h1.spec).ok()


def sandbox_epmd(host) -> int:
    """The epmd of a sandbox host: the process of that host's user named epmd."""
    import pwd

    uid = pwd.getpwnam(host.user).pw_uid
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = (d / "status").read_text()
            except OSError:
                continue
            if re.search(rf"^Uid:\s+{uid}\s", status, re.M) and (d / "comm").read_text().strip() == "epmd":
                return int(d.name)
    raise AssertionError(f"no epmd for {host.user}")


def test_beam_without_epmd_registration_restart_force_spares_other_releases(projects) -> None:
    ex, erl = projects["hello_ex"], projects["hello_erl"]
    h1 = ex.box.hosts[0]
    ex.inv("start", "--host", h1.spec).ok()
    erl.inv("start", "--host", h1.spec).ok()
    ex_pid, erl_pid = pid_of(ex, h1), pid_of(erl, h1)
    # Kill the host's epmd and squat its port, so no epmd can come back (OTP nodes re-register
    # with a new epmd within seconds): the nodes run, but nothing can find them.
    epmd_port = int(ex.settings()["stages"]["sandbox"]["hosts"][0]["env"]["ERL_EPMD_PORT"])
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for _ in range(50):
        try:
            os.kill(sandbox_epmd(h1), signal.SIGKILL)
        except AssertionError:
            pass  # no epmd of that host right now
        try:
            squatter.bind(("0.0.0.0", epmd_port))
            break
        except OSError:
            time.sleep(0.1)
    assert squatter.getsockname()[1] == epmd_port, "could not take the epmd port"
    squatter.listen()
    stop = threading.Event()

    def hang_up() -> None:
        squatter.settimeout(0.2)
        while not stop.is_set():
            try:
                squatter.accept()[0].close()
            except OSError:
                pass

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        refused = ex.inv("start", "--host", h1.spec)
        doctor = ex.inv("doctor", "--host", h1.spec)
    finally:
        stop.set()
        squatter.close()
    assert refused.rc == 1 and f"a BEAM of this release already runs (pid {ex_pid})" in refused.out
    assert "running but unreachable: not registered in epmd" in doctor.out, doctor.out
    assert "next: inv restart --force --host" in doctor.out

    try:
        recovered = ex.inv("restart", "--force", "--host", h1.spec).ok()
        # Once the port is free, the restart's own remote call boots an epmd and the node may
        # re-register before the stop looks again: then it stops gracefully instead of being
        # killed. Either way the old pid must be gone and the report must say which happened
        # (the kill path alone is tested above).
        ended = f"ended pids {ex_pid}" in recovered.out or f"stopped (pid {ex_pid} is gone)" in recovered.out
        assert ended and "health ok" in recovered.out, recovered.out
        assert not beam_alive(ex_pid) and pid_of(ex, h1) != ex_pid
        assert beam_alive(erl_pid), "another release's node on the same host is never touched"
        assert "Hello from hello_erl" in http_get(erl.url(h1))[1]
    finally:
        erl.inv("stop", "--force", "--host", h1.spec).ok()
        ex.inv("stop", "--force", "--host", h1.spec).ok()
    assert not beam_alive(erl_pid)


def test_doctor_says_booting_for_a_slow_node(projects) -> None:
    ex = projects["hello_ex"]
    h1 = ex.box.hosts[0]

    def slow(d: dict) -> None:
        d["stages"]["sandbox"]["env"]["BOOT_DELAY_MS"] = "30000"
        d["timeouts"] = {"start": 2, "stop": 30}

    start = ex.inv("start", "--host", h1.spec, config=ex.variant("slow", slow))
    assert start.rc == 1 and "within the start timeout (2s)" in start.out
    doctor = ex.inv("doctor", "--host", h1.spec)  # default start timeout: 60 s
    assert "verdict: booting" in doctor.out, doctor.out
    ex.inv("stop", "--force", "--host", h1.spec).ok()
    assert "verdict: not running" in ex.inv("doctor", "--host", h1.spec).out
