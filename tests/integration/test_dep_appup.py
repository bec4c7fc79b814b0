"""A dependency that ships its own appup in src/ (as erlang.mk libraries do; neither mix nor
rebar3 3.19 copies it to ebin/), written with several terms (OTP reads the first): `mix new
my_vend --sup` with a vendored path dependency made by `mix new` too, both at test time.

The library is a small TCP server, as ranch is: `tinydep_listener` (started by my_vend's
supervisor; the same in both versions) answers every connection on the host's address
(HTTP_IP) and TINYDEP_PORT with `tinydep_text:text()` and a newline. The upgrade bumps the
library's version and changes tinydep_text only; it goes hot on both hosts with the appup the
library ships while a client connects to both every 20 ms: no connection fails, the answers go
from "dep one" to "dep two" and never back, and the node then runs the new library code — as a
fresh boot would."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from .conftest import Project
from .shop import _sub, commit_version, init_repo

APP = "my_vend"
DEP_APPUP = '''{"0.2.0",
 [{"0.1.0", [{load_module, tinydep_text}]}],
 [{"0.1.0", [{load_module, tinydep_text}]}]}.
%% the library keeps its older release lines below; OTP reads only the first term
{"0.1.0", [], []}.
'''
TEXT = '-module(tinydep_text).\n-export([text/0]).\ntext() -> "WORDS".\n'
# the library's server: one process that accepts, answers with the current tinydep_text (a
# fully qualified call: the new code once it is loaded) and closes
LISTENER = '''-module(tinydep_listener).
-export([start_link/0, listen/1, accept/1]).

start_link() -> proc_lib:start_link(?MODULE, listen, [self()]).

listen(Parent) ->
    {ok, Ip} = inet:parse_address(os:getenv("HTTP_IP")),
    Port = list_to_integer(os:getenv("TINYDEP_PORT")),
    {ok, L} = gen_tcp:listen(Port, [binary, {ip, Ip}, {active, false}, {reuseaddr, true},
                                    {backlog, 128}]),
    proc_lib:init_ack(Parent, {ok, self()}),
    accept(L).

accept(L) ->
    {ok, S} = gen_tcp:accept(L),
    _ = gen_tcp:send(S, [tinydep_text:text(), "\\n"]),
    _ = gen_tcp:close(S),
    ?MODULE:accept(L).
'''
PORT = 4075  # each host listens on its own loopback address (HTTP_IP), all on this port
ANSWERS = ("dep one", "dep two")


def make_vend(base: Path) -> Path:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
    subprocess.run(["mix", "new", APP, "--sup"], cwd=base, check=True, capture_output=True, env=env)
    d = base / APP
    (d / "vendor").mkdir()
    subprocess.run(["mix", "new", "tinydep"], cwd=d / "vendor", check=True, capture_output=True,
                   env=env)
    dep = d / "vendor" / "tinydep"
    (dep / "src").mkdir()
    (dep / "src" / "tinydep_text.erl").write_text(TEXT.replace("WORDS", "dep one"))
    (dep / "src" / "tinydep_listener.erl").write_text(LISTENER)
    init_repo(d)
    _sub(d / "lib" / APP / "application.ex", "# {MyVend.Worker, arg}",
         "%{id: :tinydep_listener, start: {:tinydep_listener, :start_link, []}}")
    _sub(d / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl]")
    _sub(d / "mix.exs", "# {:dep_from_hexpm", '{:tinydep, path: "vendor/tinydep"},\n      # {:x')
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(f"deliver:\n  app: {APP}\n")
    commit_version(d, APP, "0.1.0")
    # 0.1.1: the library moves to 0.2.0 with new code and the appup for it, in its src/
    _sub(d / "mix.exs", 'version: "0.1.0"', 'version: "0.1.1"')
    _sub(dep / "mix.exs", 'version: "0.1.0"', 'version: "0.2.0"')
    (dep / "src" / "tinydep_text.erl").write_text(TEXT.replace("WORDS", "dep two"))
    (dep / "src" / "tinydep.appup").write_text(DEP_APPUP)
    commit_version(d, APP, "0.1.1")
    return d


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp(APP)
    d = make_vend(base)
    cfg = base / f"{APP}-sandbox.json"
    data = json.loads(write_runtime_config(box, APP, PORT).read_text())
    data["deliver"]["stages"]["sandbox"]["env"]["TINYDEP_PORT"] = str(PORT)
    data["deliver"]["stages"]["sandbox"]["health"] = {
        "url": "", "checks": [{"eval": "is_pid(Process.whereis(MyVend.Supervisor))"}]}
    cfg.write_text(json.dumps(data))
    p = Project(APP, d, cfg, box)
    p.inv("build.release", "--tag", "0.1.0").ok()
    p.inv("deploy.release", "--version", "0.1.0").ok()
    p.inv("start").ok()
    yield p
    p.inv("stop")


def texts(project: Project) -> list[str]:
    out = project.inv("eval", ":erlang.list_to_binary(:tinydep_text.text())").ok().out
    return re.findall(r'^\[\S+\] "(dep \w+)"$', out, re.M)


class LineLoop(threading.Thread):
    """Connect to every host's listener every 20 ms and read its one line; keeps each host's
    answers and counts failures (refused, timeout, empty or unexpected text)."""

    def __init__(self, addresses: list[str]):
        super().__init__(daemon=True)
        self.answers: dict[str, list[str]] = {a: [] for a in addresses}
        self.failed: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for address, seen in self.answers.items():
                try:
                    with socket.create_connection((address, PORT), timeout=3) as conn:
                        data = b""
                        while chunk := conn.recv(64):
                            data += chunk
                except OSError as exc:
                    self.failed.append(f"{address}: {exc!r}")
                    continue
                line = data.decode(errors="replace")
                if line.endswith("\n") and line[:-1] in ANSWERS:
                    seen.append(line[:-1])
                else:
                    self.failed.append(f"{address}: answered {line!r}")
            self.halt.wait(0.02)

    def wait_for(self, more: int, timeout: float = 30) -> None:
        """Until every host has given `more` answers more than now (or timeout)."""
        want = {a: len(seen) + more for a, seen in self.answers.items()}
        deadline = time.monotonic() + timeout
        while (self.is_alive() and time.monotonic() < deadline
               and any(len(seen) < want[a] for a, seen in self.answers.items())):
            time.sleep(0.05)


def test_a_dependency_upgrades_hot_with_the_appup_it_ships_in_src(project: Project) -> None:
    assert texts(project) == ["dep one"] * 2
    loop = LineLoop([h.address for h in project.box.hosts])
    loop.start()
    try:
        loop.wait_for(5)
        res = project.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1", timeout=600)
        loop.wait_for(5)  # answers given after the upgrade ended
    finally:
        loop.halt.set()
        loop.join()
    assert res.rc == 0, res.out
    print("answers (dep one, dep two):", {a: (seen.count("dep one"), seen.count("dep two"))
                                          for a, seen in loop.answers.items()},
          "failed:", len(loop.failed))
    assert loop.failed == [], (len(loop.failed), loop.failed[:5])
    for address, seen in loop.answers.items():
        assert len(seen) > 20, (address, len(seen))
        old = seen.count("dep one")  # "dep one" until the new code is loaded, then "dep two"
        assert 5 <= old <= len(seen) - 5, (address, old, len(seen))
        assert seen == ["dep one"] * old + ["dep two"] * (len(seen) - old), (address, seen)
    assert "appup for tinydep: the one it ships, " in res.out
    assert "vendor/tinydep/src/tinydep.appup" in res.out
    assert res.out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, res.out
    assert texts(project) == ["dep two"] * 2
    shown = project.inv("show.appup", "--from", "0.1.0", "--to", "0.1.1").ok().out
    assert "tinydep.appup (shipped)" in shown and "tinydep: 0.1.0 -> 0.2.0" in shown
    versions = project.inv("eval", "Application.spec(:tinydep, :vsn)").ok().out
    assert len(re.findall(r"""^\[\S+\] (?:~c"0\.2\.0"|'0\.2\.0')$""", versions, re.M)) == 2, versions
