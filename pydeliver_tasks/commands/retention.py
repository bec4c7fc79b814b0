"""Pure builders for release retention on a deploy host: what is on disk, removing one version's
files, making an on-disk version boot next (cold rollback), and the failed marks.

A version is "on the host" when `releases/<vsn>/` exists (files like RELEASES, start_erl.data and
COOKIE are not versions) or a tarball `.deliver/releases/<app>_<vsn>.{release,upgrade}.tar.gz` does.
A version is marked failed by a line holding exactly its name in `.deliver/failed`.

Lib dirs are shared between releases (kernel-8.5.3 serves every version built with that OTP), so
removing a version removes only the `lib/<app>-<appvsn>` dirs its own `.rel` names that NO
remaining release references — neither another `releases/<v>/*.rel` nor `releases/RELEASES`.
That is decided in the script, on what is on disk at that moment; when any remaining release dir
has no `.rel` (so what it uses is unknown) no lib dir is removed at all.

Only the root, the app and the version reach these scripts, each quoted once at the top; the
bodies are constant text.
"""

from __future__ import annotations

from . import q
from .activation import activate_version as _activate

# Marker lines the scripts print (parsed by steps.retention).
VSN_MARK = "PDT_VSN "
BOOT_MARK = "PDT_BOOT "
KNOWN_MARK = "PDT_KNOWN "
RM_MARK = "PDT_RM "
KEEP_MARK = "PDT_KEEP "
NOTE_MARK = "PDT_NOTE "
NOROOT_MARK = "PDT_NOROOT"

# Exit codes of remove_version when it refuses (nothing was changed then).
REFUSED_BOOTS_NEXT = 5
REFUSED_RELEASE_HANDLER = 6
REFUSED_BOOTED = 7
# Exit code of activate_version when the version's files are incomplete (nothing was changed).
INCOMPLETE = 4

FAILED_FILE = ".deliver/failed"


def _head(root: str, app: str, version: str = "") -> str:
    lines = [f"cd {q(root)} 2>/dev/null || {{ echo {NOROOT_MARK}; exit 0; }}", f"a={q(app)}"]
    if version:
        lines.append(f"v={q(version)}")
    return "\n".join(lines) + "\n"


# A shell function printing `name vsn` for every application the .rel file $1 names (whitespace
# stripped first, so the layout does not matter; quoted atoms never match, so such lib dirs are
# never removed).
_REL_APPS = r"""rel_apps() {
  tr -d ' \t\r\n' < "$1" | grep -o '{[a-z][A-Za-z0-9_]*,"[^"]*"' \
    | sed 's/^{//; s/,"/ /; s/"$//' | grep -v '^erts ' || true
}
"""

_LISTING = r"""echo "PDT_BOOT $(cat releases/start_erl.data 2>/dev/null)"
if [ -f releases/RELEASES ]; then
  tr -d ' \t\r\n' < releases/RELEASES | grep -o "{release,\"$a\",\"[^\"]*\"" \
    | sed 's/.*,"\(.*\)"$/PDT_KNOWN \1/' || true
fi
{
  for d in releases/*/; do
    [ -d "$d" ] || continue
    n=${d%/}; printf '%s\n' "${n##*/}"
  done
  for f in .deliver/releases/"$a"_*.release.tar.gz .deliver/releases/"$a"_*.upgrade.tar.gz; do
    [ -f "$f" ] || continue
    n=${f##*/}; n=${n#"$a"_}; n=${n%.release.tar.gz}; printf '%s\n' "${n%.upgrade.tar.gz}"
  done
} | sort -u | while IFS= read -r v; do
  printf 'PDT_VSN %s' "$v"
  [ ! -d "releases/$v" ] || printf ' dir'
  set -- "releases/$v"/*.rel; [ ! -f "$1" ] || printf ' rel'
  [ ! -f ".deliver/releases/${a}_$v.release.tar.gz" ] || printf ' release_tar'
  [ ! -f ".deliver/releases/${a}_$v.upgrade.tar.gz" ] || printf ' upgrade_tar'
  [ ! -d ".deliver/bin/$v" ] || printf ' bin'
  [ ! -d ".deliver/staging/$v" ] || printf ' staging'
  ! grep -qxF -- "$v" .deliver/failed 2>/dev/null || printf ' failed'
  printf '\n'
done
"""


def listing(root: str, app: str) -> str:
    """One `PDT_VSN <vsn> [dir] [rel] [release_tar] [upgrade_tar] [bin] [staging] [failed]` line
    per version on the host, `PDT_BOOT <erts> <vsn>` (start_erl.data), one `PDT_KNOWN <vsn>` per
    release releases/RELEASES lists, or `PDT_NOROOT` when nothing is deployed. Read-only."""
    return _head(root, app) + _LISTING


_REMOVE = r"""set -eu
r=$(pwd -P)
b=$(cut -d' ' -f2 releases/start_erl.data 2>/dev/null || true)
if [ "$b" = "$v" ]; then echo "refusing: $v boots next (releases/start_erl.data)" >&2; exit 5; fi
if [ -f releases/RELEASES ] && tr -d ' \t\r\n' < releases/RELEASES \
    | grep -qF "{release,\"$a\",\"$v\","; then
  echo "refusing: releases/RELEASES lists $v (remove it through release_handler)" >&2; exit 6
fi
if ps -ww -eo args= | grep -F -- "-boot $r/releases/$v/" | grep -qv -e "grep -F"; then
  echo "refusing: a VM booted from releases/$v runs" >&2; exit 7
fi
g=".deliver/removing/$v"
mkdir -p .deliver/removing
rm -rf "$g"
if [ -d "releases/$v" ]; then mv "releases/$v" "$g"; echo "PDT_RM releases/$v"; fi
libs=""
if [ -d "$g" ]; then
  for f in "$g"/*.rel; do
    [ -f "$f" ] || continue
    libs="$libs
$(rel_apps "$f")"
  done
fi
unsure=""
for d in releases/*/; do
  [ -d "$d" ] || continue
  set -- "$d"*.rel
  [ -f "$1" ] || unsure="$unsure ${d%/}"
done
refs=$({ cat releases/RELEASES 2>/dev/null || true
         for f in releases/*/*.rel; do [ ! -f "$f" ] || cat "$f"; done; } | tr -d ' \t\r\n')
printf '%s\n' "$libs" | while read -r name vsn; do
  [ -n "$name" ] && [ -n "$vsn" ] || continue
  n="$name-$vsn"
  [ -d "lib/$n" ] || continue
  if [ -n "$unsure" ]; then
    echo "PDT_KEEP lib/$n (what$unsure uses is unknown: no .rel)"
  elif printf '%s' "$refs" | grep -qF "{$name,\"$vsn\""; then
    echo "PDT_KEEP lib/$n (used by another release)"
  else
    rm -rf "lib/$n"; echo "PDT_RM lib/$n"
  fi
done
for f in ".deliver/releases/${a}_$v.release.tar.gz" ".deliver/releases/${a}_$v.upgrade.tar.gz"; do
  for p in "$f" "$f.part"; do
    if [ -f "$p" ]; then rm -f "$p"; echo "PDT_RM $p"; fi
  done
  rm -f "$f.sha256-kept" "$f.sha256-kept.tmp"
done
if [ -d ".deliver/bin/$v" ]; then rm -rf ".deliver/bin/$v"; echo "PDT_RM .deliver/bin/$v"; fi
rm -rf "$g"
if [ -f .deliver/failed ]; then
  grep -vxF -- "$v" .deliver/failed > .deliver/failed.new || true
  mv -f .deliver/failed.new .deliver/failed
fi
echo "PDT{removed=$v}"
"""


def remove_version(root: str, app: str, version: str) -> str:
    """Remove one version's files: `releases/<vsn>` (renamed away first, so an interrupted run
    never leaves a half-removed release behind), the lib dirs only it used, its tarballs (and
    `.part` leftovers), `.deliver/bin/<vsn>`, and its failed mark. One `PDT_RM <path>` line per
    removed path, `PDT_KEEP lib/<dir> (why)` per lib dir kept, `PDT{removed=<vsn>}` at the end.

    Refuses (changing nothing) when the version boots next (exit 5), when releases/RELEASES
    lists it — release_handler must remove it (exit 6) — or when a VM booted from it runs
    (exit 7). Which version runs is the caller's to check: it never asks for such a version."""
    return _head(root, app, version) + _REL_APPS + _REMOVE


_ACTIVATE_CHECKS = r"""if [ ! -d "releases/$v" ]; then echo "releases/$v is not on the host" >&2; exit 4; fi
if [ ! -x ".deliver/bin/$v/$a" ]; then echo ".deliver/bin/$v/$a is not on the host" >&2; exit 4; fi
set -- "releases/$v"/*.rel
if [ ! -f "$1" ]; then echo "releases/$v has no .rel file" >&2; exit 4; fi
rel=$1
missing=""
for p in $(rel_apps "$rel" | tr ' ' '-'); do [ -d "lib/$p" ] || missing="$missing lib/$p"; done
if [ -n "$missing" ]; then echo "$v needs lib dirs that are gone:$missing" >&2; exit 4; fi
erts=$(tr -d ' \t\r\n' < "$rel" | grep -o '{erts,"[^"]*"' | sed 's/.*,"//; s/"$//' || true)
if [ -z "$erts" ] || [ ! -d "erts-$erts" ]; then
  erts=$(cut -d' ' -f1 releases/start_erl.data 2>/dev/null || true)
fi
[ -n "$erts" ] || erts=$(ls -d erts-* 2>/dev/null | head -n 1 | sed 's/.*erts-//')
"""


def activate_version(root: str, app: str, version: str) -> str:
    """Make an on-disk version boot next without its tarball (cold rollback): check releases/<vsn>,
    its `.rel`, every lib dir it names and `.deliver/bin/<vsn>` are there (else exit 4, nothing
    changed), then switch bin/, releases/RELEASES and start_erl.data by the activation journal —
    the same transaction as a deploy."""
    checks = f"a={q(app)}\nv={q(version)}\n" + _REL_APPS + _ACTIVATE_CHECKS
    return _activate(root, version, checks, app)


def mark_failed(root: str, version: str) -> str:
    """Add `version` to .deliver/failed (once): cleanup removes it first and rollback never
    picks it as the previous good version."""
    v = q(version)
    return (f"cd {q(root)} && mkdir -p .deliver && {{ grep -qxF -- {v} {FAILED_FILE} "
            f"2>/dev/null || printf '%s\\n' {v} >> {FAILED_FILE}; }}")


def unmark_failed(root: str, version: str) -> str:
    """Drop `version` from .deliver/failed (after it was verified running)."""
    return (f"cd {q(root)} 2>/dev/null && [ -f {FAILED_FILE} ] && {{ grep -vxF -- {q(version)} "
            f"{FAILED_FILE} > {FAILED_FILE}.new; mv -f {FAILED_FILE}.new {FAILED_FILE}; }} || true")
