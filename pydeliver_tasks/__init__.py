"""pydeliver_tasks: Invoke/Fabric tasks that build, deploy, start and verify OTP releases.

    from pydeliver_tasks import ns          # the task collection (inv --list)
    from pydeliver_tasks import steps       # the same work as plain functions step(c, ...)
    from pydeliver_tasks import hooks       # @hooks.before("start"), @hooks.before_run("upgrade")

The layers, each a folder, imports pointing down only: tasks -> steps -> fleet -> commands, otp
-> config, model, validation, store (docs/architecture.md).
"""

from . import steps
from .fleet import hooks
from .tasks import ns

__all__ = ["ns", "steps", "hooks"]
__version__ = "0.1.0"
