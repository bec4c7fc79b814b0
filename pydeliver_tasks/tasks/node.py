"""Node tasks: start, stop, kill, restart, ping, version, doctor, boot-check — thin wrappers over
the steps of the same names (docstring = --help)."""

from __future__ import annotations

from invoke import Context

from .. import steps
from ..model import Rollout
from .flags import DRY, HOST, JSON, STAGE, deliver_task

FORCE = ("if the node does not answer or stop: TERM, then KILL this release's BEAM and "
         "run_erl pids (never other releases'), clear stale pipe files")


@deliver_task(rollout=True, help={
    "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON,
    "foreground_check": "if start fails, boot in the foreground and show the boot error"})
def start(c: Context, stage: str | None = None, host: str | None = None, dry_run: bool = False,
          json: str | None = None, foreground_check: bool = False,
          rollout: Rollout | None = None) -> None:
    """Start the node on every host; verify it answers, runs the app and passes health."""
    steps.start(c, stage=stage, host=host, dry_run=dry_run, json_path=json,
                foreground_check=foreground_check, rollout=rollout)


@deliver_task(help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON, "force": FORCE})
def stop(c: Context, stage: str | None = None, host: str | None = None, dry_run: bool = False,
         json: str | None = None, force: bool = False) -> None:
    """Stop the node on every host and verify its OS process is gone."""
    steps.stop(c, stage=stage, host=host, dry_run=dry_run, json_path=json, force=force)


@deliver_task(name="kill", help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON})
def kill_(c: Context, stage: str | None = None, host: str | None = None, dry_run: bool = False,
          json: str | None = None) -> None:
    """Same as stop --force: end this release's node even when nothing can see it."""
    steps.stop(c, stage=stage, host=host, dry_run=dry_run, json_path=json, force=True)


@deliver_task(rollout=True, help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON,
                                  "force": FORCE})
def restart(c: Context, stage: str | None = None, host: str | None = None,
            dry_run: bool = False, json: str | None = None, force: bool = False,
            rollout: Rollout | None = None) -> None:
    """Verified stop, then verified start (boots the release that start_erl.data names)."""
    steps.restart(c, stage=stage, host=host, dry_run=dry_run, json_path=json, force=force,
                  rollout=rollout)


@deliver_task(help={"stage": STAGE, "host": HOST, "json": JSON})
def doctor(c: Context, stage: str | None = None, host: str | None = None,
           json: str | None = None) -> None:
    """Diagnose each host: verdict in plain words and the next command to run.

    Looks at this release's processes, epmd, ping, running vs next-boot version, disk, pipe dir,
    logs and crash dump. Exit 1 if any host is not healthy.
    """
    steps.doctor(c, stage=stage, host=host, json_path=json)


@deliver_task(name="boot-check", help={
    "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON,
    "seconds": "how long the foreground boot may run (default 10)"})
def boot_check(c: Context, stage: str | None = None, host: str | None = None, seconds: int = 10,
               dry_run: bool = False, json: str | None = None) -> None:
    """Boot the stopped release in the foreground briefly and show its console output.

    This is the boot error a daemon start hides; the node is stopped again afterwards.
    """
    steps.boot_check(c, stage=stage, host=host, seconds=seconds, dry_run=dry_run, json_path=json)


@deliver_task(help={"stage": STAGE, "host": HOST, "json": JSON})
def ping(c: Context, stage: str | None = None, host: str | None = None,
         json: str | None = None) -> None:
    """Check that the node on every host answers."""
    steps.ping(c, stage=stage, host=host, json_path=json)


@deliver_task(help={"stage": STAGE, "host": HOST, "json": JSON})
def version(c: Context, stage: str | None = None, host: str | None = None,
            json: str | None = None) -> None:
    """Show the running release version and the one that boots next, per host."""
    steps.version(c, stage=stage, host=host, json_path=json)
