"""One host of `inv upgrade`: hot when it is safe, by the run's policies when it is not
(`on_unsafe`: restart or abort) or when the install or its checks fail (`on_failure`: restart,
downgrade or abort). Every outcome is said as read back from the host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..fleet import HostContext, HostFailure
from ..model import Release, UpgradeManifest
from ..otp.appup import appup_helps
from . import hot
from .equal import HoldsOldCode, NotHotSafe
from .evidence import InstallFailed, NodeDied, cause
from .migrate import Once
from .retention import mark
from .rotation import Rotation

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
    drain: bool = False  # --drain: each host out of the load balancer's rotation meanwhile


class HostUpgrade:
    """The per-host step of an upgrade run (a HostStep: call it with the host's context);
    `before` holds each host's pre-check data. rotation: the stage's load balancer, to drain
    away requests that pin old code and try once more (None: straight to on_unsafe)."""

    def __init__(self, settings: Settings, builder: str, policy: Policy,
                 before: dict[str, dict[str, Any]], upgrade: Release | None,
                 manifest: UpgradeManifest, restart: Callable[[HostContext], str],
                 rotation: Rotation | None = None) -> None:
        self.settings, self.builder, self.policy, self.before = settings, builder, policy, before
        self.upgrade, self.manifest, self.restart, self.rotation = (upgrade, manifest, restart,
                                                                    rotation)
        self.from_, self.to = policy.from_version, policy.to_version

    def __call__(self, hc: HostContext) -> Outcome:
        seen = self.before.get(hc.host.name, {})
        pid = seen.get("pid", "")
        data: dict[str, Any] = {"from": self.from_, "to": self.to, "pid_before": pid}
        if seen.get("done"):
            return f"already runs {self.to} (pid {pid}): nothing to do", {**data, "mode": "none"}
        reasons = list(self.manifest.unsafe) + (
            [seen["hot_blocker"]] if seen.get("hot_blocker") else [])
        if reasons:
            return self.not_hot(hc, "; ".join(reasons), data, all(map(appup_helps, reasons)))
        assert self.upgrade is not None
        staged = hot.stage(hc, self.upgrade, self.from_, self.manifest.new_lib_dirs)
        hc.say(f"staging {self.to}: {staged}")
        try:
            return self.hot_done(hc, self.install(hc, pid), data)
        except HoldsOldCode as exc:
            if self.rotation is None or self.rotation.balancer is None:
                return self.failed(hc, exc, data)
            return self.drained_retry(hc, exc, data)
        except HostFailure as exc:  # NotHotSafe included: judged from evidence first
            return self.failed(hc, exc, data)

    def install(self, hc: HostContext, pid: str) -> str:
        migrate = self.policy.migrations.on_node if self.policy.migrations else None
        return hot.install(hc, self.builder, self.to, pid, sorted(self.manifest.changed_apps),
                           self.manifest.new_lib_dirs, self.manifest.replacing(),
                           before_permanent=migrate)

    def hot_done(self, hc: HostContext, checked: str, data: dict[str, Any]) -> Outcome:
        mark(hc, self.to, failed=False)
        pid = data["pid_before"]
        return (f"hot-upgraded {self.from_} -> {self.to}, same pid {pid}; {checked}",
                {**data, "mode": "hot", "pid_after": pid})

    def drained_retry(self, hc: HostContext, exc: HoldsOldCode, data: dict[str, Any]) -> Outcome:
        """Requests in flight often hold the old code: out of rotation they end, then the
        install is tried once more (a restart fallback inside does not drain again); back in
        rotation once it is done."""
        assert self.rotation is not None
        hc.say(f"{exc.message}; taking it out of the load balancer's rotation so those requests "
               "end, then trying again")
        with self.rotation.out(hc):
            try:
                checked = self.install(hc, data["pid_before"])
            except HostFailure as again:
                return self.failed(hc, again, data)
            return self.hot_done(hc, checked, {**data, "drained": True})

    def not_hot(self, hc: HostContext, why: str, data: dict[str, Any],
                appups_help: bool = True) -> Outcome:
        from_, to = self.from_, self.to
        data["unsafe"] = why
        if self.policy.on_unsafe == "abort":
            by_restart = (f"restart into {to}: inv upgrade --from {from_} --to {to} --on-unsafe "
                          f"restart --host {hc.host.name}")
            raise HostFailure(f"not hot-upgradable: {why}; nothing was changed (--on-unsafe "
                              "abort)", hint=f"supply appups in {self.settings.upgrade.appups_dir}/"
                              f"{from_}-{to}/, or {by_restart}" if appups_help else by_restart,
                              data=data)
        hc.say(f"not hot-upgradable: {why}; doing a verified restart into {to} instead")
        return f"not hot-upgradable ({why}): {self.restart(hc)}", {**data, "mode": "restart"}

    def failed(self, hc: HostContext, exc: HostFailure, data: dict[str, Any]) -> Outcome:
        from_, to, policy, builder = self.from_, self.to, self.policy, self.builder
        seen = cause(hc, builder, exc)
        if isinstance(exc, NotHotSafe) and seen is exc:  # not a dead node that failed a check
            return self.not_hot(hc, exc.message, data)
        exc = seen
        hc.say(f"hot upgrade failed: {exc.message}")
        if exc.detail:
            hc.say(exc.detail)
        data["failure"] = exc.message
        if isinstance(exc, InstallFailed):
            hc.say(f"{from_} serves again: {hot.settle(hc, builder, from_)}")
        if policy.on_failure == "restart":
            done = self.restart(hc)
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
