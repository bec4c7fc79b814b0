"""Builders for the release tarball on a host: what is there (its sha256, hashed once; the free
space where it goes), a partial upload's prefix, and the checked extract an install starts with."""

from __future__ import annotations

import shlex

q = shlex.quote

# A tarball's sha256 is kept beside it (`<tarball>.sha256-kept`: "<sha256> <size> <ctime> <inode>"),
# so the host hashes a file once: a copy that is replaced, rewritten or touched gets a new ctime
# or inode and is hashed again. The check before an extract never uses it.
_STAT = "stat -c '%s %Z %i'"


def _keep_sha256(sha: str) -> str:
    """Line: record `sha` (a shell word) as $t's sha256 (best effort: a cache)."""
    return (f'printf \'%s %s\\n\' {sha} "$({_STAT} "$t")" 2>/dev/null > "$t.sha256-kept.tmp" '
            '&& mv -f "$t.sha256-kept.tmp" "$t.sha256-kept" || rm -f "$t.sha256-kept.tmp" 2>/dev/null')


def tarball_look(path: str) -> str:
    """One round trip before an upload: `PDT{sha256=...}` when the tarball is there (hashed
    only when its kept sha256 does not match its size, ctime and inode), then `PDT{free=KiB}`
    of the filesystem it goes to (the nearest existing dir: the tarball dir may not exist yet)."""
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    return "\n".join([
        f"t={q(path)}; d={q(parent)}",
        'while [ ! -d "$d" ]; do d=$(dirname "$d"); done',
        'if [ -f "$t" ]; then',
        f'  k=$({_STAT} "$t"); c=; {{ read -r c < "$t.sha256-kept"; }} 2>/dev/null || true',
        '  case "$c" in',
        '    *" $k") s=${c%% *} ;;',
        '    *) s=$(sha256sum "$t" | cut -d" " -f1); [ -z "$s" ] || ' + _keep_sha256('"$s"')
        + " ;;",
        '  esac',
        '  echo "PDT{sha256=$s}"',
        'fi',
        "echo \"PDT{free=$(" + _free('"$d"') + ')}"',
    ])


def prefix_sha256(path: str, length: int) -> str:
    """The sha256 of the first `length` bytes of a remote file."""
    return f"head -c {int(length)} {q(path)} | sha256sum | cut -d' ' -f1"


def _free(word: str) -> str:
    """KiB available to the SSH user on the filesystem holding `word` (a shell word; POSIX df)."""
    return f"df -P -k {word} | tail -n 1 | awk '{{print $4}}'"


def free_kb(path: str) -> str:
    """KiB available to the SSH user on the filesystem holding `path`."""
    return _free(q(path))


def room_and_access(path: str) -> str:
    """Two lines: the KiB free at `path` (as free_kb), then `writable` or `read-only`."""
    return f"{free_kb(path)}; if [ -w {q(path)} ]; then echo writable; else echo read-only; fi"


def checked_extract(root: str, tarball: str, sha256: str, stage: str, uploaded: bool) -> list[str]:
    """Script lines (run in the root under `set -eu`): check the uploaded tarball's sha256 on the
    host (a `.part` is the upload's own name until it is checked), extract it into `stage`."""
    return [
        f"t={q(tarball.removeprefix(root.rstrip('/') + '/'))}",
        # a .part left by an interrupted upload is stale when this run uploaded nothing
        "" if uploaded else 'rm -f "$t.part"',
        'if [ -f "$t.part" ]; then',
        f'  echo {q(sha256)}"  $t.part" | sha256sum --check --status || '
        '{ echo "sha256 mismatch: the uploaded $t.part is not the built release" >&2; '
        'rm -f "$t.part"; exit 3; }',
        '  mv -f "$t.part" "$t"',
        "else",
        f'  echo {q(sha256)}"  $t" | sha256sum --check --status || '
        '{ echo "sha256 mismatch: $t on this host is not the built release" >&2; exit 3; }',
        "fi",
        _keep_sha256(q(sha256)),
        f"rm -rf {q(stage)}",
        f"mkdir -p {q(stage)}",
        f'tar -xzf "$t" -C {q(stage)}',
    ]
