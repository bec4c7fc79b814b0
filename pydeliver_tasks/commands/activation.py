"""Activation as a transaction on the host: what makes a version boot next (bin/, lib/,
releases/RELEASES, releases/start_erl.data) is switched by one journaled sequence.

1. prepare — under `.deliver/activation.lock`, write `.deliver/journal.prepare`, then put every new
   file *beside* the live ones (new lib/releases dirs, `bin.new`, `RELEASES.new`,
   `start_erl.data.new`); names that did not exist are recorded as `added=` lines first. All disk
   writes happen here; a failure (ENOSPC, read-only dir, a failing command) rolls back.
2. commit — one rename: `journal.prepare` → `journal.commit`.
3. finish — renames only (no new space needed): replaced dirs go to `.deliver/trash`, the prepared
   ones take their place, start_erl.data last; then trash and journal are removed.

After an interruption at any line (ssh lost, kill -9, reboot), `recover` finds the journal and
rolls back (prepare) or finishes (commit), and says which. Every script stops at its first
failing command (`set -eu`, and no `&&` chains whose failure would not stop it).
"""

from __future__ import annotations

from . import bin_dir, q, releases_file, tarball_path
from .tarball import checked_extract, tarball_look

PREPARE = ".deliver/journal.prepare"
COMMIT = ".deliver/journal.commit"
LOCK = ".deliver/activation.lock"
LOCK_WAIT = 120
BUSY_RC = 5

# Marker lines (parsed by steps.activation)
RECOVERED = "PDT{recovered="   # finished=V | rolledback=V
BOOTS = "PDT{boots="           # what start_erl.data names after the script
UNCHANGED = "PDT{unchanged="   # install_release: that tarball is installed, nothing changed since
INSTALLED = ".deliver/installed"
JOURNAL = "PDT{journal="       # none | prepare=V | commit=V
RECOVER_FAILED = "PDT{recover_failed="  # recover_and_look: the recovery's exit status

_FUNCTIONS = r"""
pdt_swap() {  # pdt_swap PATH TRASHNAME: PATH.new (if there) takes PATH's place
  if [ -e "$1.new" ]; then
    if [ -e "$1" ]; then rm -rf ".deliver/trash/$2"; mv "$1" ".deliver/trash/$2"; fi
    mv "$1.new" "$1"
  fi
}
pdt_replace() {  # pdt_replace DIR: what the staging dir still holds under DIR replaces the live one
  for pdt_d in "$pdt_s/$1"/*; do
    [ -e "$pdt_d" ] || continue
    pdt_n=${pdt_d##*/}
    if [ -e "$1/$pdt_n" ]; then
      rm -rf ".deliver/trash/$1/$pdt_n"
      mv "$1/$pdt_n" ".deliver/trash/$1/$pdt_n"
    fi
    mv "$pdt_d" "$1/$pdt_n"
  done
}
pdt_finish() {  # after the commit: renames only, each skipped once done, so a re-run completes
  pdt_v=$(sed -n 's/^version=//p' .deliver/journal.commit)
  pdt_s=$(sed -n 's/^stage=//p' .deliver/journal.commit)
  mkdir -p .deliver/trash/lib .deliver/trash/releases
  if [ -n "$pdt_s" ]; then pdt_replace lib; pdt_replace releases; fi
  pdt_swap bin bin
  pdt_swap ".deliver/bin/$pdt_v" binv
  if [ -e releases/RELEASES.new ]; then mv -f releases/RELEASES.new releases/RELEASES; fi
  if [ -e releases/start_erl.data.new ]; then
    mv -f releases/start_erl.data.new releases/start_erl.data
  fi
  if [ -e .deliver/installed.new ]; then mv -f .deliver/installed.new .deliver/installed; fi
  rm -rf .deliver/trash
  if [ -n "$pdt_s" ]; then rm -rf "./$pdt_s"; fi
  rm -f .deliver/journal.commit
}
pdt_rollback() {  # before the commit: remove what was added beside the live files
  pdt_v=$(sed -n 's/^version=//p' .deliver/journal.prepare)
  pdt_s=$(sed -n 's/^stage=//p' .deliver/journal.prepare)
  sed -n 's/^added=//p' .deliver/journal.prepare | while IFS= read -r pdt_p; do
    rm -rf "./$pdt_p"
  done
  rm -rf bin.new releases/RELEASES.new releases/start_erl.data.new ".deliver/bin/$pdt_v.new" \
    .deliver/installed.new
  if [ -n "$pdt_s" ]; then rm -rf "./$pdt_s"; fi
  rm -f .deliver/journal.prepare
}
pdt_recover() {
  if [ -f .deliver/journal.commit ]; then
    pdt_finish
    echo "PDT{recovered=finished=$pdt_v}"
  elif [ -f .deliver/journal.prepare ]; then
    pdt_rollback
    echo "PDT{recovered=rolledback=$pdt_v}"
  fi
  # under the lock and without a journal, a staging dir is what a killed run left
  for pdt_d in .deliver/staging/*; do
    if [ -e "$pdt_d" ]; then rm -rf "$pdt_d"; echo "removed the leftover $pdt_d" >&2; fi
  done
}
pdt_state() {  # pdt_state SUFFIX APP: digest of what decides the next boot, live ("") or .new
  set -- "releases/start_erl.data$1" "bin$1/$2" "releases/RELEASES$1"
  [ -e "$3" ] || set -- "$1" "$2" releases/RELEASES
  [ -e "$3" ] || set -- "$1" "$2"
  pdt_c=$(cat "$@" && echo .) || return 1  # the dot keeps trailing newlines in the digest
  printf '%s' "$pdt_c" | sha256sum
}
pdt_boots() {
  echo "PDT{boots=$(cut -d' ' -f2 releases/start_erl.data 2>/dev/null || true)}"
}
"""


def _locked(root: str) -> list[str]:
    """Script head: stop at the first failure, in the root, holding the activation lock (a
    second activation — or a recovery after a lost connection — waits for a running one)."""
    return [
        "set -eu",
        f"cd {q(root)}",
        "mkdir -p .deliver",
        f"exec 9>>{LOCK}",
        f"flock -w {LOCK_WAIT} 9 || {{ echo 'another activation holds {LOCK}' >&2; "
        f"exit {BUSY_RC}; }}",
        _FUNCTIONS,
    ]


def recover(root: str) -> str:
    """Finish or roll back an interrupted activation, then say what boots next and the journal
    state; a root that does not exist yet reports `boots=` empty."""
    return "\n".join([
        f"if [ ! -d {q(root)} ]; then echo 'PDT{{boots=}}'; echo 'PDT{{journal=none}}'; exit 0; fi",
        *_locked(root),
        "pdt_recover",
        "pdt_boots",
        'if [ -f .deliver/journal.commit ]; then echo "PDT{journal=commit}"; '
        'elif [ -f .deliver/journal.prepare ]; then echo "PDT{journal=prepare}"; '
        'else echo "PDT{journal=none}"; fi',
    ])


def recover_and_look(root: str, tarball: str, then: str = "") -> str:
    """`recover` (in a subshell: its `set -eu` and lock end with it), then `tarball_look`, then
    `then` (a read-only builder's script, e.g. retention.listing): a deploy's one round trip
    before its upload."""
    return "\n".join(["(", recover(root), f') || echo "{RECOVER_FAILED}$?}}"', tarball_look(tarball),
                      *(["(", then, ") || true"] if then else [])])


def _rollback_on_failure(stage: str = "") -> str:
    """From here until the commit, a failing command rolls back what was prepared and removes
    the staging dir (kill -9 leaves the journal for `recover`)."""
    clean = f"rm -rf {q(stage)}; " if stage else ""
    return ("trap 'pdt_rc=$?; set +e; if [ $pdt_rc -ne 0 ]; then "
            "if [ -f .deliver/journal.prepare ]; then pdt_rollback; "
            f"echo \"rolled back: nothing of this version was activated\" >&2; fi; {clean}fi; "
            "exit $pdt_rc' EXIT")


def _add_new(stage: str, live: str) -> list[str]:
    """Script lines: entries of stage/<live> that the root lacks are recorded as added (so a
    rollback removes them), then moved in by one `mv` (a fresh root's ~20 lib dirs: one
    process); the rest stay staged for the finish."""
    return [
        f"mkdir -p {live}",
        f"set --; for pdt_d in {q(stage)}/{live}/*; do",
        '  [ -e "$pdt_d" ] || continue',
        "  pdt_n=${pdt_d##*/}",
        f'  if [ ! -e "{live}/$pdt_n" ]; then echo "added={live}/$pdt_n" >> {PREPARE}; '
        'set -- "$@" "$pdt_d"; fi',
        "done",
        f'[ $# -eq 0 ] || mv -- "$@" {live}/',
    ]


def _prepare_head(version: str, stage: str = "") -> list[str]:
    """Script lines: clear leftovers of an earlier prepare, write the journal, arm the rollback."""
    lines = [
        "rm -rf .deliver/trash bin.new releases/RELEASES.new releases/start_erl.data.new "
        f"{q(bin_dir(version))}.new",
        f"echo version={q(version)} > {PREPARE}",
    ]
    if stage:
        lines.append(f"echo stage={q(stage)} >> {PREPARE}")
    return lines


def _commit() -> list[str]:
    return [f"mv {PREPARE} {COMMIT}", "trap - EXIT", "pdt_finish"]


def install_release(root: str, app: str, version: str, sha256: str, uploaded: bool = True,
                    kind: str = "release") -> str:
    """Verify the uploaded tarball's sha256 on the host, extract it beside the live release and
    switch to it in one journaled activation; print what boots next, read from the host."""
    stage = f".deliver/staging/{version}"
    rel = f"{stage}/releases/{version}"
    v = q(version)
    mark = q(f"{sha256} ")
    return "\n".join([
        *_locked(root),
        "pdt_recover",
        # installed by an earlier run, and nothing that decides the boot changed since: done
        f"pdt_m=; read -r pdt_m 2>/dev/null < {INSTALLED} || true",
        f'if [ -n "$pdt_m" ] && pdt_d=$(pdt_state "" {q(app)}) && [ "$pdt_m" = {mark}"$pdt_d" ]; then',
        f"  echo {q(f'{UNCHANGED}{version}}}')}; pdt_boots; exit 0",
        "fi",
        _rollback_on_failure(stage),
        *checked_extract(root, tarball_path(root, app, version, kind), sha256, stage, uploaded),
        f"test -d {q(rel)} || {{ echo {q(f'tarball lacks releases/{version}')} >&2; exit 4; }}",
        f"test -x {q(stage)}/bin/{q(app)} || {{ echo {q(f'tarball lacks bin/{app}')} >&2; exit 4; }}",
        f"erts=$(cut -d' ' -f1 {q(rel)}/../start_erl.data 2>/dev/null || true)",
        f'[ -n "$erts" ] || erts=$(ls -d {q(stage)}/erts-* erts-* 2>/dev/null | head -n 1 '
        "| sed 's/.*erts-//')",
        f"rm -f {q(stage)}/releases/start_erl.data",
        # the host's COOKIE and RELEASES stay (RELEASES.new is written below)
        f'for pdt_n in COOKIE RELEASES; do if [ -e "releases/$pdt_n" ]; then '
        f'rm -f {q(stage)}/releases/$pdt_n; fi; done',
        *_prepare_head(version, stage),
        *_add_new(stage, "lib"),
        *_add_new(stage, "releases"),
        f"for pdt_d in {q(stage)}/erts-*; do",
        '  [ -e "$pdt_d" ] || continue',
        "  pdt_n=${pdt_d##*/}",
        f'  if [ ! -e "$pdt_n" ]; then echo "added=$pdt_n" >> {PREPARE}; mv "$pdt_d" "$pdt_n"; fi',
        "done",
        "mkdir -p .deliver/bin",
        f"cp -a {q(stage)}/bin bin.new",
        f"cp -a {q(stage)}/bin {q(bin_dir(version))}.new",
        f"rm -rf {q(stage)}/bin",
        f'pdt_rel=releases/{v}; if [ -d {q(rel)} ]; then pdt_rel={q(rel)}; fi',
        *releases_file(app, version, '"$pdt_rel"'),
        f'echo "$erts {version}" > releases/start_erl.data.new',
        f"pdt_d=$(pdt_state .new {q(app)})",
        f'echo {mark}"$pdt_d" > {INSTALLED}.new',
        "sync -f . 2>/dev/null || sync",
        *_commit(),
        f"echo {q(f'PDT{{installed={version}}}')}",
        "pdt_boots",
    ])


def stage_upgrade(root: str, app: str, old: str, new: str, sha256: str, uploaded: bool,
                  new_lib_dirs: list[str]) -> str:
    """Put release `new` beside the running `old` without touching what `old` uses, so that
    release_handler can install it hot: lib dirs `new` adds (new_lib_dirs, never in use by
    `old`) are replaced, other lib dirs are only added when missing; releases/<new> is replaced;
    bin/ is kept aside for the switch after make_permanent. Nothing here changes what boots.
    """
    stage = f".deliver/staging/{new}"
    fresh = " ".join(q(d) for d in new_lib_dirs if d and "/" not in d and d not in (".", ".."))
    return "\n".join([
        *_locked(root),
        "pdt_recover",
        *checked_extract(root, tarball_path(root, app, new, "upgrade"), sha256, stage, uploaded),
        f"test -f {q(stage)}/releases/{q(new)}/relup || "
        f"{{ echo {q(f'upgrade tarball lacks releases/{new}/relup')} >&2; exit 4; }}",
        f"test -x {q(stage)}/bin/{q(app)} || "
        f"{{ echo {q(f'upgrade tarball lacks bin/{app}')} >&2; exit 4; }}",
        "mkdir -p .deliver/bin",
        # roots deployed before bin/ was kept per version: the running version's is bin/
        f"[ -d {q(bin_dir(old))} ] || cp -a bin {q(bin_dir(old))}",
        f"for n in {fresh}; do rm -rf \"lib/$n\"; done" if fresh else ":",
        f"for d in {q(stage)}/lib/*; do",
        '  n=${d##*/}; [ -e "lib/$n" ] || mv "$d" "lib/$n"',
        "done",
        f"rm -rf releases/{q(new)}",
        f"mv {q(stage)}/releases/{q(new)} releases/{q(new)}",
        f"rm -rf {q(bin_dir(new))}",
        f"mv {q(stage)}/bin {q(bin_dir(new))}",
        f"rm -rf {q(stage)}",
        f"echo {q(f'PDT{{staged={new}}}')}",
    ])


def activate_bin(root: str, version: str) -> str:
    """Make `version`'s start script the one bin/ holds (after a hot upgrade or downgrade), by
    the same journal: a copy beside, a commit, renames."""
    return "\n".join([
        *_locked(root),
        "pdt_recover",
        f"test -d {q(bin_dir(version))}",
        _rollback_on_failure(),
        *_prepare_head(version),
        f"cp -a {q(bin_dir(version))} bin.new",
        *_commit(),
    ])


def activate_version(root: str, version: str, checks: str, app: str) -> str:
    """Make an on-disk version boot next (cold rollback) by the same journal: `checks` (script
    text setting $erts, exit 4 when a file is missing) run first, nothing changed until then."""
    return "\n".join([
        *_locked(root),
        "pdt_recover",
        checks,
        _rollback_on_failure(),
        *_prepare_head(version),
        f"cp -a {q(bin_dir(version))} bin.new",
        *releases_file(app, version),
        f'echo "$erts {version}" > releases/start_erl.data.new',
        "sync -f . 2>/dev/null || sync",
        *_commit(),
        f"echo {q(f'PDT{{activated={version}}}')}",
    ])
