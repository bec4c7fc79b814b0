"""What every task module shares: the flag help texts and the bad-input guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invoke.exceptions import Exit

from .validation import InvalidInput

STAGE = "stage to act on (default: deliver.stage, or the only stage)"
HOST = "act on this host only (as written in the stage's hosts, or its address)"
DRY = "print what would run on each host; change nothing, connect nowhere"
JSON = "also write the per-host summary as JSON to this file ('-' = stdout)"


@contextmanager
def cli_errors() -> Iterator[None]:
    """Bad input becomes a one-line error and exit code 2 — before any remote command."""
    try:
        yield
    except InvalidInput as exc:
        raise Exit(f"error: {exc}", code=2) from exc


# Rollout flags of host-changing tasks (deploy.release, start, restart, update, upgrade).
ROLLOUT_HELP = {
    "strategy": "parallel, rolling (batches, each verified before the next) or canary "
                "(first host(s) alone, then the rest); default: the stage's strategy config",
    "batch": "hosts per batch: N or P% (rolling default 1; canary: the rest, default all)",
    "pause": "seconds to wait between batches",
    "canary": "hosts in the canary batch (default 1)",
    "keep_going": "after a failure, still start new batches/hosts",
    "auto_rollback": "return a failed batch's hosts to the previous version, verified",
    "skip_unreachable": "go on without hosts that do not answer before the run (else: refuse)",
    "lock_wait": "seconds to wait when another run holds the deploy lock (default: refuse)",
}


def rollout(c: Any, stage: str | None, host: str | None, strategy: str | None = None,
            batch: str | None = None, pause: float | None = None, canary: int | None = None,
            keep_going: bool = False, auto_rollback: bool = False,
            skip_unreachable: bool = False, lock_wait: float | None = None) -> Any:
    """The Strategy of a run from its flags over the stage's config (bad values: exit 2)."""
    from . import strategy as strat
    from .steps.common import settings_of

    st = settings_of(c).stage(stage, host)
    return strat.resolve(st, strategy, batch, pause, canary, keep_going, auto_rollback,
                         skip_unreachable, lock_wait)
