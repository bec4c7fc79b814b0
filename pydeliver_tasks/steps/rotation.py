"""A host out of the load balancer's rotation while its node is stopped (deliver.balancer).

Per host, around every stop: check that at least `min_up` OTHER servers of the backend are UP
(never drain the last serving host), `drain` (no new connections), wait until its sessions end
(bounded by drain_timeout), then the caller stops and starts; once the start is verified, `ready`,
and wait until the balancer's own health check sees it UP. A host whose start fails stays drained,
named. One host of a run is out of rotation at a time, whatever the strategy, so the min_up check
of one cannot race another's drain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .. import validation as v
from ..commands import balancer as lb
from ..config import Settings
from ..fleet import HostContext, HostFailure, HostResult, RunResult, StepFailed, say
from ..fleet.strategy import summary
from ..model import Balancer, Host, Stage

POLL = 0.2
UP_TIMEOUT = 30.0  # the balancer's health check must see a started host UP within this


@dataclass(frozen=True)
class InRotation:
    """One host's server as the load balancer reported it; state None: not read (why)."""

    backend: str
    server: str
    state: lb.ServerState | None
    why: str = ""

    @property
    def sentence(self) -> str:
        if self.state is None:
            return f"{self.backend}/{self.server} not read: {self.why}"
        return f"{self.backend}/{self.server} {self.state.status}, {self.state.sessions} session(s)"

    def data(self) -> dict[str, object]:
        return {"server": f"{self.backend}/{self.server}",
                "status": self.state.status if self.state else None,
                "sessions": self.state.sessions if self.state else None,
                "error": None if self.state else self.why}


class Rotation:
    """The balancer of one run's stage (none: every call is a no-op)."""

    def __init__(self, settings: Settings, stage: Stage) -> None:
        self.balancer: Balancer | None = stage.balancer
        self.stage = stage
        self._one = threading.Lock()
        self._out: set[str] = set()  # hosts drained by this run right now
        self.lb: HostContext | None = None
        if self.balancer is not None:
            a = v.host_address(self.balancer.host)
            self.lb = HostContext(Host(f"balancer {self.balancer.host}", a.host, a.user, a.port,
                                       "/"), settings, dry_run=False)

    def _ask(self, command: str, what: str) -> str:
        assert self.lb is not None
        try:
            res = self.lb.run(command, changes=False)
        except HostFailure as exc:
            raise HostFailure(f"the load balancer ({self.lb.host.name}) is unreachable: "
                              f"{exc.message}", hint=exc.hint) from exc
        if not res.ok or lb.MARK not in res.stdout:
            raise HostFailure(f"the load balancer could not {what} (exit {res.exited})", res.tail(),
                              "check deliver.balancer.socket and that HAProxy runs with "
                              "`stats socket ... level admin`")
        return res.stdout

    def servers(self) -> dict[str, lb.ServerState]:
        assert self.balancer is not None
        found = lb.parse_stat(self._ask(lb.show_stat(self.balancer.socket), "show its state"),
                              self.balancer.backend)
        if not found:
            raise HostFailure(f"the load balancer has no backend {self.balancer.backend!r} with "
                              "servers", hint="check deliver.balancer.backend")
        return found

    def check(self, action: str) -> None:
        """Before any host of the run changes: the balancer answers (its host key verified),
        the backend exists and every host of the stage has a server in it — else the run stops
        here, every host not started."""
        if self.balancer is None:
            return
        try:
            seen = self.servers()
            missing = [self.balancer.server(h) for h in self.stage.hosts
                       if self.balancer.server(h) not in seen]
            if missing:
                raise HostFailure(f"no server {', '.join(map(repr, missing))} in backend "
                                  f"{self.balancer.backend!r} of the load balancer (it has "
                                  f"{', '.join(sorted(seen))})",
                                  hint="check deliver.balancer.servers (deploy host -> server "
                                  "name)")
        except HostFailure as exc:
            say(f"{action}: refused before any host was drained: {exc.message}")
            if exc.detail:
                say(exc.detail.rstrip()[-800:])
            say(f"next: {exc.hint or 'inv balancer.status'}")
            result = RunResult(action, self.stage.name, [
                HostResult(h.name, False, f"not started: the load balancer: {exc.message}", 0.0)
                for h in self.stage.hosts])
            say(summary(result, set()))
            raise StepFailed(action, result) from exc

    def seen(self) -> dict[str, InRotation]:
        """Each stage host's server as the balancer reports it now, read once (doctor, version);
        {} without a balancer."""
        b = self.balancer
        if b is None:
            return {}
        try:
            found, why = self.servers(), ""
        except HostFailure as exc:
            found, why = {}, exc.message
        return {h.name: InRotation(b.backend, b.server(h), found.get(b.server(h)),
                                   why or f"no such server in backend {b.backend!r}")
                for h in self.stage.hosts}

    def _set(self, server: str, state: str) -> None:
        assert self.balancer is not None
        out = self._ask(lb.set_state(self.balancer.socket, self.balancer.backend, server, state),
                        f"set {server} {state}")
        if lb.refusal(out):
            raise HostFailure(f"the load balancer refused `{state}` for "
                              f"{self.balancer.backend}/{server}: {lb.refusal(out)}",
                              hint="check deliver.balancer.servers (deploy host -> server name)")

    def drain(self, hc: HostContext) -> str:
        """min_up check, drain, wait for its sessions to end (bounded)."""
        b = self.balancer
        assert b is not None
        server = b.server(hc.host)
        seen = self.servers()
        if server not in seen:
            raise HostFailure(f"no server {server!r} in backend {b.backend!r} of the load "
                              "balancer", hint="check deliver.balancer.servers")
        others = [s for s, st in seen.items() if s != server and st.serving]
        if seen[server].serving and len(others) < b.min_up:  # a server not UP serves nobody
            raise HostFailure(
                f"refusing to take {server} out of rotation: {len(others)} other server(s) of "
                f"{b.backend} UP, deliver.balancer.min_up is {b.min_up} (never drain the last "
                "serving hosts)", hint="bring another server UP first (inv start), or lower "
                "deliver.balancer.min_up")
        self._set(server, "drain")
        hc.say(f"balancer: {b.backend}/{server} draining ({len(others)} other(s) UP)")
        deadline, sessions = time.monotonic() + b.drain_timeout, seen[server].sessions
        while time.monotonic() < deadline:
            sessions = self.servers()[server].sessions
            if sessions == 0:
                return f"{server} drained"
            time.sleep(POLL)
        return f"{server} drained; {sessions} session(s) still open after {b.drain_timeout:g} s"

    def enable(self, hc: HostContext) -> str:
        """Back in rotation, once the balancer's own check sees it UP."""
        b = self.balancer
        assert b is not None
        server = b.server(hc.host)
        self._set(server, "ready")
        deadline = time.monotonic() + UP_TIMEOUT
        status = ""
        while time.monotonic() < deadline:
            status = self.servers()[server].status
            if status.startswith("UP"):
                hc.say(f"balancer: {b.backend}/{server} UP, back in rotation")
                return f"{server} UP in the balancer"
            time.sleep(POLL)
        raise HostFailure(f"{server} is enabled in the balancer but its health check says "
                          f"{status or 'nothing'} after {UP_TIMEOUT:g} s",
                          hint=f"inv balancer.status; then inv balancer.enable --host {hc.host.name}")

    @contextmanager
    def out(self, hc: HostContext, back: bool = True) -> Iterator[None]:
        """Around a stop (and start): drained before, enabled after when the body succeeded and
        `back`; a failure inside leaves the host drained, said."""
        if self.balancer is None or hc.dry_run or hc.host.name in self._out:
            yield  # no balancer, or already out (a restart inside an upgrade --drain)
            return
        with self._one:
            self.drain(hc)
            self._out.add(hc.host.name)
            try:
                yield
            except HostFailure as exc:
                exc.message += (f"; it stays drained in the load balancer (inv balancer.enable "
                                f"--host {hc.host.name} once it serves)")
                raise
            finally:
                self._out.discard(hc.host.name)
            if back:
                self.enable(hc)
