"""build.upgrade: the new release, built beside the old one, with appups and a relup.

The old release comes from the release store when it is there (uploaded to the build host and
extracted next to the fresh build) and is rebuilt from its git tag only when it is not
(edeliver #142). Facts about both are read by our escript; `appup.plan` decides; appups (user's
override first) are installed and `systools:make_relup` runs on the build host, so a mix project
needs no change to mix.exs. The result, `<app>_<new>.upgrade.tar.gz`, is a complete release of
the new version plus its relup; `<app>_<new>.upgrade.json` records the plan beside it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import appup, appup_file, builders, store
from .. import validation as v
from ..fleet import HostContext, HostFailure, StepFailed, for_each_host
from ..model import Release, release_file_name
from .build import build_host, build_on_host, fetch_artifact, push_source, resolve_ref
from .common import flavor, settings_of
from .equal import Replacing

ESCRIPT = Path(__file__).resolve().parent.parent / "erl" / "pdt_upgrade.escript"


class BadAppup(HostFailure):
    """A user's appup names modules the releases do not have (file:line each)."""


@dataclass
class UpgradeManifest:
    """What build.upgrade decided, stored beside the upgrade tarball (and read by `upgrade`)."""

    app: str
    old: str
    new: str
    unsafe: list[str] = field(default_factory=list)
    changed_apps: dict[str, list[str]] = field(default_factory=dict)  # app: [old vsn, new vsn]
    appups: dict[str, dict[str, str]] = field(default_factory=dict)  # app: {source, text}
    lib_dirs: list[str] = field(default_factory=list)  # the new release's lib dirs
    replaced_modules: list[str] = field(default_factory=list)  # code changes or goes
    suspended_modules: list[str] = field(default_factory=list)  # processes the relup updates

    def replacing(self) -> Replacing:
        """What the relup replaces, for the per-host checks of a hot install."""
        user = tuple(a for a, up in sorted(self.appups.items()) if up.get("source") == "user")
        return Replacing(tuple(self.replaced_modules), tuple(self.suspended_modules), user)

    @property
    def new_lib_dirs(self) -> list[str]:
        """Lib dirs of changed applications: the new release adds them, the old never uses them."""
        return [f"{a}-{vs[1]}" for a, vs in sorted(self.changed_apps.items())]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> UpgradeManifest:
        return cls(**json.loads(path.read_text()))


def manifest_path(store_dir: Path, app: str, new: str) -> Path:
    return store_dir / release_file_name(app, new, "upgrade").replace(".tar.gz", ".json")


def stored_upgrade(store_dir: Path, app: str, old: str,
                   new: str) -> tuple[Release | None, UpgradeManifest] | None:
    """What the store holds for old -> new: (upgrade tarball, manifest), or (None, manifest)
    when that upgrade was found not hot-safe; None when it was never built."""
    mpath = manifest_path(store_dir, app, new)
    if not mpath.exists():
        return None
    manifest = UpgradeManifest.load(mpath)
    rel = store.get(store_dir, app, new, "upgrade")
    if manifest.old != old or (rel is None and not manifest.unsafe):
        return None
    return (None if manifest.unsafe else rel), manifest


def user_appups(settings: Any, old: str, new: str) -> dict[str, Path]:
    """Appups the project supplies for this upgrade: <appups_dir>/<old>-<new>/<app>.appup."""
    folder = settings.project_dir / settings.upgrade.appups_dir / f"{old}-{new}"
    return {p.stem: p for p in sorted(folder.glob("*.appup"))} if folder.is_dir() else {}


def check_user_appups(settings: Any, old: str, new: str) -> dict[str, appup_file.Appup]:
    """Read the project's appups for old -> new before anything runs anywhere (InvalidInput,
    exit 2, with file:line when one does not parse or has the wrong shape)."""
    return {app: appup_file.read(path) for app, path in user_appups(settings, old, new).items()}


def prepare_on_host(hc: HostContext, old_release: Release, new: str) -> UpgradeManifest:
    """With the new release built in the build dir: overlay the old one, plan, appups, relup."""
    s = hc.settings
    kind, path = flavor(s), hc.host.deploy_path
    profile = s.mix_env if kind == "mix" else s.rebar3_profile
    old = old_release.version
    hc.put(ESCRIPT, builders.escript_path(path))
    remote_old = builders.upload_path(path, old_release.file_name)
    hc.say(f"putting {old} (from the release store) beside the new build")
    hc.put(old_release.path, remote_old)
    res = hc.run(builders.overlay_old(kind, path, s.app, profile, old, remote_old))
    if not res.ok:
        raise HostFailure(f"could not extract {old_release.file_name} beside the new build",
                          res.tail(), f"check the stored release; rebuild it: inv build.release "
                          f"--tag {old}")
    res = hc.run(builders.upgrade_facts(kind, path, s.app, profile, old, new), changes=False)
    if not res.ok:
        raise HostFailure("could not read the releases' facts on the build host", res.tail())
    if hc.dry_run:
        return UpgradeManifest(s.app, old, new)
    facts = appup.parse_facts(res.stdout)
    if old not in facts or new not in facts:
        raise HostFailure(f"facts for {old} and {new} not found", res.tail())
    overrides = user_appups(s, old, new)
    missing = [line for a, f in check_user_appups(s, old, new).items() if a in facts[new].apps
               for line in appup_file.missing_modules(
                   f, set(facts[new].apps[a].modules),
                   set(facts[old].apps[a].modules) if a in facts[old].apps else set())]
    if missing:  # reported as bad input (exit 2) once the build host is done
        raise BadAppup("\n".join(missing))
    p = appup.plan(facts[old], facts[new], {s.app, *s.upgrade.apps}, set(overrides))
    manifest = UpgradeManifest(
        s.app, old, new, p.unsafe, {a: list(vs) for a, vs in p.changed_apps.items()},
        lib_dirs=[f"{a.name}-{a.vsn}" for a in facts[new].apps.values()],
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
            res = hc.run(builders.install_appup(kind, path, s.app, profile, name,
                                                p.changed_apps[name][1], remote))
            if not res.ok:
                raise HostFailure(f"the {source} appup for {name} is not valid", res.tail(),
                                  "fix it (an appup starts with one {Vsn, UpFrom, DownTo} term)")
            manifest.appups[name] = {"source": source, "text": text}
    res = hc.run(builders.make_relup(kind, path, s.app, profile, old, new))
    if not res.ok:
        raise HostFailure("systools:make_relup failed", res.tail(),
                          "the appups above must name existing modules; see inv show.appup")
    return manifest


def build_upgrade(
    c: Any, from_: str, to: str, tag: str | None = None, dry_run: bool = False,
    json_path: str | None = None,
) -> tuple[Release | None, UpgradeManifest]:
    """Build `<app>_<to>.upgrade.tar.gz` (relup from `from_`) into the store (steps' API).

    Returns (upgrade tarball or None when the upgrade is not hot-safe, manifest). The new
    version's plain release tarball is stored too: it is what a restart fallback deploys.
    """
    from .build import build_release

    settings = settings_of(c)
    flavor(settings)
    v.version(from_)
    v.version(to)
    check_user_appups(settings, from_, to)
    old_release = store.get(settings.store, settings.app, from_)
    if old_release is None and not dry_run:
        say_line = f"{settings.app} {from_} is not in the release store: building it from tag {from_}"
        print(say_line, flush=True)
        old_release = build_release(c, tag=from_, version=from_)
    ref, sha = resolve_ref(settings.project_dir, tag or to, None, None)
    host, local = build_host(settings)
    made: dict[str, Any] = {}

    def run(hc: HostContext) -> str:
        push_source(hc, sha, ref, local)
        vsn, digest = build_on_host(hc, sha, to)
        fetch_artifact(hc, vsn, digest)
        if old_release is None:  # dry run without the old release stored
            return f"would build {from_} from its tag, then the upgrade {from_} -> {to}"
        manifest = prepare_on_host(hc, old_release, to)
        if hc.dry_run:
            hc.say("would plan the upgrade from both releases' facts, install the appups "
                   "(yours or generated), run systools:make_relup and pack the upgrade")
        made["manifest"] = manifest
        if manifest.unsafe:
            return f"{to} built; {from_} -> {to} is NOT hot-upgradable: " + "; ".join(manifest.unsafe)
        kind, profile = flavor(settings), settings.mix_env
        if kind == "rebar3":
            profile = settings.rebar3_profile
        res = hc.run(builders.package_upgrade(kind, hc.host.deploy_path, settings.app, profile,
                                              to, manifest.lib_dirs))
        digest = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if not res.ok or (not hc.dry_run and len(digest) != 64):
            raise HostFailure("could not pack the upgrade tarball", res.tail())
        made["path"] = fetch_artifact(hc, to, digest, "upgrade")
        made["sha256"] = digest
        if hc.dry_run:
            return f"would build {settings.app} {to} with a relup from {from_}"
        return f"built {settings.app} {to} with relup from {from_} -> {made['path']}"

    def checked_run(hc: HostContext) -> str:
        try:
            return run(hc)
        except BadAppup as exc:
            made["bad_appup"] = exc.message
            raise

    try:
        for_each_host("build.upgrade", settings, "build", [host], checked_run,
                      dry_run=dry_run, json_path=json_path, local=local)
    except StepFailed:
        if "bad_appup" in made:
            raise v.InvalidInput("your appup names modules the releases do not have:\n"
                                 + made["bad_appup"]) from None
        raise
    manifest = made.get("manifest") or UpgradeManifest(settings.app, from_, to)
    if dry_run:
        return None, manifest
    manifest.save(manifest_path(settings.store, settings.app, to))
    if manifest.unsafe:
        return None, manifest
    return Release(settings.app, to, "upgrade", made["path"], made["sha256"]), manifest
