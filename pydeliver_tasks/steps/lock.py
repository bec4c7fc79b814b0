"""The deploy lock by hand, and the audit log: lock_status, lock (action "manual", kept until
unlock), unlock, history. The lock itself (taken around every host-changing run) is
fleet/lock.py; `frame.locked` holds it across a user's own chain of steps."""

from __future__ import annotations

from typing import Any

from ..commands import lock as cmds
from ..fleet.host import HostContext, HostFailure
from ..fleet.lock import (
    append_audit,
    check_message,
    describe,
    holder_info,
    stale_reason,
    take,
    utc_now,
    who,
)
from ..fleet.results import RunResult
from ..fleet.run import for_each_host
from ..validation import lines_count
from .frame import Ctx, settings_of


def _holder(hc: HostContext) -> cmds.Holder | None:
    res = hc.run(cmds.status(hc.host.deploy_path), changes=False)
    if not res.ok:
        raise HostFailure(f"could not read the deploy lock (exit {res.exited})", res.tail())
    return cmds.parse_holder(res.stdout)


def lock_status(c: Ctx, stage: str | None = None, host: str | None = None,
                json_path: str | None = None) -> RunResult:
    """Show, per host, whether the deploy lock is held, by whom, since when, why — or stale."""
    settings = settings_of(c)
    st = settings.stage(stage, host)

    def one(hc: HostContext) -> tuple[str, dict[str, Any]]:
        holder = _holder(hc)
        if holder is None:
            return cmds.UNLOCKED, {"locked": False}
        shown = {k: v for k, v in holder.info.items() if k != "token"}
        return describe(holder), {"locked": True, "stale": bool(stale_reason(holder)),
                                  "age_seconds": holder.age, **shown}

    return for_each_host("lock-status", settings, st.name, st.hosts, one, json_path=json_path)


def lock(c: Ctx, message: str | None = None, stage: str | None = None, host: str | None = None,
         lock_wait: float = 0.0, json_path: str | None = None) -> RunResult:
    """Take the deploy lock on every host (action "manual", all or nothing) and leave it: every
    other run is refused until `unlock`."""
    text = check_message(message, required=True)
    settings = settings_of(c)
    st = settings.stage(stage, host)
    info = holder_info("manual", None, text, st.name)
    take(settings, st, info, lock_wait, keep=False)  # nobody's run: not even this process reuses it
    line = cmds.audit_line(info["started"], "@".join(who()), "lock", None, None, "ok", 0.0)

    def one(hc: HostContext) -> str:
        append_audit(hc, line)
        return f'locked: "{text}" (inv deploy.unlock releases it)'

    return for_each_host("lock", settings, st.name, st.hosts, one, json_path=json_path)


def unlock(c: Ctx, force: bool = False, stage: str | None = None, host: str | None = None,
           json_path: str | None = None) -> RunResult:
    """Release a lock taken with `lock`; a run's lock (stale after a crash) only with force."""
    settings = settings_of(c)
    st = settings.stage(stage, host)
    user_at = "@".join(who())

    def one(hc: HostContext) -> str:
        holder = _holder(hc)
        if holder is None:
            return "was not locked"
        if holder.info.get("action") != "manual" and not force:
            raise HostFailure(f"not taken with inv deploy.lock, kept: {describe(holder)}", hint=""
                              if stale_reason(holder) else f"if its run is over: {cmds.UNLOCK_FORCE}")
        res = hc.run(cmds.release(hc.host.deploy_path, holder.get("token", ""), force=force))
        now = cmds.parse_holder(res.stdout) if res.exited == cmds.NOT_OWNER_RC else None
        if now or not res.ok:
            raise HostFailure(f"the lock changed hands meanwhile, kept: {describe(now)}" if now else
                              f"could not remove the deploy lock (exit {res.exited})", res.tail())
        if cmds.RELEASED not in res.stdout:
            return "was not locked"
        append_audit(hc, cmds.audit_line(utc_now(), user_at, "unlock --force" if force else "unlock",
                                   None, None, "ok", 0.0))
        return f"unlocked (was {describe(holder)})"

    return for_each_host("unlock", settings, st.name, st.hosts, one, json_path=json_path)


def history(c: Ctx, lines: int = 20, stage: str | None = None, host: str | None = None,
            json_path: str | None = None) -> RunResult:
    """Show the last LINES audit records of every host: time, who, action, versions, result."""
    lines = lines_count(lines)
    settings = settings_of(c)
    st = settings.stage(stage, host)

    def one(hc: HostContext) -> tuple[str, dict[str, Any]]:
        # a run writes two lines (started, its end): read enough for `lines` records
        res = hc.run(cmds.audit_tail(hc.host.deploy_path, 2 * lines), changes=False)
        if res.exited == cmds.NO_AUDIT_RC:
            return "no audit log yet: nothing recorded on this host", {"entries": []}
        if not res.ok:
            raise HostFailure(f"could not read the audit log (exit {res.exited})", res.tail())
        parsed = [cmds.parse_audit(text) or {"raw": text, "result": ""}
                  for text in res.stdout.splitlines()]
        # a run whose lock is stale (its pid gone, its heartbeat stopped) no longer runs
        holder = _holder(hc)
        live = holder.get("token", "") if holder and not stale_reason(holder) else ""
        entries = cmds.ended(parsed, live)[-lines:]
        for e in entries:
            hc.say(e["raw"] if "raw" in e else cmds.shown_audit(e))
        return f"{len(entries)} record(s) of {hc.host.deploy_path}/{cmds.AUDIT}", {"entries": entries}

    return for_each_host("history", settings, st.name, st.hosts, one, json_path=json_path)
