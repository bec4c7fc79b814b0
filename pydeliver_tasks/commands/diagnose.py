"""Command builders for troubleshooting: one survey of a host, signals by pid, foreground boot.

Everything a diagnosis needs comes back from ONE script (`survey`), each fact on a line with a
`PDT_*` marker, so `doctor` costs one round trip beyond the node probe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import BOOT_MARK, MARK_BOOT, _node_env, env_prefix, lock, q, tarball

# Marker prefixes of the survey's lines.
MARKS = ("PDT_NOROOT", "PDT_LEFT", "PDT_BOOT", "PDT_VM", "PDT_RUNERL", "PDT_EPMD", "PDT_DISK", "PDT_PIPE",
         "PDT_CRASH", "PDT_CRASH_SINCE_BOOT", "PDT_LOGFILE", "PDT_LOG", "PDT_NOW")


def survey(root: str, env: Mapping[str, str], log_lines: int = 20) -> str:
    """Processes of this root (VMs by `-root ROOT `, run_erl by its pipe path), epmd's names,
    the version that boots next, free disk, the pipe dir, a crash dump, and the log tail."""
    return "\n".join([
        # a root holding no releases/ (only the tool's env file, say) has nothing deployed
        f"cd {q(root)} 2>/dev/null && [ -d releases ] || {{ echo PDT_NOROOT; exit 0; }}",
        env_prefix(env) + "true",
        'r="$(pwd -P)"',
        "echo PDT_NOW $(date +%s)",
        'echo "PDT_BOOT $(cat releases/start_erl.data 2>/dev/null)"',
        'ps -ww -eo pid=,etimes=,args= | grep -F -- "-root $r " | grep -v -e "grep -F" -e "ps -ww" '
        '| sed "s/^ */PDT_VM /"',
        'ps -ww -eo pid=,etimes=,args= | grep -F -- "$r/" | grep -F run_erl | grep -v -e "grep -F" '
        '-e "ps -ww" | sed "s/^ */PDT_RUNERL /"',
        'e=$(ls -d erts-*/bin/epmd 2>/dev/null | head -n 1)',
        '[ -n "$e" ] || e=$(command -v epmd || true)',
        'if [ -n "$e" ]; then "$e" -names 2>&1 | sed "s/^/PDT_EPMD /"; '
        'else echo "PDT_EPMD no epmd binary found"; fi',
        f'echo "PDT_DISK $({tarball.free_kb(".")})"',
        'p="${PIPE_DIR:-$r/tmp/pipe/}"',
        'if [ -d "$p" ]; then w=readonly; [ -w "$p" ] && w=writable; '
        'echo "PDT_PIPE $p exists $w $(ls "$p" 2>/dev/null | tr "\\n" " ")"; '
        'else echo "PDT_PIPE $p missing"; fi',
        'if [ -f erl_crash.dump ]; then echo "PDT_CRASH $(stat -c %Y erl_crash.dump) '
        '$(grep -m 1 "^Slogan" erl_crash.dump | cut -c 1-300)"; '
        # not older than the last boot's mark (find compares to the file system's resolution):
        # written by that boot; a tie goes to it, as no boot crashes within a clock tick
        f'if [ -f {BOOT_MARK} ]; then s=1; [ -z "$(find {BOOT_MARK} -newer erl_crash.dump)" ] '
        '|| s=0; echo "PDT_CRASH_SINCE_BOOT $s"; fi; fi',
        # what an interrupted run left (the next deploy removes or reuses it) and the lock
        "for f in .deliver/releases/*.part .deliver/staging/* .deliver/journal.*; do "
        '[ ! -e "$f" ] || echo "PDT_LEFT $(du -sk "$f" | cut -f1) $f"; done',
        f"if [ -d {lock.LOCK} ]; then cd .deliver; {'; '.join(lock.REPORT)}; cd ..; fi",
        'f=$(ls -t log/erlang.log.* tmp/log/erlang.log.* 2>/dev/null | head -n 1)',
        f'if [ -n "$f" ]; then echo "PDT_LOGFILE $f $(stat -c %Y "$f")"; '
        f'tail -n {int(log_lines)} "$f" | sed "s/^/PDT_LOG /"; fi',
        "true",
    ])


def signal(pids: Iterable[int], sig: str) -> str:
    """Send a signal to exactly these pids (never by name); missing ones are ignored."""
    assert sig in ("TERM", "KILL")
    ids = " ".join(str(int(p)) for p in pids)
    return f"kill -s {sig} {ids} 2>/dev/null; true"


WAIT_STEP = 0.05  # seconds between looks while waiting on the host for pids to end


def wait_gone(pids: Iterable[int], seconds: float) -> str:
    """Wait on the host, looking every WAIT_STEP, until none of these pids exists or `seconds`
    pass; print those still there (one command: the answer comes as soon as they are gone)."""
    ids = " ".join(str(int(p)) for p in pids)
    looks = max(1, int(seconds / WAIT_STEP))
    return (f"i=0; while :; do l=; for p in {ids}; do kill -0 $p 2>/dev/null && l=\"$l $p\"; done; "
            f'if [ -z "$l" ] || [ $i -ge {looks} ]; then break; fi; sleep {WAIT_STEP}; '
            "i=$((i+1)); done; echo $l")


def clear_pipes(root: str, env: Mapping[str, str]) -> str:
    """Remove run_erl's pipe files: left behind by a killed node, they block the next start."""
    return (
        f"cd {q(root)} && {env_prefix(env)}"
        + 'p="${{PIPE_DIR:-$(pwd -P)/tmp/pipe/}}" && '
        + 'rm -f "$p"/erlang.pipe.* && echo "cleared $p"'
    )


def foreground(root: str, app: str, builder: str, env: Mapping[str, str], seconds: int) -> str:
    """Boot the release in the foreground for at most `seconds`, then print its console output
    and the exit code (124 = still running at the limit, i.e. it booted)."""
    command = "start" if builder == "mix" else "foreground"  # mix's `start` runs in the foreground
    run = f"{_node_env(builder, env)}timeout -s TERM -k 5 {int(seconds)} bin/{q(app)} {command}"
    return "\n".join([
        f"cd {q(root)} || exit 1",
        MARK_BOOT + 'out="$(mktemp)"',
        f'{run} </dev/null >"$out" 2>&1; rc=$?',
        'tail -n 200 "$out"; rm -f "$out"',
        "echo PDT_RC=$rc",
    ])



def host_otp(root: str, env: Mapping[str, str], dirs: Iterable[str]) -> str:
    """For a release without ERTS: the Erlang its start script will find (`erl` on PATH, with the
    stage's env; one VM boot, only for such releases), printed as `PDT_OTP <its root>`, then
    `PDT_LACKS <dir>` for each of `dirs` (erts-<vsn>, lib/<app>-<vsn>) that root lacks;
    `PDT_NOERL` when no erl is on PATH."""
    wanted = " ".join(q(d) for d in dirs)
    return "\n".join([
        f"cd {q(root)} 2>/dev/null || cd",
        env_prefix(env) + "true",
        'e=$(command -v erl) || { echo PDT_NOERL; exit 0; }',
        # erl itself says where its OTP is (as relx asks it; a version manager's erl is a
        # wrapper script); the directory above the real bin/erl when that gives nothing
        "o=$(\"$e\" -noshell -boot no_dot_erlang -eval "
        "'io:format(\"~s\", [code:root_dir()]), halt().' 2>/dev/null) || o=",
        '[ -d "$o" ] || o=$(cd "$(dirname "$(readlink -f "$e")")/.." && pwd -P)',
        'echo "PDT_OTP $o"',
        f'for d in {wanted}; do [ -d "$o/$d" ] || echo "PDT_LACKS $d"; done',
    ])
