"""erl_call's files for a node this run just started (otp.control), written on the host from the
started BEAM's own command line: no helper VM is booted for its first question.

The node was started with the stage env by `bin/<app> daemon`, so the name and cookie on its
command line are the ones the release's client would resolve from that env. mix's and relx's
start scripts pass both there (`-name`/`-sname`, `-setcookie`); a start script that leaves them
in vm.args alone shows neither, and then nothing is written. Anything unexpected (no BEAM, two
name flags, an ERTS older than OTP 23's, no erl_call, a distribution erl_call does not reach
through the stage env's epmd: TLS, another epmd port or none) writes nothing either: the first
question then takes the slow path, which writes the same files from inside the node
(otp.control.SETUP). A wrong file costs only that: erl_call is checked against the node before
any question is given to it. Files written here tell the start that its node, once in epmd,
answers erl_call (steps.control.verify_started holds the release's client back until then).
The cookie goes from /proc into its 0400 file on the host; it never travels or stands on a
command line.
"""

from __future__ import annotations

import re

from ..otp.control import CONTROL_DIR

# From the BEAM's arguments, one per line (before -extra: what follows is the program's own):
# prints "NODE KIND ERL_CALL" and writes the cookie to file `cf` when the command line names
# exactly one node and one cookie, runs from root `r` and an ERTS of OTP 23 or later (11.0+),
# is not hidden (`bin/<app> rpc`'s helper VM is: it is never the node), and its distribution
# is the plain one erl_call reaches through epmd (no TLS, no other epmd or none).
_READ_ARGS = r"""
stop { next }
$0 == "-extra" { stop = 1; next }
$0 == "-hidden" { hidden = 1 }
$0 == "-proto_dist" || $0 == "-epmd_module" || $0 == "-no_epmd" || $0 == "-erl_epmd_port" { odd = 1 }
prev == "-root" { root = $0 }
prev == "-bindir" { bindir = $0 }
prev == "-setcookie" { cookie = $0; cookies++ }
prev == "-name" || prev == "-sname" { node = $0; kind = substr(prev, 2); names++ }
{ prev = $0 }
END {
  if (names != 1 || cookies != 1 || hidden || odd || root != r || node == "" || cookie == "") exit 0
  if (!match(bindir, /\/erts-[0-9]+[.][^\/]*\/bin$/)) exit 0
  major = substr(bindir, RSTART + 6) + 0
  if (major < 11) exit 0
  printf "%s", cookie > cf
  print node " " kind " " bindir "/erl_call"
}
"""
assert "'" not in _READ_ARGS  # it stands in single quotes

# Every VM started from the release root in the current dir, one `PID ARGS` line each (`-root
# ROOT` is on the command line of mix and relx BEAMs alike); commands.vms lists the same. Read
# from /proc by one grep (the processes with an argument equal to the root) and a `tr` per match,
# not by `ps`, which reads every process's stat files too: about a quarter of ps's CPU here,
# and the start looks every 0.1 s while its node boots.
ROOT_VMS = (
    'for pdt_f in $(grep -lzxF -- "$(pwd -P)" /proc/[0-9]*/cmdline 2>/dev/null); do '
    "pdt_a=$(tr '\\0' ' ' 2>/dev/null < \"$pdt_f\") || continue; "  # it may be gone
    'pdt_a=${pdt_a% }; case "$pdt_a" in *" -root $(pwd -P) "*) pdt_f=${pdt_f#/proc/}; '
    'echo "${pdt_f%/cmdline} $pdt_a";; esac; done'
)


# What the start command prints once it wrote the files (and nothing else, ever).
WRITTEN = "PDT{control=written}"


def from_started_node(key: str, tries: int = 20) -> str:
    """Shell (run in the release root, after `bin/<app> daemon` returned 0): wait up to `tries`
    tenths of a second for this root's BEAM, then write erl_call's files for stage-env `key`.
    Never fails; prints WRITTEN when it wrote them, else nothing."""
    if not re.fullmatch(r"[0-9a-f]+", key):
        raise ValueError(f"control key must be hex digits: {key!r}")
    d = CONTROL_DIR
    return "\n".join([
        "pdt_control() {",
        '  pdt_r=$(pwd -P); pdt_i=0',
        "  while :; do",
        f"    pdt_p=$({ROOT_VMS} | awk 'END {{ if (NR == 1) print $1 }}')",
        '    [ -z "$pdt_p" ] || break',
        f'    pdt_i=$((pdt_i + 1)); [ "$pdt_i" -lt {int(tries)} ] || return 1',
        "    sleep 0.1",
        "  done",
        # the node's epmd is the one erl_call asks with the stage env
        "  pdt_ep=$(tr '\\0' '\\n' < \"/proc/$pdt_p/environ\" | sed -n 's/^ERL_EPMD_PORT=//p')",
        '  [ "$pdt_ep" = "${ERL_EPMD_PORT:-}" ] || return 1',
        f"  mkdir -p {d} && chmod 700 {d} || return 1",
        f"  rm -f {d}/.cookie.new",
        f"  pdt_e=$(umask 077; tr '\\0' '\\n' < \"/proc/$pdt_p/cmdline\" | "
        f"awk -v r=\"$pdt_r\" -v cf={d}/.cookie.new '{_READ_ARGS}') || return 1",
        '  pdt_c=${pdt_e#* * }',
        f'  if [ -z "$pdt_e" ] || [ ! -s {d}/.cookie.new ] || [ ! -x "$pdt_c" ]; then '
        f"rm -f {d}/.cookie.new; return 1; fi",
        f"  rm -f {d}/* {d}/.erlang.cookie",
        f"  chmod 400 {d}/.cookie.new && mv -f {d}/.cookie.new {d}/.erlang.cookie || return 1",
        f"  printf '%s\\n' \"$pdt_e\" > {d}/{key}.tmp && mv -f {d}/{key}.tmp {d}/{key}",
        "}",
        f"if pdt_control > /dev/null 2>&1; then echo '{WRITTEN}'; fi",
    ])
