"""pydeliver_tasks: Invoke/Fabric tasks that build, deploy, start and verify OTP releases.

    from pydeliver_tasks import ns          # the task collection (inv --list)
    from pydeliver_tasks import steps       # the same work as plain functions step(c, ...)
    from pydeliver_tasks import hooks       # @hooks.before("start") etc.
"""

from . import hooks, steps
from .tasks import ns

__all__ = ["ns", "steps", "hooks"]
__version__ = "0.1.0"
