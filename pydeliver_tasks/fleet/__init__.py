"""The fleet layer: how a step reaches hosts. `HostContext` (one host, its commands), `for_each_host`
(many hosts at once), `strategy` (batches), `lock` (the deploy lock and audit log), `hooks`
(user code around steps), `ssh` (connections and host keys), `pool` (the run's connection and
shell per host)."""

from .host import CommandResult, HostContext, HostFailure
from .output import PrefixedWriter, say
from .pool import close_connections
from .results import NOT_STARTED, HostResult, RunResult, StepFailed
from .run import HostStep, for_each_host

__all__ = ["CommandResult", "HostContext", "HostFailure", "HostResult", "HostStep", "NOT_STARTED",
           "PrefixedWriter", "RunResult", "StepFailed", "close_connections", "for_each_host", "say"]
