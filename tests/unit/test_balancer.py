"""The balancer's runtime API commands (quoted, one request per connection), what HAProxy 2.6
answers to `show stat` (a real capture: h1 drained, h2 down), and `deliver.balancer` config."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydeliver_tasks.commands import balancer as b
from pydeliver_tasks.config import ConfigError, load

CAPTURE = (Path(__file__).parent / "data" / "haproxy_2.6_show_stat.csv").read_text()


def test_show_stat_of_a_real_haproxy() -> None:
    servers = b.parse_stat(CAPTURE + b.MARK + "\n", "app")
    assert servers == {"h1": b.ServerState("DRAIN", 0), "h2": b.ServerState("DOWN", 0)}
    assert not servers["h1"].serving and b.parse_stat(CAPTURE, "other") == {}
    busy = CAPTURE.replace("app,h1,0,0,0,", "app,h1,0,0,3,", 1)
    assert busy != CAPTURE and b.parse_stat(busy, "app")["h1"].sessions == 3
    up = CAPTURE.replace(",DOWN,", ",UP 1/2,", 1)
    assert b.parse_stat(up, "app")["h2"].serving


def test_requests_are_quoted_one_per_connection() -> None:
    cmd = b.set_state("/run/haproxy/admin.sock", "app", "web1", "drain")
    assert "printf '%s\\n' 'set server app/web1 state drain'" in cmd
    assert "socat - UNIX-CONNECT:/run/haproxy/admin.sock" in cmd and "python3 -c" in cmd
    assert cmd.endswith(f"echo {b.MARK}")
    two = b.runtime("/s", "show stat", "show info")
    assert two.count(b.MARK) == 2 and two.count("UNIX-CONNECT") == 2
    for bad in (("app", "web1;reboot", "drain"), ("app b", "web1", "ready"), ("app", "w", "off")):
        with pytest.raises(ValueError):
            b.set_state("/s", *bad)
    with pytest.raises(ValueError):
        b.runtime("/s", "show stat\nshutdown sessions server app/web1")


def test_a_refused_request_is_told_apart() -> None:
    assert b.refusal(f"\n{b.MARK}\n") == ""
    assert b.refusal(f"No such server.\n\n{b.MARK}\n") == "No such server."


BASE = {"app": "shop", "builder": "mix",
        "balancer": {"host": "lb@10.0.0.2:22", "socket": "/run/haproxy/admin.sock",
                     "backend": "app", "servers": {"deploy@app1:22": "web1"}}}


def test_config_maps_each_host_to_its_server_and_stages_may_differ() -> None:
    s = load({"deliver": {**BASE, "stages": {
        "prod": {"hosts": ["deploy@app1:22", "deploy@app2"]},
        "staging": {"hosts": ["deploy@s1"], "balancer": False},
        "canary": {"hosts": ["deploy@c1"], "balancer": {**BASE["balancer"], "backend": "canary",
                                                         "min_up": 0, "drain_timeout": 5}}}}})
    prod = s.stages["prod"]
    assert prod.balancer is not None and prod.balancer.drain_timeout == 30 and prod.balancer.min_up == 1
    assert [prod.balancer.server(h) for h in prod.hosts] == ["web1", "app2"]
    assert s.stages["staging"].balancer is None
    canary = s.stages["canary"].balancer
    assert canary is not None and (canary.backend, canary.min_up, canary.drain_timeout) == ("canary", 0, 5)


def test_bad_balancer_config_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        load({"deliver": {**BASE, "balancer": {"host": "lb;x", "socket": "run/x.sock",
                                               "backend": "app", "servers": {"h": "a/b"},
                                               "min_up": -1, "wat": 1},
                          "stages": {"p": {"hosts": ["h"]}}}})
    text = "\n".join(err.value.problems)
    for part in ("deliver.balancer.wat: unknown key", "deliver.balancer.host: invalid host",
                 "deliver.balancer.socket: expected the absolute path",
                 "deliver.balancer.servers.h: invalid HAProxy name 'a/b'",
                 "deliver.balancer.min_up: expected a number >= 0"):
        assert part in text, text


def test_doctor_names_a_healthy_host_that_is_out_of_rotation() -> None:
    from pydeliver_tasks.steps.doctor import HEALTHY, Diagnosis, in_rotation
    from pydeliver_tasks.steps.rotation import InRotation

    def healthy() -> Diagnosis:
        return Diagnosis(HEALTHY, ["version: running 1.0.0, boots next 1.0.0"], "nothing to do")

    drained = InRotation("app", "web1", b.ServerState("DRAIN", 2))
    d = in_rotation(healthy(), drained, "deploy@app1")
    assert d.verdict == "out of rotation: DRAIN in the load balancer" and not d.healthy
    assert d.next == "inv balancer.enable --host deploy@app1"
    assert d.findings[-1] == "load balancer: app/web1 DRAIN, 2 session(s)"
    up = in_rotation(healthy(), InRotation("app", "web1", b.ServerState("UP", 0)), "deploy@app1")
    assert up.healthy and up.findings[-1] == "load balancer: app/web1 UP, 0 session(s)"
    down = Diagnosis("not running", [], "inv start --host deploy@app1")
    assert in_rotation(down, drained, "deploy@app1").next == "inv start --host deploy@app1"
    unread = InRotation("app", "web1", None, "the load balancer (lb) is unreachable: timed out")
    d = in_rotation(healthy(), unread, "deploy@app1")
    assert d.healthy and d.findings[-1].endswith("not read: the load balancer (lb) is "
                                                 "unreachable: timed out")
    assert unread.data() == {"server": "app/web1", "status": None, "sessions": None,
                             "error": "the load balancer (lb) is unreachable: timed out"}
    assert in_rotation(healthy(), None, "deploy@app1").findings == healthy().findings


def test_a_wrong_balancer_stops_the_run_before_any_host_with_every_host_not_started() -> None:
    from pydeliver_tasks.fleet import HostFailure, StepFailed
    from pydeliver_tasks.steps.rotation import Rotation

    s = load({"deliver": {"app": "demo", "builder": "mix", "stages": {"prod": {
        "hosts": ["deploy@10.0.0.1", "deploy@10.0.0.2"],
        "balancer": {"host": "lb@10.0.0.9", "socket": "/run/haproxy/admin.sock",
                     "backend": "app", "servers": {"deploy@10.0.0.2": "web2"}}}}}})
    stage = s.stage("prod", None)

    class Seen(Rotation):
        answer: dict[str, b.ServerState] | Exception = {}

        def servers(self) -> dict[str, b.ServerState]:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    rotation = Seen(s, stage)
    rotation.answer = {"10.0.0.1": b.ServerState("UP", 0), "web2": b.ServerState("DRAIN", 1)}
    rotation.check("restart")  # every host has its server: nothing said, nothing raised
    seen = rotation.seen()
    assert seen["deploy@10.0.0.2"].sentence == "app/web2 DRAIN, 1 session(s)"
    rotation.answer = {"10.0.0.1": b.ServerState("UP", 0)}
    with pytest.raises(StepFailed) as err:
        rotation.check("restart")
    results = list(err.value.result)
    assert [r.host for r in results] == ["deploy@10.0.0.1", "deploy@10.0.0.2"]
    assert all(r.not_started and "no server 'web2' in backend 'app'" in r.message
               for r in results), results
    assert rotation.seen()["deploy@10.0.0.2"].why == "no such server in backend 'app'"
    rotation.answer = HostFailure("the load balancer (balancer lb@10.0.0.9) is unreachable: "
                                  "host key mismatch")
    with pytest.raises(StepFailed) as err:
        rotation.check("update")
    assert all("host key mismatch" in r.message for r in err.value.result)
    assert rotation.seen()["deploy@10.0.0.1"].state is None


def test_min_up_guards_only_a_server_that_serves() -> None:
    from pydeliver_tasks.fleet import HostContext, HostFailure
    from pydeliver_tasks.steps.rotation import Rotation

    s = load({"deliver": {"app": "demo", "builder": "mix", "stages": {"prod": {
        "hosts": ["deploy@10.0.0.1", "deploy@10.0.0.2"],
        "balancer": {"host": "lb@10.0.0.9", "socket": "/s", "backend": "app"}}}}})
    stage = s.stage("prod", None)
    hc = HostContext(stage.hosts[0], s, dry_run=False)
    said: list[str] = []
    hc.say = said.append  # type: ignore[method-assign]

    class Seen(Rotation):
        answer: dict[str, b.ServerState] = {}
        sets: list[tuple[str, str]] = []

        def servers(self) -> dict[str, b.ServerState]:
            return self.answer

        def _set(self, server: str, state: str) -> None:
            self.sets.append((server, state))

    rotation = Seen(s, stage)
    rotation.answer = {"10.0.0.1": b.ServerState("UP", 0), "10.0.0.2": b.ServerState("DOWN", 0)}
    with pytest.raises(HostFailure, match="0 other server\\(s\\) of app UP"):
        rotation.drain(hc)
    assert rotation.sets == []  # refused before anything was set
    rotation.answer = {"10.0.0.1": b.ServerState("DOWN", 0), "10.0.0.2": b.ServerState("DOWN", 0)}
    assert rotation.drain(hc) == "10.0.0.1 drained"  # the whole fleet down: restart it anyway
    assert rotation.sets == [("10.0.0.1", "drain")] and "draining" in said[-1]
