#!/usr/bin/env python3
"""Turn an example app into a real git repository with one tagged commit per version.

``examples/<app>/<first version>/`` is the full source tree; every later
``examples/<app>/<version>/`` directory is an overlay holding only the files that
change. Each version is copied over the work tree, committed as
``"<app> <version>"`` and tagged ``<version>`` (annotated tag) on branch ``main``.

Usage::

    python examples/make_repo.py hello_ex /tmp/hello_ex-repo

or, from Python::

    from make_repo import make_repo
    make_repo("hello_ex", tmp_path / "repo")
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
"""Directory holding the example apps (the one this file lives in)."""

DEFAULT_VERSIONS: tuple[str, ...] = ("0.0.1", "0.0.2")

# Explicit identity and settings, so commits work with no git config at all.
GIT_CONFIG = (
    "-c", "user.name=pydeliver examples",
    "-c", "user.email=examples@pydeliver.invalid",
    "-c", "commit.gpgsign=false",
    "-c", "tag.gpgsign=false",
)

# Build output that must never be copied into the repository.
_IGNORE = shutil.ignore_patterns("_build", "deps", ".deliver", "*.tar.gz", "__pycache__")


def _git(repo: Path, *args: str) -> None:
    """Run one git command in ``repo``; raise CalledProcessError on failure."""
    subprocess.run(["git", *GIT_CONFIG, *args], cwd=repo, check=True,
                   stdout=subprocess.DEVNULL)


def make_repo(app: str, dest: Path, versions: tuple[str, ...] = DEFAULT_VERSIONS) -> Path:
    """Create a git repository of example ``app`` at ``dest``; return ``dest``.

    ``versions[0]`` must be a full source tree, the others overlays applied in order.
    Raises ``FileExistsError`` if ``dest`` exists and is not an empty directory,
    ``FileNotFoundError`` if a version directory is missing.
    """
    dest = Path(dest)
    if not versions:
        raise ValueError("need at least one version")
    sources = [EXAMPLES_DIR / app / version for version in versions]
    for src in sources:
        if not src.is_dir():
            raise FileNotFoundError(f"no example directory {src}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty directory")

    dest.mkdir(parents=True, exist_ok=True)
    init_repo(dest)
    for version, src in zip(versions, sources, strict=True):
        # copyfile, not copy2: a copied file keeps no old mtime. And re-hash everything: a file of
        # the same size and mtime as its predecessor (a version bump in a fresh checkout) would
        # otherwise look unchanged to git and silently stay at the old version.
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=_IGNORE,
                        copy_function=shutil.copyfile)
        commit_version(dest, app, version)
    return dest


def commit_version(repo: Path, app: str, version: str) -> None:
    """Commit the work tree as it is (every file re-hashed) as "<app> <version>", tagged <version>
    (the repository must exist: `git init` or make_repo)."""
    _git(repo, "rm", "-r", "-q", "--cached", "--ignore-unmatch", ".")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", f"{app} {version}")
    _git(repo, "tag", "-a", version, "-m", f"{app} {version}")


def init_repo(repo: Path) -> None:
    """An empty repository on branch main (for projects made by `mix new` and the like)."""
    _git(repo, "init", "--quiet", "--initial-branch=main")


def make_locked(dest: Path, dep: Path, modules: int = 40) -> Path:
    """`mix new warmy --sup` at ``dest`` with a git dependency locked in its mix.lock: a
    repository made by `mix new wdep` at ``dep`` (``modules`` modules to compile, tag v1). Tags
    0.1.0 and 0.1.1 (a code-only change). To build it elsewhere, make ``dep`` readable by the
    build user there (git refuses a repository another user owns: chown it to that user)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(dest.parent), "LANG": "C.UTF-8"}

    def mix(cwd: Path, *args: str) -> None:
        subprocess.run(["mix", *args], cwd=cwd, check=True, capture_output=True, env=env)

    dep.parent.mkdir(parents=True, exist_ok=True)
    mix(dep.parent, "new", dep.name)
    for n in range(modules):
        funs = "\n".join(f"  def f{i}(x), do: {{{n}, {i}, x}}" for i in range(40))
        (dep / "lib" / f"{dep.name}_m{n}.ex").write_text(
            f"defmodule {dep.name.capitalize()}.M{n} do\n{funs}\nend\n")
    init_repo(dep)
    _git(dep, "add", "--all")
    _git(dep, "commit", "--quiet", "-m", f"{dep.name} 1")
    _git(dep, "tag", "v1")
    mix(dest.parent, "new", dest.name, "--sup")
    init_repo(dest)
    _edit(dest / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl]")
    _edit(dest / "mix.exs", "# {:dep_from_hexpm",
          f'{{:{dep.name}, git: "{dep}", tag: "v1"}},\n      # {{:x')
    text = f'defmodule {dest.name.capitalize()}.Text do\n  def text, do: "WORDS"\nend\n'
    (dest / "lib" / dest.name / "text.ex").write_text(text.replace("WORDS", "warm one"))
    mix(dest, "deps.get")  # writes mix.lock, as on the developer's machine
    (dest / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (dest / "invoke.yaml").write_text(f"deliver:\n  app: {dest.name}\n")
    commit_version(dest, dest.name, "0.1.0")
    _edit(dest / "mix.exs", 'version: "0.1.0"', 'version: "0.1.1"')
    (dest / "lib" / dest.name / "text.ex").write_text(text.replace("WORDS", "warm two"))
    commit_version(dest, dest.name, "0.1.1")
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise ValueError(f"{path}: {old!r} not found")
    path.write_text(text.replace(old, new, 1))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``make_repo.py APP DEST [--versions V ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="example app name, e.g. hello_ex or hello_erl")
    parser.add_argument("dest", type=Path, help="new repository directory (must not exist or be empty)")
    parser.add_argument("--versions", nargs="+", default=list(DEFAULT_VERSIONS),
                        help="versions to commit in order (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        repo = make_repo(args.app, args.dest, tuple(args.versions))
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"make_repo: {exc}", file=sys.stderr)
        return 2
    print(repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
