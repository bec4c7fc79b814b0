"""Pure builders for the operator commands: logs, exec, eval and the remote console's ssh line.

Like every builder in `commands`, each value is quoted here; the steps only pick and run them.
Exit codes the log commands use so steps can tell "nothing deployed" from "never started":
NO_ROOT_RC (the deploy path does not exist) and NO_LOG_RC (no run_erl log in it).
"""

from __future__ import annotations

import base64
import os
import shlex
from collections.abc import Mapping

from ..config import SshSettings
from ..model import Host
from . import env_prefix, node

q = shlex.quote

NO_ROOT_RC = 3
NO_LOG_RC = 4
LOG_HEADER = "== "  # first line of the log commands: "== <absolute path of the log>"




def _newest_log(root: str) -> str:
    """cd into the root and set $f to run_erl's newest erlang.log.N (relx: log/, mix: tmp/log/)."""
    return (
        f"cd {q(root)} 2>/dev/null || {{ echo {q('no deploy path ' + root)} >&2; "
        f"exit {NO_ROOT_RC}; }}; "
        "f=$(ls -t log/erlang.log.* tmp/log/erlang.log.* 2>/dev/null | head -n 1); "
        f'[ -n "$f" ] || {{ echo {q(no_log_message(root))}; exit {NO_LOG_RC}; }}; '
        f'echo "{LOG_HEADER}$PWD/$f"; '
    )


def no_log_message(root: str) -> str:
    root = root.rstrip("/")
    return f"no node log in {root}/log or {root}/tmp/log"


def logs(root: str, lines: int) -> str:
    """The last `lines` lines of the node's newest log, after a `== <path>` header line."""
    return _newest_log(root) + f'tail -n {int(lines)} "$f"'


def extra_logs(root: str, patterns: tuple[str, ...], lines: int) -> str:
    """The last lines of each configured log file; patterns (validated in config to
    [A-Za-z0-9_./*-]) stay unquoted so the remote shell expands their globs."""
    return (
        f"cd {q(root)} 2>/dev/null || exit {NO_ROOT_RC}; "
        f"for f in {' '.join(patterns)}; do [ -f \"$f\" ] || continue; "
        f'echo "{LOG_HEADER}$f"; tail -n {int(lines)} "$f"; done; true'
    )


def follow_logs(root: str, lines: int) -> str:
    """`tail -F` the newest log until our SSH channel closes.

    Nothing is written to the channel's stdin, so `cat` returns only when the channel goes away
    (Ctrl-C, or our process dies); then tail is ended too instead of lingering on the host.
    """
    return (
        _newest_log(root)
        + f'tail -n {int(lines)} -F "$f" & t=$!; cat >/dev/null; kill "$t" 2>/dev/null; wait'
    )


def exec_(root: str, env: Mapping[str, str], command: str) -> str:
    """The user's command, as ONE argument of `sh -c`, in the deploy path with the stage env."""
    return f"cd {q(root)} && {env_prefix(env)}sh -c {q(command)}"


def erlang_expr(expr: str) -> str:
    """The expression with its final dot (relx `eval` needs one); a trailing `% comment` on the
    last line would swallow a dot on the same line, so the dot then goes on its own line."""
    text = expr.strip()
    if text.endswith("."):
        return text
    return text + ("\n." if "%" in text.splitlines()[-1] else ".")


def elixir_inspect(expr: str) -> str:
    """Elixir code for mix's `rpc` that evaluates `expr` on the node and prints it inspected.

    The expression travels base64-encoded and goes through Code.eval_string, so no quoting rule
    bites and syntax errors point at the user's own line and column, not at our wrapper.
    """
    b64 = base64.b64encode(expr.strip().encode()).decode()
    return f'IO.inspect(elem(Code.eval_string(Base.decode64!("{b64}")), 0))'


def eval_expr(root: str, app: str, builder: str, env: Mapping[str, str], expr: str) -> str:
    """Evaluate a user's expression on the running node: mix `rpc` (Elixir), relx `eval` (Erlang)."""
    if builder == "mix":
        return node(root, app, builder, env, "rpc", elixir_inspect(expr))
    return node(root, app, builder, env, "eval", erlang_expr(expr))


def console(root: str, app: str, builder: str, env: Mapping[str, str]) -> str:
    """The remote command that opens a shell on the running node."""
    return node(root, app, builder, env, "remote" if builder == "mix" else "remote_console")


def ssh_argv(host: Host, ssh: SshSettings, remote: str, tty: bool = True) -> list[str]:
    """OpenSSH argv to `host` with our key, known_hosts and host key policy, running `remote`."""
    known = os.path.expanduser(ssh.known_hosts or "~/.ssh/known_hosts")
    policy = "accept-new" if ssh.host_key_policy == "accept-new" else "yes"
    argv = ["ssh"] + (["-t"] if tty else [])
    if ssh.config_file:
        argv += ["-F", os.path.expanduser(ssh.config_file)]
    if ssh.identity_file:
        argv += ["-i", os.path.expanduser(ssh.identity_file), "-o", "IdentitiesOnly=yes"]
    if host.port:
        argv += ["-p", str(host.port)]
    argv += ["-o", f"UserKnownHostsFile={known}", "-o", f"StrictHostKeyChecking={policy}",
             "-o", f"ConnectTimeout={ssh.connect_timeout}"]
    address = host.address.strip("[]")  # OpenSSH takes a bare IPv6 address
    argv += [f"{host.user}@{address}" if host.user else address, remote]
    return argv


def console_argv(host: Host, ssh: SshSettings, app: str, builder: str) -> list[str]:
    """The ssh argv for the remote console: the env comes from the host's env file, so the line
    holds no secret and is the same to print and to run."""
    return ssh_argv(host, ssh, console(host.deploy_path, app, builder, host.env))
