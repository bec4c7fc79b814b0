"""The run's one shell per host: a small POSIX sh loop started once over the run's SSH connection
that runs each command sent to it on its stdin, so a command costs a fork on the host instead of
a new SSH session (sshd sets up a session, with its own shell, for every exec: ~45 ms on
loopback, a network round trip more elsewhere).

A request is one line: `<id> <base64 of the command>`. The loop runs the command the way sshd
runs an exec (the login shell's `-c`, stdin from /dev/null, in the home directory) and then
writes `\\n<id> <exit status>\\n` to stdout and `\\n<id>\\n` to stderr, so the reader knows where
each stream of that command ends without guessing; the id is random per request.
"""

from __future__ import annotations

import base64

# Said instead of serving when the host has no base64 (the reader then runs every command of
# this connection the usual way, one SSH exec each).
UNAVAILABLE = "PDT_SHELL_UNAVAILABLE"

DRIVER = (
    f"command -v base64 >/dev/null 2>&1 || {{ echo {UNAVAILABLE}; exit 0; }}; "
    "while IFS= read -r pdt_req; do "
    'pdt_id=${pdt_req%% *}; '
    'pdt_cmd=$(printf %s "${pdt_req#* }" | base64 -d) && '
    '"${SHELL:-/bin/sh}" -c "$pdt_cmd" </dev/null; '
    "pdt_rc=$?; "
    "printf '\\n%s %s\\n' \"$pdt_id\" \"$pdt_rc\"; "
    "printf '\\n%s\\n' \"$pdt_id\" >&2; "
    "done"
)


def request(request_id: str, command: str) -> bytes:
    """One request line for DRIVER (the id: letters and digits only)."""
    assert request_id.isalnum(), request_id
    return f"{request_id} {base64.b64encode(command.encode()).decode()}\n".encode()


def stdout_end(request_id: str) -> bytes:
    """What precedes the exit status at the end of a command's stdout."""
    return f"\n{request_id} ".encode()


def stderr_end(request_id: str) -> bytes:
    return f"\n{request_id}\n".encode()
