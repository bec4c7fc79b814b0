"""The Invoke tasks: thin wrappers over `steps` (docstring = --help, help={} for every flag)."""

from __future__ import annotations

import copy
from typing import Any

from invoke import Collection, task

from . import steps
from .cli import DRY, HOST, JSON, ROLLOUT_HELP, STAGE, cli_errors, rollout
from .config import DEFAULTS
from .sandbox_tasks import sandbox
from .tasks_guard import history, lock_, lock_status, unlock
from .tasks_ops import eval_, exec_, logs, remote_console
from .tasks_retention import cleanup, host_releases, releases_collection, rollback
from .tasks_upgrade import build_upgrade, deploy_upgrade, downgrade, show_ns, upgrade
from .validation import InvalidInput


@task(help={"tag": "git tag to build", "branch": "git branch to build",
            "revision": "commit sha to build", "version": "version the build must produce",
            "stage": "checked to exist; the build host is the same for every stage",
            "dry_run": DRY, "json": JSON})
def build_release(c: Any, tag: str | None = None, branch: str | None = None,
                  revision: str | None = None, version: str | None = None,
                  stage: str | None = None, dry_run: bool = False, json: str | None = None) -> None:
    """Push a git ref to the build host, build the release there, fetch it into the store."""
    with cli_errors():
        if stage:
            steps.settings_of(c).stage(stage)
        steps.build_release(c, tag=tag, branch=branch, revision=revision, version=version,
                            dry_run=dry_run, json=json)


@task(help={"version": "release version to deploy (from the store)", "stage": STAGE,
            "host": HOST, "dry_run": DRY, "json": JSON, **ROLLOUT_HELP})
def deploy_release(c: Any, version: str | None = None, stage: str | None = None,
                   host: str | None = None, dry_run: bool = False, json: str | None = None,
                   strategy: str | None = None, batch: str | None = None,
                   pause: float | None = None, canary: int | None = None,
                   keep_going: bool = False, auto_rollback: bool = False,
                   skip_unreachable: bool = False, lock_wait: float | None = None) -> None:
    """Upload a stored release to every host (sha256-verified) and extract it to boot next."""
    with cli_errors():
        if not version:
            raise InvalidInput("missing --version: which release to deploy (see: inv releases)")
        plan = rollout(c, stage, host, strategy, batch, pause, canary, keep_going, auto_rollback,
                       skip_unreachable, lock_wait)
        steps.deploy_release(c, version, stage=stage, host=host, dry_run=dry_run, json=json,
                             rollout=plan)


@task(help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON, **ROLLOUT_HELP,
            "foreground_check": "if start fails, boot in the foreground and show the boot error"})
def start(c: Any, stage: str | None = None, host: str | None = None,
          dry_run: bool = False, json: str | None = None, foreground_check: bool = False,
          strategy: str | None = None, batch: str | None = None, pause: float | None = None,
          canary: int | None = None, keep_going: bool = False, auto_rollback: bool = False,
          skip_unreachable: bool = False, lock_wait: float | None = None) -> None:
    """Start the node on every host; verify it answers, runs the app and passes health."""
    with cli_errors():
        plan = rollout(c, stage, host, strategy, batch, pause, canary, keep_going, auto_rollback,
                       skip_unreachable, lock_wait)
        steps.start(c, stage=stage, host=host, dry_run=dry_run, json=json,
                    foreground_check=foreground_check, rollout=plan)


FORCE = ("if the node does not answer or stop: TERM, then KILL this release's BEAM and "
         "run_erl pids (never other releases'), clear stale pipe files")


@task(help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON, "force": FORCE})
def stop(c: Any, stage: str | None = None, host: str | None = None,
         dry_run: bool = False, json: str | None = None, force: bool = False) -> None:
    """Stop the node on every host and verify its OS process is gone."""
    with cli_errors():
        steps.stop(c, stage=stage, host=host, dry_run=dry_run, json=json, force=force)


@task(name="kill", help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON})
def kill_(c: Any, stage: str | None = None, host: str | None = None,
          dry_run: bool = False, json: str | None = None) -> None:
    """Same as stop --force: end this release's node even when nothing can see it."""
    with cli_errors():
        steps.stop(c, stage=stage, host=host, dry_run=dry_run, json=json, force=True)


@task(help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON, "force": FORCE,
            **ROLLOUT_HELP})
def restart(c: Any, stage: str | None = None, host: str | None = None,
            dry_run: bool = False, json: str | None = None, force: bool = False,
            strategy: str | None = None, batch: str | None = None, pause: float | None = None,
            canary: int | None = None, keep_going: bool = False, auto_rollback: bool = False,
            skip_unreachable: bool = False, lock_wait: float | None = None) -> None:
    """Verified stop, then verified start (boots the release that start_erl.data names)."""
    with cli_errors():
        plan = rollout(c, stage, host, strategy, batch, pause, canary, keep_going, auto_rollback,
                       skip_unreachable, lock_wait)
        steps.restart(c, stage=stage, host=host, dry_run=dry_run, json=json, force=force,
                      rollout=plan)


@task(help={"stage": STAGE, "host": HOST, "json": JSON})
def doctor(c: Any, stage: str | None = None, host: str | None = None,
           json: str | None = None) -> None:
    """Diagnose each host: verdict in plain words and the next command to run.

    Looks at this release's processes, epmd, ping, running vs next-boot version, disk, pipe dir,
    logs and crash dump. Exit 1 if any host is not healthy.
    """
    with cli_errors():
        steps.doctor(c, stage=stage, host=host, json=json)


@task(name="boot-check", help={"stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON,
                               "seconds": "how long the foreground boot may run (default 10)"})
def boot_check(c: Any, stage: str | None = None, host: str | None = None, seconds: int = 10,
               dry_run: bool = False, json: str | None = None) -> None:
    """Boot the stopped release in the foreground briefly and show its console output.

    This is the boot error a daemon start hides; the node is stopped again afterwards.
    """
    with cli_errors():
        steps.boot_check(c, stage=stage, host=host, seconds=seconds, dry_run=dry_run, json=json)


@task(help={"stage": STAGE, "host": HOST, "json": JSON})
def ping(c: Any, stage: str | None = None, host: str | None = None,
         json: str | None = None) -> None:
    """Check that the node on every host answers."""
    with cli_errors():
        steps.ping(c, stage=stage, host=host, json=json)


@task(help={"stage": STAGE, "host": HOST, "json": JSON})
def version(c: Any, stage: str | None = None, host: str | None = None,
            json: str | None = None) -> None:
    """Show the running release version and the one that boots next, per host."""
    with cli_errors():
        steps.version(c, stage=stage, host=host, json=json)


@task(help={"tag": "git tag to build", "branch": "git branch to build",
            "revision": "commit sha to build", "version": "version the build must produce",
            "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON, **ROLLOUT_HELP})
def update(c: Any, tag: str | None = None, branch: str | None = None,
           revision: str | None = None, version: str | None = None, stage: str | None = None,
           host: str | None = None, dry_run: bool = False, json: str | None = None,
           strategy: str | None = None, batch: str | None = None, pause: float | None = None,
           canary: int | None = None, keep_going: bool = False, auto_rollback: bool = False,
           skip_unreachable: bool = False, lock_wait: float | None = None) -> None:
    """Build a release, deploy it, and restart into it (verified); by batches with a rolling
    or canary strategy."""
    with cli_errors():
        plan = rollout(c, stage, host, strategy, batch, pause, canary, keep_going, auto_rollback,
                       skip_unreachable, lock_wait)
        steps.update(c, tag=tag, branch=branch, revision=revision, version=version,
                     stage=stage, host=host, dry_run=dry_run, json=json, rollout=plan)


@task(name="releases", help={"stage": "show what each host of this stage has instead of the store",
                             "host": "show what this host has instead of the store",
                             "json": JSON + " (with --stage/--host)"})
def releases_(c: Any, stage: str | None = None, host: str | None = None,
              json: str | None = None) -> None:
    """List the releases in the local release store; with --stage/--host, what each host has.

    Per host: versions on disk (releases dir, tarballs), which runs, which boots next, which
    are marked failed, release_handler's status of each, and the previous good one.
    """
    with cli_errors():
        if stage or host:
            host_releases(c, stage=stage, host=host, json=json)
        else:
            steps.releases(c)


build = Collection("build")
build.add_task(build_release, name="release")
build.add_task(build_upgrade, name="upgrade")
deploy = Collection("deploy")
deploy.add_task(deploy_release, name="release")
deploy.add_task(deploy_upgrade, name="upgrade")
deploy.add_task(lock_, name="lock")
deploy.add_task(unlock, name="unlock")
deploy.add_task(lock_status, name="lock-status")

ns = Collection(start, stop, kill_, restart, ping, version, update, releases_collection(releases_),
                cleanup, rollback, doctor, boot_check,
                logs, exec_, eval_, remote_console, upgrade, downgrade, build, deploy, show_ns, history,
                sandbox)
ns.configure({"deliver": copy.deepcopy(DEFAULTS)})
