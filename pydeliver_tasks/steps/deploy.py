"""Deploy steps: upload a stored release to every host (sha256-checked), extract it to boot next."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import commands, otp, store
from .. import validation as v
from ..commands import activation as acmd
from ..commands import diagnose as dcmd
from ..commands import retention as rcmd
from ..commands import tarball as tcmd
from ..fleet import hooks
from ..fleet.host import CommandResult, HostContext, HostFailure
from ..fleet.output import size_text
from ..fleet.results import RunResult
from ..fleet.upload import UploadLost, put_resuming
from ..model import NextStep, Release, Rollout, release_file_name
from ..store import sha256_of
from . import activation, shared_store
from .frame import Ctx, over_stage, settings_of
from .retention import cleanup_host, parse_listing

# Room asked for beyond the upload and the extracted files: the copies of bin/ and RELEASES made
# beside the live ones, and what the filesystem itself needs to stay usable.
MARGIN_BYTES = 32 * 1024 * 1024
MARGIN_SHARE = 0.10


def contents_of(release: Release) -> store.Contents:
    return store.contents(release.path, release.sha256, release.app, release.version)


def host_otp(hc: HostContext, release: Release) -> None:
    """A release without ERTS boots on the host's Erlang: refuse before the upload when the
    host's `erl` (found as the start script finds it) lacks that ERTS or an OTP library the
    release names and does not carry. An upgrade tarball runs in the running node's VM: its
    ERTS and unchanged libs are the old release's, never the host's Erlang."""
    found = contents_of(release)
    if release.kind != "release" or not found.erts or hc.dry_run:
        return
    res = hc.run(dcmd.host_otp(hc.host.deploy_path, hc.host.env, (found.erts, *found.otp_libs)),
                 changes=False)
    lines = res.stdout.splitlines()
    otp = next((x.split(" ", 1)[1] for x in lines if x.startswith("PDT_OTP ")), "")
    lacks = [x.split(" ", 1)[1] for x in lines if x.startswith("PDT_LACKS ")]
    if otp and not lacks and res.ok:
        hc.say(f"{release.file_name} carries no ERTS: it runs on the host's Erlang ({otp}, "
               f"{found.erts}, read back)")
        return
    where = (f"the host's Erlang at {otp} lacks {', '.join(lacks[:4])}" if otp
             else "the host has no erl on its PATH" if "PDT_NOERL" in lines
             else f"the host's Erlang could not be read (exit {res.exited})")
    raise HostFailure(
        f"{release.file_name} carries no ERTS, so it needs {found.erts} from the host, and "
        f"{where}; nothing was uploaded. Include ERTS in the release (mix: include_erts: true, "
        "the default; rebar3: {include_erts, true} or {mode, prod}) or install that OTP on the host",
        res.tail(), f"inv build.release --tag {release.version} --rebuild")


def room(hc: HostContext, release: Release, upload_bytes: int, out: str | None = None) -> None:
    """Refuse before any upload or extract when the host's filesystem lacks the room for
    `upload_bytes` more of the tarball, its extracted files and a margin (`out`: the KiB free
    there as the host said it just before (tarball_look); None: ask it now)."""
    if hc.dry_run:
        return
    where = commands.tarball_dir(hc.host.deploy_path)
    if out is None:
        out = hc.run(tcmd.free_kb(where), changes=False).stdout.strip()
    if not out.isdigit():
        hc.say(f"could not read the free space of {where} (df said {out[-80:]!r}): going on")
        return
    need = upload_bytes + contents_of(release).extracted_bytes
    need += int(need * MARGIN_SHARE) + MARGIN_BYTES
    free = int(out) * 1024
    if free < need:
        raise HostFailure(
            f"not enough disk space for {release.file_name}: {where} has {free} bytes free, "
            f"the upload and extract need {need} (with a margin); nothing was changed",
            hint=f"free space on the host (inv cleanup --keep N), then inv deploy.release "
                 f"--version {release.version}")


def disk_read_back(hc: HostContext, needed: int, when_full: str) -> str:
    """The release dir's filesystem as the host says now (never a guess): full when fewer than
    `needed` bytes are free (`when_full` ends that sentence), else its access and free bytes."""
    where = commands.tarball_dir(hc.host.deploy_path)
    try:
        free, _, access = hc.run(tcmd.room_and_access(where), changes=False).stdout.partition("\n")
    except HostFailure as failure:
        return f"the host could not be read back ({failure.message})"
    if not free.strip().isdigit():
        return f"{where} could not be read back (df said {free.strip()[-80:]!r})"
    left = int(free) * 1024
    if left < needed:
        return f"the disk is full: {where} has {left} bytes free{when_full}"
    return f"{where} is {access.strip()} and has {left} bytes free now (read back)"


def refusal(hc: HostContext, exc: UploadLost) -> str:
    """Why the host refused a write during the upload (after a fresh login)."""
    hc.reconnect()
    missing = exc.size - exc.sent
    return disk_read_back(hc, missing, f", {missing} more were to come (read back)")


def disk_now(hc: HostContext, release: Release) -> str:
    """After an upload whose bytes the host's check refused: a full disk drops writes that SFTP
    did not always report."""
    return disk_read_back(hc, release.path.stat().st_size, " (read back); a write was lost")


def upload(hc: HostContext, release: Release, looked: CommandResult | None = None) -> bool:
    """Put the tarball on the host unless the same sha256 is already there (checking the room
    first); -> uploaded? looked: what a look at the host that read the tarball already said
    (recover_and_look); else one is run here."""
    root = hc.host.deploy_path
    host_otp(hc, release)
    remote = commands.tarball_path(root, release.app, release.version, release.kind)
    said = (looked or hc.run(tcmd.tarball_look(remote), changes=False)).stdout
    look = otp.parse_markers(said) or {}
    free: str | None = look.get("free", "").strip()
    if look.get("sha256") == release.sha256:
        room(hc, release, 0, free)
        hc.say(f"{release.file_name} already on host with the same sha256: upload skipped")
        return False
    hooks.run(hc, "before", "upload", root)
    if hooks.present(hc, "before", "upload"):
        free = None  # a hook may have freed (or taken) space: ask again
    res = hc.run(commands.mkdir(commands.tarball_dir(root)))
    if not res.ok:
        raise HostFailure(f"cannot create {commands.tarball_dir(root)}", res.tail(),
                          "check deliver deploy_path and the SSH user's permissions")
    room(hc, release, release.path.stat().st_size, free)
    if not hc.dry_run:
        hc.say(f"uploading {release.file_name} ({size_text(release.path.stat().st_size)})")
    try:
        start = put_resuming(hc, release.path, remote + ".part")
    except UploadLost as exc:
        again = f"inv deploy.release --version {release.version}"
        if not exc.connected:
            raise HostFailure(f"{exc.sentence(release.file_name)}; nothing activated; a re-run "
                              "resumes", hint=again) from exc
        raise HostFailure(f"{exc.sentence(release.file_name)}: {refusal(hc, exc)}; nothing "
                          "activated; a re-run resumes from the bytes there",
                          hint=f"free space on the host (inv cleanup --keep N), then {again}"
                          ) from exc
    if start:
        hc.say(f"resumed an interrupted upload at {size_text(start)}")
    hooks.run(hc, "after", "upload", root)
    return True


@dataclass(frozen=True)
class Arrival:
    """What arrive did, and what its look saw (with the host's listing when asked for)."""

    uploaded: bool
    extracted: bool
    looked: str = ""


def arrive(hc: HostContext, release: Release, listing: bool = False) -> Arrival:
    """upload, then extract, with one look at the host before both (an interrupted activation
    finished or rolled back, what boots now, the tarball's sha256, the free space, and with
    `listing` the versions on the host, for tidy)."""
    if hc.dry_run:
        return Arrival(upload(hc, release), extract(hc, release))
    root = hc.host.deploy_path
    remote = commands.tarball_path(root, release.app, release.version, release.kind)
    then = rcmd.listing(root, hc.settings.release) if listing else ""
    looked = hc.run(acmd.recover_and_look(root, remote, then))
    before = activation.recover(hc, looked).boots
    uploaded = upload(hc, release, looked)
    return Arrival(uploaded, extract(hc, release, uploaded, before), looked.stdout)


def extract(hc: HostContext, release: Release, uploaded: bool = True,
            before: str | None = None) -> bool:
    """Verify the sha256 on the host, then extract and activate it (one journaled transaction)
    so that this version boots next. After a failure the host is read back before reporting.
    -> False when the host had installed that very tarball and nothing that decides the next
    boot (start_erl.data, bin/, RELEASES) changed since: nothing is extracted again.
    before: what boots next, as a recovery just read it (arrive); else one is run here."""
    root = hc.host.deploy_path
    if before is None:
        before = "" if hc.dry_run else activation.recover(hc).boots
    hooks.run(hc, "before", "extract", root)
    script = acmd.install_release(root, release.app, release.version, release.sha256, uploaded,
                                  release.kind)
    try:
        res = hc.run(script)
    except HostFailure as exc:  # the connection dropped: the script may have gone on
        activated, text = activation.after_failure(
            hc, release.version, before, f"connection lost during the install of "
            f"{release.file_name} ({exc.message})")
        if not activated:
            raise HostFailure(text, hint=f"inv deploy.release --version {release.version}") from exc
        hc.say(text)
    else:
        if not res.ok:
            what = ("sha256 check failed" if res.exited == 3
                    else "the connection was lost (no exit status)" if res.exited < 0
                    else f"install failed (exit {res.exited})")
            if res.exited == 3 and uploaded:  # a write the host lost? say what its disk holds
                what += f" ({disk_now(hc, release)})"
            activated, text = activation.after_failure(hc, release.version, before,
                                                       f"{what} for {release.file_name}")
            if not activated:
                raise HostFailure(text, res.tail(),
                                  f"inv deploy.release --version {release.version}")
            hc.say(text)
            hooks.run(hc, "after", "extract", root)
            return True
        boots = activation.parse(res.stdout).boots
        if not hc.dry_run and boots != release.version:
            raise HostFailure(f"the install of {release.file_name} ended but start_erl.data names "
                              f"{boots or 'nothing'}", res.tail(),
                              f"inv doctor --host {hc.host.name}")
        if f"{acmd.UNCHANGED}{release.version}}}" in res.stdout:
            hooks.run(hc, "after", "extract", root)
            return False
    hooks.run(hc, "after", "extract", root)
    return True


def tidy(hc: HostContext, deployed: str, listed: str) -> str:
    """After a deploy: remove old versions beyond deliver.keep_releases (never the running one,
    the previous good one or the one just deployed). `listed`: the listing the deploy's look read
    before the upload; the deploy added `deployed` and removed nothing, so it decides whether to
    look (cleanup_host reads the host itself)."""
    keep = hc.settings.keep_releases
    if keep <= 0:
        return ""
    if len(set(parse_listing(listed).versions) | {deployed}) <= keep:
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
    shared_store.pull(settings, version, dry_run=dry_run)
    release = stored_release(settings.store, settings.release, version, dry_run)

    def one(hc: HostContext) -> str:
        if release is None:  # dry run of a chain: the build before it only said what it would do
            hc.say(f"would upload {release_file_name(settings.release, version)} (built by the step "
                   "before), verify it and extract it")
            return f"would deploy {version}"
        arrival = arrive(hc, release, listing=True)
        uploaded, extracted = arrival.uploaded, arrival.extracted
        if hc.dry_run:
            return f"would upload {version} (unless the host has it), verify and extract it"
        how = "uploaded" if uploaded else "upload skipped (same sha256 on host)"
        done = ("extracted" if extracted else "already installed and unchanged since (boot "
                "files read back): not extracted again")
        return f"{version} {how}, {done}; it boots on next start" + tidy(hc, version, arrival.looked)

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
