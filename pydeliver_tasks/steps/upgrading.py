"""upgrade / deploy.upgrade / downgrade: hot code upgrades that are verified or fall back.

`upgrade --from X --to Y`: check every host runs X (before anything changes anywhere), build the
upgrade unless the store has it, then per host: stage, install, verify, make permanent. An unsafe
upgrade (see `appup.plan`) or a host release_handler cannot take goes `on_unsafe`: restart into Y
(verified) or abort. A failed install/verification goes `on_failure`: restart into Y, downgrade to
X, or abort — and X serves in every case where Y does not.
"""

from __future__ import annotations

from typing import Any

from .. import autoversion, store, versions
from .. import validation as v
from ..config import ON_FAILURE, ON_UNSAFE, Settings
from ..fleet import HostContext, HostFailure, RunResult, say, strategy
from ..model import NextStep, Release, Rollout, UpgradeManifest
from ..store import sha256_of
from . import hot
from .frame import Ctx, Run, over_stage, settings_of, target
from .migrate import Once
from .probe import probe
from .upgrade_build import (
    build_upgrade,
    check_sources,
    check_user_appups,
    fetch_both,
    latest_to,
    manifest_path,
    stored_upgrade,
)
from .upgrade_host import HostUpgrade, Outcome, Policy


def _versions(from_: str, to: str, force: bool) -> None:
    v.version(from_)
    v.version(to)
    if from_ == to:
        raise v.InvalidInput(f"--from and --to are both {to}: nothing to upgrade")
    old, new = v.parsed_version(from_), v.parsed_version(to)
    if not force and not autoversion.ordered(from_, to):
        raise v.InvalidInput(f"cannot tell whether {to} is newer than {from_}: "
                             f"{versions.UNORDERED}; or --force to install it as an upgrade")
    if not force and old is not None and new is not None and new <= old:
        raise v.InvalidInput(f"{to} is not newer than {from_}: use inv downgrade --to {to}, "
                             "or --force to install an older release as an upgrade")


def _choice(name: str, value: str | None, allowed: tuple[str, ...], default: str) -> str:
    value = value or default
    if value not in allowed:
        raise v.InvalidInput(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _upgrade_release(c: Ctx, settings: Settings, from_: str, to: str, rebuild: bool,
                     dry_run: bool) -> tuple[Release | None, UpgradeManifest]:
    """The stored upgrade X -> Y, built first when missing (or when rebuild)."""
    found = None if rebuild else stored_upgrade(settings.store, settings.release, from_, to)
    if found and found[0] is None and store.get(settings.store, settings.release, to):
        say(f"using the stored plan for {from_} -> {to}: not hot-upgradable "
            "(after adding appups, run with --rebuild)")
        return found
    if found and found[0] is not None:
        rel, manifest = found
        if sha256_of(rel.path) != rel.sha256:
            raise v.InvalidInput(f"{rel.path} does not match its .sha256: the stored upgrade "
                                 "is damaged; rebuild it with --rebuild")
        say(f"using the stored upgrade {rel.path.name} ({from_} -> {to})")
        return rel, manifest
    built = build_upgrade(c, from_, to, dry_run=dry_run)
    assert built.manifest is not None
    return built.release, built.manifest


def upgrade(
    c: Ctx, from_: str, to: str, stage: str | None = None, host: str | None = None,
    on_unsafe: str | None = None, on_failure: str | None = None, keep_going: bool = False,
    force: bool = False, rebuild: bool = False, dry_run: bool = False,
    json_path: str | None = None, rollout: Rollout | None = None, migrate: bool = False,
    drain: bool = False,
) -> RunResult:
    """Hot-upgrade every host of the stage from X to Y, verified (steps' API of `inv upgrade`).

    rollout: the strategy (default: the stage's, with keep_going); a failed batch's hosts go back
    hot to X with rollout.auto_rollback. Runs under the deploy lock, audited per host.
    to: a version, or "latest" (the newest in the store).
    migrate: deliver.migrations.run on the node of the first host to get there, once Y is
    installed, before it is made permanent (a failure goes `on_failure`); the others wait for
    it and do not run them again.
    drain: each host out of the load balancer's rotation while it upgrades (a heavy upgrade)."""
    to = latest_to(settings_of(c), to)
    _versions(from_, to, force)
    settings, st, builder = target(c, stage, host)
    if drain and st.balancer is None:
        raise v.InvalidInput(f"--drain needs a load balancer: stage {st.name!r} has no "
                             "deliver.balancer")
    fetch_both(settings, from_, to, dry_run)
    check_user_appups(settings, from_, to)
    check_sources(settings, from_, to, rebuild)
    rollout = rollout or strategy.resolve(st, keep_going=keep_going)
    policy = Policy(from_, to,
                    _choice("on-unsafe", on_unsafe, ON_UNSAFE, settings.upgrade.on_unsafe),
                    _choice("on-failure", on_failure, ON_FAILURE, settings.upgrade.on_failure),
                    rebuild, Once(settings, builder) if migrate else None, drain)
    with over_stage(c, "upgrade", stage, host, rollout, flow="upgrade", dry_run=dry_run,
                    json_path=json_path, from_version=from_, to_version=to) as run:
        return _upgrade(c, run, policy)


def _upgrade(c: Ctx, run: Run, policy: Policy) -> RunResult:
    settings, builder = run.settings, run.builder
    from_, to = policy.from_version, policy.to_version
    pre = run.ask("upgrade: pre-check", lambda hc: hot.precheck(hc, builder, from_, to))
    before = {r.host: r.data for r in pre}
    if before and all(d.get("done") for d in before.values()):
        say(f"every host already runs {to}: nothing to do")
        run.result = pre
        return pre
    upgrade_rel, manifest = _upgrade_release(c, settings, from_, to, policy.rebuild, run.dry_run)
    if run.dry_run:
        def dry(hc: HostContext) -> str:
            hc.say(f"would stage {to} beside {from_} (sha256-checked), install it through "
                   "release_handler, verify it equals a fresh boot (pid, code, env, supervision "
                   "tree, error reports, health), make it permanent; on an unsafe "
                   f"upgrade: {policy.on_unsafe}, on a failure: {policy.on_failure}"
                   + ("; one host runs deliver.migrations.run before making it permanent"
                      if policy.migrations else "")
                   + ("; each host out of the load balancer's rotation meanwhile"
                      if policy.drain else ""))
            return "would hot-upgrade"

        return run.each(dry)
    new_rel = store.get(settings.store, settings.release, to)
    old_rel = store.get(settings.store, settings.release, from_)
    if new_rel is None:
        raise v.InvalidInput(f"{settings.release} {to} is missing from the release store: "
                             f"inv build.release --tag {to}")
    # a restart fallback never takes every host down at once (unless --strategy parallel)
    asked_parallel = run.rollout is not None and run.rollout.strategy == "parallel" \
        and run.rollout.asked
    gate = hot.RestartGate(serial=len(run.stage.hosts) > 1 and not asked_parallel)

    def restart(hc: HostContext) -> str:
        with gate.turn(hc.host.name), run.out_of_rotation(hc):
            return hot.restart_into(hc, builder, new_rel, old_rel)

    then = policy.migrations.after(restart) if policy.migrations else restart  # --migrate
    one = HostUpgrade(settings, builder, policy, before, upgrade_rel, manifest, then,
                      None if policy.drain else run.rotation)  # --drain: drained already

    def drained(hc: HostContext) -> Outcome:  # --drain: out of rotation around the whole upgrade
        with run.out_of_rotation(hc):
            return one(hc)

    return run.each(drained if policy.drain else one, rollback=lambda hc: hot.back_to(hc, builder, from_, to),
                    finish=(NextStep("upgrade", (("from", from_), ("to", to))),),
                    undo=(NextStep("downgrade", (("to", from_),)),))


def deploy_upgrade(c: Ctx, version: str, from_: str | None = None, stage: str | None = None,
                   host: str | None = None, dry_run: bool = False,
                   json_path: str | None = None) -> RunResult:
    """Upload the stored upgrade VERSION to every host and stage it beside the running release
    (sha256-verified); `inv upgrade` then installs it. Nothing that runs or boots changes.

    In a dry run an upgrade the store does not have yet (the build step before it in the same
    dry chain only said what it would build) is named, not refused."""
    v.version(version)
    settings, _, builder = target(c, stage, host)
    rel = store.get(settings.store, settings.release, version, "upgrade")
    mpath = manifest_path(settings.store, settings.release, version)
    if dry_run and (rel is None or not mpath.exists()):
        with over_stage(c, "deploy.upgrade", stage, host, flow="deploy", dry_run=True,
                        json_path=json_path, from_version=from_, to_version=version) as run:
            return run.each(lambda hc: f"would upload and stage the upgrade to {version} "
                            "(built by the step before) beside the running release")
    if rel is None or not mpath.exists():
        raise v.InvalidInput(f"no upgrade tarball for {settings.release} {version} in the store: "
                             f"inv build.upgrade --from OLD --to {version}")
    manifest = UpgradeManifest.load(mpath)
    if from_ and manifest.from_version != from_:
        raise v.InvalidInput(f"the stored upgrade to {version} is from {manifest.from_version}, "
                             f"not {from_}")
    if sha256_of(rel.path) != rel.sha256:
        raise v.InvalidInput(f"{rel.path} does not match its .sha256: rebuild it")

    def one(hc: HostContext) -> str:
        seen, data = hot.precheck(hc, builder, manifest.from_version, version)
        if data.get("done"):
            return f"{seen}: nothing to stage"
        return f"{version} staged beside {manifest.from_version}: " + hot.stage(
            hc, rel, manifest.from_version, manifest.new_lib_dirs)

    with over_stage(c, "deploy.upgrade", stage, host, flow="deploy", dry_run=dry_run,
                    json_path=json_path, from_version=manifest.from_version,
                    to_version=version) as run:
        return run.each(one)


def downgrade(c: Ctx, to: str, stage: str | None = None, host: str | None = None,
              dry_run: bool = False, json_path: str | None = None) -> RunResult:
    """Hot-downgrade every host to release TO, which release_handler must know from an earlier
    hot upgrade; verified like an upgrade (same pid, code, health)."""
    v.version(to)
    settings, st, builder = target(c, stage, host)
    apps = sorted({settings.app, *settings.upgrade.apps})

    def one(hc: HostContext) -> tuple[str, dict[str, Any]]:
        if hc.dry_run:
            hc.say(f"would install {to} through release_handler, make it permanent and verify")
            return "would downgrade", {}
        p = probe(hc, builder)
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
        rels = hot.releases(hc, builder)
        if rels.get(to) not in ("old", "permanent"):
            seen = ", ".join(f"{k} {s}" for k, s in rels.items()) or "release_handler not running"
            raise HostFailure(
                f"release_handler does not know {to} as a release this node ran ({seen}): a hot "
                "downgrade needs a release that was installed hot before",
                hint=f"deploy it and restart: inv deploy.release --version {to} && inv restart")
        checked = hot.install(hc, builder, to, pid, apps, [])
        return (f"hot-downgraded {running} -> {to}, same pid {pid}; {checked}",
                {"pid": pid, "from": running, "to": to})

    with over_stage(c, "downgrade", stage, host, flow="downgrade", dry_run=dry_run,
                    json_path=json_path, to_version=to) as run:
        return run.each(one)
