"""show.appup / show.relup: what a hot upgrade will run, printed before it runs."""

from __future__ import annotations

import tarfile
from typing import Any

from .. import store
from .. import validation as v
from ..fleet import say
from .common import settings_of
from .upgrade_build import UpgradeManifest, build_upgrade, manifest_path


def show_appup(c: Any, from_: str, to: str) -> UpgradeManifest:
    """Print the appup of each changed application (user's or generated) and any reason the
    upgrade is not hot-safe; builds the upgrade first when the store has none for from -> to."""
    v.version(from_)
    v.version(to)
    settings = settings_of(c)
    path = manifest_path(settings.store, settings.app, to)
    manifest = UpgradeManifest.load(path) if path.exists() else None
    if manifest is None or manifest.old != from_:
        say(f"no upgrade {from_} -> {to} in the store yet: building it")
        manifest = build_upgrade(c, from_, to)[1]
    say(f"upgrade {settings.app} {from_} -> {to}")
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
    return manifest


def show_relup(c: Any, version: str) -> str:
    """Print releases/VERSION/relup from the stored upgrade tarball (what release_handler runs)."""
    v.version(version)
    settings = settings_of(c)
    rel = store.get(settings.store, settings.app, version, "upgrade")
    if rel is None:
        raise v.InvalidInput(f"no upgrade tarball for {settings.app} {version} in the store: "
                             f"inv build.upgrade --from OLD --to {version}")
    with tarfile.open(rel.path) as tar:
        member = tar.extractfile(f"releases/{version}/relup")
        text = member.read().decode() if member else ""
    say(text.rstrip() or f"{rel.path.name} holds no releases/{version}/relup")
    return text
