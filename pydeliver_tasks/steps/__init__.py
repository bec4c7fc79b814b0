"""The steps: plain functions `step(c, ...)` with the same names and arguments as the tasks, so a
project's tasks.py can chain them (`steps.update(c, tag="1.2.0")`). Each raises on any host failure
(an invoke Exit with a non-zero code) after printing the per-host summary."""

from __future__ import annotations

from typing import Any

from ..fleet import HostResult, say
from ..model import Release
from ..strategy import Strategy
from .build import build_release
from .common import settings_of
from .deploy import deploy_release
from .doctor import doctor
from .node import ping, restart, start, stop, version
from .recovery import boot_check
from .retention import cleanup, cleanup_store, host_releases
from .rollback import rollback
from .show import show_appup, show_relup
from .upgrade_build import build_upgrade
from .upgrading import deploy_upgrade, downgrade, upgrade

__all__ = [
    "build_release", "deploy_release", "start", "stop", "restart", "ping", "version", "update",
    "releases", "settings_of", "doctor", "boot_check", "build_upgrade", "deploy_upgrade",
    "upgrade", "downgrade", "show_appup", "show_relup", "cleanup", "cleanup_store",
    "host_releases", "rollback",
]


def update(
    c: Any, tag: str | None = None, branch: str | None = None, revision: str | None = None,
    version: str | None = None, stage: str | None = None, host: str | None = None,
    dry_run: bool = False, json: str | None = None, rollout: Strategy | None = None,
) -> list[HostResult]:
    """Build a release, deploy it, and do a verified restart into it.

    With a rolling/canary rollout each batch is deployed and restarted before the next one, and
    a failed batch can go back to the version each host booted before (auto_rollback)."""
    st = settings_of(c).stage(stage, host)  # refuse a bad stage/host before building anything
    release = build_release(c, tag=tag, branch=branch, revision=revision, version=version,
                            dry_run=dry_run)
    vsn = release.version if release else (version or tag or "<built version>")
    if dry_run:
        say(f"would deploy {vsn} to stage {st.name} and restart verified")
        return []
    from .. import strategy
    from .common import locked
    from .rolling import update_by_batches

    settings = settings_of(c)
    st, skipped = strategy.reachable("update", settings, st, rollout)
    with locked(settings, st, "update", to_version=vsn,
                lock_wait=rollout.lock_wait if rollout else 0.0) as audit:
        if rollout is None or rollout.kind == "parallel":
            deploy_release(c, vsn, stage=stage, host=host, rollout=rollout)
            results = restart(c, stage=stage, host=host, json=json, expect_version=vsn,
                              rollout=rollout)
        else:
            results = update_by_batches(c, vsn, st, rollout, json, skipped)
        audit.record(results)
        return results


def releases(c: Any) -> list[Release]:
    """List the releases in the local store (version, size, sha256)."""
    from .. import store

    settings = settings_of(c)
    found = store.listing(settings.store, settings.app)
    if not found:
        say(f"no {settings.app} releases in {settings.store}: inv build.release --tag VERSION")
    for r in found:
        size = r.path.stat().st_size / 1e6
        say(f"{r.app} {r.version:<12} {size:6.1f} MB  sha256 {r.sha256[:16]}  {r.path}")
    return found
