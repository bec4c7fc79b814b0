"""Deploy steps: upload a stored release to every host (sha256-checked), extract it to boot next."""

from __future__ import annotations

from pathlib import Path

from .. import commands, store
from .. import validation as v
from ..commands import retention as rcmd
from ..fleet import hooks
from ..fleet.host import HostContext, HostFailure
from ..fleet.results import RunResult
from ..model import NextStep, Release, Rollout, release_file_name
from .build import sha256_of
from .frame import Ctx, over_stage, settings_of
from .retention import cleanup_host, parse_listing


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
    keep = hc.settings.keep_releases
    root, app = hc.host.deploy_path, hc.settings.app
    if keep <= 0:
        return ""
    state = parse_listing(hc.run(rcmd.listing(root, app), changes=False).stdout)
    if len(state.versions) <= keep:
        return ""
    try:
        message, _ = cleanup_host(hc, hc.settings.builder, keep, protect=(deployed,))
    except HostFailure as exc:  # the deploy itself succeeded: say so, and what to run later
        hc.say(f"cleanup after the deploy failed: {exc.message}")
        return f"; cleanup skipped ({exc.message}): run inv cleanup --host {hc.host.name} later"
    return f"; cleanup (keep {keep}): {message}"


def deploy_release(
    c: Ctx, version: str, stage: str | None = None, host: str | None = None,
    dry_run: bool = False, json_path: str | None = None, rollout: Rollout | None = None,
) -> RunResult:
    """Upload release VERSION to every host of the stage and extract it so the next start boots it
    (all at once, or batch by batch with a rollout strategy).

    In a dry run a release the store does not have yet (an earlier step of the same dry chain
    would build it) is named, not refused."""
    v.version(version)
    settings = settings_of(c)
    release = stored_release(settings.store, settings.app, version, dry_run)

    def one(hc: HostContext) -> str:
        if release is None:  # dry run of a chain: the build before it only said what it would do
            hc.say(f"would upload {release_file_name(settings.app, version)} (built by the step "
                   "before), verify it and extract it")
            return f"would deploy {version}"
        uploaded = upload(hc, release)
        extract(hc, release, uploaded)
        if hc.dry_run:
            return f"would upload {version} (unless the host has it), verify and extract it"
        how = "uploaded" if uploaded else "upload skipped (same sha256 on host)"
        return f"{version} {how}, extracted; it boots on next start" + tidy(hc, version)

    with over_stage(c, "deploy.release", stage, host, rollout, flow="deploy", dry_run=dry_run,
                    json_path=json_path, to_version=version) as run:
        return run.each(one, finish=(NextStep("deploy.release", (("version", version),)),))


def stored_release(store_dir: Path, app: str, version: str, dry_run: bool) -> Release | None:
    """The stored release VERSION, its sha256 checked; None only in a dry run when it is not
    stored (yet)."""
    release = store.get(store_dir, app, version) if dry_run else store.find(store_dir, app, version)
    if release is not None and sha256_of(release.path) != release.sha256:
        raise v.InvalidInput(
            f"{release.path} does not match its .sha256: the store copy is damaged; rebuild it"
        )
    return release
