"""What goes wrong, for real, on sandbox hosts: a release that crashes at boot, unknown and changed
host keys, one host down among several, dry runs that must touch nothing, bad input refused
before any SSH login, hooks on the host."""

from __future__ import annotations

import os
import re
import socket
import subprocess

from pydeliver_tasks.config import SshSettings
from pydeliver_tasks.fleet.ssh import git_ssh_command
from pydeliver_tasks.model import Host
from pydeliver_tasks.steps.build import push_url

from .conftest import Project, accepted_logins, assert_refused, http_get, one_app, project_fixture

APPS = {"hello_ex": 4010, "hello_erl": 4011}

project = project_fixture(APPS)


def logins(project: Project) -> dict[str, int]:
    return {h.name: accepted_logins(project.box, h.name) for h in [project.box.build, *project.box.hosts]}


def test_release_crashing_at_boot_fails_start_with_log_tail(project: Project) -> None:
    """The app cannot bind its HTTP port (taken by another program): the node dies while booting.
    start must fail, name the host, say the node exited during boot and show the log tail."""
    h1, h2 = project.box.hosts
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((h1.address, project.http_port))
    blocker.listen()
    try:
        res = project.inv("start")
    finally:
        blocker.close()
    assert res.rc == 1, res.out
    assert re.search(rf"{re.escape(h1.spec)}\s+FAILED\s+.*node is not running: it exited during boot", res.out)
    assert "eaddrinuse" in res.out, "the log tail shows why it crashed"
    assert re.search(rf"{re.escape(h2.spec)}\s+ok\s+.*application started, health ok", res.out)
    assert f"start failed on 1 of 2 host(s): {h1.spec}" in res.out
    # the port is free again: a verified start now succeeds on h1
    project.inv("start", "--host", h1.spec).ok()
    assert f"Hello from {project.app}" in http_get(project.url(h1))[1]
    project.inv("stop").ok()


def test_unknown_host_key_is_refused_for_ssh_and_git(project: Project) -> None:
    one_app(project)
    empty = project.dir / "empty_known_hosts"
    empty.write_text("")
    cfg = project.variant("unknown-keys", lambda d: d["ssh"].update(known_hosts=str(empty)))
    res = project.inv("ping", config=cfg)
    assert res.rc == 1 and len(re.findall(r"FAILED .*unknown host key for \[127\.0\.0\.", res.out)) == 2, res.out
    assert "ping failed on 2 of 2 host(s)" in res.out
    built = project.inv("build.release", "--tag", "0.0.1", "--rebuild", config=cfg)  # connect
    assert built.rc == 1 and f"unknown host key for [{project.box.build.address}]" in built.out, built.out
    assert empty.read_text() == "", "strict policy never writes known_hosts"
    # the git push to the build host goes through OpenSSH: same known_hosts, same strictness
    b = project.box.build
    host = Host(b.spec, b.address, b.user, b.port, f"{b.home}/build/{project.app}")
    for known, ok in ((empty, False), (project.box.known_hosts, True)):
        settings = SshSettings(str(known), "strict", str(project.box.identity_file), "", 5)
        res = subprocess.run(["git", "ls-remote", push_url(host, local=False)], capture_output=True,
                             text=True, env={**os.environ, "GIT_SSH_COMMAND": git_ssh_command(settings, None)})
        assert (res.returncode == 0) is ok, res.stderr
        assert ok or "Host key verification failed" in res.stderr


def test_changed_host_key_is_refused_even_with_accept_new(project: Project) -> None:
    one_app(project)
    h1 = project.box.hosts[0]
    lines = project.box.known_hosts.read_text().splitlines()
    other = [ln for ln in lines if not ln.startswith(f"[{h1.address}]")][0].split()
    forged = [f"[{h1.address}]:{h1.port} {other[1]} {other[2]}"] + [
        ln for ln in lines if not ln.startswith(f"[{h1.address}]")]
    known = project.dir / "forged_known_hosts"
    known.write_text("\n".join(forged) + "\n")
    cfg = project.variant("forged", lambda d: d["ssh"].update(known_hosts=str(known),
                                                            host_key_policy="accept-new"))
    res = project.inv("ping", "--host", h1.spec, config=cfg)
    assert res.rc == 1 and re.search(r"(?i)host key .*(does not match|mismatch)|BadHostKey", res.out), res.out


def test_accept_new_records_unknown_keys(project: Project) -> None:
    one_app(project)
    fresh = project.dir / "tofu_known_hosts"
    fresh.write_text("")
    cfg = project.variant("tofu", lambda d: d["ssh"].update(known_hosts=str(fresh),
                                                          host_key_policy="accept-new"))
    project.inv("version", config=cfg).ok()
    recorded = fresh.read_text()
    for h in project.box.hosts:
        assert f"[{h.address}]:{h.port} ssh-ed25519 " in recorded


def test_one_host_down_is_refused_at_once_or_skipped(project: Project) -> None:
    last = int(project.box.hosts[-1].address.rsplit(".", 1)[1])
    dead = f"nobody@127.0.0.{last + 7}:{project.box.build.port}"  # no sshd listens there

    def add_dead(d: dict) -> None:
        d["stages"]["sandbox"]["hosts"].append({"host": dead, "env": {"HTTP_PORT": "1"}})

    cfg = project.variant("one-down", add_dead)
    # before anything changes, every host must answer: a dead one stops the run at once
    res = project.inv("deploy.release", "--version", "0.0.1", config=cfg)
    assert res.rc == 1, res.out
    assert re.search(rf"{re.escape(dead)}\s+FAILED\s+.*(refused|could not|Unable|Errno)", res.out)
    assert res.out.count("not started: another host is unreachable") == 2, res.out
    assert "upload skipped" not in res.out and "uploading" not in res.out, res.out
    # --skip-unreachable goes on without it, and still reports it (exit 1)
    res = project.inv("deploy.release", "--version", "0.0.1", "--skip-unreachable", config=cfg)
    assert res.rc == 1, res.out
    for h in project.box.hosts:
        assert re.search(rf"{re.escape(h.spec)}\s+ok\s+[\d.]+s\s+0\.0\.1 upload skipped", res.out), res.out
    assert re.search(rf"{re.escape(dead)}\s+FAILED", res.out), res.out
    assert re.search(r"deploy.release: done 2 .*; failed 0 .*; not started 1", res.out), res.out
    assert f"deploy.release did not run on 1 of 3 host(s): {dead}" in res.out


def test_dry_run_prints_the_plan_and_touches_nothing(project: Project) -> None:
    before = logins(project)
    store = project.dir / ".deliver" / "releases"
    stored = sorted(p.name for p in store.iterdir())
    for args in (["build.release", "--tag", "0.0.2"], ["deploy.release", "--version", "0.0.1"],
                 ["start"], ["stop"], ["restart"], ["update", "--tag", "0.0.2"]):
        res = project.inv(*args, "--dry-run").ok()
        assert "would run:" in res.out or "would deploy" in res.out, res.out
        assert "dry run: nothing was changed" in res.out
    plan = project.inv("deploy.release", "--version", "0.0.1", "--dry-run").out
    assert "would upload:" in plan and "sha256sum --check" in plan
    assert logins(project) == before, "a dry run opens no SSH connection"
    assert sorted(p.name for p in store.iterdir()) == stored, "a dry run builds nothing"
    assert project.cookie() not in plan


BAD_INPUTS = [
    (["deploy.release", "--version", "1.0;rm -rf /"], "invalid version"),
    (["deploy.release", "--version", "../../etc"], "invalid version"),
    (["deploy.release", "--version", "9.9.9"], "no hello_"),
    (["deploy.release"], "missing --version"),
    (["start", "--stage", "nope"], "no stage 'nope'"),
    (["start", "--stage", "bad stage"], "invalid stage name"),
    (["ping", "--host", "nothere"], "no host 'nothere'"),
    (["build.release", "--tag", "x;reboot"], "invalid git ref"),
    (["build.release", "--tag", "9.9.9"], "no tag '9.9.9'"),
    (["build.release", "--branch", "../main"], "invalid git ref"),
    (["build.release", "--revision", "zzzz"], "invalid revision"),
    (["build.release", "--tag", "0.0.1", "--branch", "main"], "only one of"),
    (["build.release", "--tag", "0.0.1", "--version", "$(id)"], "invalid version"),
    (["update", "--stage", "prod"], "no stage 'prod'"),
]


def test_bad_flags_are_refused_before_any_remote_command(project: Project) -> None:
    one_app(project)
    before = logins(project)
    assert_refused(project, BAD_INPUTS)
    assert logins(project) == before


BAD_CONFIG = [
    (lambda d: d["stages"]["sandbox"]["hosts"].append("a b@c"), "hosts[2]: invalid host 'a b@c'"),
    (lambda d: d["stages"]["sandbox"]["hosts"].append("u@h:99999"), "port must be 1-65535"),
    (lambda d: d.update(app=""), "deliver.app is empty: set it in invoke.yaml (your OTP application)"),
    (lambda d: d.update(builder="make"), "deliver.builder: must be one of"),
    (lambda d: d["ssh"].update(host_key_policy="yolo"), "deliver.ssh.host_key_policy"),
    (lambda d: d.update(hooks={"before_lunch": ["x"]}), "deliver.hooks.before_lunch: unknown hook"),
    (lambda d: d["stages"]["sandbox"].update(health={"url": "ftp://x"}), "health.url: must start"),
    (lambda d: d["stages"]["sandbox"]["env"].update({"BAD-NAME": "1"}), "invalid environment variable"),
    (lambda d: d.update(parallel=0), "deliver.parallel: expected a number >= 1"),
    (lambda d: d.update(stage="qa"), "deliver.stage: 'qa' is not one of"),
]


def test_bad_config_is_refused_with_every_problem_at_once(project: Project) -> None:
    one_app(project)
    before = logins(project)

    def break_all(d: dict) -> None:
        for edit, _ in BAD_CONFIG:
            edit(d)

    res = project.inv("start", config=project.variant("bad-config", break_all))
    assert res.rc == 2, res.out
    for _, message in BAD_CONFIG:
        assert message in res.out, (message, res.out)
    assert logins(project) == before


def test_hooks_run_on_each_host_in_the_release_root(project: Project) -> None:
    def with_hooks(d: dict) -> None:
        d["hooks"] = {"before_start": ["echo \"before $HTTP_IP\" > hook-before"],
                      "after_stop": ["echo after > hook-after"]}

    cfg = project.variant("hooks", with_hooks)
    (project.dir / "tasks.py").write_text(
        "from pydeliver_tasks import hooks, ns  # noqa: F401\n\n\n"
        "@hooks.after('start')\n"
        "def announce(hc):\n"
        "    hc.say('python hook saw ' + hc.host.address)\n"
    )
    try:
        res = project.inv("start", config=cfg).ok()
        project.inv("stop", config=cfg).ok()
    finally:
        (project.dir / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    for h in project.box.hosts:
        root = project.root(h)
        assert (root / "hook-before").read_text().strip() == f"before {h.address}"
        assert (root / "hook-after").read_text().strip() == "after"
        assert f"python hook saw {h.address}" in res.out
    failing = project.variant("failing-hook", lambda d: d.update(hooks={"before_start": ["exit 7"]}))
    res = project.inv("start", config=failing)
    assert res.rc == 1 and "before_start hook failed (exit 7): exit 7" in res.out
    assert "application started" not in res.out, "a failing before-hook stops the step"


def test_a_failing_health_check_fails_start_even_though_the_app_runs(project: Project) -> None:
    h1 = project.box.hosts[0]

    def unhealthy(d: dict) -> None:
        d["stages"]["sandbox"]["health"] = {"url": "http://{host}:{env[HTTP_PORT]}/health",
                                            "contains": "not-in-the-page"}
        d["timeouts"] = {"start": 6, "stop": 30}

    cfg = project.variant("unhealthy", unhealthy)
    res = project.inv("start", "--host", h1.spec, config=cfg)
    assert res.rc == 1 and "health ok" not in res.out, res.out
    assert "health check not passing yet" in res.out and "body lacks 'not-in-the-page'" in res.out
    again = project.inv("start", "--host", h1.spec, config=cfg)  # already running, still unhealthy
    assert again.rc == 1 and "but the health check fails" in again.out, again.out
    doctor = project.inv("doctor", "--host", h1.spec, config=cfg)
    assert "verdict: unhealthy: the health check fails" in doctor.out
    project.inv("stop", "--host", h1.spec).ok()
