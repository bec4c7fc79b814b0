"""Warm builds: the dependency build kept on the build host and reused, the project itself always
compiled from its clean checkout.

Under the build path: `deps-cache/<key>/` holds what a cold build of the dependencies left
(mix: `deps/` and `_build/<env>/lib/<dep>` of each dependency in `deps/`; rebar3:
`_build/{default,<profile>}/lib/<dep>` of each dependency named in rebar.lock), as relative paths
to copy over a fresh checkout. The key is a digest of everything that decides those files: the
lock file, the builder and profile, the compile-time config (mix: config/config.exs and
config/<env>.exs; rebar3: rebar.config), and the OTP, Elixir or rebar3 on the build host. A
project without a lock file has no dependencies to fetch: it is always built cold. Path
dependencies (inside the repository) are not in the lock: they are compiled with the project.
"""

from __future__ import annotations

import shlex

q = shlex.quote

CACHE = "deps-cache"
KEY_FILE = "warm.key"
KEEP = 3  # dependency builds kept (the most recently used)
MARK = "PDT_WARM"

# What the OTP on PATH is, read from its files (no VM) unless they are not where a plain install
# keeps them (then erl is asked).
_OTP = (
    'e=$(command -v erl || true); o=""; [ -z "$e" ] || '
    'o=$(cd "$(dirname "$(readlink -f "$e")")/.." && pwd -P); '
    'printf "%s\\n" "$o"; ls -d "$o"/erts-* 2>/dev/null; '
    'cat "$o"/releases/*/OTP_VERSION 2>/dev/null || '
    "erl -noshell -eval 'io:format(\"~s\", [erlang:system_info(otp_release)]), halt().'"
)
_ELIXIR = (
    'x=$(command -v elixir || true); a=""; [ -z "$x" ] || '
    'a="$(dirname "$(readlink -f "$x")")/../lib/elixir/ebin/elixir.app"; '
    'cat "$a" 2>/dev/null || elixir --version 2>/dev/null'
)
_REBAR3 = 'x=$(command -v rebar3 || true); [ -z "$x" ] || sha256sum "$(readlink -f "$x")"'


def _inputs(builder: str, profile: str) -> str:
    """A shell group printing every input of the dependency build (the key is its digest)."""
    if builder == "mix":
        own = f"cat config/config.exs {q(f'config/{profile}.exs')} 2>/dev/null; {_ELIXIR}"
    else:
        own = f"cat rebar.config 2>/dev/null; {_REBAR3}"
    return (f"{{ printf '%s\\n' {q(builder)} {q(profile)}; cat \"$l\"; {_OTP}; {own}; }}")


def restore(builder: str, build_path: str, profile: str, clean: bool) -> str:
    """In the fresh checkout: the key of its dependency build, kept in `warm.key` for `save`;
    the cached dependency build copied in unless `clean`. Prints `PDT_WARM <key> restored`,
    `... cold` (nothing cached), `... clean`, or `PDT_WARM - nolock`."""
    root = build_path.rstrip("/")
    key_file, cache = q(f"{root}/{KEY_FILE}"), q(f"{root}/{CACHE}")
    lock = "mix.lock" if builder == "mix" else "rebar.lock"
    return "\n".join([
        f"rm -f {key_file}",
        f"cd {q(root + '/src')}",
        f"l={lock}",
        f'[ -f "$l" ] || {{ echo "{MARK} - nolock"; exit 0; }}',
        f"k=$({_inputs(builder, profile)} | sha256sum | cut -c1-24)",
        f'echo "$k" > {key_file}',
        f'if [ {"1" if clean else "0"} = 1 ]; then echo "{MARK} $k clean"; '
        f'elif [ -d {cache}/"$k" ]; then cp -a {cache}/"$k"/. . && touch {cache}/"$k" '
        f'&& echo "{MARK} $k restored"; else echo "{MARK} $k cold"; fi',
    ])


def save(builder: str, build_path: str, profile: str, replace: bool = False) -> str:
    """After a successful build: the dependency build into `deps-cache/<key>` (written beside,
    then renamed, so a cut build leaves no half entry), unless that key is cached and not
    `replace` (a --clean build replaces what it was asked not to trust); the oldest entries
    beyond KEEP removed. Prints `PDT_WARM <key> saved|kept`, nothing without a key."""
    root = build_path.rstrip("/")
    cache = q(f"{root}/{CACHE}")
    lib = q(f"_build/{profile}/lib")
    if builder == "mix":
        copy = [
            'if [ -d deps ]; then cp -a deps "$t"/',
            f'  for n in $(ls deps); do [ -d {lib}/"$n" ] || continue',
            f'    mkdir -p "$t"/{lib} && cp -a {lib}/"$n" "$t"/{lib}/; done',
            "fi",
        ]
    else:
        copy = [
            "for n in $(grep -o '{<<\"[a-z][a-z0-9_]*\">>,' rebar.lock | cut -d'\"' -f2 | sort -u); do",
            f"  for d in _build/default/lib {lib}; do",
            '    [ -d "$d/$n" ] && [ ! -L "$d/$n" ] || continue',
            '    mkdir -p "$t/$d" && cp -a "$d/$n" "$t/$d/"; done; done',
        ]
    return "\n".join([
        f"k=$(cat {q(f'{root}/{KEY_FILE}')} 2>/dev/null) || exit 0",
        '[ -n "$k" ] || exit 0',
        f'if [ {"0" if replace else "1"} = 1 ] && [ -d {cache}/"$k" ]; then '
        f'echo "{MARK} $k kept"; exit 0; fi',
        f"cd {q(root + '/src')}",
        f'rm -rf {cache}/.new.*; t={cache}/.new.$$; mkdir -p "$t"',
        *copy,
        f'rm -rf {cache}/"$k" && mv "$t" {cache}/"$k"',
        f'echo "{MARK} $k saved"',
        f"cd {cache} && ls -t | tail -n +{KEEP + 1} | while IFS= read -r old; do "
        'rm -rf -- "$old"; done',
    ])


def parse(output: str) -> tuple[str, str]:
    """(key, state) from a restore or save's output; ("", "") when it printed none."""
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == MARK:
            return words[1], words[2]
    return "", ""
