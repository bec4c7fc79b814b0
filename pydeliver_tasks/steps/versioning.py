"""The version a build gets: the project's own, or with --auto-version the project's own plus
metadata from git and the build (autoversion). Read here, from the commit being built; written
only into the build host's checkout, so the user's repository never changes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import autoversion, lazy
from .. import validation as v
from ..config import Settings
from .frame import builder_of

git = lazy.module("git", fleet=False)


@dataclass(frozen=True)
class VersionPlan:
    """version: what the build must produce; extra: the metadata appended ("+3027-82a5834");
    files: project-relative path -> its text with the new version, for the build checkout."""
    version: str
    extra: str
    files: dict[str, str] = field(default_factory=dict)


def expected_version(tag: str | None, version: str | None) -> str | None:
    """The version the build must produce: --version, else a version-like --tag (v1.2 -> 1.2)."""
    if version:
        return v.version(version)
    if tag and re.match(r"^v?\d+(\.\d+)*([+-].*)?$", tag):
        return tag[1:] if tag.startswith("v") else tag
    return None


def project_subdir(settings: Settings) -> str:
    """Where the project sits in its git repository: deliver.build.subdir, else project_dir's
    place under the repository's top level ("" at the top)."""
    if settings.build.subdir:
        return settings.build.subdir
    try:
        top = Path(git.Repo(settings.project_dir, search_parent_directories=True).working_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return ""  # resolve_ref says so, before anything runs
    inside = settings.project_dir.resolve().relative_to(top.resolve()).as_posix()
    return "" if inside == "." else v.subdir(inside)


def _repo(settings: Settings) -> git.Repo:
    return git.Repo(settings.project_dir, search_parent_directories=True)


def facts(settings: Settings, sha: str, branch: str | None) -> autoversion.Facts:
    """Git and build facts of the commit about to be built. The branch: --branch, else the
    branch checked out here when it holds the commit (None: unknown)."""
    repo = _repo(settings)
    if branch is None and not repo.head.is_detached:
        here = repo.active_branch.name
        try:
            repo.git.merge_base("--is-ancestor", sha, here)
            branch = here
        except git.GitCommandError:
            branch = None
    env = settings.mix_env if builder_of(settings) == "mix" else settings.rebar3_profile
    return autoversion.Facts(
        sha=sha, commit_count=int(repo.git.rev_list("--count", sha)),
        commit_count_all=int(repo.git.rev_list("--count", "--all")), branch=branch,
        now=datetime.now(timezone.utc), env=env)


def _show(settings: Settings, sha: str, rel: str) -> str | None:
    """A project file's text at the commit, exactly (None when the commit has no such file)."""
    sub = project_subdir(settings)
    try:
        blob = _repo(settings).commit(sha).tree / (f"{sub}/{rel}" if sub else rel)
    except KeyError:
        return None
    try:
        return bytes(blob.data_stream.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise v.InvalidInput(f"auto-version: {rel} is not UTF-8 text") from None


def plan(settings: Settings, sha: str, extra: str) -> VersionPlan:
    """The project's version files at `sha` rewritten with `extra` appended: the release's
    version (mix.exs / rebar.config) and, where it lives in another file, the version of
    `deliver.app` (an umbrella child's mix.exs, an .app.src) — so its appup sees a new vsn."""
    mix = builder_of(settings) == "mix"
    first = "mix.exs" if mix else "rebar.config"
    text = _show(settings, sha, first)
    if text is None:
        raise v.InvalidInput(f"auto-version: {first} not found at {sha[:12]}")
    new, base = autoversion.rewrite(text, "mix" if mix else "relx", extra, first, settings.release)
    files = {first: new}
    app = settings.app
    others = ([f"apps/{app}/mix.exs"] if mix and settings.release != app else [] if mix else
              [f"src/{app}.app.src", f"apps/{app}/src/{app}.app.src"])
    for rel in others:
        found = _show(settings, sha, rel)
        if found is not None:
            files[rel] = autoversion.rewrite(found, "mix" if mix else "app_src", extra, rel)[0]
            break
    return VersionPlan(autoversion.applied(base, extra, first), extra, files)


def auto_plan(settings: Settings, sha: str, branch: str | None, pieces: str | None) -> VersionPlan | None:
    """The plan for --auto-version PIECES (else deliver.auto_version); None without either."""
    chosen = pieces or settings.auto_version
    if not chosen:
        return None
    where = "--auto-version" if pieces else "deliver.auto_version"
    extra = autoversion.suffix(autoversion.pieces(chosen, where), facts(settings, sha, branch))
    return plan(settings, sha, extra)
