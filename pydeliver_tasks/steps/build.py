"""Build steps: push the source to the build host, build there, fetch the tarball into the store."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from .. import lazy, store
from .. import validation as v
from ..commands import build as builders
from ..commands import warm
from ..config import Settings
from ..fleet import HostContext, HostFailure, RunResult, for_each_host, hooks
from ..model import Host, Release, release_file_name
from ..store import sha256_of
from . import shared_store
from .frame import Ctx, builder_of, settings_of
from .versioning import VersionPlan, auto_plan, expected_version, project_subdir

# how the build says where its dependency build comes from (warm.restore's states)
WARM_WORDS = {"restored": "dependencies as built before, from the build host's cache",
              "cold": "dependencies built cold: none kept for this lock file, config and OTP yet",
              "clean": "cold, as asked (--clean)", "nolock": "no lock file: no dependencies to keep"}

git = lazy.module("git", fleet=False)
ssh = lazy.module("pydeliver_tasks.fleet.ssh")


def resolve_ref(
    project_dir: Path, tag: str | None, branch: str | None, revision: str | None
) -> tuple[str, str]:
    """(human ref, full sha) of exactly one of --tag/--branch/--revision, default HEAD."""
    given = [x for x in (tag, branch, revision) if x]
    if len(given) > 1:
        raise v.InvalidInput("give only one of --tag, --branch, --revision")
    if tag:
        v.git_ref(tag)
    if branch:
        v.git_ref(branch)
    if revision:
        v.revision(revision)
    try:
        repo = git.Repo(project_dir, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise v.InvalidInput(f"{project_dir} is not a git repository: set deliver.project_dir") from exc
    name = f"refs/tags/{tag}" if tag else f"refs/heads/{branch}" if branch else revision or "HEAD"
    try:
        sha = repo.git.rev_parse("--verify", "--quiet", f"{name}^{{commit}}")
    except git.GitCommandError as exc:
        kind = "tag" if tag else "branch" if branch else "revision"
        raise v.InvalidInput(f"no {kind} {given[0] if given else 'HEAD'!r} in {repo.working_dir}") from exc
    return (tag or branch or revision or "HEAD"), sha


def build_host(settings: Settings) -> tuple[Host, bool]:
    """The build host as a Host (deploy_path = build path) and whether it is this machine."""
    b = settings.build
    if b.host is None:  # relative paths: under the project's .deliver/ (never the user's $HOME)
        path = b.path if os.path.isabs(b.path) else str(settings.project_dir / ".deliver" / b.path)
        return Host("local", "localhost", None, None, path), True
    return Host(b.host.spec, b.host.host, b.host.user, b.host.port, b.path), False


def push_url(host: Host, local: bool) -> str:
    repo = builders.repo_dir(host.deploy_path)
    if local:
        return repo
    path = repo if repo.startswith("/") else f"/~/{repo}"
    user = f"{host.user}@" if host.user else ""
    port = f":{host.port}" if host.port else ""
    return f"ssh://{user}{host.address}{port}{path}"


def push_source(hc: HostContext, sha: str, ref: str, local: bool) -> None:
    """Create the bare repo on first use, then push the commit and the tags (forced)."""
    hooks.run(hc, "before", "push", hc.host.deploy_path)
    init = hc.run(builders.init_repo(hc.host.deploy_path))
    if not init.ok:
        raise HostFailure("could not create the build repository", init.tail(),
                          "check deliver.build.path and the build user's permissions")
    url = push_url(hc.host, local)
    if hc.dry_run:
        hc.say(f"would push: {ref} ({sha[:12]}) and tags -> {url}")
    else:
        hc.say(f"pushing {ref} ({sha[:12]}) to {url}")
        repo = git.Repo(hc.settings.project_dir, search_parent_directories=True)
        env = {} if local else {"GIT_SSH_COMMAND": ssh.git_ssh_command(hc.settings.ssh, None)}
        try:
            with repo.git.custom_environment(**env):
                repo.git.push("--quiet", "--force", url, f"+{sha}:refs/heads/pydeliver-build",
                              "+refs/tags/*:refs/tags/*")
        except git.GitCommandError as exc:
            raise HostFailure("git push to the build host failed", str(exc.stderr).strip(),
                              "check the build host's key in known_hosts and the SSH user") from exc
    hooks.run(hc, "after", "push", hc.host.deploy_path)


def build_on_host(hc: HostContext, sha: str, expected: str | None, clean: bool = False,
                  files: dict[str, str] | None = None) -> tuple[str, str]:
    """Check out sha in a clean tree (files: project files replaced there, an auto-version's),
    build (warm: with the dependency build kept from an earlier build of the same key, unless
    clean), find the single version, pack; -> (version, sha256)."""
    s = hc.settings
    builder, path = builder_of(s), hc.host.deploy_path
    profile = s.mix_env if builder == "mix" else s.rebar3_profile
    hooks.run(hc, "before", "build", path)
    res = hc.run(builders.checkout(path, sha, project_subdir(s)))
    if not res.ok:
        raise HostFailure(f"could not check out {sha[:12]} on the build host", res.tail())
    if files and hc.dry_run:
        hc.say(f"would set version {expected} in the checkout's {', '.join(files)}")
    elif files:
        res = hc.run(builders.write_files(path, files))
        if not res.ok:
            raise HostFailure(f"could not set version {expected} in the checkout", res.tail())
    res = hc.run(warm.restore(builder, path, profile, clean))
    key, state = warm.parse(res.stdout)
    if not res.ok:
        raise HostFailure("could not restore the kept dependency build", res.tail(),
                          "build cold: the same command with --clean")
    how = WARM_WORDS.get(state) or "dependencies kept for the same key are reused"  # dry run
    hc.say(f"building {s.release} with {builder} ({how}; output follows)")
    compile_release(hc, builder, path, profile)
    if state in ("cold", "clean"):
        kept = hc.run(warm.save(builder, path, profile, replace=state == "clean"))
        if not kept.ok:  # the build itself is fine: only the next one will be cold
            hc.say(f"could not keep the dependency build for warm builds: {kept.tail()[-200:]}")
    if hc.dry_run:
        version = expected or "<version>"
    else:
        listed = hc.run(builders.list_versions(builder, path, s.release, profile), changes=False)
        found = sorted(x for x in listed.stdout.split() if x)
        if len(found) != 1:
            raise HostFailure(
                f"expected exactly one release version in the build, found {found or 'none'}",
                listed.tail(),
                "check the release name (deliver.release, else deliver.app) and the project's "
                "release config",
            )
        version = v.version(found[0])
        if expected and version != expected:
            raise HostFailure(
                f"the build produced version {version}, but {expected} was expected",
                hint=f"bump the version in the project to {expected}, or pass --version {version}",
            )
    self_contained(hc, builder, profile)
    res = hc.run(builders.package(builder, path, s.release, profile, version))
    digest = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    if not res.ok or (not hc.dry_run and not re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise HostFailure("could not pack the release tarball", res.tail())
    hooks.run(hc, "after", "build", path)
    return version, digest


def compile_release(hc: HostContext, builder: str, path: str, profile: str) -> None:
    """The build command, streamed. With deps or compile hooks, the dependency fetch is a
    command of its own between `before_deps` and `after_deps`, so that `before_compile` (asset
    steps: npm, phx.digest) runs in the work tree with the dependencies there."""
    src = f"{path.rstrip('/')}/src"
    split = any(hc.settings.hooks.get(f"{w}_{step}") or hooks.registered(w, step)
                for w in ("before", "after") for step in ("deps", "compile"))
    steps = [("deps", builders.fetch_deps(builder, path, profile))] if split else []
    steps.append(("compile", builders.build(builder, path, hc.settings.release, profile,
                                            deps=not split)))
    for step, command in steps:
        hooks.run(hc, "before", step, src)
        res = hc.run(command, stream=True)
        if not res.ok:  # its output was streamed above: not repeated as the failure's detail
            raise HostFailure(f"{builder} build failed (exit {res.exited}); its output is above",
                              "", f"the same build, by hand on the build host: {command}")
        hooks.run(hc, "after", step, src)


def self_contained(hc: HostContext, builder: str, profile: str) -> None:
    """Refuse, before anything is packed or fetched, a release that links out of itself (relx
    dev mode): it would run only where the build tree is."""
    res = hc.run(builders.outside_links(builder, hc.host.deploy_path, hc.settings.release, profile),
                 changes=False)
    if res.exited == builders.OUTSIDE_LINKS_RC:
        fix = ("build with a production profile: deliver.rebar3_profile: prod (the profile "
               "`rebar3 new release` makes sets {mode, prod}), or set {mode, prod} in rebar.config's "
               "relx section" if builder == "rebar3" else
               "make the release copy its files (no symlinks to the build tree)")
        raise HostFailure(f"the release is not self-contained: it links out of itself into the "
                          f"build host's files (relx dev mode), so it runs nowhere else "
                          f"(profile {profile})", res.stdout.strip(), fix)
    if not res.ok:
        raise HostFailure(f"could not check the release's files (exit {res.exited})", res.tail())


def fetch_artifact(hc: HostContext, version: str, digest: str, kind: str = "release") -> Path:
    """Download the tarball into the release store and check its sha256 here too."""
    s = hc.settings
    dest = s.store / release_file_name(s.release, version, kind)
    remote = builders.artifact_path(hc.host.deploy_path, s.release, version, kind)
    hooks.run(hc, "before", "fetch", hc.host.deploy_path)
    if hc.dry_run:
        hc.say(f"would download: {remote} -> {dest}")
        return dest
    s.store.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hc.get(remote, part)
    got = sha256_of(part)
    if got != digest:
        part.unlink()
        raise HostFailure(f"downloaded tarball sha256 {got[:12]} != built {digest[:12]}",
                          hint="run the build again; the transfer was corrupted")
    dest.with_name(dest.name + ".source").unlink(missing_ok=True)  # said again by the caller
    part.replace(dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    store.contents(dest, digest, s.release, version)  # read here once: deploys read its sidecar
    hooks.run(hc, "after", "fetch", hc.host.deploy_path)
    return dest


def build_key(settings: Settings, sha: str, extra: str = "") -> str:
    """What a build's output depends on that we can name: the commit and the build settings
    (builder, profile, project dir in the repository, build host and dir, build hooks), and
    the auto-version metadata the build's version got (extra)."""
    parts = [sha, extra, settings.release, builder_of(settings), settings.mix_env, settings.rebar3_profile,
             project_subdir(settings), repr(settings.build),
             repr({k: w for k, w in sorted(settings.hooks.items()) if k.endswith("_build")})]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def stored_build(settings: Settings, sha: str, expected: str | None,
                 extra: str = "") -> Release | None:
    """The stored release this build would make again: same commit and build settings, the
    expected version, its sha256 intact. None when Python build hooks are registered: what they
    do is not known here."""
    if hooks.registered("before", "build") or hooks.registered("after", "build"):
        return None
    found = store.built_from(settings.store, settings.release, build_key(settings, sha, extra))
    if found is None or (expected and found.version != expected):
        return None
    return found if sha256_of(found.path) == found.sha256 else None


def build_release(
    c: Ctx, tag: str | None = None, branch: str | None = None, revision: str | None = None,
    version: str | None = None, dry_run: bool = False, json_path: str | None = None,
    rebuild: bool = False, clean: bool = False, auto_version: str | None = None,
    pinned: VersionPlan | None = None,
) -> RunResult:
    """Build a release from a git ref on the build host and store it locally (steps' API).

    A release the store holds from the same commit and build settings is not built again
    (`rebuild=True` builds it anyway). Warm unless `clean`: see commands.warm. auto_version:
    pieces (else deliver.auto_version) appended to the project's version; pinned: a version
    plan made before (the same auto-version again)."""
    settings = settings_of(c)
    builder_of(settings)
    expected = expected_version(tag, version)
    ref, sha = resolve_ref(settings.project_dir, tag, branch, revision)
    plan = pinned or auto_plan(settings, sha, branch, auto_version)
    if plan is not None:
        if version and version != plan.version:
            raise v.InvalidInput(f"--version {version} and the auto-version {plan.version} differ")
        expected = plan.version
    extra = plan.extra if plan else ""
    host, local = build_host(settings)
    made: dict[str, Any] = {}
    if expected and not (rebuild or clean):  # another machine may have built it
        shared_store.pull(settings, expected, dry_run=dry_run)
    have = None if rebuild or clean else stored_build(settings, sha, expected, extra)

    def run(hc: HostContext) -> str:
        if have is not None:
            made.update(path=have.path, version=have.version, sha256=have.sha256)
            return (f"{settings.release} {have.version} from {ref} ({sha[:12]}) is in the store, built "
                    "from the same commit and build settings: not built again (--rebuild "
                    f"builds it anyway) -> {have.path}")
        push_source(hc, sha, ref, local)
        vsn, digest = build_on_host(hc, sha, expected, clean, plan.files if plan else None)
        made["path"] = fetch_artifact(hc, vsn, digest)
        made.update(version=vsn, sha256=digest)
        if dry_run:
            return f"would build {settings.release} from {ref} ({sha[:12]}) and store it"
        store.record_source(made["path"], sha, build_key(settings, sha, extra), extra)
        erts = store.contents(made["path"], digest, settings.release, vsn).erts
        runs_on = (f" (it carries no ERTS: every host needs {erts}, which deploy.release checks)"
                   if erts else "")
        return f"built {settings.release} {vsn} from {ref} ({sha[:12]}) -> {made['path']}{runs_on}"

    result = for_each_host("build.release", settings, "build", [host], run,
                           dry_run=dry_run, json_path=json_path, local=local)
    if not dry_run or have is not None:
        result.release = Release(settings.release, made["version"], "release", made["path"],
                                 made["sha256"])
        shared_store.publish(settings, made["path"], dry_run)  # after the build's summary
    return result
