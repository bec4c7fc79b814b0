"""Pure builders for the deploy lock and the audit log on a host, and the parsers of their output.

The lock is the directory `<root>/.deliver/lock`, taken with one atomic `mkdir`; inside it `token`
(the taker's random token, one line) and `info` (one line of JSON: user, machine, pid, started,
action, version, message, stage, token). The audit log `<root>/.deliver/audit.log` gets one
tab-separated line per action, appended with `>>`. Every value is quoted here; message text is
flattened to one printable line first, so nothing in it can reach the shell or split a line.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

q = shlex.quote

LOCK = ".deliver/lock"
AUDIT = ".deliver/audit.log"
HELD_RC = 75  # acquire: the lock is held (by someone else); the holder is printed
NOT_OWNER_RC = 76  # release: the lock is held under another token; the holder is printed
NO_AUDIT_RC = 3  # audit_tail: no audit log on this host yet
HELD_MARK = "PDT_LOCK_HELD "  # + the holder's info line (may be empty while it is being taken)
CLOCK_MARK = "PDT_LOCK_CLOCK "  # + "<host now, epoch s> <lock dir mtime, epoch s or ->"
TAKEN = "PDT_LOCK_TAKEN"
RELEASED = "PDT_LOCK_RELEASED"
UNLOCKED = "unlocked"
AUDIT_FIELDS = ("time", "who", "action", "from", "to", "result", "duration")


def flat(text: object, limit: int = 1000) -> str:
    """One printable line: control characters (newline, tab, NUL...) become spaces; cut at limit."""
    chars = (" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in str(text))
    return "".join(chars).strip()[:limit]


def info_line(info: dict[str, Any]) -> str:
    """The holder's details as one line of ASCII JSON (strings flattened)."""
    clean = {k: flat(v) if isinstance(v, str) else v for k, v in info.items()}
    return json.dumps(clean, ensure_ascii=True, separators=(",", ":"))


def _lock_dir(root: str) -> str:
    return f"{root.rstrip('/') or '.'}/.deliver"


# Print the holder: its info line (waiting briefly for a lock being taken right now to get its
# details) and the host's clock next to the lock dir's mtime, so its age needs no clock agreement.
REPORT = (
    'i=0; while [ ! -f lock/info ] && [ -d lock ] && [ "$i" -lt 3 ]; do sleep 1; i=$((i+1)); done',
    f'echo "{HELD_MARK}$(head -n 1 lock/info 2>/dev/null)"',
    f'echo "{CLOCK_MARK}$(date +%s) $(stat -c %Y lock 2>/dev/null || echo -)"',
)


def acquire(root: str, info: dict[str, Any], token: str) -> str:
    """Take the lock: `mkdir` (atomic), then the token and the info (info renamed into place).

    Exit 0 printing TAKEN; exit HELD_RC printing the holder when the lock dir exists already.
    """
    return "\n".join([
        f"mkdir -p {q(_lock_dir(root))} && cd {q(_lock_dir(root))} || exit 1",
        "n=0",
        "until mkdir lock 2>/dev/null; do",
        f"  if [ -d lock ]; then {'; '.join(REPORT)}; exit {HELD_RC}; fi",
        "  n=$((n+1)); [ \"$n\" -lt 5 ] || { echo 'cannot create the lock dir' >&2; exit 1; }",
        "done",
        f"{{ printf '%s\\n' {q(flat(token))} > lock/token && "
        f"printf '%s\\n' {q(info_line(info))} > lock/info.tmp && mv -f lock/info.tmp lock/info; }} "
        "|| { rm -rf lock; echo 'cannot write the lock details' >&2; exit 1; }",
        f"echo {TAKEN}",
    ])


def release(root: str, token: str = "", force: bool = False, audit: str = "") -> str:
    """Remove the lock when its token is `token` (or always, with force); renamed away first so
    nobody sees it half removed. Exit 0 printing RELEASED (+ the holder) or UNLOCKED when there
    was none; exit NOT_OWNER_RC printing the holder when the token differs. `audit`: a line
    appended to the audit log first (the run's end line: one round trip for both; a failed
    append is said on stderr and the lock is released all the same)."""
    check = ("true" if force else "false" if not flat(token)  # no token matches nothing
             else f'[ "$(head -n 1 lock/token 2>/dev/null)" = {q(flat(token))} ]')
    return "\n".join([
        *([f"{audit_append(root, audit)} || echo 'could not append to the audit log' >&2"]
          if audit else []),
        f"cd {q(_lock_dir(root))} 2>/dev/null && [ -d lock ] || {{ echo {UNLOCKED}; exit 0; }}",
        f"if {check}; then",
        f'  echo "{HELD_MARK}$(head -n 1 lock/info 2>/dev/null)"',
        '  g="lock.gone.$$" && mv lock "$g" && rm -rf "$g" || exit 1',
        f"  echo {RELEASED}; exit 0",
        "fi",
        *REPORT,
        f"exit {NOT_OWNER_RC}",
    ])


def status(root: str) -> str:
    """The holder (HELD_MARK + info, CLOCK_MARK line) or UNLOCKED; exit 0 either way."""
    return (f"cd {q(_lock_dir(root))} 2>/dev/null && [ -d lock ] || {{ echo {UNLOCKED}; exit 0; }}"
            f"\n{chr(10).join(REPORT)}")


STARTED = "started"


def audit_line(time: str, who: str, action: str, from_version: str | None,
               to_version: str | None, result: str, seconds: float, run: str = "") -> str:
    """One audit record: the AUDIT_FIELDS, tab-separated, each flattened; '-' for no version;
    then the run's id, which ties a run's `started` line to its end line."""
    values = (time, who, action, from_version or "-", to_version or "-", result, f"{seconds:.1f}s")
    return "\t".join([*(flat(v, 200) or "-" for v in values), *([flat(run, 64)] if run else [])])


def audit_append(root: str, line: str) -> str:
    """Append one line to the host's audit log (creating .deliver when needed)."""
    return (f"mkdir -p {q(_lock_dir(root))} && "
            f"printf '%s\\n' {q(flat_line(line))} >> {q(_lock_dir(root))}/audit.log")


def flat_line(line: str) -> str:
    """A whole audit line: tabs kept (they separate fields), other control characters flattened."""
    return "\t".join(flat(part, 400) for part in line.split("\t"))


def audit_tail(root: str, lines: int) -> str:
    """The last `lines` lines of the audit log; exit NO_AUDIT_RC when there is none."""
    log = f"{_lock_dir(root)}/audit.log"
    return f"[ -f {q(log)} ] || exit {NO_AUDIT_RC}; tail -n {int(lines)} {q(log)}"


@dataclass
class Holder:
    """Who holds a lock, as read from a command's output (empty info: being taken/released)."""

    info: dict[str, Any] = field(default_factory=dict)
    age: float | None = None  # seconds, by the host's own clock

    def get(self, key: str, default: str = "?") -> str:
        value = self.info.get(key)
        return default if value in (None, "") else str(value)


def parse_holder(output: str) -> Holder | None:
    """The holder printed by acquire/release/status, or None when the output names none."""
    holder: Holder | None = None
    for line in output.splitlines():
        if line.startswith(HELD_MARK.rstrip()):
            text = line[len(HELD_MARK):].strip()
            try:
                info = json.loads(text) if text else {}
            except ValueError:
                info = {"unreadable": flat(text, 200)}
            holder = Holder(info if isinstance(info, dict) else {})
        elif line.startswith(CLOCK_MARK) and holder is not None:
            now, _, mtime = line[len(CLOCK_MARK):].partition(" ")
            if now.strip().isdigit() and mtime.strip().isdigit():
                holder.age = max(0.0, float(int(now) - int(mtime)))
    return holder


def parse_audit(line: str) -> dict[str, str] | None:
    """An audit line as a dict of AUDIT_FIELDS (and `run` when it has one), or None when it is not
    one of ours."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) not in (len(AUDIT_FIELDS), len(AUDIT_FIELDS) + 1):
        return None
    return {**dict(zip(AUDIT_FIELDS, parts, strict=False)), "run": "".join(parts[7:])}


def ended(records: list[dict[str, str]], holder_run: str = "") -> list[dict[str, str]]:
    """The records as history shows them: a run's `started` line is dropped once its end line
    is there; without one it says the run was interrupted (or still runs: it holds the lock)."""
    closed = {r["run"] for r in records if r.get("run") and r.get("result") != STARTED}
    shown = []
    for r in records:
        if r.get("result") == STARTED:
            if r["run"] in closed:
                continue
            r = {**r, "result": "running (holds the lock)" if r["run"] == holder_run
                 else "INTERRUPTED (started, no end recorded)"}
        shown.append(r)
    return shown


# ---- saying it to people (pure: the caller passes this machine's name and a pid check) ---------

UNLOCK_FORCE = "inv deploy.unlock --force"


HEARTBEAT = 60  # seconds: a run touches its lock this often
HEARTBEAT_LOST = 5 * HEARTBEAT  # no touch for this long: the run is gone


def heartbeat(root: str, token: str) -> str:
    """Touch the lock while this run (its token) holds it: the lock dir's mtime is the beat."""
    d = q(_lock_dir(root))
    return f'[ "$(head -n 1 {d}/lock/token 2>/dev/null)" = {q(token)} ] && touch {d}/lock || true'


def stale_reason(holder: Holder, machine: str, alive: Callable[[int], bool],
                 heartbeat_lost: float = HEARTBEAT_LOST) -> str:
    """Why nobody holds this lock any more ("" when it may be live). Age alone never decides: on
    this machine its run's pid decides; from elsewhere, a heartbeat (the lock touched every
    HEARTBEAT s) stopped for heartbeat_lost s. A manual lock is never stale: it is meant to stay
    until someone unlocks it."""
    info, age = holder.info, holder.age
    if not info:
        return "it has no details and is over a minute old" if (age or 0) > 60 else ""
    if info.get("action") == "manual":
        return ""
    pid = info.get("pid")
    if info.get("machine") == machine and isinstance(pid, int):
        return "" if alive(pid) else f"its run (pid {pid} on this machine) no longer runs"
    if age is not None and age > heartbeat_lost:
        return (f"its run's heartbeat stopped {ago(age)} ago (a run touches its lock every "
                f"{HEARTBEAT}s)")
    return ""


def describe(holder: Holder, stale: str = "") -> str:
    """One line about a lock's holder; `stale` (a stale_reason) marks it STALE and says why."""
    since = f" ({ago(holder.age)} ago)" if holder.age is not None else ""
    h = holder
    if not h.info:
        text = f"locked, no details yet (being taken or released right now){since}"
    else:
        what = ("with inv deploy.lock" if h.get("action") == "manual"
                else f"for {h.get('action')}" + (f" {h.get('version')}" if h.get("version", "") else ""))
        text = (f"locked by {h.get('user')}@{h.get('machine')} (pid {h.get('pid')}) {what} "
                f"since {h.get('started')}{since}")
        if h.get("message", ""):
            text += f': "{h.get("message")}"'
    return f"STALE lock ({stale}; {UNLOCK_FORCE} removes it): {text}" if stale else text


def refusal(stage: str, held: list[tuple[str, str]], total: int, stale: bool) -> str:
    """Why a run was refused: `held` is (host, describe(holder)) for each locked host."""
    lines = [f"refused: the deploy lock of stage {stage} is held on {len(held)} of {total} "
             "host(s) — nothing was changed"]
    lines += [f"  [{name}] {text}" for name, text in held]
    if stale:
        lines.append(f"next: if no run uses it any more, {UNLOCK_FORCE} removes a stale lock")
    else:
        lines.append("next: wait for the holder (--lock-wait SECONDS waits), see inv "
                     "deploy.lock-status; a lock taken with inv deploy.lock ends with inv deploy.unlock")
    return "\n".join(lines)


def shown_audit(rec: dict[str, str]) -> str:
    """An audit record as `history` prints it."""
    return "  ".join((rec["time"], rec["who"], rec["action"], f"{rec['from']} -> {rec['to']}",
                      rec["result"], rec["duration"]))


def ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
