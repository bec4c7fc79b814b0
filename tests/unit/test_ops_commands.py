"""Operator commands (logs, exec, eval, remote console): pinned strings, quoting that keeps every
value one shell word, the log scripts run for real with a local sh, and output parsing."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from pydeliver_tasks.commands import diagnose as dcmd
from pydeliver_tasks.commands import env_file_text, ops
from pydeliver_tasks.config import SshSettings
from pydeliver_tasks.model import Host
from pydeliver_tasks.steps.ops import (
    check_text,
    relx_error_summary,
    relx_eval_result,
)
from pydeliver_tasks.tasks.ops import remainder
from pydeliver_tasks.validation import InvalidInput
from pydeliver_tasks.validation import lines_count as check_lines

NASTY = "a b;$(touch /tmp/x)'\""
COOKIE = "c00kie-s3cret"


def bash_ok(cmd: str) -> bool:
    return subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0


def test_exec_pinned_and_the_command_is_one_argument_of_sh_c() -> None:
    cmd = ops.exec_("/srv/my app", {"A": "1", "B": NASTY}, NASTY)
    assert cmd == f"cd '/srv/my app' && . ./.deliver/env && sh -c {shlex.quote(NASTY)}"
    words = shlex.split(cmd)
    assert words[-2:] == ["-c", NASTY]
    assert bash_ok(cmd)
    assert ops.exec_("r", {}, "ls") == "cd r && sh -c ls"


def test_exec_runs_the_users_command_verbatim_with_the_env(tmp_path: Path) -> None:
    """The user's $VAR expands (they asked for sh -c), but no value of ours is re-parsed."""
    user_cmd = "printf '%s|%s\\n' \"$X\" \"$(pwd)\"; echo 'q\"q'"
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver" / "env").write_text(env_file_text({"X": NASTY}))
    cmd = ops.exec_(str(tmp_path), {"X": NASTY}, user_cmd)
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
    assert out == f"{NASTY}|{tmp_path}\nq\"q\n"


def test_log_commands_pinned_and_valid_shell() -> None:
    cmd = ops.logs("/srv/a b", 5)
    assert cmd.startswith("cd '/srv/a b' 2>/dev/null || { echo 'no deploy path /srv/a b' >&2; exit 3; }; ")
    assert "ls -t log/erlang.log.* tmp/log/erlang.log.* 2>/dev/null | head -n 1" in cmd
    assert "echo 'no node log in /srv/a b/log or /srv/a b/tmp/log'; exit 4;" in cmd
    assert cmd.endswith('echo "== $PWD/$f"; tail -n 5 "$f"')
    follow = ops.follow_logs("/srv/a b", 7)
    assert follow.endswith('tail -n 7 -F "$f" & t=$!; cat >/dev/null; kill "$t" 2>/dev/null; wait')
    for c in (cmd, follow, ops.logs(NASTY, 1), ops.follow_logs(NASTY, 1)):
        assert bash_ok(c)
    with pytest.raises((TypeError, ValueError)):
        ops.logs("r", "5; reboot")  # type: ignore[arg-type]


def _run(cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, **kw)


def test_logs_picks_the_newest_log_of_relx_or_mix(tmp_path: Path) -> None:
    root = tmp_path / "my app;$(touch pwned)'\""
    assert _run(ops.logs(str(root), 2), cwd=tmp_path).returncode == ops.NO_ROOT_RC
    root.mkdir()
    res = _run(ops.logs(str(root), 2))
    assert res.returncode == ops.NO_LOG_RC and res.stdout.strip() == ops.no_log_message(str(root))
    (root / "tmp" / "log").mkdir(parents=True)
    old, new = root / "tmp" / "log" / "erlang.log.1", root / "tmp" / "log" / "erlang.log.2"
    old.write_text("old\n")
    new.write_text("1\n2\n3\n")
    os.utime(old, (time.time() - 100, time.time() - 100))
    res = _run(ops.logs(str(root), 2), cwd=tmp_path)
    assert res.returncode == 0 and res.stdout == f"== {new}\n2\n3\n"
    assert not (tmp_path / "pwned").exists() and not (root / "pwned").exists()


def test_follow_ends_its_tail_when_the_channel_closes(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / "erlang.log.1"
    log.write_text("first\n")
    p = subprocess.Popen(["sh", "-c", ops.follow_logs(str(tmp_path), 5)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == f"== {log}\n"
        assert p.stdout.readline() == "first\n"
        with log.open("a") as fh:
            fh.write("second\n")
        assert p.stdout.readline() == "second\n"
        p.stdin.close()  # what sshd does when our SSH channel goes away
        assert p.wait(timeout=10) is not None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_erlang_expr_gets_its_final_dot() -> None:
    assert ops.erlang_expr("1 + 2") == "1 + 2."
    assert ops.erlang_expr("  1 + 2.  \n") == "1 + 2."
    assert ops.erlang_expr("X = 1,\nX + 1 % add") == "X = 1,\nX + 1 % add\n."


def test_eval_commands_for_mix_and_relx() -> None:
    relx = ops.eval_expr("/r", "hello", "rebar3", {"COOKIE": COOKIE}, NASTY)
    assert relx.startswith("cd /r && . ./.deliver/env && env PIPE_DIR=") and COOKIE not in relx
    assert " bin/hello eval " in relx and shlex.split(relx)[-1] == NASTY + "."
    mix = ops.eval_expr("/r", "hello", "mix", {}, "node()")
    b64 = base64.b64encode(b"node()").decode()
    assert mix == ("cd /r && bin/hello rpc "
                   + shlex.quote(f'IO.inspect(elem(Code.eval_string(Base.decode64!("{b64}")), 0))'))
    code = shlex.split(ops.eval_expr("/r", "hello", "mix", {}, NASTY))[-1]
    assert "touch" not in code and base64.b64decode(code.split('"')[1]).decode() == NASTY
    for c in (relx, mix):
        assert bash_ok(c)


def host(**over) -> Host:
    base = dict(name="deploy@10.0.0.5:2200", address="10.0.0.5", user="deploy", port=2200,
                deploy_path="/srv/hello", env={"RELEASE_COOKIE": COOKIE, "HTTP_PORT": "4000",
                                               "API_TOKEN": "t0k'en x", "EMPTY_SECRET": ""})
    return Host(**{**base, **over})


SSH = SshSettings("/k/known hosts", "strict", "~/.ssh/deploy key", "", 7)


def test_ssh_argv_uses_our_key_known_hosts_and_policy() -> None:
    argv = ops.ssh_argv(host(), SSH, "uptime")
    assert argv == [
        "ssh", "-t", "-i", os.path.expanduser("~/.ssh/deploy key"), "-o", "IdentitiesOnly=yes",
        "-p", "2200", "-o", "UserKnownHostsFile=/k/known hosts", "-o", "StrictHostKeyChecking=yes",
        "-o", "ConnectTimeout=7", "deploy@10.0.0.5", "uptime",
    ]
    lax = SshSettings("", "accept-new", "", "/etc/my ssh_config", 10)
    argv = ops.ssh_argv(host(address="[::1]", user=None, port=None), lax, "x", tty=False)
    assert argv[:3] == ["ssh", "-F", "/etc/my ssh_config"]
    assert "StrictHostKeyChecking=accept-new" in argv and "-p" not in argv and "-i" not in argv
    assert f"UserKnownHostsFile={os.path.expanduser('~/.ssh/known_hosts')}" in argv
    assert argv[-2:] == ["::1", "x"]


def test_console_remote_command_per_flavor() -> None:
    assert ops.console("/r", "hello", "mix", {}) == "cd /r && bin/hello remote"
    relx = ops.console("/r", "hello", "rebar3", {})
    assert relx.startswith("cd /r && env PIPE_DIR=") and relx.endswith(" bin/hello remote_console")


def test_console_line_holds_no_secret_and_sources_the_env_file() -> None:
    """The same argv is printed and run: the env comes from the host's env file."""
    for flavor, verb in (("mix", "remote"), ("rebar3", "remote_console")):
        argv = ops.console_argv(host(), SSH, "hello", flavor)
        line = shlex.join(argv)
        assert COOKIE not in line and "t0k" not in line and "4000" not in line
        assert argv[0] == "ssh" and argv[-2] == "deploy@10.0.0.5"
        assert argv[argv.index("-p") + 1] == "2200"
        remote = shlex.split(argv[-1])
        assert remote[:6] == ["cd", "/srv/hello", "&&", ".", "./.deliver/env", "&&"]
        assert remote[-1] == verb


RELX_OUTPUTS = [
    ("3\n", True, "3"),
    ("'hello_erl@127.0.0.81'\n", True, "'hello_erl@127.0.0.81'"),
    ("{error, x}\n", True, "{error, x}"),  # a value, not an eval error
    ('{ok, "a\nb"}\n', True, '"a\nb"'),  # multi-line: the start script left {ok, ...} on
    ("{error, \"*** syntax error before: '.'\"}\n", False, "syntax error before: '.'"),
    ('{error, "Incomplete form (missing .<cr>)??"}\n', False, "Incomplete form (missing .<cr>)??"),
    ("{error, \"*** eval: {'EXIT',{boom,[{erl_eval,do_apply,7,\n   [{file,\"erl_eval.erl\"}]}]}}\"}\n",
     False, "eval: {'EXIT',{boom,[{erl_eval,do_apply,7,\n   [{file,\"erl_eval.erl\"}]}]}}"),
]


@pytest.mark.parametrize(("output", "ok", "value"), RELX_OUTPUTS)
def test_relx_eval_output_is_told_apart(output: str, ok: bool, value: str) -> None:
    assert relx_eval_result(output) == (ok, value)


def test_relx_error_summary() -> None:
    assert relx_error_summary("eval: {'EXIT',{{badmatch,2},\n [{erl_eval,expr,6,[]}]}}") == (
        "exception {badmatch,2} (stack trace below)")
    assert relx_error_summary("eval: {'EXIT',bye}") == "exit bye"
    assert relx_error_summary("eval: x") == "uncaught throw x"
    assert relx_error_summary("syntax error before: '.'") == "syntax error before: '.'"


def test_input_checks() -> None:
    assert check_lines(1) == 1 and check_lines(100_000) == 100_000
    for bad in (0, -5, 100_001, True, "5", 2.5):
        with pytest.raises(InvalidInput, match="invalid --lines"):
            check_lines(bad)
    for empty in (None, "", "  \n"):
        with pytest.raises(InvalidInput, match="empty command"):
            check_text(empty, "command", "usage")
    assert check_text(" ls ", "command", "u") == " ls "


def test_remainder_after_double_dash() -> None:
    assert remainder(["inv", "exec", "--", "echo hi; ls"]) == "echo hi; ls"
    assert remainder(["inv", "exec", "--", "ls", "-l", "--", "x"]) == "ls -l -- x"
    assert remainder(["inv", "exec", "--"]) == ""
    assert remainder(["inv", "exec", "--cmd", "ls"]) is None


def test_extra_logs_expand_globs_and_stay_valid_shell() -> None:
    from pydeliver_tasks.commands import ops

    cmd = ops.extra_logs("/srv/my app", ("log/*.log", "/var/log/app.log"), 5)
    assert "for f in log/*.log /var/log/app.log; do" in cmd and "cd '/srv/my app'" in cmd
    assert subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0


def test_wait_gone_answers_once_the_pids_end_and_names_those_left() -> None:
    """Run by sh for real: a pid that ends after 0.3 s is waited for and the answer comes well
    before the limit; a pid that stays is printed once the limit passes; a gone pid at once."""
    ending = int(subprocess.run(["sh", "-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"],
                                capture_output=True, text=True, check=True).stdout)
    staying = subprocess.Popen(["sleep", "30"])
    try:
        began = time.monotonic()
        out = subprocess.run(["sh", "-c", dcmd.wait_gone([ending], 20)], capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == "" and time.monotonic() - began < 10
        out = subprocess.run(["sh", "-c", dcmd.wait_gone([ending, staying.pid], 0.2)],
                             capture_output=True, text=True, check=True).stdout
        assert out.split() == [str(staying.pid)]
    finally:
        staying.kill()
        staying.wait()
