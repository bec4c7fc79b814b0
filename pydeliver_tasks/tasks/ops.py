"""Operator tasks: logs, exec, eval, remote-console — thin wrappers over the steps of the same
names."""

from __future__ import annotations

import sys

from invoke import Context

from .. import steps
from ..validation import MAX_LINES, InvalidInput
from .flags import HOST, JSON, STAGE, deliver_task


def remainder(argv: list[str] | None = None) -> str | None:
    """What follows the first `--` on the command line (Invoke keeps it from tasks), words
    joined by spaces as ssh does; None when there is no `--`."""
    argv = sys.argv if argv is None else argv
    if "--" not in argv:
        return None
    return " ".join(argv[argv.index("--") + 1:])


@deliver_task(help={"lines": f"how many lines of the newest log to show (1-{MAX_LINES}, default 50)",
                    "follow": "keep streaming new lines from every host until Ctrl-C",
                    "stage": STAGE, "host": HOST, "json": JSON})
def logs(c: Context, lines: int = 50, follow: bool = False, stage: str | None = None,
         host: str | None = None, json: str | None = None) -> None:
    """Show the last lines of the node's newest run_erl log on every host (or follow them).

    relx nodes log to <deploy path>/log, mix nodes to <deploy path>/tmp/log. A host with no log
    yet (never started as a daemon) is reported, not failed; a missing deploy path fails.
    --follow tails every host at once until Ctrl-C; it stays on the file that was newest when
    it began (when run_erl rotates to the next erlang.log.N, run it again).
    """
    steps.logs(c, lines=lines, follow=follow, stage=stage, host=host, json_path=json)


@deliver_task(name="exec", help={"cmd": "the shell command (instead of giving it after --)",
                                 "stage": STAGE, "host": HOST, "json": JSON})
def exec_(c: Context, cmd: str | None = None, stage: str | None = None, host: str | None = None,
          json: str | None = None) -> None:
    """Run a shell command on every host: inv exec -- 'CMD' (or --cmd 'CMD').

    Runs `sh -c CMD` in the deploy path with the stage env; output is prefixed per host. Exits
    non-zero when the command fails on any host. Quote CMD as one argument: words after -- are
    joined by spaces, like ssh does.
    """
    rest = remainder()
    if cmd is not None and rest is not None:
        raise InvalidInput("give the command either after -- or with --cmd, not both")
    steps.exec_(c, cmd if cmd is not None else rest or "", stage=stage, host=host, json_path=json)


@deliver_task(name="eval", help={"expr": "mix: an Elixir expression; rebar3: an Erlang expression "
                                         "(the final dot is added when missing)",
                                 "stage": STAGE, "host": HOST, "json": JSON})
def eval_(c: Context, expr: str, stage: str | None = None, host: str | None = None,
          json: str | None = None) -> None:
    """Evaluate an expression on the running node of every host and print it: inv eval 'EXPR'.

    mix releases run it with `bin/APP rpc` (Elixir), rebar3/relx with `bin/APP eval` (Erlang).
    A syntax error or exception fails that host with the error; so does a node not running.
    """
    steps.eval_(c, expr, stage=stage, host=host, json_path=json)


@deliver_task(name="remote-console",
              help={"exec": "replace this process by that ssh (needs exactly one host: --host)",
                    "stage": STAGE, "host": HOST})
def remote_console(c: Context, exec_: bool = False, stage: str | None = None,
                   host: str | None = None) -> None:
    """Print the ssh command that opens a shell on each host's running node.

    It uses our known_hosts, host key policy, key, user and port; mix opens `bin/APP remote`,
    relx `bin/APP remote_console`. Secret env values (cookies...) are printed as ***; --exec
    runs the real command for one host.
    """
    steps.remote_console(c, exec_=exec_, stage=stage, host=host)
