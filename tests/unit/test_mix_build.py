"""The mix build command, run by bash with stand-ins for `elixir` and `mix` on PATH that record
how they were called: the dependency fetch and the release run in one VM (`mix do … + …`) when
the build host's Elixir is 1.14 or newer, read from its elixir.app; in two otherwise, and when
the version cannot be read (a version manager's shim)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pydeliver_tasks.commands import build as builders


def run_build(tmp_path: Path, elixir_app: str | None, releases: bool = True,
              deps: bool = True) -> list[str]:
    """The mix calls the build command makes, one line each."""
    install = tmp_path / "elixir"
    (install / "bin").mkdir(parents=True)
    (install / "lib" / "elixir" / "ebin").mkdir(parents=True)
    if elixir_app is not None:
        (install / "lib" / "elixir" / "ebin" / "elixir.app").write_text(elixir_app)
    calls = tmp_path / "calls"
    for name, body in (("elixir", "exit 0"), ("mix", f'echo "$*" >> {calls}')):
        (install / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (install / "bin" / name).chmod(0o755)
    on_path = tmp_path / "path"
    on_path.mkdir()
    (on_path / "elixir").symlink_to(install / "bin" / "elixir")  # as /usr/bin/elixir is
    (on_path / "mix").symlink_to(install / "bin" / "mix")
    src = tmp_path / "build" / "src"
    src.mkdir(parents=True)
    (src / "mix.exs").write_text("releases: [shop: []]" if releases else "project: []")
    env = {**os.environ, "PATH": f"{on_path}:{os.environ['PATH']}"}
    cmd = builders.build("mix", str(tmp_path / "build"), "shop", "prod", deps=deps)
    res = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return calls.read_text().splitlines()


APP = '{application,elixir,\n [{description,"elixir"},\n  {vsn,"%s"},\n  {modules,[]}]}.\n'


@pytest.mark.parametrize("vsn", ["1.14.0", "1.15.7", "1.18.4", "2.0.0"])
def test_one_vm_from_elixir_1_14_on(tmp_path: Path, vsn: str) -> None:
    assert run_build(tmp_path, APP % vsn) == ["do deps.get --only prod + release shop --overwrite"]


@pytest.mark.parametrize("vsn", ["1.13.4", "1.10.0", "1.9.1"])
def test_two_vms_before_1_14(tmp_path: Path, vsn: str) -> None:
    assert run_build(tmp_path, APP % vsn) == ["deps.get --only prod", "release shop --overwrite"]


def test_an_elixir_whose_version_cannot_be_read_is_built_in_two(tmp_path: Path) -> None:
    assert run_build(tmp_path, None) == ["deps.get --only prod", "release shop --overwrite"]


def test_a_project_without_releases_is_built_without_the_name(tmp_path: Path) -> None:
    assert run_build(tmp_path, APP % "1.14.0", releases=False) == \
        ["do deps.get --only prod + release --overwrite"]


@pytest.mark.parametrize("releases", [True, False])
def test_without_the_fetch_the_release_alone(tmp_path: Path, releases: bool) -> None:
    """With deps or compile hooks the fetch ran before (fetch_deps): the release alone."""
    assert run_build(tmp_path, APP % "1.14.0", releases=releases, deps=False) == \
        ["release shop --overwrite" if releases else "release --overwrite"]


@pytest.mark.parametrize("deps", [True, False])
def test_a_missing_work_tree_runs_no_mix(tmp_path: Path, deps: bool) -> None:
    """A failed `cd` ends the command: mix never runs in whatever directory the shell is in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "mix").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "mix").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    cmd = builders.build("mix", str(tmp_path / "gone"), "shop", "prod", deps=deps)
    res = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode != 0 and not calls.exists()
