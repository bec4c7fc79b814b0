"""Lock and audit tasks: deploy.lock, deploy.unlock, deploy.lock-status, history — thin wrappers
over the steps of the same names."""

from __future__ import annotations

from invoke import Context

from .. import steps
from .flags import HOST, JSON, STAGE, deliver_task

WAIT = "if a host is locked, keep trying this many seconds before giving up (default 0: refuse)"


@deliver_task(name="lock", help={"message": "why (shown to anyone whose run is refused), required",
                                 "lock_wait": WAIT, "stage": STAGE, "host": HOST, "json": JSON})
def lock_(c: Context, message: str | None = None, stage: str | None = None, host: str | None = None,
          lock_wait: float = 0.0, json: str | None = None) -> None:
    """Lock the stage by hand: every deploy, start, upgrade... is refused until deploy.unlock.

    Takes the lock on every host (all or nothing) and leaves it; read-only tasks (ping, version,
    doctor, logs) still work. The refusal names you, this machine and MESSAGE.
    """
    steps.lock(c, message=message, stage=stage, host=host, lock_wait=lock_wait, json_path=json)


@deliver_task(help={"force": "also remove a run's lock (a stale one, left by a crashed or killed run)",
                    "stage": STAGE, "host": HOST, "json": JSON})
def unlock(c: Context, force: bool = False, stage: str | None = None, host: str | None = None,
           json: str | None = None) -> None:
    """Release the lock taken with deploy.lock on every host.

    A lock held by a run is kept unless --force: use it when deploy.lock-status says STALE (its
    run crashed), or when you know that run is over.
    """
    steps.unlock(c, force=force, stage=stage, host=host, json_path=json)


@deliver_task(name="lock-status", help={"stage": STAGE, "host": HOST, "json": JSON})
def lock_status(c: Context, stage: str | None = None, host: str | None = None,
                json: str | None = None) -> None:
    """Show per host whether the deploy lock is held: by whom, from where, since when, why.

    A lock whose run is gone (its pid no longer runs on this machine, or its heartbeat stopped
    over 5 min ago) is shown as STALE; inv deploy.unlock --force removes it.
    """
    steps.lock_status(c, stage=stage, host=host, json_path=json)


@deliver_task(help={"lines": "how many of the newest records to show per host (default 20)",
                    "stage": STAGE, "host": HOST, "json": JSON})
def history(c: Context, lines: int = 20, stage: str | None = None, host: str | None = None,
            json: str | None = None) -> None:
    """Show each host's audit log, newest records last.

    Per record: time (UTC), who@machine, action, from -> to version, result, duration — one record
    per locked run, lock and unlock, kept in <deploy path>/.deliver."""
    steps.history(c, lines=lines, stage=stage, host=host, json_path=json)
