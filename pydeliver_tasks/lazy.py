"""Modules loaded on first use. `inv --list` and `--help` import every task module; paramiko,
Fabric and GitPython are needed only once a task connects or reads git, so those modules (and our
modules built on them) are bound here at module level and loaded at their first attribute
access. test_layers counts `lazy.module("pydeliver_tasks....")` as an import."""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

_lock = threading.Lock()
_bound: list[ModuleType] = []  # what load_all loads: modules the fleet's threads use


def module(name: str, *, fleet: bool = True) -> ModuleType:
    """`name`, imported now if it already is, else at the first attribute access.

    fleet=False: first used in the main thread before any fleet thread starts (GitPython
    resolves the ref before a build's threads; the importer runs in the main thread), so
    load_all leaves it alone and a deploy or a ping never imports it (about 60 modules)."""
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        loader = importlib.util.LazyLoader(spec.loader)
        spec.loader = loader
        found = importlib.util.module_from_spec(spec)
        sys.modules[name] = found
        loader.exec_module(found)
        if fleet:
            _bound.append(found)
        return found


def load_all() -> None:
    """Load every module bound here, now, in this thread. Python 3.11's lazy modules are not
    safe to load from two threads at once: the fleet calls this before it starts its threads."""
    with _lock:
        for bound in _bound:
            getattr(bound, "__name__", None)  # the first attribute access runs the module
