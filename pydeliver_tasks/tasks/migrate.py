"""Migration tasks: migrate, migrations — thin wrappers over the steps of the same names."""

from __future__ import annotations

from invoke import Context

from .. import steps
from .flags import DRY, JSON, STAGE, deliver_task

ONE_HOST = "run on this host's node (default: the first host whose node answers)"


@deliver_task(help={"down": "undo migrations instead: deliver.migrations.down with --to",
                    "to": "with --down: the migration/version to go back to (fills {to})",
                    "stage": STAGE, "host": ONE_HOST, "dry_run": DRY, "json": JSON})
def migrate(c: Context, down: bool = False, to: str | None = None, stage: str | None = None,
            host: str | None = None, dry_run: bool = False, json: str | None = None) -> None:
    """Run the release's migrations on one node of the stage (deliver.migrations.run).

    Evaluated on the running node of ONE host — the first whose node answers, or --host — with
    the release's code and env, under the deploy lock; prints what the expression returns.
    --down --to V evaluates deliver.migrations.down with {to} = V instead.
    """
    steps.migrate(c, down=down, to=to, stage=stage, host=host, dry_run=dry_run, json_path=json)


@deliver_task(help={"stage": STAGE, "host": ONE_HOST, "json": JSON})
def migrations(c: Context, stage: str | None = None, host: str | None = None,
               json: str | None = None) -> None:
    """Show the pending migrations, asked on one running node (deliver.migrations.pending).

    Read-only: no deploy lock. Prints what the expression returns, with the host's prefix.
    """
    steps.migrations(c, stage=stage, host=host, json_path=json)
