"""The steps: plain functions `step(c, ...)` with the same names and arguments as the tasks, so a
project's tasks.py can chain them (`steps.update(c, tag="1.2.0")`). Each returns a RunResult
(per-host results, summary, JSON; `release`/`manifest` for builds) and raises StepFailed (an
invoke Exit, code 1) after printing the per-host summary when a host failed; bad input raises
InvalidInput (exit 2) before any remote command.

    with steps.locked(c, "ship"):           # one deploy lock across a chain of steps
        built = steps.build_release(c, tag="1.2.0")
        steps.deploy_release(c, built.release.version)
        steps.restart(c)
"""

from ..fleet import RunResult, StepFailed
from .balancing import balancer_drain, balancer_enable, balancer_status
from .build import build_release
from .deploy import deploy_release
from .doctor import doctor
from .frame import Ctx, locked, over_stage, settings_of
from .importing import import_edeliver
from .lock import history, lock, lock_status, unlock
from .migrate import migrate, migrations
from .node import ping, restart, start, stop, version
from .ops import eval_, exec_, logs, remote_console
from .recovery import boot_check
from .retention import cleanup, cleanup_store, host_releases
from .rollback import rollback
from .show import releases, show_appup, show_relup
from .update import update
from .upgrade_build import build_upgrade
from .upgrading import deploy_upgrade, downgrade, upgrade

__all__ = [
    "Ctx", "RunResult", "StepFailed", "balancer_drain", "balancer_enable", "balancer_status",
    "boot_check", "build_release", "build_upgrade", "cleanup",
    "cleanup_store", "deploy_release", "deploy_upgrade", "doctor", "downgrade", "eval_", "exec_",
    "history", "host_releases", "import_edeliver", "lock", "lock_status", "locked", "logs",
    "migrate", "migrations", "over_stage", "ping", "releases", "remote_console", "restart",
    "rollback", "settings_of", "show_appup", "show_relup", "start", "stop", "unlock", "update",
    "upgrade", "version",
]
