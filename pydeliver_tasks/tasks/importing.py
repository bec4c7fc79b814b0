"""deliver.import: move an edeliver project over (steps.importing)."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, Context

from .. import steps
from .flags import deliver_task


@deliver_task(name="import", help={
    "source": "the edeliver config to read (default .deliver/config)",
    "accept_partial": "write what was mapped even when some lines were not (they are listed)",
    "force": "replace an existing invoke.yaml"})
def import_(c: Context, source: str = ".deliver/config", accept_partial: bool = False,
            force: bool = False) -> None:
    """Read edeliver's .deliver/config (never run it) and write invoke.yaml and tasks.py.

    Every line is reported: mapped to which deliver key, or not mapped and why (exit 1, nothing
    written, unless --accept-partial)."""
    steps.import_edeliver(Path(c.cwd or ".").resolve(), source, accept_partial, force)


deliver = Collection("deliver")
deliver.add_task(import_, name="import")
