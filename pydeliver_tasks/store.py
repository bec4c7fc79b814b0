"""The local release store: `<app>_<vsn>.release.tar.gz` files, each with a `.sha256` beside it."""

from __future__ import annotations

import re
from pathlib import Path

from . import validation as v
from .model import Release, release_file_name

_SUFFIX_RE = re.compile(
    r"^(?P<vsn>[0-9A-Za-z][0-9A-Za-z._+-]*)\.(?P<kind>release|upgrade)\.tar\.gz$"
)


def _read(path: Path, app: str) -> Release | None:
    """The Release a store file holds, if it is app's and has its checksum file."""
    m = _SUFFIX_RE.match(path.name.removeprefix(f"{app}_"))
    sums = path.with_name(path.name + ".sha256")
    if not path.name.startswith(f"{app}_") or not m or not sums.exists():
        return None
    words = sums.read_text().split()
    return Release(app, m["vsn"], m["kind"], path, words[0] if words else "")


def find(store: Path, app: str, version: str) -> Release:
    """The stored release, or an error that says how to build it."""
    v.version(version)
    release = get(store, app, version)
    if release is None:
        have = ", ".join(r.version for r in listing(store, app)) or "none"
        raise v.InvalidInput(
            f"no {app} {version} in the release store {store} (stored: {have}): "
            f"build it first with: inv build.release --tag {version}"
        )
    return release


def get(store: Path, app: str, version: str, kind: str = "release") -> Release | None:
    """The stored release (or upgrade) tarball with its checksum, if there is one."""
    path = store / release_file_name(app, version, kind)
    return _read(path, app) if path.exists() else None


def record_source(release_path: Path, commit: str, key: str) -> None:
    """Beside a stored tarball: the commit and build key (build settings) it was built from."""
    release_path.with_name(release_path.name + ".source").write_text(
        f"commit={commit}\nkey={key}\n")


def built_from(store: Path, app: str, key: str) -> Release | None:
    """A stored release built from the same commit and build settings (see record_source)."""
    for path in sorted(store.glob(f"{app}_*.release.tar.gz.source")):
        if f"key={key}" in path.read_text().split():
            release = _read(path.with_name(path.name.removesuffix(".source")), app)
            if release is not None and release.path.exists():
                return release
    return None


def listing(store: Path, app: str) -> list[Release]:
    """Stored releases of app, oldest version first (PEP 440 order where it applies)."""
    found = [r for p in store.glob(f"{app}_*.release.tar.gz")
             if (r := _read(p, app)) and r.kind == "release"]

    def key(r: Release) -> tuple[int, object, str]:
        parsed = v.parsed_version(r.version)
        return (0, parsed, "") if parsed is not None else (1, None, r.version)

    return sorted(found, key=key)
