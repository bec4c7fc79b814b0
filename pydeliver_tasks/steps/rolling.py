"""update by batches: each host gets the new release and a verified restart, batch after batch;
a failed batch can go back to what each of its hosts booted before."""

from __future__ import annotations

from typing import Any

from .. import store, strategy
from ..fleet import HostContext, HostFailure, HostResult
from ..model import Stage
from ..strategy import Strategy
from .common import settings_of
from .deploy import extract, upload
from .node import boot_version, start_node
from .recovery import force_stop_node


def update_by_batches(c: Any, version: str, st: Stage, rollout: Strategy,
                      json: str | None = None,
                      skipped: list[HostResult] | None = None) -> list[HostResult]:
    settings = settings_of(c)
    kind = settings.builder
    release = store.find(settings.store, settings.app, version)
    before: dict[str, str | None] = {}

    def one(hc: HostContext) -> str:
        before[hc.host.name] = boot_version(hc)
        extract(hc, release, upload(hc, release))
        force_stop_node(hc, kind)
        return f"{version} deployed; " + start_node(hc, kind, version)

    def back(hc: HostContext) -> str:
        previous = before.get(hc.host.name)
        old = store.get(settings.store, settings.app, previous) if previous else None
        if old is None or previous == version:
            raise HostFailure(f"no previous release to go back to (booted {previous or 'nothing'} "
                              "before)", hint="inv rollback --to VERSION")
        extract(hc, old, upload(hc, old))
        force_stop_node(hc, kind)
        return f"back on {previous}: " + start_node(hc, kind, previous)

    return strategy.each("update", settings, st, one, rollout, json_path=json, rollback=back,
                         command=f"inv deploy.release --version {version} --host {{host}} && "
                         "inv restart --host {host}",
                         rollback_command="inv rollback", skipped=skipped or [])
