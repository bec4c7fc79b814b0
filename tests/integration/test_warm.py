"""Warm builds on the sandbox build host: `mix new warmy --sup` with a git dependency (a repository
made by `mix new wdep` at test time, many modules, locked in mix.lock). The first build compiles
the dependency and keeps it; a build after a code-only change reuses it; that release equals a
cold (`--clean`) build of the same tag: the same files, the same beams."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from .conftest import Project

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from make_repo import make_locked  # noqa: E402

APP = "warmy"
MODULES = 40  # enough dependency code that compiling it is a visible part of the build


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp(APP)
    dep = box.dir / "gitdeps" / "wdep"  # where the build host's user can read it
    shutil.rmtree(dep.parent, ignore_errors=True)
    d = make_locked(base / APP, dep, MODULES)
    os.chmod(dep.parent, 0o755)
    subprocess.run(["chown", "-R", box.build.user, str(dep.parent)], check=True)
    cfg = base / f"{APP}-sandbox.json"
    cfg.write_text(write_runtime_config(box, APP, 4085).read_text())
    return Project(APP, d, cfg, box)


def beams(tarball: Path) -> tuple[list[str], dict[str, str]]:
    """(every file's path, md5 of every .beam) in a release tarball."""
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        md5 = {m.name: hashlib.md5(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
               for m in members if m.name.endswith(".beam")}
    return sorted(m.name for m in members), md5


def test_a_warm_build_reuses_the_dependencies_and_equals_a_cold_one(project: Project,
                                                                      tmp_path: Path) -> None:
    first = project.inv("build.release", "--tag", "0.1.0", timeout=600).ok().out
    assert "dependencies built cold: none kept" in first, first
    warm = project.inv("build.release", "--tag", "0.1.1", timeout=600).ok().out
    assert "dependencies as built before, from the build host's cache" in warm, warm
    assert "==> wdep" not in warm, warm  # the dependency was not compiled again
    stored = project.dir / ".deliver" / "releases" / f"{APP}_0.1.1.release.tar.gz"
    warm_copy = shutil.copy(stored, tmp_path / "warm.tar.gz")
    cold = project.inv("build.release", "--tag", "0.1.1", "--clean", timeout=600).ok().out
    assert "cold, as asked (--clean)" in cold and "==> wdep" in cold, cold
    warm_files, warm_beams = beams(Path(warm_copy))
    cold_files, cold_beams = beams(stored)
    assert warm_files == cold_files
    assert len([b for b in warm_beams if "/wdep-" in b]) == MODULES + 1  # and Wdep itself
    assert warm_beams == cold_beams
    assert "lib/warmy-0.1.1/ebin/Elixir.Warmy.Text.beam" in warm_beams
