"""doctor's verdicts from what a host shows: every branch of `classify`, and the survey parser."""

from __future__ import annotations

import subprocess

from pydeliver_tasks import commands
from pydeliver_tasks.commands import diagnose
from pydeliver_tasks.steps.doctor import classify
from pydeliver_tasks.steps.probe import Probe, Proc, Survey, parse_survey

ENV = {"RELEASE_NODE": "app@10.0.0.1", "RELEASE_COOKIE": "good"}
VM = Proc(42, 100, "/r/erts/bin/beam.smp -- -root /r -name app@10.0.0.1 -setcookie good --")
EPMD = ["epmd: up and running on port 4369 with data:", "name app at port 40000"]
UP = {"pid": "42", "app": "true", "vsn": "1.0.0", "node": "app@10.0.0.1"}


def verdict(s: Survey, p: Probe, health=None, env=ENV, timeout=60.0) -> str:
    return classify(s, p, health, env, "app", "h1", timeout).verdict


def test_healthy_and_the_states_of_a_node_that_answers() -> None:
    s = Survey(boot_version="1.0.0", vms=[VM], epmd=EPMD)
    assert verdict(s, Probe(UP, [(42, VM.args)])) == "healthy"
    assert verdict(s, Probe(UP), health=(False, "GET x: status 500")).startswith("unhealthy")
    booting = {**UP, "app": "false"}
    assert verdict(Survey(vms=[Proc(42, 3, VM.args)]), Probe(booting)) == "booting"
    assert verdict(Survey(vms=[VM]), Probe(booting), timeout=10) == "application not started"
    s2 = Survey(boot_version="2.0.0", vms=[VM], epmd=EPMD)
    assert verdict(s2, Probe(UP)).startswith("version mismatch: runs 1.0.0, 2.0.0 boots next")


def test_a_running_node_nobody_can_see_is_named_precisely() -> None:
    s = Survey(vms=[VM], epmd=EPMD)
    assert "node name mismatch" in verdict(s, Probe(None), env={**ENV, "RELEASE_NODE": "other@x"})
    assert "not registered in epmd" in verdict(Survey(vms=[VM], epmd=["epmd: Cannot connect"]),
                                               Probe(None))
    assert "not registered in epmd" in verdict(Survey(vms=[VM], epmd=EPMD[:1]), Probe(None))
    assert "cookie mismatch" in verdict(s, Probe(None), env={**ENV, "RELEASE_COOKIE": "bad"})
    assert "cookie mismatch" in verdict(s, Probe(None))  # epmd has it, old enough, still pang
    young = Survey(vms=[Proc(42, 2, VM.args)], epmd=EPMD)
    assert verdict(young, Probe(None)) == "booting"


def test_nothing_running_crashed_or_not_and_not_deployed() -> None:
    assert verdict(Survey(deployed=False), Probe(None)) == "not deployed"
    assert verdict(Survey(), Probe(None)) == "not running"
    crash_log = ["===== LOGGING STARTED x", "Kernel pid terminated (application_controller)"]
    assert verdict(Survey(log=crash_log), Probe(None)) == "crashed at boot"
    # the crash belongs to an earlier boot: the last boot's lines are clean
    later = crash_log + ["===== LOGGING STARTED y", "started fine"]
    assert verdict(Survey(log=later, logfile=("log/erlang.log.1", 1000)), Probe(None)) == "not running"
    dump = Survey(crash=(1000, "Slogan: boom"), logfile=("log/erlang.log.1", 998))
    assert verdict(dump, Probe(None)) == "crashed at boot"
    old_dump = Survey(crash=(500, "Slogan: boom"), logfile=("log/erlang.log.1", 998))
    assert verdict(old_dump, Probe(None)) == "not running"
    # the host's boot mark decides over the clock: a dump 1 s before the log's last write that
    # predates the last boot is an earlier life; one a minute before it that follows the mark
    # (a boot that crashed without logging) is this boot's
    earlier = Survey(crash=(997, "Slogan: boom"), crash_since_boot=False, logfile=("l", 998))
    assert verdict(earlier, Probe(None)) == "not running"
    this_boot = Survey(crash=(900, "Slogan: boom"), crash_since_boot=True, logfile=("l", 998))
    assert verdict(this_boot, Probe(None)) == "crashed at boot"


def test_findings_and_next_commands() -> None:
    d = classify(Survey(vms=[VM], epmd=EPMD, disk_kb=100 * 1024), Probe(None), None,
                 {**ENV, "RELEASE_COOKIE": "bad"}, "app", "h1", 60)
    assert d.next == "fix the cookie in the stage env, or inv stop --force --host h1"
    assert "disk: 104.9 MB free on the deploy path — LOW" in d.findings, d.findings
    assert any("pid 42" in f for f in d.findings)
    roomy = classify(Survey(disk_kb=80_000_000), Probe(None), None, ENV, "app", "h1", 60)
    assert "disk: 81920.0 MB free on the deploy path" in roomy.findings, roomy.findings


def test_parse_survey_reads_every_marker() -> None:
    out = "\n".join([
        "PDT_NOW 2000", "PDT_BOOT 13.1.5 1.0.0", f"PDT_VM 42 100 {VM.args}",
        "PDT_RUNERL 41 101 /r/erts/bin/run_erl -daemon /r/tmp/pipe/ /r/log exec",
        "PDT_EPMD epmd: up and running on port 4369 with data:", "PDT_EPMD name app at port 40000",
        "PDT_DISK 123456", "PDT_PIPE /r/tmp/pipe/ exists writable erlang.pipe.1.r",
        "PDT_CRASH 1990 Slogan: boom", "PDT_CRASH_SINCE_BOOT 1", "PDT_LOGFILE log/erlang.log.1 1995", "PDT_LOG line one",
    ])
    s = parse_survey(out)
    assert (s.now, s.boot_version, s.disk_kb) == (2000, "1.0.0", 123456)
    assert [p.pid for p in s.vms] == [42] and [p.pid for p in s.run_erls] == [41]
    assert s.vms[0].flag("name") == "app@10.0.0.1" and s.epmd_has("app") and s.epmd_running
    assert s.crash == (1990, "Slogan: boom") and s.crash_since_boot is True and s.logfile == ("log/erlang.log.1", 1995)
    assert s.log == ["line one"] and s.pids == [42, 41]
    assert parse_survey("PDT_NOROOT").deployed is False
    assert parse_survey("PDT_CRASH 1 x\nPDT_CRASH_SINCE_BOOT 0").crash_since_boot is False
    assert parse_survey("PDT_CRASH 1 x").crash_since_boot is None


def test_diagnose_commands_are_valid_shell_and_signal_only_given_pids() -> None:
    for cmd in (diagnose.survey("/srv/my app", {"PIPE_DIR": "/p q/"}),
                diagnose.clear_pipes("r", {}), diagnose.foreground("r", "app", "mix", {}, 5)):
        assert subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0
    assert diagnose.signal([12, 13], "TERM") == "kill -s TERM 12 13 2>/dev/null; true"
    assert " start" in diagnose.foreground("r", "app", "mix", {}, 5)
    assert " foreground" in diagnose.foreground("r", "app", "rebar3", {}, 5)


def test_a_node_that_differs_from_a_fresh_boot_is_not_healthy() -> None:
    s = Survey(boot_version="1.0.0", vms=[VM], epmd=EPMD)
    found = ["application env differs from the release's config: app.motd",
             "supervision tree is missing children the release declares: app/'Elixir.App.Stats'"]
    d = classify(s, Probe(UP), None, ENV, "app", "h1", 60.0, found)
    assert d.verdict == ("differs from a fresh boot of 1.0.0: application env differs from the "
                         "release's config: app.motd")
    assert found[1] in d.findings
    assert d.next.startswith("inv restart --host h1")
    # health and version problems come first
    assert verdict(Survey(boot_version="2.0.0", vms=[VM], epmd=EPMD), Probe(UP)).startswith("version")


def test_tree_not_running_lists_only_permanent_children_that_do_not_run() -> None:
    from pydeliver_tasks.steps.equal import Tree

    t = Tree({"app": ("<0.1.0>", "supervisor", "-"), "app/a": ("undefined", "worker", "permanent"),
              "app/b": ("undefined", "worker", "transient"), "app/c": ("<0.3.0>", "worker",
                                                                      "permanent"),
              "app/d": ("restarting", "worker", "permanent")})
    assert t.not_running() == ["app/a", "app/d"]


def test_survey_reports_leftovers_and_the_lock_from_a_real_root(tmp_path) -> None:
    """What a killed run leaves (an upload's .part, a staging dir, a journal) and a held lock are
    seen by the survey script run on a real directory; a root without releases/ is not deployed."""
    root = tmp_path / "root"
    (root / ".deliver" / "releases").mkdir(parents=True)
    out = subprocess.run(["sh", "-c", diagnose.survey(str(root), {})], capture_output=True,
                         text=True, check=True).stdout
    assert parse_survey(out).deployed is False, "only the tool's .deliver: nothing deployed"
    (root / "releases").mkdir()
    (root / ".deliver" / "releases" / "app_1.release.tar.gz.part").write_bytes(b"x" * 3000)
    (root / ".deliver" / "staging" / "1" / "lib").mkdir(parents=True)
    (root / ".deliver" / "journal.commit").write_text("version=1\n")
    (root / ".deliver" / "lock").mkdir()
    (root / ".deliver" / "lock" / "info").write_text('{"user":"bob","machine":"m","pid":7}\n')
    s = parse_survey(subprocess.run(["sh", "-c", diagnose.survey(str(root), {})],
                                    capture_output=True, text=True, check=True).stdout)
    assert s.deployed
    assert [p for p, _ in s.leftovers] == [".deliver/releases/app_1.release.tar.gz.part",
                                           ".deliver/staging/1", ".deliver/journal.commit"]
    assert s.lock is not None and s.lock.info["user"] == "bob" and s.lock.age is not None


def test_a_crash_dump_counts_for_the_last_boot_only_when_written_after_it(tmp_path) -> None:
    """Each boot (daemon start, foreground boot) marks the host first; the survey tells a dump
    written by that boot from an earlier one even within the same second (a healthy boot right
    after a crashed boot-check was called "crashed at boot" when the clock decided)."""
    root = tmp_path / "root"
    (root / ".deliver").mkdir(parents=True)
    (root / "releases").mkdir()
    (root / "bin").mkdir()
    app = root / "bin" / "app"

    def boot(command: str, body: str) -> Survey:
        app.write_text(f"#!/bin/sh\n{body}\n")
        app.chmod(0o755)
        subprocess.run(["sh", "-c", command], capture_output=True, timeout=30)
        return parse_survey(subprocess.run(["sh", "-c", diagnose.survey(str(root), {})],
                                           capture_output=True, text=True, check=True).stdout)

    s = parse_survey(subprocess.run(["sh", "-c", diagnose.survey(str(root), {})],
                                    capture_output=True, text=True, check=True).stdout)
    assert s.crash is None and s.crash_since_boot is None
    crash = "echo 'Slogan: boom' > erl_crash.dump; exit 1"
    daemon = commands.start(str(root), "app", "rebar3", {}, wait=5)
    foreground = diagnose.foreground(str(root), "app", "rebar3", {}, 5)
    for command in (daemon, foreground):
        crashed = boot(command, crash)
        assert crashed.crash is not None and crashed.crash_since_boot is True
        healthy = boot(command, "exit 0")  # the dump stays, from the boot before
        assert healthy.crash is not None and healthy.crash_since_boot is False
        assert verdict(healthy, Probe(None)) == "not running"
    (root / ".deliver" / "boot").unlink()  # booted by something that does not mark
    assert boot("true", "exit 0").crash_since_boot is None
