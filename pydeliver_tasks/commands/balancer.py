"""Pure builders of the commands that reach an HAProxy's runtime API (its admin `stats socket`)
on the balancer host, and the parser of what it answers. One command per connection, as the API
wants; the socket is reached with socat, or python3 where socat is missing."""

from __future__ import annotations

import csv
import io
import re
import shlex
from dataclasses import dataclass

q = shlex.quote

STATES = ("ready", "drain", "maint")
MARK = "PDT_BALANCER_END"
NAME_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # an HAProxy backend or server name

# stdin to the unix socket, its answer to stdout, for hosts without socat
_PY = ("import socket,sys;s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);"
       "s.sendall(sys.stdin.buffer.read());s.shutdown(socket.SHUT_WR);"
       "[sys.stdout.buffer.write(b) for b in iter(lambda:s.recv(65536),b'')]")


def _client(socket_path: str) -> str:
    sock = q(socket_path)
    return (f"if command -v socat >/dev/null 2>&1; then socat - UNIX-CONNECT:{sock}; "
            f"else python3 -c {q(_PY)} {sock}; fi")


def runtime(socket_path: str, *requests: str) -> str:
    """Send each request on its own connection; each answer ends with a MARK line."""
    for r in requests:
        if "\n" in r or ";" in r:
            raise ValueError(f"one runtime API request per line: {r!r}")
    return " && ".join(f"{{ printf '%s\\n' {q(r)} | {_client(socket_path)}; }} && echo {MARK}"
                       for r in requests)


def show_stat(socket_path: str) -> str:
    return runtime(socket_path, "show stat")


def set_state(socket_path: str, backend: str, server: str, state: str) -> str:
    """`set server B/S state ready|drain|maint`: names checked here too (they go on the wire)."""
    if state not in STATES or not NAME_RE.fullmatch(backend) or not NAME_RE.fullmatch(server):
        raise ValueError(f"bad balancer request: {backend}/{server} {state}")
    return runtime(socket_path, f"set server {backend}/{server} state {state}")


def refusal(text: str) -> str:
    """What a `set server` answered instead of nothing (e.g. `No such server.`): "" when it
    took the request."""
    return text.split(MARK, 1)[0].strip()


@dataclass(frozen=True)
class ServerState:
    """One server of a backend as `show stat` reports it: status UP / DRAIN / MAINT / DOWN (and
    HAProxy's transitional words, e.g. `UP 1/3`), current sessions."""
    status: str
    sessions: int

    @property
    def serving(self) -> bool:
        return self.status.startswith("UP")


def parse_stat(text: str, backend: str) -> dict[str, ServerState]:
    """The servers of `backend` from `show stat`'s CSV (its header starts with `# `); {} when
    the backend is not there."""
    body = text.split(MARK, 1)[0].strip()
    if body.startswith("# "):
        body = body[2:]
    rows = csv.DictReader(io.StringIO(body))
    found: dict[str, ServerState] = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in (None, "FRONTEND", "BACKEND"):
            continue
        scur = row.get("scur") or "0"
        found[row["svname"]] = ServerState((row.get("status") or "").strip(),
                                           int(scur) if scur.isdigit() else 0)
    return found
