"""Between a start's polls of the host, the health check's HTTP GETs are asked from this machine
every 0.1 s, so the start returns as soon as the node is ready (steps/control._pause), against a
real HTTP server on loopback that turns healthy after a number of requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from pydeliver_tasks.model import HealthCheck, Host, SmokeCheck
from pydeliver_tasks.steps import control
from pydeliver_tasks.steps.health import gets_pass


class Booting(ThreadingHTTPServer):
    """Answers 503 to the first `failing` GETs, then 200 "ok"; counts every GET."""

    def __init__(self, failing: int) -> None:
        self.failing, self.seen = failing, 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 - the server is `self` here
                self.seen += 1
                code = 503 if self.seen <= self.failing else 200
                handler.send_response(code)
                handler.end_headers()
                handler.wfile.write(b"ok" if code == 200 else b"booting")

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture()
def server(request: pytest.FixtureRequest) -> Iterator[Booting]:
    srv = Booting(getattr(request, "param", 0))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _hc(health: HealthCheck) -> SimpleNamespace:
    return SimpleNamespace(host=Host("h", "127.0.0.1", None, None, "/srv/app", health=health))


def _url(srv: Booting) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/health"


@pytest.mark.parametrize("server", [3], indirect=True)
def test_the_pause_ends_once_the_gets_pass(server: Booting) -> None:
    hc = _hc(HealthCheck(url=_url(server), contains="ok"))
    began = time.monotonic()
    control._pause(hc, healthy=False, until=began + 5.0)
    took = time.monotonic() - began
    assert server.seen == 4  # three 503s, then the 200 that ended the pause
    assert 0.3 <= took < 2.0  # four asks 0.1 s apart, far from the 5 s bound


@pytest.mark.parametrize("server", [1000], indirect=True)
def test_a_failing_check_is_asked_until_the_poll_is_due(server: Booting) -> None:
    hc = _hc(HealthCheck(url=_url(server)))
    began = time.monotonic()
    control._pause(hc, healthy=False, until=began + 0.5)
    assert time.monotonic() - began >= 0.5
    assert 3 <= server.seen <= 6  # about every 0.1 s, not in a tight loop


@pytest.mark.parametrize("server", [0], indirect=True)
def test_nothing_is_asked_when_health_passed_or_is_not_configured(server: Booting) -> None:
    for hc, healthy in ((_hc(HealthCheck(url=_url(server))), True), (_hc(HealthCheck()), False)):
        began = time.monotonic()
        control._pause(hc, healthy=healthy, until=began + 0.3)
        assert time.monotonic() - began >= 0.3
    assert server.seen == 0


def test_eval_checks_only_wait_for_the_poll() -> None:
    """Nothing to ask from this machine: the whole pause is slept (no busy loop)."""
    hc = _hc(HealthCheck(checks=(SmokeCheck(eval="true"),)))
    assert gets_pass(hc, 1.0) is None
    began = time.monotonic()
    control._pause(hc, healthy=False, until=began + 0.3)
    assert time.monotonic() - began >= 0.3


@pytest.mark.parametrize("server", [0], indirect=True)
def test_every_get_must_pass(server: Booting) -> None:
    good = _url(server)
    refused = "http://127.0.0.1:9/health"  # discard port: nothing listens
    assert gets_pass(_hc(HealthCheck(url=good)), 1.0) is True
    assert gets_pass(_hc(HealthCheck(url=good, checks=(SmokeCheck(url=refused),))), 1.0) is False
    assert gets_pass(_hc(HealthCheck(url=good, contains="missing")), 1.0) is False


def test_a_hanging_check_does_not_hold_the_poll_back() -> None:
    """A node that takes the connection and never answers: each GET between the polls is given
    only the time left before the poll, not the check's own 5 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the connection; nothing ever answers
        hc = _hc(HealthCheck(url=f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=5.0))
        began = time.monotonic()
        control._pause(hc, healthy=False, until=began + 0.5)
        assert 0.5 <= time.monotonic() - began < 1.0
