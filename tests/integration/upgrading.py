"""What the hot-upgrade tests read and inject: pids as `inv ping` says, pages, what boots
next, appups that break or kill, a health URL that kills the nodes mid-verification."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from .conftest import Project, accepted_logins, http_get

BROKEN_APPUP = """{{"0.0.2", [{{"0.0.1", [{{load_module, {page}}},
                            {{apply, {{erlang, error, [deliberately_broken]}}}}]}}],
          [{{"0.0.1", [{{load_module, {page}}}]}}]}}.
"""


def page_module(app: str) -> str:
    return "'Elixir.HelloEx.Page'" if app == "hello_ex" else "hello_erl_page"


def pids(project: Project) -> dict[str, int]:
    out = project.inv("ping").ok().out
    return {m[0]: int(m[1]) for m in re.findall(r"^\s+(\S+)\s+ok\s+.*pid (\d+)", out, re.M)}


def pages(project: Project) -> dict[str, str]:
    found = {}
    for h in project.box.hosts:
        status, body = http_get(project.url(h))
        assert status == 200
        found[h.name] = re.search(r"<h1>(.*)</h1>", body)[1]
    return found


def boots_next(project: Project) -> set[str]:
    return {(project.root(h) / "releases" / "start_erl.data").read_text().split()[1]
            for h in project.box.hosts}


def logins(project: Project) -> dict[str, int]:
    names = [h.name for h in project.box.hosts] + ["build"]
    return {n: accepted_logins(project.box, n) for n in names}


# An appup instruction that ends its own node (kill -9 of the BEAM: os:cmd's shell runs under
# erl_child_setup, whose parent is the BEAM) — the node dies inside release_handler's install.
KILLING_APPUP = """{{"0.0.2", [{{"0.0.1", [{{load_module, {page}}},
   {{apply, {{os, cmd, ["kill -9 $(cut -d' ' -f4 /proc/$PPID/stat)"]}}}}]}}],
          [{{"0.0.1", [{{load_module, {page}}}]}}]}}.
"""


@contextlib.contextmanager
def killing_health(project: Project, victims: list[int]) -> Iterator[tuple[Path, list[int]]]:
    """A runtime config whose health URL is a test server that ends the `victims` pids (kill -9)
    the first time it is asked, i.e. mid-verification; yields it and the pids killed."""
    killed: list[int] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            for pid in victims:
                if pid not in killed:
                    killed.append(pid)
                    os.kill(pid, signal.SIGKILL)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield project.variant("killing-health", lambda d: d["stages"]["sandbox"].update(
            health={"url": url})), killed
    finally:
        server.shutdown()
        server.server_close()
