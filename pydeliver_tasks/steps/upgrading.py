"""upgrade / deploy.upgrade / downgrade: hot code upgrades that are verified or fall back.

`upgrade --from X --to Y`: check every host runs X (before anything changes anywhere), build the
upgrade unless the store has it, then per host: stage, install, verify, make permanent. An unsafe
upgrade (see `appup.plan`) or a host release_handler cannot take goes `on_unsafe`: restart into Y
(verified) or abort. A failed install/verification goes `on_failure`: restart into Y, downgrade to
X, or abort — and X serves in every case where Y does not.
"""

from __future__ import annotations

from typing import Any

from .. import store, strategy
from .. import validation as v
from ..config import ON_FAILURE, ON_UNSAFE
from ..fleet import HostContext, HostFailure, HostResult, for_each_host
from ..strategy import Strategy
from . import hot
from .build import sha256_of
from .common import flavor, locked, target
from .equal import NotHotSafe
from .node import probe
from .upgrade_build import UpgradeManifest, build_upgrade, check_user_appups, manifest_path, stored_upgrade


def _versions(from_: str, to: str, force: bool) -> None:
    v.version(from_)
    v.version(to)
    if from_ == to:
        raise v.InvalidInput(f"--from and --to are both {to}: nothing to upgrade")
    old, new = v.parsed_version(from_), v.parsed_version(to)
    if not force and old is not None and new is not None and new <= old:
        raise v.InvalidInput(f"{to} is not newer than {from_}: use inv downgrade --to {to}, "
                             "or --force to install an older release as an upgrade")


def _choice(name: str, value: str | None, allowed: tuple[str, ...], default: str) -> str:
    value = value or default
    if value not in allowed:
        raise v.InvalidInput(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _upgrade_release(c: Any, settings: Any, from_: str, to: str, rebuild: bool,
                     dry_run: bool) -> tuple[Any, UpgradeManifest]:
    """The stored upgrade X -> Y, built first when missing (or when rebuild)."""
    found = None if rebuild else stored_upgrade(settings.store, settings.app, from_, to)
    if found and found[0] is None and store.get(settings.store, settings.app, to):
        print(f"using the stored plan for {from_} -> {to}: not hot-upgradable "
              "(after adding appups, run with --rebuild)", flush=True)
        return found
    if found and found[0] is not None:
        rel, manifest = found
        if sha256_of(rel.path) != rel.sha256:
            raise v.InvalidInput(f"{rel.path} does not match its .sha256: the stored upgrade "
                                 "is damaged; rebuild it with --rebuild")
        print(f"using the stored upgrade {rel.path.name} ({from_} -> {to})", flush=True)
        return rel, manifest
    return build_upgrade(c, from_, to, dry_run=dry_run)


def upgrade(
    c: Any, from_: str, to: str, stage: str | None = None, host: str | None = None,
    on_unsafe: str | None = None, on_failure: str | None = None, keep_going: bool = False,
    force: bool = False, rebuild: bool = False, dry_run: bool = False, json: str | None = None,
    rollout: Strategy | None = None,
) -> list[HostResult]:
    """Hot-upgrade every host of the stage from X to Y, verified (steps' API of `inv upgrade`).

    rollout: the strategy (default: the stage's, with keep_going); a failed batch's hosts go back
    hot to X with rollout.auto_rollback. Runs under the deploy lock, audited per host."""
    _versions(from_, to, force)
    settings, st, _ = target(c, stage, host)
    check_user_appups(settings, from_, to)
    rollout = rollout or strategy.resolve(st, keep_going=keep_going)
    on_unsafe = _choice("on-unsafe", on_unsafe, ON_UNSAFE, settings.upgrade.on_unsafe)
    on_failure = _choice("on-failure", on_failure, ON_FAILURE, settings.upgrade.on_failure)
    st, skipped = strategy.reachable("upgrade", settings, st, rollout, dry_run)
    with locked(settings, st, "upgrade", from_version=from_, to_version=to, dry_run=dry_run,
                lock_wait=rollout.lock_wait) as audit:
        results = _upgrade(c, settings, st, from_, to, on_unsafe, on_failure, rebuild, dry_run,
                           json, rollout, skipped)
        audit.record(results)
        return results


def _upgrade(
    c: Any, settings: Any, st: Any, from_: str, to: str, on_unsafe: str, on_failure: str,
    rebuild: bool, dry_run: bool, json: str | None, rollout: Strategy,
    skipped: list[HostResult],
) -> list[HostResult]:
    kind = flavor(settings)
    pre = for_each_host("upgrade: pre-check", settings, st.name, st.hosts,
                        lambda hc: hot.precheck(hc, kind, from_, to), dry_run=dry_run)
    before = {r.host: r.data for r in pre}
    if before and all(d.get("done") for d in before.values()):
        print(f"every host already runs {to}: nothing to do", flush=True)
        return pre
    upgrade_rel, manifest = _upgrade_release(c, settings, from_, to, rebuild, dry_run)
    new_rel = store.get(settings.store, settings.app, to)
    old_rel = store.get(settings.store, settings.app, from_)
    if dry_run:
        def plan(hc: HostContext) -> str:
            hc.say(f"would stage {to} beside {from_} (sha256-checked), install it through "
                   "release_handler, verify it equals a fresh boot (pid, code, env, supervision "
                   "tree, error reports, health), make it permanent; on an unsafe "
                   f"upgrade: {on_unsafe}, on a failure: {on_failure}")
            return "would hot-upgrade"

        return for_each_host("upgrade", settings, st.name, st.hosts, plan, dry_run=True,
                             json_path=json)
    if new_rel is None:
        raise v.InvalidInput(f"{settings.app} {to} is missing from the release store: "
                             f"inv build.release --tag {to}")
    apps = sorted(manifest.changed_apps)
    # a restart fallback never takes every host down at once (unless --strategy parallel)
    gate = hot.RestartGate(serial=len(st.hosts) > 1 and not (rollout.kind == "parallel"
                                                               and rollout.asked))

    def restart(hc: HostContext) -> str:
        with gate.turn(hc.host.name):
            return hot.restart_into(hc, kind, new_rel, old_rel)

    def one(hc: HostContext) -> tuple[str, dict[str, Any]]:
        seen = before.get(hc.host.name, {})
        pid = seen.get("pid", "")
        reasons = list(manifest.unsafe) + ([seen["hot_blocker"]] if seen.get("hot_blocker") else [])
        data: dict[str, Any] = {"from": from_, "to": to, "pid_before": pid}
        if seen.get("done"):
            return f"already runs {to} (pid {pid}): nothing to do", {**data, "mode": "none"}

        def not_hot(why: str) -> tuple[str, dict[str, Any]]:
            data["unsafe"] = why
            if on_unsafe == "abort":
                raise HostFailure(f"not hot-upgradable: {why}; nothing was changed (--on-unsafe "
                                  "abort)", hint=f"inv upgrade ... --on-unsafe restart, or supply "
                                  f"appups in {settings.upgrade.appups_dir}/{from_}-{to}/",
                                  data=data)
            hc.say(f"not hot-upgradable: {why}; doing a verified restart into {to} instead")
            return f"not hot-upgradable ({why}): {restart(hc)}", {**data, "mode": "restart"}

        if reasons:
            return not_hot("; ".join(reasons))
        assert upgrade_rel is not None
        hc.say(f"staging {to}: {hot.stage(hc, upgrade_rel, from_, manifest.new_lib_dirs)}")
        try:
            checked = hot.install(hc, kind, (settings.app, to), pid, apps, manifest.new_lib_dirs,
                                  manifest.replacing())
        except NotHotSafe as exc:
            return not_hot(exc.message)
        except HostFailure as exc:
            hc.say(f"hot upgrade failed: {exc.message}")
            if exc.detail:
                hc.say(exc.detail)
            data["failure"] = exc.message
            if isinstance(exc, hot.InstallFailed):
                hc.say(f"{from_} serves again: {hot.settle(hc, kind, from_)}")
            if on_failure == "restart":
                done = restart(hc)
                return f"hot upgrade failed ({exc.message}); {done}", {**data, "mode": "restart"}
            if on_failure == "downgrade":
                back = hot.back_to(hc, kind, from_, to)
            elif isinstance(exc, hot.InstallFailed):
                back = f"{from_} serves (--on-failure abort)"
            else:  # said as read back: the node may have died since the check failed
                back = (f"left as it is (--on-failure abort): {hot.as_it_is(hc, kind)}; {to} "
                        f"was installed, not verified, not permanent; inv downgrade --to {from_} "
                        "goes back hot")
            hot.mark(hc, to, failed=True)  # rollback skips it, cleanup removes it first
            raise HostFailure(f"hot upgrade failed: {exc.message}; {back}", exc.detail,
                              f"fix the upgrade, then run it again (inv show.appup --from "
                              f"{from_} --to {to})", data={**data, "mode": on_failure}) from exc
        hot.mark(hc, to, failed=False)
        return (f"hot-upgraded {from_} -> {to}, same pid {pid}; {checked}",
                {**data, "mode": "hot", "pid_after": pid})

    return strategy.each("upgrade", settings, st, one, rollout, json_path=json,
                         rollback=lambda hc: hot.back_to(hc, kind, from_, to),
                         command=f"inv upgrade --from {from_} --to {to}",
                         rollback_command=f"inv downgrade --to {from_}", skipped=skipped)


def deploy_upgrade(c: Any, version: str, from_: str | None = None, stage: str | None = None,
                   host: str | None = None, dry_run: bool = False,
                   json: str | None = None) -> list[HostResult]:
    """Upload the stored upgrade VERSION to every host and stage it beside the running release
    (sha256-verified); `inv upgrade` then installs it. Nothing that runs or boots changes."""
    v.version(version)
    settings, st, kind = target(c, stage, host)
    rel = store.get(settings.store, settings.app, version, "upgrade")
    mpath = manifest_path(settings.store, settings.app, version)
    if rel is None or not mpath.exists():
        raise v.InvalidInput(f"no upgrade tarball for {settings.app} {version} in the store: "
                             f"inv build.upgrade --from OLD --to {version}")
    manifest = UpgradeManifest.load(mpath)
    if from_ and manifest.old != from_:
        raise v.InvalidInput(f"the stored upgrade to {version} is from {manifest.old}, not {from_}")
    if sha256_of(rel.path) != rel.sha256:
        raise v.InvalidInput(f"{rel.path} does not match its .sha256: rebuild it")

    def one(hc: HostContext) -> str:
        seen, data = hot.precheck(hc, kind, manifest.old, version)
        if data.get("done"):
            return f"{seen}: nothing to stage"
        return f"{version} staged beside {manifest.old}: " + hot.stage(
            hc, rel, manifest.old, manifest.new_lib_dirs)

    with locked(settings, st, "deploy.upgrade", from_version=manifest.old, to_version=version,
                dry_run=dry_run) as audit:
        results = for_each_host("deploy.upgrade", settings, st.name, st.hosts, one,
                                dry_run=dry_run, json_path=json)
        audit.record(results)
        return results


def downgrade(c: Any, to: str, stage: str | None = None, host: str | None = None,
              dry_run: bool = False, json: str | None = None) -> list[HostResult]:
    """Hot-downgrade every host to release TO, which release_handler must know from an earlier
    hot upgrade; verified like an upgrade (same pid, code, health)."""
    v.version(to)
    settings, st, kind = target(c, stage, host)
    apps = sorted({settings.app, *settings.upgrade.apps})

    def one(hc: HostContext) -> tuple[str, dict[str, Any]]:
        if hc.dry_run:
            hc.say(f"would install {to} through release_handler, make it permanent and verify")
            return "would downgrade", {}
        p = probe(hc, kind)
        if not p.app_started:
            raise HostFailure("the node is not running: nothing to downgrade",
                              hint=f"inv doctor --host {hc.host.name}")
        facts = p.facts or {}
        if facts["vsn"] == to:
            return f"already running {to} (pid {facts['pid']})", {"pid": facts["pid"]}
        running, pid = facts["vsn"], facts["pid"]
        older, newer = v.parsed_version(to), v.parsed_version(running)
        if older is not None and newer is not None and older > newer:
            raise HostFailure(f"{to} is newer than the running {running}: that is an upgrade",
                              hint=f"inv upgrade --from {running} --to {to}")
        rels = hot.releases(hc, kind)
        if rels.get(to) not in ("old", "permanent"):
            seen = ", ".join(f"{k} {s}" for k, s in rels.items()) or "release_handler not running"
            raise HostFailure(
                f"release_handler does not know {to} as a release this node ran ({seen}): a hot "
                "downgrade needs a release that was installed hot before",
                hint=f"deploy it and restart: inv deploy.release --version {to} && inv restart")
        checked = hot.install(hc, kind, (settings.app, to), pid, apps, [])
        return (f"hot-downgraded {running} -> {to}, same pid {pid}; {checked}",
                {"pid": pid, "from": running, "to": to})

    with locked(settings, st, "downgrade", to_version=to, dry_run=dry_run) as audit:
        results = for_each_host("downgrade", settings, st.name, st.hosts, one,
                                dry_run=dry_run, json_path=json)
        audit.record(results)
        return results
