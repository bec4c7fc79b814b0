"""update: build a release, deploy it and restart into it, verified — all hosts at once, or batch
by batch (rolling/canary): each host gets the new release and a verified restart before the next
batch starts, and a failed batch can go back to what each of its hosts booted before."""

from __future__ import annotations

from .. import store
from ..fleet.host import HostContext, HostFailure
from ..fleet.output import say
from ..fleet.results import RunResult
from ..model import NextStep, Rollout
from .build import build_release
from .control import force_stop_node, start_node
from .deploy import arrive, deploy_release, stored_release
from .frame import Ctx, Run, over_stage, settings_of
from .migrate import Once, before_restart
from .node import restart
from .probe import boot_version


def update(
    c: Ctx, tag: str | None = None, branch: str | None = None, revision: str | None = None,
    version: str | None = None, stage: str | None = None, host: str | None = None,
    dry_run: bool = False, json_path: str | None = None, rollout: Rollout | None = None,
    rebuild: bool = False, clean: bool = False, auto_version: str | None = None,
    migrate: bool = False,
) -> RunResult:
    """Build a release (unless the store has it from the same commit, see build_release),
    deploy it, and do a verified restart into it.

    With a rolling/canary rollout each batch is deployed and restarted before the next one, and
    a failed batch can go back to the version each host booted before (auto_rollback).
    migrate: deliver.migrations.run in a fresh VM of the new version on one host, after the
    deploy and before the first restart; when it fails, no node is restarted."""
    st = settings_of(c).stage(stage, host)  # refuse a bad stage/host before building anything
    built = build_release(c, tag=tag, branch=branch, revision=revision, version=version,
                          dry_run=dry_run, rebuild=rebuild, clean=clean,
                          auto_version=auto_version)
    vsn = built.release.version if built.release else (version or tag or "<built version>")
    if dry_run:
        then = " (after running the migrations in a fresh VM of it on one host)" if migrate else ""
        say(f"would deploy {vsn} to stage {st.name} and restart verified{then}")
        return built
    with over_stage(c, "update", stage, host, rollout, flow="update", json_path=json_path,
                    to_version=vsn) as run:
        if rollout is None or rollout.strategy == "parallel":
            deploy_release(c, vsn, stage=stage, host=host, rollout=rollout)
            if migrate:
                before_restart(run, vsn)
            result = restart(c, stage=stage, host=host, json_path=json_path, expect_version=vsn,
                             rollout=rollout)
            run.guard.record(result)
            run.result = result
            return result
        return by_batches(run, vsn, Once(run.settings, run.builder) if migrate else None)


def by_batches(run: Run, version: str, migrations: Once | None = None) -> RunResult:
    """Per host: deploy, force stop, verified start into VERSION; back to what it booted before
    when its batch fails and the rollout says auto_rollback. With `migrations`, the first host
    runs them in a fresh VM of VERSION before its node stops (the others go on without)."""
    settings, builder = run.settings, run.builder
    release = stored_release(settings.store, settings.release, version, dry_run=False)
    assert release is not None
    before: dict[str, str | None] = {}

    def one(hc: HostContext) -> str:
        before[hc.host.name] = boot_version(hc)
        arrive(hc, release)
        migrated = migrations.fresh(hc, version) + "; " if migrations else ""
        with run.out_of_rotation(hc):
            force_stop_node(hc, builder)
            return f"{version} deployed; {migrated}" + start_node(hc, builder, version)

    def back(hc: HostContext) -> str:
        previous = before.get(hc.host.name)
        old = store.get(settings.store, settings.release, previous) if previous else None
        if old is None or previous == version:
            raise HostFailure(f"no previous release to go back to (booted {previous or 'nothing'} "
                              "before)", hint="inv rollback --to VERSION")
        arrive(hc, old)
        force_stop_node(hc, builder)
        return f"back on {previous}: " + start_node(hc, builder, previous)

    return run.each(one, rollback=back,
                    finish=(NextStep("deploy.release", (("version", version),)),
                            NextStep("restart")),
                    undo=(NextStep("rollback"),))
