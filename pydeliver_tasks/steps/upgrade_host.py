"""One host of `inv upgrade`: hot when it is safe, by the run's policies when it is not
(`on_unsafe`: restart or abort) or when the install or its checks fail (`on_failure`: restart,
downgrade or abort). Every outcome is said as read back from the host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..fleet import HostContext, HostFailure, HostStep
from ..model import Release, UpgradeManifest
from ..otp.appup import appup_helps
from . import hot
from .equal import NotHotSafe
from .evidence import InstallFailed, NodeDied, cause
from .migrate import Once
from .retention import mark

Outcome = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Policy:
    """One upgrade run's choices: from/to, what to do when a host is not hot-safe or fails."""

    from_version: str
    to_version: str
    on_unsafe: str
    on_failure: str
    rebuild: bool = False
    migrations: Once | None = None  # --migrate: run once, on the node, before make_permanent


def per_host(settings: Settings, builder: str, policy: Policy, before: dict[str, dict[str, Any]],
             upgrade: Release | None, manifest: UpgradeManifest,
             restart: Callable[[HostContext], str]) -> HostStep:
    """The per-host step of an upgrade run; `before` holds each host's pre-check data."""
    from_, to = policy.from_version, policy.to_version
    apps = sorted(manifest.changed_apps)
    migrate = policy.migrations.on_node if policy.migrations else None

    def one(hc: HostContext) -> Outcome:
        seen = before.get(hc.host.name, {})
        pid = seen.get("pid", "")
        data: dict[str, Any] = {"from": from_, "to": to, "pid_before": pid}
        if seen.get("done"):
            return f"already runs {to} (pid {pid}): nothing to do", {**data, "mode": "none"}
        reasons = list(manifest.unsafe) + ([seen["hot_blocker"]] if seen.get("hot_blocker") else [])
        if reasons:
            return not_hot(hc, "; ".join(reasons), data, all(map(appup_helps, reasons)))
        assert upgrade is not None
        hc.say(f"staging {to}: {hot.stage(hc, upgrade, from_, manifest.new_lib_dirs)}")
        try:
            checked = hot.install(hc, builder, to, pid, apps, manifest.new_lib_dirs,
                                  manifest.replacing(), before_permanent=migrate)
        except HostFailure as exc:  # NotHotSafe included: judged from evidence first
            return failed(hc, exc, data)
        mark(hc, to, failed=False)
        return (f"hot-upgraded {from_} -> {to}, same pid {pid}; {checked}",
                {**data, "mode": "hot", "pid_after": pid})

    def not_hot(hc: HostContext, why: str, data: dict[str, Any], appups_help: bool = True) -> Outcome:
        data["unsafe"] = why
        if policy.on_unsafe == "abort":
            by_restart = (f"restart into {to}: inv upgrade --from {from_} --to {to} --on-unsafe "
                          f"restart --host {hc.host.name}")
            raise HostFailure(f"not hot-upgradable: {why}; nothing was changed (--on-unsafe "
                              "abort)", hint=f"supply appups in {settings.upgrade.appups_dir}/"
                              f"{from_}-{to}/, or {by_restart}" if appups_help else by_restart,
                              data=data)
        hc.say(f"not hot-upgradable: {why}; doing a verified restart into {to} instead")
        return f"not hot-upgradable ({why}): {restart(hc)}", {**data, "mode": "restart"}

    def failed(hc: HostContext, exc: HostFailure, data: dict[str, Any]) -> Outcome:
        seen = cause(hc, builder, exc)
        if isinstance(exc, NotHotSafe) and seen is exc:  # not a dead node that failed a check
            return not_hot(hc, exc.message, data)
        exc = seen
        hc.say(f"hot upgrade failed: {exc.message}")
        if exc.detail:
            hc.say(exc.detail)
        data["failure"] = exc.message
        if isinstance(exc, InstallFailed):
            hc.say(f"{from_} serves again: {hot.settle(hc, builder, from_)}")
        if policy.on_failure == "restart":
            done = restart(hc)
            return f"hot upgrade failed ({exc.message}); {done}", {**data, "mode": "restart"}
        if isinstance(exc, NodeDied):  # said as read back: nothing runs to go back hot
            back = (f"left as it is (--on-failure {policy.on_failure}): "
                    f"{hot.as_it_is(hc, builder)}; inv start --host {hc.host.name} boots it")
        elif policy.on_failure == "downgrade":
            back = hot.back_to(hc, builder, from_, to)
        elif isinstance(exc, InstallFailed):
            back = f"{from_} serves (--on-failure abort)"
        else:  # said as read back: the node may have died since the check failed
            back = (f"left as it is (--on-failure abort): {hot.as_it_is(hc, builder)}; {to} "
                    f"was installed, not verified, not permanent; inv downgrade --to {from_} "
                    "goes back hot")
        mark(hc, to, failed=True)  # rollback skips it, cleanup removes it first
        raise HostFailure(f"hot upgrade failed: {exc.message}; {back}", exc.detail,
                          f"fix the upgrade, then run it again (inv show.appup --from "
                          f"{from_} --to {to})", data={**data, "mode": policy.on_failure}) from exc

    return one
