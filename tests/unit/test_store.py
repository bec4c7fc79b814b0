"""The release store's record of what each release was built from, and the build key that
decides whether a build would make again what the store has."""

from __future__ import annotations

import copy
import hashlib
import subprocess
from dataclasses import replace
from pathlib import Path

from pydeliver_tasks import config, store
from pydeliver_tasks.config import load
from pydeliver_tasks.fleet import hooks
from pydeliver_tasks.steps import build as build_step
from pydeliver_tasks.steps.build import build_key, stored_build

SHA = "a" * 40


def _settings(tmp_path: Path, **deliver):
    (tmp_path / "mix.exs").write_text("")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    base = copy.deepcopy(config.DEFAULTS)
    base.update(app="shop", builder="mix", project_dir=str(tmp_path),
                store=str(tmp_path / "store"), stages={"prod": {"hosts": ["x"]}}, **deliver)
    return load({"deliver": base})


def _stored(settings, version: str, key: str, body: bytes = b"tarball") -> Path:
    settings.store.mkdir(parents=True, exist_ok=True)
    path = settings.store / f"shop_{version}.release.tar.gz"
    path.write_bytes(body)
    path.with_name(path.name + ".sha256").write_text(
        f"{hashlib.sha256(body).hexdigest()}  {path.name}\n")
    store.record_source(path, SHA, key)
    return path


def test_a_build_of_the_same_commit_and_settings_finds_the_stored_release(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    _stored(s, "1.0.0", build_key(s, SHA))
    found = stored_build(s, SHA, "1.0.0")
    assert found is not None and found.version == "1.0.0"
    assert stored_build(s, SHA, None) == found  # a branch or revision: any version
    assert stored_build(s, SHA, "1.0.1") is None  # --version/--tag asks for another
    assert stored_build(s, "b" * 40, None) is None  # another commit


def test_the_build_settings_are_part_of_the_key(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    keys = {build_key(x, SHA) for x in (
        s, replace(s, mix_env="staging"), replace(s, rebar3_profile="test"),
        replace(s, build=replace(s.build, path="elsewhere")),
        replace(s, build=replace(s.build, subdir="apps/shop")),
        replace(s, hooks={"before_build": ("make assets",)}))}
    assert len(keys) == 6
    assert build_key(replace(s, hooks={"after_start": ("x",)}), SHA) == build_key(s, SHA)


def test_a_damaged_copy_or_python_build_hooks_mean_build_again(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    path = _stored(s, "1.0.0", build_key(s, SHA))
    hooks.register("before", "build", lambda hc: None)
    try:
        assert stored_build(s, SHA, "1.0.0") is None
    finally:
        hooks.clear()
    assert stored_build(s, SHA, "1.0.0") is not None
    path.write_bytes(b"damaged")
    assert stored_build(s, SHA, "1.0.0") is None


def test_without_a_source_record_nothing_is_reused(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    path = _stored(s, "1.0.0", build_key(s, SHA))
    path.with_name(path.name + ".source").unlink()
    assert store.built_from(s.store, "shop", build_key(s, SHA)) is None


def test_a_file_is_hashed_once_and_again_only_when_it_changes(tmp_path: Path) -> None:
    """update hashes the fetched tarball, then deploy checks the stored one: the same file
    (renamed), read once; a file written since is read again."""
    part = tmp_path / "a.tar.gz.part"
    part.write_bytes(b"one")
    first = build_step.sha256_of(part)
    assert first == hashlib.sha256(b"one").hexdigest()
    stored = part.rename(tmp_path / "a.tar.gz")
    reads: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(self)
        return real_open(self, *args, **kwargs)

    Path.open = counting_open  # type: ignore[method-assign]
    try:
        assert build_step.sha256_of(stored) == first and reads == []
        stored.write_bytes(b"two")  # same size, new content and mtime
        reads.clear()
        assert build_step.sha256_of(stored) == hashlib.sha256(b"two").hexdigest()
        assert reads == [stored]
    finally:
        Path.open = real_open  # type: ignore[method-assign]
