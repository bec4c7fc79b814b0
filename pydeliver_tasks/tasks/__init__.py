"""The Invoke collection (`inv --list`): thin tasks over `steps`, one module per topic — node,
release, upgrade, retention, lock, ops, migrate, importing, sandbox. Every task is made by
`flags.deliver_task` (docstring = --help, help for every flag, the rollout flags where they
apply)."""

from __future__ import annotations

import atexit
import copy
import gc
import sys
from types import TracebackType

from invoke import Collection

from ..config import DEFAULTS
from ..fleet.output import silence
from .balancer import balancer
from .importing import deliver
from .lock import history, lock_, lock_status, unlock
from .migrate import migrate, migrations
from .node import boot_check, doctor, kill_, ping, restart, start, stop, version
from .ops import eval_, exec_, logs, remote_console
from .release import build_release, deploy_release, releases, update
from .retention import cleanup, releases_collection, rollback
from .sandbox import sandbox
from .upgrade import build_upgrade, deploy_upgrade, downgrade, show_ns, upgrade

build = Collection("build")
build.add_task(build_release, name="release")
build.add_task(build_upgrade, name="upgrade")
deploy = Collection("deploy")
deploy.add_task(deploy_release, name="release")
deploy.add_task(deploy_upgrade, name="upgrade")
deploy.add_task(lock_, name="lock")
deploy.add_task(unlock, name="unlock")
deploy.add_task(lock_status, name="lock-status")

ns = Collection(start, stop, kill_, restart, ping, version, update, releases_collection(releases),
                cleanup, rollback, doctor, boot_check, logs, exec_, eval_, remote_console, upgrade,
                downgrade, migrate, migrations, build, deploy, deliver, balancer, show_ns, history,
                sandbox)
ns.configure({"deliver": copy.deepcopy(DEFAULTS)})


_previous_hook = sys.excepthook


def _quiet_broken_pipe(kind: type[BaseException], exc: BaseException,
                       tb: TracebackType | None) -> None:
    """`inv --list | head`: Invoke's own print meets a closed pipe; end quietly, no traceback
    (our own output already does: fleet.output.say)."""
    if issubclass(kind, BrokenPipeError):
        silence(sys.stdout)
        return
    _previous_hook(kind, exc, tb)


sys.excepthook = _quiet_broken_pipe


def _no_collection_at_exit() -> None:
    """At exit, the interpreter's own garbage collection passes over every object left (~0.08 s of
    each `inv` run, measured: a third of a ping's Python time after its last command); the OS frees
    the memory anyway. Python never promises to finalize objects still alive at exit, so nothing
    is lost: files and connections are closed by their owners (fleet.pool closes the SSH ones)."""
    gc.disable()
    gc.freeze()


atexit.register(_no_collection_at_exit)
