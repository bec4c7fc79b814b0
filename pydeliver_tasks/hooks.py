"""Before/after hooks around each step, as Python callables or shell commands from config.

Python hooks are registered in the user's tasks.py:

    from pydeliver_tasks import hooks

    @hooks.before("start")
    def warn_chat(hc):
        hc.say("starting")           # hc: the HostContext of the host being started

Shell hooks come from `deliver.hooks` (e.g. `before_start: ["./bin/check"]`) and run on the same
host, in the release root (build dir for build-side steps), with the stage's env.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import commands
from .config import HOOK_STEPS

if TYPE_CHECKING:
    from .fleet import HostContext

Hook = Callable[["HostContext"], object]
_registry: dict[str, list[Hook]] = defaultdict(list)


def register(when: str, step: str, fn: Hook) -> Hook:
    if when not in ("before", "after") or step not in HOOK_STEPS:
        raise ValueError(f"unknown hook {when}_{step}: steps are {', '.join(HOOK_STEPS)}")
    _registry[f"{when}_{step}"].append(fn)
    return fn


def before(step: str) -> Callable[[Hook], Hook]:
    return lambda fn: register("before", step, fn)


def after(step: str) -> Callable[[Hook], Hook]:
    return lambda fn: register("after", step, fn)


def clear() -> None:
    _registry.clear()


def run(hc: HostContext, when: str, step: str, root: str) -> None:
    """Run the Python hooks, then the configured shell hooks; a failing hook fails the step."""
    from .fleet import HostFailure

    name = f"{when}_{step}"
    for fn in _registry.get(name, []):
        if hc.dry_run:  # a Python hook may do anything: a dry run only names it
            hc.say(f"would call {name} hook {getattr(fn, '__name__', fn)!s}")
            continue
        fn(hc)
    for cmd in hc.settings.hooks.get(name, ()):
        res = hc.run(commands.hook(root, hc.host.env, cmd))
        if not res.ok:
            raise HostFailure(
                f"{name} hook failed (exit {res.exited}): {cmd}", res.tail(),
                f"fix the hook or remove it from deliver.hooks.{name}",
            )
        if res.stdout.strip():
            hc.say(res.stdout.rstrip())
