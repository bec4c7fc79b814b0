"""The executor: results per host, failures isolated, summary, JSON, dry run, redaction."""

from __future__ import annotations

import copy
import json
import re
import shlex

import pytest

from pydeliver_tasks import config
from pydeliver_tasks.fleet import HostFailure, HostResult, RunResult, StepFailed, for_each_host
from pydeliver_tasks.fleet.output import size_text
from pydeliver_tasks.fleet.upload import UploadLost


def settings(parallel: int = 4):
    d = copy.deepcopy(config.DEFAULTS)
    d.update(app="hello", builder="mix", parallel=parallel, stages={"s": {
        "env": {"RELEASE_COOKIE": "sekrit"}, "hosts": ["a", "b", "c"]}})
    return config.load({"deliver": d})


def test_a_failure_on_one_host_keeps_the_others_and_exits_nonzero(tmp_path, capsys) -> None:
    s = settings()

    def fn(hc):
        if hc.host.name == "b":
            raise HostFailure("boom sekrit", "tail line sekrit", "try again")
        return f"fine {hc.host.name}"

    with pytest.raises(StepFailed) as err:
        for_each_host("start", s, "s", s.stage("s").hosts, fn, json_path=str(tmp_path / "r.json"))
    assert err.value.code == 1 and "start failed on 1 of 3 host(s): b" in str(err.value)
    out = capsys.readouterr().out
    assert "sekrit" not in out and "boom *** — next: try again" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [h["ok"] for h in report["hosts"]] == [True, False, True] and report["ok"] is False
    assert report["hosts"][1]["detail"] == "tail line ***"


def test_unexpected_exceptions_become_host_results(capsys) -> None:
    s = settings()
    results = for_each_host("ping", s, "s", s.stage("s").hosts,
                            lambda hc: 1 / 0 if hc.host.name == "a" else "ok", raise_on_failure=False)
    assert [r.ok for r in results] == [False, True, True]
    assert "ZeroDivisionError" in results[0].message


def test_dry_run_prints_commands_and_runs_nothing(capsys) -> None:
    s = settings()

    def fn(hc):
        res = hc.run("touch /tmp/should-not-exist-pdt")
        assert res.ok and res.stdout == ""
        return "planned"

    for_each_host("deploy", s, "s", s.stage("s").hosts, fn, dry_run=True)
    out = capsys.readouterr().out
    assert out.count("would run: touch /tmp/should-not-exist-pdt") == 3
    assert "(dry run: nothing was changed)" in out


def test_parallelism_is_bounded() -> None:
    import threading
    import time

    s = settings(parallel=2)
    active, peak, lock = [0], [0], threading.Lock()

    def fn(hc):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return "ok"

    for_each_host("x", s, "s", s.stage("s").hosts, fn)
    assert peak[0] == 2


def test_without_keep_going_no_new_host_starts_after_a_failure(capsys) -> None:
    s = settings(parallel=1)  # one at a time: a, then b (fails), then c must not start
    ran: list[str] = []

    def fn(hc):
        ran.append(hc.host.name)
        if hc.host.name == "b":
            raise HostFailure("install failed")
        return "upgraded"

    results = for_each_host("upgrade", s, "s", s.stage("s").hosts, fn, raise_on_failure=False,
                            keep_going=False)
    assert ran == ["a", "b"]
    assert [r.ok for r in results] == [True, False, False]
    assert results[2].message.startswith("not started: an earlier host failed")
    ran.clear()
    results = for_each_host("upgrade", s, "s", s.stage("s").hosts, fn, raise_on_failure=False,
                            keep_going=True)
    assert ran == ["a", "b", "c"] and [r.ok for r in results] == [True, False, True]


def test_secrets_are_redacted_as_whole_values_only() -> None:
    from pydeliver_tasks.model import redacted

    assert redacted("next: RELEASE_COOKIE=x ok", ["x"]) == "next: RELEASE_COOKIE=*** ok"
    assert redacted("-setcookie 'c00kie' c00kies c00kie_2 c00kie", ["c00kie"]) == \
        "-setcookie '***' c00kies c00kie_2 ***"
    assert redacted("url https://u:s3cret@h/ s3cret.", ["s3cret", ""]) == "url https://u:***@h/ ***."
    assert redacted("nothing here", []) == "nothing here"


def test_short_secrets_are_warned_about_once_at_load(capsys) -> None:
    from pydeliver_tasks import config
    from pydeliver_tasks.steps import settings_of

    raw = {"deliver": {"app": "demo", "builder": "mix", "env": {"RELEASE_COOKIE": "x"},
                       "stages": {"prod": {"hosts": ["a@h1", "a@h2"],
                                           "env": {"API_TOKEN": "long-enough-token"}}}}}
    assert config.short_secrets(config.load(raw)) == [
        "warning: RELEASE_COOKIE of stage prod is shorter than 8 characters: output hides it "
        "only where it stands alone; use a longer secret"]
    settings_of(raw)
    settings_of(raw)
    assert capsys.readouterr().out.count("warning: RELEASE_COOKIE") == 1


def test_a_closed_stdout_pipe_ends_the_output_quietly() -> None:
    import subprocess
    import sys

    code = ("from pydeliver_tasks.fleet.output import say\n"
            "for i in range(20000):\n    say(f'line {i} ' + 'x' * 80)\n"
            "import sys; sys.stderr.write('went on to the end\\n')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"line 0")
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert b"went on to the end" in err


def test_streamed_output_keeps_whole_lines_when_stdout_and_stderr_interleave(capsys) -> None:
    """A build writes stdout and stderr at once (in pieces): every printed line is one whole
    line of one stream, with the host prefix — never `*WARNING* kernel: So` + `urce code`."""
    from pydeliver_tasks.fleet import HostContext

    s = settings()
    hc = HostContext(s.stage("s").hosts[0], s, dry_run=False, local=True)
    script = ("i=0; while [ $i -lt 300 ]; do i=$((i+1)); printf 'out-%s-' $i; printf 'err-%s-' $i >&2; "
              "printf 'end\\n'; printf 'end\\n' >&2; done")
    res = hc.run(f"sh -c {shlex.quote(script)}", stream=True)
    assert res.ok
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[a] ")]
    assert len(lines) == 600
    assert all(re.fullmatch(r"\[a\] (out|err)-\d+-end", ln) for ln in lines), \
        [ln for ln in lines if not re.fullmatch(r"\[a\] (out|err)-\d+-end", ln)][:5]


def test_a_partial_line_that_stays_partial_is_shown(capsys) -> None:
    """`logs --follow` on run_erl's log ends in a prompt (`1> `, no newline): it must show, and
    what the node logs next must start its own line."""
    import time

    from pydeliver_tasks.fleet import PrefixedWriter

    w = PrefixedWriter("[h] ", lambda x: x)
    w.write("hello wor")
    w.flush()
    w.write("ld\n1> ")
    w.flush()
    time.sleep(w.PARTIAL_WAIT * 3)
    w.write("marker\n")
    w.flush()
    w.finish()
    assert capsys.readouterr().out.splitlines() == ["[h] hello world", "[h] 1> ", "[h] marker"]


def test_a_followed_log_shows_a_partial_line_at_once(capsys) -> None:
    from pydeliver_tasks.fleet import PrefixedWriter

    w = PrefixedWriter("[h] ", lambda x: x, partial_wait=0)
    w.write("log line\n(node@h)1> ")
    w.flush()  # no wait: the prompt is shown now
    assert capsys.readouterr().out.splitlines() == ["[h] log line", "[h] (node@h)1> "]
    w.write("next\n")
    w.finish()
    assert capsys.readouterr().out.splitlines() == ["[h] next"]


def test_a_multi_line_failure_stays_one_row_of_the_summary() -> None:
    """A node's reply with newlines (release_handler's error term) never splits a host's row."""
    table = RunResult("upgrade", "prod", [
        HostResult("web1", False, "could not install 0.0.2: {error,\n  {badrpc,nodedown}}", 1.0),
        HostResult("web2", True, "hot-upgraded", 2.0)]).table()
    rows = table.splitlines()
    assert len(rows) == 4, table
    assert rows[2].endswith("could not install 0.0.2: {error, {badrpc,nodedown}}")


def test_an_interrupted_upload_says_how_far_it_got_and_why() -> None:
    lost = UploadLost(12_000_000, 14_000_000, "Socket is closed")
    assert lost.sentence("app_1.release.tar.gz") == (
        "the connection was lost (Socket is closed) during the upload of app_1.release.tar.gz "
        "(12.0 MB of 14.0 MB)")
    refused = UploadLost(5_000_000, 14_000_000, "Failure", connected=True)
    assert refused.sentence("x") == ("the host refused a write (SFTP said: Failure) during the "
                                     "upload of x (5.0 MB of 14.0 MB)")
    small = UploadLost(12_000, 48_213, "EOF")  # an upgrade tarball: below 1 MB, not "0.0 MB"
    assert small.sentence("u").endswith("upload of u (12 KB of 48 KB)")


def test_sizes_read_as_a_person_reads_them() -> None:
    assert [size_text(n) for n in (9_178_527, 1_000_000, 48_213, 400, 1, 0)] == \
        ["9.2 MB", "1.0 MB", "48 KB", "1 KB", "1 KB", "0 KB"]
    nothing = UploadLost(0, 5_600_000, "EOF")  # lost before the first byte: not "1 KB"
    assert nothing.sentence("r").endswith("upload of r (0 KB of 5.6 MB)")
