"""build.upgrade: the new release, built beside the old one, with appups and a relup.

The old release comes from the release store when it is there (uploaded to the build host and
extracted next to the fresh build) and is rebuilt from its git tag only when it is not
(edeliver #142). Facts about both are read by our escript; `appup.plan` decides; appups (user's
override first) are installed and `systools:make_relup` runs on the build host, so a mix project
needs no change to mix.exs. The result, `<app>_<new>.upgrade.tar.gz`, holds what the running
old release lacks: the new version's bin/, releases/<new> with its relup and the lib dirs of the
applications that change (ERTS and the other lib dirs are the old release's own, md5-checked by
the plan); `<app>_<new>.upgrade.json` records the plan beside it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .. import store, versions
from .. import validation as v
from ..commands import build as builders
from ..config import Settings
from ..fleet import HostContext, HostFailure, RunResult, StepFailed, for_each_host, say
from ..model import Release, UpgradeManifest, manifest_name, release_file_name
from ..otp import appup, appup_file
from . import shared_store
from .build import build_host, build_on_host, build_release, fetch_artifact, push_source, resolve_ref
from .frame import Ctx, builder_of, settings_of
from .versioning import VersionPlan, plan

ESCRIPT = Path(__file__).resolve().parent.parent / "otp" / "erl" / "pdt_upgrade.escript"


class BadAppup(HostFailure):
    """A user's appup names modules the releases do not have (file:line each)."""


def manifest_path(store_dir: Path, app: str, to_version: str) -> Path:
    return store_dir / manifest_name(app, to_version)


def stored_upgrade(store_dir: Path, app: str, from_version: str,
                   to_version: str) -> tuple[Release | None, UpgradeManifest] | None:
    """What the store holds for old -> new: (upgrade tarball, manifest), or (None, manifest)
    when that upgrade was found not hot-safe; None when it was never built."""
    mpath = manifest_path(store_dir, app, to_version)
    if not mpath.exists():
        return None
    manifest = UpgradeManifest.load(mpath)
    rel = store.get(store_dir, app, to_version, "upgrade")
    if manifest.from_version != from_version or (rel is None and not manifest.unsafe):
        return None
    return (None if manifest.unsafe else rel), manifest


def check_sources(settings: Settings, from_version: str, to_version: str, rebuild: bool = False,
                  tag: str | None = None) -> None:
    """Before any host is asked: the store has this upgrade, or it can be built — TO has a git
    tag (or TAG names the ref, or the store knows the commit TO was built from) and FROM is
    stored or tagged (InvalidInput, exit 2, otherwise)."""
    if not rebuild and stored_upgrade(settings.store, settings.release, from_version, to_version):
        return
    wanted = [] if source_of(settings, to_version, tag) else [(to_version, tag or to_version)]
    if store.get(settings.store, settings.release, from_version) is None:
        wanted.append((from_version, from_version))
    for version, ref in wanted:
        try:
            resolve_ref(settings.project_dir, ref, None, None)
        except v.InvalidInput as exc:
            raise v.InvalidInput(f"{exc}, and the release store has no {settings.release} "
                                 f"{version} to build the upgrade {from_version} -> {to_version} "
                                 f"from: tag {version} (git tag {version}), or check the versions "
                                 "(inv releases)") from None


def source_of(settings: Settings, version: str, tag: str | None) -> VersionPlan | None:
    """How to build `version` again when no tag names it: the commit its stored release was
    built from, with the same auto-version metadata (None: build it from a tag)."""
    if tag:
        return None
    recorded = store.source_of(settings.store, settings.release, version)
    if not recorded.get("extra") or not recorded.get("commit"):
        return None
    made = plan(settings, recorded["commit"], recorded["extra"])
    return made if made.version == version else None


def _to_source(settings: Settings, to: str, tag: str | None) -> tuple[str, str, dict[str, str]]:
    """(ref, commit, files to set in the checkout) that build TO: its tag, else (an
    auto-version) the commit it was built from, with the same version set in it."""
    again = source_of(settings, to, tag)
    if again is None:
        return (*resolve_ref(settings.project_dir, tag or to, None, None), {})
    sha = store.source_of(settings.store, settings.release, to)["commit"]
    return f"the commit {to} was built from", sha, again.files


def fetch_both(settings: Settings, from_: str, to: str, dry_run: bool) -> None:
    """What the shared store has of FROM (its release) and TO (its release and upgrade)."""
    shared_store.pull(settings, from_, dry_run=dry_run)
    shared_store.pull(settings, to, ("release", "upgrade"), dry_run=dry_run)


def latest_to(settings: Settings, to: str) -> str:
    """--to latest: the newest release in the local or the shared store (said, so the run
    names what it chose)."""
    if to != "latest":
        return to
    found = versions.latest({*(r.version for r in store.listing(settings.store, settings.release)),
                             *shared_store.versions(settings)})
    if found is None:
        raise v.InvalidInput(f"--to latest: the release store has no {settings.release} release "
                             "(inv build.release first)")
    say(f"--to latest: {found}, the newest {settings.release} in the release store")
    return found


def user_appups(settings: Settings, from_version: str, to_version: str) -> dict[str, Path]:
    """Appups the project supplies for this upgrade: <appups_dir>/<old>-<new>/<app>.appup."""
    folder = settings.project_dir / settings.upgrade.appups_dir / f"{from_version}-{to_version}"
    return {p.stem: p for p in sorted(folder.glob("*.appup"))} if folder.is_dir() else {}


def check_user_appups(settings: Settings, from_version: str,
                      to_version: str) -> dict[str, appup_file.Appup]:
    """Read the project's appups for from -> to before anything runs anywhere (InvalidInput,
    exit 2, with file:line when one does not parse or has the wrong shape)."""
    found = user_appups(settings, from_version, to_version)
    return {app: appup_file.read(path) for app, path in found.items()}


def shipped_appups(hc: HostContext, builder: str, profile: str, from_version: str,
                   to_version: str) -> tuple[dict[str, str], dict[str, str]]:
    """Put the appups the dependencies ship in their sources (src/, `.appup.src` evaluated) where
    systools reads them (not for our own apps, nor where the project supplies one); -> ({dep: its
    appup file}, {dep without one: where one was looked for})."""
    s = hc.settings
    skip = {s.app, *s.upgrade.apps, *user_appups(s, from_version, to_version)}
    res = hc.run(builders.dep_appups(builder, hc.host.deploy_path, s.release, profile, to_version,
                                     sorted(skip)))
    if not res.ok:
        raise HostFailure(f"a dependency's appup cannot be read: {res.tail(3)}",
                          hint=f"supply your own for it: {s.upgrade.appups_dir}/{from_version}-"
                          f"{to_version}/<app>.appup")
    found, missing = appup.parse_dep_appups(res.stdout)
    for name, file in sorted(found.items()):
        hc.say(f"appup for {name}: the one it ships, {file}")
    return found, missing


def prepare_on_host(hc: HostContext, from_release: Release, to_version: str) -> UpgradeManifest:
    """With the new release built in the build dir: overlay the old one, plan, appups, relup."""
    s = hc.settings
    builder, path = builder_of(s), hc.host.deploy_path
    profile = s.mix_env if builder == "mix" else s.rebar3_profile
    from_version = from_release.version
    hc.put(ESCRIPT, builders.escript_path(path))
    remote_from = builders.upload_path(path, from_release.file_name)
    hc.say(f"putting {from_version} (from the release store) beside the new build")
    hc.put(from_release.path, remote_from)
    res = hc.run(builders.overlay_old(builder, path, s.release, profile, from_version, remote_from))
    if not res.ok:
        raise HostFailure(f"could not extract {from_release.file_name} beside the new build",
                          res.tail(), f"check the stored release; rebuild it: inv build.release "
                          f"--tag {from_version}")
    shipped, looked_in = shipped_appups(hc, builder, profile, from_version, to_version)
    res = hc.run(builders.upgrade_facts(builder, path, s.release, profile, from_version, to_version),
                 changes=False)
    if not res.ok:
        raise HostFailure("could not read the releases' facts on the build host", res.tail())
    if hc.dry_run:
        return UpgradeManifest(s.release, from_version, to_version)
    facts = appup.parse_facts(res.stdout)
    if from_version not in facts or to_version not in facts:
        raise HostFailure(f"facts for {from_version} and {to_version} not found", res.tail())
    overrides = user_appups(s, from_version, to_version)
    before, after = facts[from_version].apps, facts[to_version].apps
    missing = [line for a, f in check_user_appups(s, from_version, to_version).items() if a in after
               for line in appup_file.missing_modules(
                   f, set(after[a].modules), set(before[a].modules) if a in before else set())]
    if missing:  # reported as bad input (exit 2) once the build host is done
        raise BadAppup("\n".join(missing))
    p = appup.plan(facts[from_version], facts[to_version], {s.app, *s.upgrade.apps}, set(overrides),
                   looked_in)
    manifest = UpgradeManifest(
        s.release, from_version, to_version, p.unsafe, {a: list(vs) for a, vs in p.changed_apps.items()},
        lib_dirs=[f"{a.name}-{a.vsn}" for a in facts[to_version].apps.values()],
        replaced_modules=p.replaced, suspended_modules=p.suspended,
    )
    for reason in p.unsafe:
        hc.say(f"not hot-upgradable: {reason}")
    if p.unsafe:
        return manifest
    texts = {a: ("user", f.read_text()) for a, f in overrides.items() if a in p.changed_apps}
    texts.update({a: ("generated", t) for a, t in p.appups.items() if a not in texts})
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, text) in sorted(texts.items()):
            local = Path(tmp) / f"{name}.appup"
            local.write_text(text)
            remote = builders.upload_path(path, f"{name}.appup")
            hc.put(local, remote)
            hc.say(f"appup for {name} ({source}):\n{text.strip()}")
            res = hc.run(builders.install_appup(builder, path, s.release, profile, name,
                                                p.changed_apps[name][1], remote))
            if not res.ok:
                raise HostFailure(f"the {source} appup for {name} is not valid", res.tail(),
                                  "fix it (an appup starts with one {Vsn, UpFrom, DownTo} term)")
            manifest.appups[name] = {"source": source, "text": text}
    for name, file in sorted(shipped.items()):  # installed by the escript, as the library wrote it
        if name in p.changed_apps:
            manifest.appups[name] = {"source": "shipped", "text": f"%% {file}\n"}
    res = hc.run(builders.make_relup(builder, path, s.release, profile, from_version, to_version))
    if not res.ok:
        raise HostFailure("systools:make_relup failed", res.tail(),
                          "the appups above must name existing modules; see inv show.appup")
    return manifest


def build_upgrade(c: Ctx, from_: str, to: str, tag: str | None = None, dry_run: bool = False,
                  json_path: str | None = None) -> RunResult:
    """Build `<app>_<to>.upgrade.tar.gz` (relup from `from_`) into the store (steps' API).

    The result's `release` is the upgrade tarball (None when the upgrade is not hot-safe, or in
    a dry run), its `manifest` the plan. The new version's plain release tarball is stored too:
    it is what a restart fallback deploys.
    """
    settings = settings_of(c)
    builder_of(settings)
    to = latest_to(settings, to)
    v.version(from_)
    v.version(to)
    check_user_appups(settings, from_, to)
    fetch_both(settings, from_, to, dry_run)
    check_sources(settings, from_, to, rebuild=True, tag=tag)
    from_release = store.get(settings.store, settings.release, from_)
    if from_release is None and not dry_run:
        say(f"{settings.release} {from_} is not in the release store: building it from tag {from_}")
        from_release = build_release(c, tag=from_, version=from_).release
    ref, sha, files = _to_source(settings, to, tag)
    host, local = build_host(settings)
    made: dict[str, Any] = {}

    def run(hc: HostContext) -> str:
        push_source(hc, sha, ref, local)
        vsn, digest = build_on_host(hc, sha, to, files=files)
        fetch_artifact(hc, vsn, digest)
        if from_release is None:  # dry run without the old release stored
            return f"would build {from_} from its tag, then the upgrade {from_} -> {to}"
        manifest = prepare_on_host(hc, from_release, to)
        if hc.dry_run:
            hc.say("would plan the upgrade from both releases' facts, install the appups "
                   "(yours or generated), run systools:make_relup and pack the upgrade")
        made["manifest"] = manifest
        if manifest.unsafe:
            return f"{to} built; {from_} -> {to} is NOT hot-upgradable: " + "; ".join(manifest.unsafe)
        builder, profile = builder_of(settings), settings.mix_env
        if builder == "rebar3":
            profile = settings.rebar3_profile
        res = hc.run(builders.package_upgrade(builder, hc.host.deploy_path, settings.release, profile,
                                              to, manifest.new_lib_dirs))
        digest = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if not res.ok or (not hc.dry_run and len(digest) != 64):
            raise HostFailure("could not pack the upgrade tarball", res.tail())
        made["path"] = fetch_artifact(hc, to, digest, "upgrade")
        made["sha256"] = digest
        if hc.dry_run:
            return f"would build {settings.release} {to} with a relup from {from_}"
        return f"built {settings.release} {to} with relup from {from_} -> {made['path']}"

    def checked_run(hc: HostContext) -> str:
        try:
            return run(hc)
        except BadAppup as exc:
            made["bad_appup"] = exc.message
            raise

    try:
        result = for_each_host("build.upgrade", settings, "build", [host], checked_run,
                               dry_run=dry_run, json_path=json_path, local=local)
    except StepFailed:
        if "bad_appup" in made:
            raise v.InvalidInput("your appup names modules the releases do not have:\n"
                                 + made["bad_appup"]) from None
        raise
    result.manifest = made.get("manifest") or UpgradeManifest(settings.release, from_, to)
    if dry_run:
        return result
    result.manifest.save(manifest_path(settings.store, settings.release, to))
    shared_store.publish(settings, settings.store / release_file_name(settings.release, to))
    if result.manifest.unsafe:
        shared_store.publish_plan(settings, to)
    else:
        result.release = Release(settings.release, to, "upgrade", made["path"], made["sha256"])
        shared_store.publish(settings, made["path"])
    return result
