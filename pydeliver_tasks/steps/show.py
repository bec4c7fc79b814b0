"""What the local release store holds: `releases` (the list), show.appup / show.relup (what a hot
upgrade will run, printed before it runs)."""

from __future__ import annotations

import tarfile

from .. import store
from .. import validation as v
from ..fleet import RunResult, say
from ..fleet.output import size_text
from ..model import UpgradeManifest
from ..versions import version_key
from . import shared_store
from .frame import Ctx, settings_of
from .upgrade_build import build_upgrade, manifest_path


def releases(c: Ctx) -> RunResult:
    """List the releases in the local store (version, size, sha256): the result's `releases`;
    then those only the shared store has (deliver.store as a URL), fetched when a step needs
    them."""
    settings = settings_of(c)
    found = store.listing(settings.store, settings.release)
    here = {r.version for r in found}
    remote = sorted(set(shared_store.versions(settings)) - here, key=version_key)
    where = settings.shared_store.text if settings.shared_store else str(settings.store)
    if not found and not remote:
        say(f"no {settings.release} releases in {where}: inv build.release --tag VERSION")
    for r in found:
        size = size_text(r.path.stat().st_size)
        say(f"{r.app} {r.version:<12} {size:>9}  sha256 {r.sha256[:16]}  {r.path}")
    for vsn in remote:
        say(f"{settings.release} {vsn:<12} in the release store {where} only (fetched when a "
            "step needs it)")
    return RunResult("releases", "", releases=found)


def show_appup(c: Ctx, from_: str, to: str) -> RunResult:
    """Print the appup of each changed application (user's or generated) and any reason the
    upgrade is not hot-safe; builds the upgrade first when the store has none for from -> to."""
    v.version(from_)
    v.version(to)
    settings = settings_of(c)
    path = manifest_path(settings.store, settings.release, to)
    manifest = UpgradeManifest.load(path) if path.exists() else None
    if manifest is None or manifest.from_version != from_:
        say(f"no upgrade {from_} -> {to} in the store yet: building it")
        manifest = build_upgrade(c, from_, to).manifest
        assert manifest is not None
    say(f"upgrade {settings.release} {from_} -> {to}")
    for app, (old, new) in sorted(manifest.changed_apps.items()):
        say(f"  {app}: {old} -> {new}")
    for app, appup in sorted(manifest.appups.items()):
        say(f"\n%% {app}.appup ({appup['source']})\n{appup['text'].rstrip()}")
    if manifest.unsafe:
        say("\nNOT hot-upgradable (inv upgrade falls back per --on-unsafe):")
        for reason in manifest.unsafe:
            say(f"  - {reason}")
    elif not manifest.changed_apps:
        say("  no application changes version: the relup has nothing to do")
    return RunResult("show.appup", "", manifest=manifest)


def show_relup(c: Ctx, version: str) -> RunResult:
    """Print releases/VERSION/relup from the stored upgrade tarball (what release_handler runs)."""
    v.version(version)
    settings = settings_of(c)
    rel = store.get(settings.store, settings.release, version, "upgrade")
    if rel is None:
        raise v.InvalidInput(f"no upgrade tarball for {settings.release} {version} in the store: "
                             f"inv build.upgrade --from OLD --to {version}")
    with tarfile.open(rel.path) as tar:
        member = tar.extractfile(f"releases/{version}/relup")
        text = member.read().decode() if member else ""
    say(text.rstrip() or f"{rel.path.name} holds no releases/{version}/relup")
    return RunResult("show.relup", "", release=rel, text=text)
