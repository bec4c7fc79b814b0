"""The deploy lock around every host-changing run, and the audit log.

`guarded(...)` locks every host of a stage (all or nothing), runs the body, appends one audit line
per host and releases, whatever happened; a process holding a host's lock already reuses it (so a
run inside another run, or inside `steps.locked`, goes on under the outer lock). The steps that
show, take and release it by hand are in steps/lock.py.
"""

from __future__ import annotations

import getpass
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from invoke.exceptions import Exit

from .. import lazy
from ..commands import lock as cmds
from ..config import Settings
from ..model import Host, Stage
from ..validation import InvalidInput
from .host import HostContext, HostFailure
from .output import say
from .results import HostResult, RunResult, StepFailed
from .run import for_each_host

MAX_MESSAGE = 500
_held: dict[tuple[str, str | None, int | None, str], str] = {}  # host key -> token, this process
_held_lock = threading.Lock()


class LockRefused(Exit):
    """The stage is locked (or a lock is stale): nothing was run; exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=1)

    def __str__(self) -> str:
        return str(self.message)


class Guard:
    """What a guarded body hands back: the per-host results its audit lines use."""

    def __init__(self, stage: Stage, action: str) -> None:
        self.stage, self.action, self.results = stage, action, dict[str, HostResult]()

    def record(self, results: RunResult | list[HostResult]) -> None:
        """Keep these results (a host that failed in any recorded step stays failed)."""
        for r in results:
            if r.host not in self.results or self.results[r.host].ok:
                self.results[r.host] = r

    def result(self, host: Host, outcome: str) -> str:
        """ok/failed from the recorded results, else `outcome` (always when error/interrupted)."""
        r = self.results.get(host.name)
        if outcome not in ("ok", "failed") or r is None:
            return outcome
        if not r.ok and r.message.startswith(("not started", "skipped")):  # fleet's words for
            return "not started"  # hosts a run left alone (keep_going=False, rollouts)
        return "ok" if r.ok else "failed"


def who() -> tuple[str, str]:
    """(local user, this machine's name) as the lock and the audit log record them."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid is still someone
        user = f"uid{os.getuid()}"
    return user, socket.gethostname()


def check_message(message: str | None, required: bool = False) -> str:
    text = cmds.flat(message or "", MAX_MESSAGE + 1)
    if required and not text:
        raise InvalidInput("missing --message: say why the stage is locked (shown to anyone "
                           "who tries to deploy), e.g. --message 'db migration until 15:00'")
    if len(text) > MAX_MESSAGE:
        raise InvalidInput(f"--message is too long: at most {MAX_MESSAGE} characters")
    return text


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        pass
    return True


def stale_reason(holder: cmds.Holder) -> str:
    """Why nobody holds this lock any more ("" when it may be live), judged from this machine."""
    return cmds.stale_reason(holder, who()[1], pid_alive)


def describe(holder: cmds.Holder) -> str:
    """One line about a lock's holder for people, with STALE and why when it is stale."""
    return cmds.describe(holder, stale_reason(holder))


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(h: Host) -> tuple[str, str | None, int | None, str]:  # one lock per (host, deploy path)
    return (h.address, h.user, h.port, h.deploy_path)


def holder_info(action: str, version: str | None, message: str, stage: str) -> dict[str, Any]:
    user, machine = who()
    return {"user": user, "machine": machine, "pid": os.getpid(), "started": utc_now(),
            "action": action, "version": version or "", "message": message, "stage": stage,
            "token": secrets.token_hex(12)}


def _try_lock(hc: HostContext, info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    res = hc.run(cmds.acquire(hc.host.deploy_path, info, info["token"]))
    if res.ok and cmds.TAKEN in res.stdout:
        return "locked", {"taken": True}
    if res.exited == cmds.HELD_RC:
        return "held", {"holder": cmds.parse_holder(res.stdout) or cmds.Holder()}
    raise HostFailure(f"cannot take the deploy lock in {hc.host.deploy_path}/.deliver "
                      f"(exit {res.exited})", res.tail(), "is the deploy path writable by the SSH user?")


def _release_one(hc: HostContext, token: str, audit: str = "") -> str:
    res = hc.run(cmds.release(hc.host.deploy_path, token, audit=audit))
    if not res.ok:
        raise HostFailure(f"could not release the deploy lock (exit {res.exited})", res.tail(),
                          f"inv deploy.lock-status; {cmds.UNLOCK_FORCE} --host {hc.host.name}")
    return "released"


def _release(settings: Settings, stage: str, hosts: list[Host], token: str) -> None:
    if hosts:
        for_each_host("unlock", settings, stage, hosts, lambda hc: _release_one(hc, token),
                      raise_on_failure=False, quiet=True)
    with _held_lock:
        for h in hosts:
            _held.pop(_key(h), None)


def take(settings: Settings, stage: Stage, info: dict[str, Any], lock_wait: float = 0.0,
         keep: bool = True) -> list[Host]:
    """Lock every host of `stage` not held by this process already; all or nothing. Held
    elsewhere: refused at once (LockRefused), or retried until lock_wait seconds have passed.
    Returns the hosts locked now; keep: this process reuses them until they are released."""
    with _held_lock:
        hosts = [h for h in stage.hosts if _key(h) not in _held]
    try:
        taken = _take(settings, stage, hosts, info, float(lock_wait)) if hosts else []
    except (LockRefused, StepFailed):
        raise  # what was taken is released already
    except BaseException:  # Ctrl-C while taking: drop whatever carries our token
        _release(settings, stage.name, hosts, info["token"])
        raise
    with _held_lock:
        _held.update({_key(h): info["token"] for h in taken} if keep else {})
    return taken


def _take(settings: Settings, stage: Stage, hosts: list[Host], info: dict[str, Any],
          lock_wait: float) -> list[Host]:
    deadline, waiting = time.monotonic() + lock_wait, False
    while True:
        results = for_each_host("lock", settings, stage.name, hosts, lambda hc: _try_lock(hc, info),
                                raise_on_failure=False, quiet=True)
        taken = [h for h, r in zip(hosts, results, strict=True) if r.ok and r.data.get("taken")]
        held = [(r.host, r.data["holder"]) for r in results if r.ok and "holder" in r.data]
        if not held and all(r.ok for r in results):
            return taken
        _release(settings, stage.name, taken, info["token"])
        if not all(r.ok for r in results):
            raise StepFailed("lock", results)
        shown = [(name, describe(holder)) for name, holder in held]
        stale = any(stale_reason(holder) for _, holder in held)
        if stale or time.monotonic() >= deadline:
            raise LockRefused(cmds.refusal(stage.name, shown, len(results), stale))
        if not waiting:
            waiting = True
            say(f"waiting up to {lock_wait:g}s for the deploy lock: "
                + "; ".join(f"[{name}] {text}" for name, text in shown))
        time.sleep(min(max(0.0, deadline - time.monotonic()), 0.5 + random.random()))


def append_audit(hc: HostContext, line: str) -> None:
    res = hc.run(cmds.audit_append(hc.host.deploy_path, line))
    if not res.ok:
        raise HostFailure(f"could not append to the audit log (exit {res.exited})", res.tail())


@contextmanager
def guarded(settings: Settings, stage: Stage, action: str, *, from_version: str | None = None,
            to_version: str | None = None, lock_wait: float = 0.0, message: str = "",
            dry_run: bool = False) -> Iterator[Guard]:
    """Take the deploy lock on every host of `stage` (all or nothing: if one host is locked, the
    ones taken are released and the run is refused at once with the holder's details — or retried
    until lock_wait seconds pass), yield a Guard, then append one audit line per host and release
    the locks, on success and on failure (also on KeyboardInterrupt)."""
    message = check_message(message)
    guard = Guard(stage, action)
    if dry_run:
        for h in stage.hosts:
            say(f"[{h.name}] would take the deploy lock {h.deploy_path}/{cmds.LOCK} for {action}, "
                f"then append a line to {h.deploy_path}/{cmds.AUDIT} and release the lock")
        yield guard
        return
    info = holder_info(action, to_version or from_version, message, stage.name)
    taken = take(settings, stage, info, lock_wait)
    started, begun, outcome = utc_now(), time.monotonic(), "ok"
    user_at, run = "@".join(who()), info["token"]
    beating = _heartbeat(settings, taken, run)
    try:
        # written first, so a run killed before its end still shows in the history
        for_each_host("audit", settings, stage.name, stage.hosts, lambda hc: append_audit(
            hc, cmds.audit_line(started, user_at, action, from_version, to_version, cmds.STARTED,
                                0.0, run)), raise_on_failure=False, quiet=True)
        yield guard
    except StepFailed as exc:
        guard.record(exc.results)
        outcome = "failed"
        raise
    except BaseException as exc:
        outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        raise
    finally:
        seconds = time.monotonic() - begun

        mine = {_key(h) for h in taken}

        def finish(hc: HostContext) -> str:  # the end line, and our lock released, in one request
            result = guard.result(hc.host, outcome)
            line = cmds.audit_line(started, user_at, action, from_version, to_version, result,
                                   seconds, run)
            if _key(hc.host) not in mine:  # locked by an outer run of this process: it releases
                append_audit(hc, line)
                return result
            _release_one(hc, run, audit=line)
            return result

        beating.set()
        for_each_host("unlock", settings, stage.name, stage.hosts, finish,
                      raise_on_failure=False, quiet=True)
        with _held_lock:
            for h in taken:
                _held.pop(_key(h), None)


def _heartbeat(settings: Settings, hosts: list[Host], token: str) -> threading.Event:
    """Touch our lock on `hosts` every HEARTBEAT s until the returned event is set, so another
    machine can tell a live run from a dead one (a host that cannot be reached just misses a
    beat)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(cmds.HEARTBEAT):
            for h in hosts:
                try:
                    HostContext(h, settings, dry_run=False).run(cmds.heartbeat(h.deploy_path, token))
                except Exception:  # noqa: BLE001 - a missed beat is what the reader judges
                    pass

    lazy.load_all()  # before the thread: see lazy.load_all
    threading.Thread(target=beat, name="lock-heartbeat", daemon=True).start()
    return stop


