"""Hot-upgrade tasks: build.upgrade, deploy.upgrade, upgrade, downgrade, show.appup/relup."""

from __future__ import annotations

from invoke import Collection, Context
from invoke.exceptions import Exit

from .. import steps
from ..model import Rollout
from ..validation import InvalidInput
from .flags import DRY, HOST, JSON, STAGE, deliver_task

FROM = "the version running now (the relup upgrades from it)"
TO = "the version to upgrade to (latest: the newest release in the store)"


def manifest_dir(c: Context, from_: str, to: str) -> str:
    return f"{steps.settings_of(c).upgrade.appups_dir}/{from_}-{to}/"


def _need(**given: str | None) -> None:
    for name, value in given.items():
        if not value:
            raise InvalidInput(f"missing --{name.rstrip('_')} (see inv --help upgrade)")


@deliver_task(name="upgrade", help={"from_": FROM, "to": TO, "dry_run": DRY, "json": JSON,
                                    "tag": "git ref to build TO from (default: the tag TO)"})
def build_upgrade(c: Context, from_: str | None = None, to: str | None = None,
                  tag: str | None = None, dry_run: bool = False, json: str | None = None) -> None:
    """Build TO with a relup from FROM into the store (<app>_<TO>.upgrade.tar.gz).

    FROM is taken from the release store (built from its tag only when missing); appups are
    generated per changed application unless the project supplies one. Exit 1 when the upgrade
    is not hot-safe (the reasons are printed).
    """
    _need(from_=from_, to=to)
    assert from_ and to
    manifest = steps.build_upgrade(c, from_, to, tag=tag, dry_run=dry_run,
                                   json_path=json).manifest
    if manifest and manifest.unsafe and not dry_run:
        raise Exit(f"{from_} -> {to} is not hot-upgradable: " + "; ".join(manifest.unsafe)
                   + f" (inv upgrade falls back to a verified restart; or supply appups in "
                   f"{manifest_dir(c, from_, to)})", code=1)


@deliver_task(name="upgrade", help={"version": "upgrade version to stage (from the store)",
                                    "from_": "check the stored upgrade is from this version",
                                    "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON})
def deploy_upgrade(c: Context, version: str | None = None, from_: str | None = None,
                   stage: str | None = None, host: str | None = None, dry_run: bool = False,
                   json: str | None = None) -> None:
    """Upload a stored upgrade to every host and stage it beside the running release.

    The upload is sha256-verified. Nothing that runs or boots changes; inv upgrade installs it."""
    _need(version=version)
    assert version
    steps.deploy_upgrade(c, version, from_=from_, stage=stage, host=host, dry_run=dry_run,
                      json_path=json)


@deliver_task(rollout=True, help={
            "from_": FROM, "to": TO, "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON,
            "on_unsafe": "restart (verified restart into TO) or abort, when not hot-safe",
            "on_failure": "restart, downgrade (hot, back to FROM) or abort, when install or "
                          "verification fails",
            "force": "allow TO older than FROM",
            "rebuild": "build the upgrade again even if the store has it",
            "migrate": "run deliver.migrations.run on one node once TO is installed there, "
                       "before it is made permanent (a failure goes --on-failure)",
            "drain": "take each host out of the load balancer's rotation (deliver.balancer) "
                     "while it upgrades, one at a time; back once verified"})
def upgrade(c: Context, from_: str | None = None, to: str | None = None, stage: str | None = None,
            host: str | None = None, on_unsafe: str | None = None, on_failure: str | None = None,
            force: bool = False, rebuild: bool = False, dry_run: bool = False,
            json: str | None = None, migrate: bool = False, drain: bool = False,
            rollout: Rollout | None = None) -> None:
    """Hot-upgrade the running release from FROM to TO on every host, verified.

    Refuses before any change if a host does not run FROM. Per host: stage, install through
    release_handler, verify (same OS pid, new code loaded, health), make permanent.
    """
    _need(from_=from_, to=to)
    assert from_ and to
    steps.upgrade(c, from_, to, stage=stage, host=host, on_unsafe=on_unsafe,
                  on_failure=on_failure, force=force, rebuild=rebuild, dry_run=dry_run,
                  json_path=json, rollout=rollout, migrate=migrate, drain=drain)


@deliver_task(help={"to": "the release to go back to (installed hot before)", "stage": STAGE,
                    "host": HOST, "dry_run": DRY, "json": JSON})
def downgrade(c: Context, to: str | None = None, stage: str | None = None, host: str | None = None,
              dry_run: bool = False, json: str | None = None) -> None:
    """Hot-downgrade to TO through release_handler, verified (same pid, code, health)."""
    _need(to=to)
    assert to
    steps.downgrade(c, to, stage=stage, host=host, dry_run=dry_run, json_path=json)


@deliver_task(name="appup", help={"from_": FROM, "to": TO})
def show_appup(c: Context, from_: str | None = None, to: str | None = None) -> None:
    """Print the appups of FROM -> TO (generated or yours) and why it is not hot-safe, if so."""
    _need(from_=from_, to=to)
    assert from_ and to
    steps.show_appup(c, from_, to)


@deliver_task(name="relup", help={"version": "the upgrade version whose relup to print"})
def show_relup(c: Context, version: str | None = None) -> None:
    """Print the relup release_handler will run, from the stored upgrade tarball."""
    _need(version=version)
    assert version
    steps.show_relup(c, version)


show_ns = Collection("show")
show_ns.add_task(show_appup)
show_ns.add_task(show_relup)
