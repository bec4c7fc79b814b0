"""What every step starts with: the validated settings, the chosen hosts, the node flavor."""

from __future__ import annotations

from typing import Any

from .. import config
from ..config import Settings
from ..model import Stage
from ..validation import InvalidInput


def settings_of(c: Any) -> Settings:
    """The `deliver` subtree of an Invoke context (or a plain dict), validated."""
    return config.load(c.config if hasattr(c, "config") else c)


def flavor(settings: Settings) -> str:
    """mix or rebar3: decides the start script's commands (rpc vs eval, log and pipe dirs)."""
    if settings.builder not in ("mix", "rebar3"):
        raise InvalidInput(
            f"cannot tell whether {settings.project_dir} is a mix or rebar3 project "
            "(no mix.exs or rebar.config): set deliver.builder to mix or rebar3"
        )
    return settings.builder


def locked(settings: Settings, st: Stage, action: str, *, from_version: str | None = None,
           to_version: str | None = None, dry_run: bool = False, lock_wait: float = 0.0) -> Any:
    """The deploy lock + audit log around a host-changing step (see guard.guarded)."""
    from ..guard import guarded

    return guarded(settings, st, action, from_version=from_version, to_version=to_version,
                   dry_run=dry_run, lock_wait=lock_wait)


def target(c: Any, stage: str | None, host: str | None) -> tuple[Settings, Stage, str]:
    """Settings, the stage narrowed to --host, and the flavor — all checked before any remote."""
    settings = settings_of(c)
    return settings, settings.stage(stage, host), flavor(settings)
