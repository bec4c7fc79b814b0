"""Release tasks: build.release, deploy.release, update, releases (the store, or each host's
versions) — thin wrappers over the steps of the same names."""

from __future__ import annotations

from invoke import Context

from .. import steps
from ..model import Rollout
from ..validation import InvalidInput
from .flags import DRY, HOST, JSON, STAGE, deliver_task

REF_HELP = {"tag": "git tag to build", "branch": "git branch to build",
            "revision": "commit sha to build", "version": "version the build must produce"}
REBUILD = ("build even when the store holds this release from the same commit and build "
           "settings")
AUTO_VERSION = ("append metadata to the project's version, edeliver's pieces joined by +: "
                "commit-count, revision, branch, branch-unless-master, date, time, mix-env "
                "(default: deliver.auto_version)")
CLEAN = ("build cold: compile the dependencies too instead of reusing the ones the build host "
         "kept from a build with the same lock file, config and OTP (implies --rebuild)")
MIGRATE = ("run deliver.migrations.run in a fresh VM of the new version on one host, after the "
           "deploy and before any node restarts")


@deliver_task(help={**REF_HELP, "stage": "checked to exist; the build host is the same for "
                    "every stage", "dry_run": DRY, "json": JSON, "rebuild": REBUILD,
                    "clean": CLEAN, "auto_version": AUTO_VERSION})
def build_release(c: Context, tag: str | None = None, branch: str | None = None,
                  revision: str | None = None, version: str | None = None,
                  stage: str | None = None, dry_run: bool = False, json: str | None = None,
                  rebuild: bool = False, clean: bool = False,
                  auto_version: str | None = None) -> None:
    """Push a git ref to the build host, build the release there, fetch it into the store.

    A release the store already holds from the same commit and build settings is not built
    again. The project is compiled from a clean checkout; its dependencies are reused from an
    earlier build with the same lock file, config and OTP (--clean: built too)."""
    if stage:
        steps.settings_of(c).stage(stage)
    steps.build_release(c, tag=tag, branch=branch, revision=revision, version=version,
                        dry_run=dry_run, json_path=json, rebuild=rebuild, clean=clean,
                        auto_version=auto_version)


@deliver_task(rollout=True, help={"version": "release version to deploy (from the store)",
                                  "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON})
def deploy_release(c: Context, version: str | None = None, stage: str | None = None,
                   host: str | None = None, dry_run: bool = False, json: str | None = None,
                   rollout: Rollout | None = None) -> None:
    """Upload a stored release to every host (sha256-verified) and extract it to boot next."""
    if not version:
        raise InvalidInput("missing --version: which release to deploy (see: inv releases)")
    steps.deploy_release(c, version, stage=stage, host=host, dry_run=dry_run, json_path=json,
                         rollout=rollout)


@deliver_task(rollout=True, help={**REF_HELP, "stage": STAGE, "host": HOST, "dry_run": DRY,
                                  "json": JSON, "rebuild": REBUILD, "clean": CLEAN,
                                  "auto_version": AUTO_VERSION, "migrate": MIGRATE})
def update(c: Context, tag: str | None = None, branch: str | None = None,
           revision: str | None = None, version: str | None = None, stage: str | None = None,
           host: str | None = None, dry_run: bool = False, json: str | None = None,
           rebuild: bool = False, clean: bool = False, auto_version: str | None = None,
           migrate: bool = False, rollout: Rollout | None = None) -> None:
    """Build a release, deploy it and restart into it, verified.

    With a rolling or canary strategy, batch by batch: each batch deployed and restarted before
    the next one starts. --migrate runs deliver.migrations.run in a fresh VM of the new version
    on one host after the deploy, before any restart; if it fails, nothing is restarted."""
    steps.update(c, tag=tag, branch=branch, revision=revision, version=version, stage=stage,
                 host=host, dry_run=dry_run, json_path=json, rollout=rollout, rebuild=rebuild,
                 clean=clean, auto_version=auto_version, migrate=migrate)


@deliver_task(name="releases", help={
    "stage": "show what each host of this stage has instead of the store",
    "host": "show what this host has instead of the store",
    "json": JSON + " (with --stage/--host)"})
def releases(c: Context, stage: str | None = None, host: str | None = None,
             json: str | None = None) -> None:
    """List the releases in the local release store; with --stage/--host, what each host has.

    Per host: versions on disk (releases dir, tarballs), which runs, which boots next, which
    are marked failed, release_handler's status of each, and the previous good one.
    """
    if stage or host:
        steps.host_releases(c, stage=stage, host=host, json_path=json)
    else:
        steps.releases(c)
