"""Pure builders of build-host commands for mix and rebar3 — how a release gets built and packed.

Layout on the build host under the build path: `repo.git` (bare, receives our pushes), `src`
(a fresh clone checked out at exactly the requested commit, so no leftover `_build` or release
dir can confuse version detection — edeliver #44/#284), `out` (the packed tarballs).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from ..model import release_file_name

q = shlex.quote


def repo_dir(build_path: str) -> str:
    return f"{build_path.rstrip('/')}/repo.git"


def init_repo(build_path: str) -> str:
    """Create the bare repository we push to (idempotent)."""
    return f"mkdir -p {q(build_path)} && git init -q --bare {q(repo_dir(build_path))}"


def checkout(build_path: str, sha: str, subdir: str = "") -> str:
    """A brand-new work tree at exactly `sha`: the clean tree every build starts from. `src` is
    the project: the clone itself, or (subdir) a link to that directory inside the clone."""
    root = q(build_path)
    if not subdir:
        return (
            f"cd {root} && rm -rf src checkout out && mkdir -p out && git clone -q repo.git src "
            f"&& git -C src checkout -q --detach {q(sha)} && git -C src log -1 --format=%H"
        )
    return (
        f"cd {root} && rm -rf src checkout out && mkdir -p out && git clone -q repo.git checkout "
        f"&& git -C checkout checkout -q --detach {q(sha)} && test -d checkout/{q(subdir)} "
        f"&& ln -s checkout/{q(subdir)} src && git -C checkout log -1 --format=%H"
    )


def write_files(build_path: str, files: Mapping[str, str]) -> str:
    """Replace project files in the checkout (the version an auto-version build gets); each is
    written beside and renamed, and must already exist there."""
    src = q(f"{build_path.rstrip('/')}/src")
    steps = [f"cd {src}"]
    for rel, text in files.items():
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"not a path inside the project: {rel!r}")
        steps.append(f"test -f {q(rel)} && printf %s {q(text)} > {q(rel + '.pdt')} "
                     f"&& mv {q(rel + '.pdt')} {q(rel)}")
    return " && ".join(steps)


def rel_dir(builder: str, app: str, profile: str) -> str:
    """Where the assembled release lands, relative to the work tree (profile: MIX_ENV for mix,
    the rebar3 profile otherwise)."""
    return f"_build/{profile}/rel/{app}"


def fetch_deps(builder: str, build_path: str, profile: str) -> str:
    """Fetch the dependencies into the work tree (what `build` does first unless told not to)."""
    src = q(f"{build_path.rstrip('/')}/src")
    if builder == "mix":
        return f"cd {src} && export MIX_ENV={q(profile)} LANG=C.UTF-8 && mix deps.get --only {q(profile)}"
    return f"cd {src} && rebar3 as {q(profile)} get-deps"


def build(builder: str, build_path: str, app: str, profile: str, deps: bool = True) -> str:
    """Compile and assemble the release (deps must already be local: hex/rebar offline OK;
    deps=False: already fetched, see fetch_deps)."""
    src = q(f"{build_path.rstrip('/')}/src")
    if builder != "mix":
        return f"cd {src} && rebar3 as {q(profile)} release -n {q(app)}"

    # A project without a `releases:` section (as `mix new` makes it) has one release named
    # after the app that `mix release NAME` does not know: build it without the name.
    release = "release $pdt_rel --overwrite"
    head = (f"cd {src} && export MIX_ENV={q(profile)} LANG=C.UTF-8 && "
            f"if grep -qs 'releases:' mix.exs; then pdt_rel={q(app)}; else pdt_rel=; fi && ")
    if not deps:
        return head + f"mix {release}"
    # the fetch and the release in one VM (`mix do`, `+` from Elixir 1.14 on): one boot of
    # Elixir and of the project less; the Elixir version is read from its elixir.app, and one
    # that cannot be read is built the older way, in two
    fetch = f"deps.get --only {q(profile)}"
    return (head + ELIXIR_VERSION
            + f'case "$pdt_ex" in 1.[0-9].*|1.1[0-3].*|"") mix {fetch} && mix {release} ;; '
            f"*) mix do {fetch} + {release} ;; esac")


# the build host's Elixir version in $pdt_ex, read from the elixir.app beside the `elixir` on
# its PATH (empty when that is not a plain install, e.g. a version manager's shim)
ELIXIR_VERSION = (
    '{ pdt_ex=$(e=$(command -v elixir) && e=$(readlink -f "$e") && '
    'sed -n \'s/.*{vsn,"\\([0-9][0-9.]*\\)"}.*/\\1/p\' "${e%/*}/../lib/elixir/ebin/elixir.app" '
    '2> /dev/null) || pdt_ex=; } && '
)


def list_versions(builder: str, build_path: str, app: str, profile: str) -> str:
    """The release versions present in the assembled release (one per line)."""
    rel = q(f"{build_path.rstrip('/')}/src/{rel_dir(builder, app, profile)}/releases")
    return f"find {rel} -mindepth 1 -maxdepth 1 -type d -printf '%f\\n'"


OUTSIDE_LINKS_RC = 3


def outside_links(builder: str, build_path: str, app: str, profile: str) -> str:
    """Symlinks in the assembled release that point out of it (relx dev mode links lib/ and
    sys.config into the build tree): the first 5 as `link -> target`, exit OUTSIDE_LINKS_RC when
    there is any; exit 0 and no output when the release is self-contained."""
    rel = q(f"{build_path.rstrip('/')}/src/{rel_dir(builder, app, profile)}")
    return (
        f"cd {rel} && root=$(pwd -P) && "
        "found=$(find . -type l | while IFS= read -r l; do t=$(readlink -f \"$l\"); "
        'case "$t" in "$root"/*) ;; *) printf \'%s -> %s\\n\' "$l" "$t";; esac; done) && '
        f'if [ -n "$found" ]; then printf \'%s\\n\' "$found" | head -5; exit {OUTSIDE_LINKS_RC}; fi'
    )


def package(builder: str, build_path: str, app: str, profile: str, version: str) -> str:
    """Pack the release as an OTP tarball (erts first: deploy reads whether there is one from
    the first member; bin, lib, releases) and print its sha256.

    The same layout for mix and rebar3, so deploy treats both alike.
    """
    base = build_path.rstrip("/")
    rel = q(f"{base}/src/{rel_dir(builder, app, profile)}")
    out = q(f"{base}/out/{release_file_name(app, version)}")
    return (
        f"cd {rel} && tar -czf {out}.part $(ls -d erts-* 2>/dev/null) bin lib releases "
        f"&& mv {out}.part {out} && sha256sum {out} | cut -d' ' -f1"
    )


def artifact_path(build_path: str, app: str, version: str, kind: str = "release") -> str:
    return f"{build_path.rstrip('/')}/out/{release_file_name(app, version, kind)}"


# --- hot upgrades: the old release beside the new build, facts, appups, relup, upgrade tarball --

def escript_path(build_path: str) -> str:
    """Where our helper escript (pydeliver_tasks/erl/pdt_upgrade.escript) is put on the build host."""
    return f"{build_path.rstrip('/')}/pdt_upgrade.escript"


def upload_path(build_path: str, name: str) -> str:
    """Files we upload for one upgrade build (old tarball, appups) live in out/."""
    return f"{build_path.rstrip('/')}/out/{name}"


def overlay_old(builder: str, build_path: str, app: str, profile: str, from_version: str,
                tarball: str) -> str:
    """Extract the from_version release's libs and releases/<from_version> into the new build's
    release dir (skipping files the new build has), which is what relup generation needs."""
    base = build_path.rstrip("/")
    rel = q(f"{base}/src/{rel_dir(builder, app, profile)}")
    return (f"cd {rel} && tar -xzf {q(tarball)} --skip-old-files lib releases/{q(from_version)} "
            f"&& test -f releases/{q(from_version)}/{q(app)}.rel")


def _escript(build_path: str, *args: str) -> str:
    return f"escript {q(escript_path(build_path))} " + " ".join(q(a) for a in args)


def release_dir(builder: str, build_path: str, app: str, profile: str) -> str:
    return f"{build_path.rstrip('/')}/src/{rel_dir(builder, app, profile)}"


def upgrade_facts(builder: str, build_path: str, app: str, profile: str, from_version: str,
                  to_version: str) -> str:
    """Facts about both releases (see the escript) for the planning in `appup`."""
    return _escript(build_path, "facts", release_dir(builder, build_path, app, profile), app,
                    from_version, to_version)


def install_appup(builder: str, build_path: str, app: str, profile: str, name: str, app_vsn: str,
                  file: str) -> str:
    """Check an uploaded appup file parses, then put it into lib/<name>-<app_vsn>/ebin."""
    return _escript(build_path, "appup", release_dir(builder, build_path, app, profile), name,
                    app_vsn, file)


def dep_appups(builder: str, build_path: str, app: str, profile: str, to_version: str,
               own_apps: list[str]) -> str:
    """Install the appups the release's dependencies ship in the build tree (src/ or ebin/ of
    _build, deps, _checkouts, apps, vendor; `.appup.src` evaluated) into their ebin, and say for each
    dependency without one where it was looked for (see the escript)."""
    return _escript(build_path, "depappups", release_dir(builder, build_path, app, profile), app,
                    to_version, f"{build_path.rstrip('/')}/src", profile, ",".join(own_apps))


def make_relup(builder: str, build_path: str, app: str, profile: str, from_version: str,
               to_version: str) -> str:
    return _escript(build_path, "relup", release_dir(builder, build_path, app, profile), app,
                    from_version, to_version)


def package_upgrade(builder: str, build_path: str, app: str, profile: str, version: str,
                    lib_dirs: list[str]) -> str:
    """Pack release `version` with its relup: bin, releases/<version>, the boot data and the lib
    dirs it changes (lib_dirs). A hot-safe upgrade keeps ERTS and every other lib dir as the
    running release has them, so those stay off the wire; print the sha256."""
    base = build_path.rstrip("/")
    rel = q(release_dir(builder, build_path, app, profile))
    out = q(f"{base}/out/{release_file_name(app, version, 'upgrade')}")
    libs = " ".join(q(f"lib/{d}") for d in lib_dirs)
    return (
        f"cd {rel} && tar -czf {out}.part bin {libs} releases/{q(version)} "
        "releases/start_erl.data $(ls -d releases/COOKIE 2>/dev/null) "
        f"&& mv {out}.part {out} && sha256sum {out} | cut -d' ' -f1"
    )
