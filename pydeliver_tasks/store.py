"""The local release store: `<app>_<vsn>.release.tar.gz` files, each with a `.sha256` beside it
(and a `.contents`: what deploy reads from the tarball, kept so it is read once)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
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


_REL_APP_RE = re.compile(r'\{\s*(\w+)\s*,\s*"([^"]+)"')


@dataclass(frozen=True)
class Contents:
    """What deploy needs to know of a tarball before it is on a host."""

    extracted_bytes: int  # the files' bytes once extracted
    erts: str  # erts-<vsn> when the tarball carries no ERTS (the host must have it), else ""
    otp_libs: tuple[str, ...]  # lib/<app>-<vsn> its .rel names that it does not carry


CONTENTS = ".contents"  # the sidecar's suffix


@functools.cache
def contents(path: Path, sha256: str, name: str, version: str) -> Contents:
    """What the tarball needs from a host, from `<tarball>.contents` when that was written for
    this sha256; else read from the tarball (gunzip of all of it: ~0.1 s for 9 MB, each run of
    a deploy or upgrade before) and written there. A sidecar that cannot be read or written is
    only a slower run."""
    sidecar = path.with_name(path.name + CONTENTS)
    try:
        known = json.loads(sidecar.read_text())
        if known.get("sha256") == sha256:
            return Contents(int(known["extracted_bytes"]), str(known["erts"]),
                            tuple(str(x) for x in known["otp_libs"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    found = _scan(path, name, version)
    try:
        sidecar.write_text(json.dumps({"sha256": sha256, "extracted_bytes": found.extracted_bytes,
                                       "erts": found.erts, "otp_libs": list(found.otp_libs)}))
    except OSError:
        pass
    return found


def _scan(path: Path, name: str, version: str) -> Contents:
    """Read from the tarball's member headers, the .rel and start_erl.data."""
    size, libs, rel_text, erts, carried = 0, set(), "", "", False
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            top, _, rest = member.name.removeprefix("./").partition("/")
            size += member.size if member.isfile() else 0
            carried = carried or top.startswith("erts-")
            if top == "lib" and rest:
                libs.add(rest.split("/")[0])
            if member.isfile() and member.name.endswith(f"releases/{version}/{name}.rel"):
                rel_text = (tar.extractfile(member) or io.BytesIO()).read().decode("latin-1")
            elif member.isfile() and member.name.endswith("releases/start_erl.data"):
                erts = (tar.extractfile(member) or io.BytesIO()).read().decode("latin-1")
    if carried:
        return Contents(size, "", ())
    named = _REL_APP_RE.findall(rel_text)  # {erts, Vsn} first, then {App, Vsn[, Type]}
    erts = next(iter(erts.split()), "") or next((x for a, x in named if a == "erts"), "")
    missing = tuple(f"lib/{a}-{x}" for a, x in named if a != "erts" and f"{a}-{x}" not in libs)
    return Contents(size, f"erts-{erts}", missing)


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


def record_source(release_path: Path, commit: str, key: str, extra: str = "") -> None:
    """Beside a stored tarball: the commit and build key (build settings) it was built from,
    and the auto-version metadata its version got (to build the same version again)."""
    release_path.with_name(release_path.name + ".source").write_text(
        f"commit={commit}\nkey={key}\n" + (f"extra={extra}\n" if extra else ""))


def source_of(store: Path, app: str, version: str) -> dict[str, str]:
    """What record_source wrote beside the stored release of `version` ({} when nothing)."""
    path = store / (release_file_name(app, version, "release") + ".source")
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: val for k, val in pairs}


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


def sha256_of(path: Path) -> str:
    """The file's sha256, computed once per process for the same file unchanged: keyed by device,
    inode, size and mtime, which a rename keeps (the fetched `.part` is the stored tarball)."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


_SHA256: dict[tuple[int, int, int, int], str] = {}
