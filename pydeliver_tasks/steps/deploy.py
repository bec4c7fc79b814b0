"""Deploy steps: upload a stored release to every host (sha256-checked), extract it to boot next."""

from __future__ import annotations

from typing import Any

from .. import commands, hooks, store, strategy
from .. import validation as v
from ..fleet import HostContext, HostFailure, HostResult
from ..model import Release
from ..strategy import Strategy
from .build import sha256_of
from .common import locked, target


def upload(hc: HostContext, release: Release) -> bool:
    """Put the tarball on the host unless the same sha256 is already there; -> uploaded?"""
    root = hc.host.deploy_path
    remote = commands.tarball_path(root, release.app, release.version, release.kind)
    have = hc.run(commands.remote_sha256(remote), changes=False).stdout.strip()
    if have == release.sha256:
        hc.say(f"{release.file_name} already on host with the same sha256: upload skipped")
        return False
    hooks.run(hc, "before", "upload", root)
    res = hc.run(commands.mkdir(commands.tarball_dir(root)))
    if not res.ok:
        raise HostFailure(f"cannot create {commands.tarball_dir(root)}", res.tail(),
                          "check deliver deploy_path and the SSH user's permissions")
    if not hc.dry_run:
        hc.say(f"uploading {release.file_name} ({release.path.stat().st_size / 1e6:.1f} MB)")
    hc.put(release.path, remote + ".part")
    hooks.run(hc, "after", "upload", root)
    return True


def extract(hc: HostContext, release: Release, uploaded: bool = True) -> None:
    """Verify the sha256 on the host, then extract so that this version boots next."""
    root = hc.host.deploy_path
    hooks.run(hc, "before", "extract", root)
    res = hc.run(commands.install_release(root, release.app, release.version, release.sha256,
                                          uploaded, release.kind))
    if not res.ok:
        what = "sha256 check failed" if res.exited == 3 else f"extract failed (exit {res.exited})"
        raise HostFailure(f"{what} for {release.file_name}", res.tail(),
                          "run deploy.release again; nothing of this version was activated")
    hooks.run(hc, "after", "extract", root)


def tidy(hc: HostContext, deployed: str) -> str:
    """After a deploy: remove old versions beyond deliver.keep_releases (never the running one,
    the previous good one or the one just deployed); a cheap listing decides whether to look."""
    from . import retention

    keep = hc.settings.keep_releases
    root, app = hc.host.deploy_path, hc.settings.app
    if keep <= 0:
        return ""
    state = retention.parse_listing(hc.run(retention.rcmd.listing(root, app), changes=False).stdout)
    if len(state.versions) <= keep:
        return ""
    try:
        message, _ = retention.cleanup_host(hc, hc.settings.builder, keep, protect=(deployed,))
    except HostFailure as exc:  # the deploy itself succeeded: say so, and what to run later
        hc.say(f"cleanup after the deploy failed: {exc.message}")
        return f"; cleanup skipped ({exc.message}): run inv cleanup --host {hc.host.name} later"
    return f"; cleanup (keep {keep}): {message}"


def deploy_release(
    c: Any, version: str, stage: str | None = None, host: str | None = None,
    dry_run: bool = False, json: str | None = None, rollout: Strategy | None = None,
) -> list[HostResult]:
    """Upload release VERSION to every host of the stage and extract it so the next start boots it
    (all at once, or batch by batch with a rollout strategy)."""
    v.version(version)
    settings, st, _ = target(c, stage, host)
    release = store.find(settings.store, settings.app, version)
    if sha256_of(release.path) != release.sha256:
        raise v.InvalidInput(
            f"{release.path} does not match its .sha256: the store copy is damaged; rebuild it"
        )

    def run(hc: HostContext) -> str:
        uploaded = upload(hc, release)
        extract(hc, release, uploaded)
        if hc.dry_run:
            return f"would upload {version} (unless the host has it), verify and extract it"
        how = "uploaded" if uploaded else "upload skipped (same sha256 on host)"
        return f"{version} {how}, extracted; it boots on next start" + tidy(hc, version)

    st, skipped = strategy.reachable("deploy.release", settings, st, rollout, dry_run)
    with locked(settings, st, "deploy.release", to_version=version, dry_run=dry_run,
                lock_wait=rollout.lock_wait if rollout else 0.0) as audit:
        results = strategy.each("deploy.release", settings, st, run, rollout, dry_run=dry_run,
                                json_path=json, command=f"inv deploy.release --version {version}",
                                skipped=skipped)
        audit.record(results)
        return results
