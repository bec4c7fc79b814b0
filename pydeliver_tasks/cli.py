"""What every task module shares: the flag help texts and the bad-input guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
