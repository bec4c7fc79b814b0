"""balancer.status / drain / enable (steps.balancing)."""

from __future__ import annotations

from invoke import Collection, Context

from .. import steps
from .flags import DRY, HOST, STAGE, deliver_task


@deliver_task(name="status", help={"stage": STAGE})
def status(c: Context, stage: str | None = None) -> None:
    """Show each server of the stage's load balancer backend: UP / DRAIN / MAINT / DOWN."""
    steps.balancer_status(c, stage=stage)


@deliver_task(name="drain", help={"stage": STAGE, "host": HOST, "dry_run": DRY})
def drain(c: Context, stage: str | None = None, host: str | None = None,
          dry_run: bool = False) -> None:
    """Take hosts out of the load balancer's rotation (never below deliver.balancer.min_up)."""
    steps.balancer_drain(c, stage=stage, host=host, dry_run=dry_run)


@deliver_task(name="enable", help={"stage": STAGE, "host": HOST, "dry_run": DRY})
def enable(c: Context, stage: str | None = None, host: str | None = None,
           dry_run: bool = False) -> None:
    """Put hosts back in the load balancer's rotation, each once its check says UP."""
    steps.balancer_enable(c, stage=stage, host=host, dry_run=dry_run)


balancer = Collection("balancer")
for t in (status, drain, enable):
    balancer.add_task(t)
