"""Which of our hooks each edeliver hook function becomes, and the commands it brings along.

edeliver calls `pre_<step>`/`post_<step>` functions from .deliver/config around its own steps
(`__exec_if_defined` in its libexec scripts). Our steps are cut differently, so each one maps to
the hook that runs at the nearest point, and where that point differs the report says how.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass

from .bash import ParsedFile
from .findings import Finding, mapped, not_mapped
from .translate import translate


@dataclass(frozen=True)
class HookSpec:
    key: str  # our hook key; "" when it is not mapped
    context: str  # where ours runs: "build" (build.path), "work" (work tree), "deploy" (release root)
    order: int  # edeliver's calling order, which orders commands that land in the same hook
    note: str = ""  # mapped: how the moment differs; not mapped: why


_ONE_STEP = "our build compiles and assembles the release in one step, so it runs before that step"
_RUN_LEVEL = "it ran on your machine around `edeliver update`: write a Python run-level hook " \
             "(@hooks.before_run(\"update\") / @hooks.after_run(\"update\")) in tasks.py"
_UPGRADE = "a hot upgrade runs no per-host shell hooks; a Python run-level hook " \
           "(@hooks.before_run(\"upgrade\") / @hooks.after_run(\"upgrade\")) can do it"
_RELUP = "inv build.upgrade makes the relup itself from appups; put your own appups in " \
         "deliver.upgrade.appups_dir"

HOOKS: dict[str, HookSpec] = {
    "pre_init_app_remotely": HookSpec("before_push", "build", 1),
    "post_init_app_remotely": HookSpec("before_push", "build", 2, "edeliver ran it once the build "
                                       "host's repository was set up; ours runs before that"),
    "pre_git_push": HookSpec("before_push", "build", 3),
    "post_git_push": HookSpec("after_push", "build", 4),
    "pre_git_submodules": HookSpec("before_deps", "work", 5, "our build does not update git "
                                   "submodules; it runs after the checkout"),
    "post_git_submodules": HookSpec("before_deps", "work", 6, "it runs after the checkout"),
    "pre_erlang_get_and_update_deps": HookSpec("before_deps", "work", 7),
    "post_erlang_get_and_update_deps": HookSpec("after_deps", "work", 8),
    "pre_erlang_clean_compile": HookSpec("before_compile", "work", 9),
    "post_erlang_clean_compile": HookSpec("before_compile", "work", 10, _ONE_STEP),
    "pre_erlang_generate_release": HookSpec("before_compile", "work", 11, _ONE_STEP),
    "post_erlang_generate_release": HookSpec("after_compile", "work", 12),
    "pre_extract_release_archive": HookSpec("before_extract", "deploy", 13),
    "post_extract_release_archive": HookSpec("after_extract", "deploy", 14),
    "pre_start_deployed_release": HookSpec("before_start", "deploy", 15, "edeliver ran it before "
                                           "the restart of `deploy --start-deploy`; ours runs "
                                           "before every start of a node that is not running"),
    "post_start_deployed_release": HookSpec("after_start", "deploy", 16, "it runs after every "
                                            "verified start"),
    "pre_upgrade_release": HookSpec("", "", 0, _UPGRADE),
    "post_upgrade_release": HookSpec("", "", 0, _UPGRADE),
    "pre_relx_generate_relup": HookSpec("", "", 0, _RELUP),
    "post_relx_generate_relup": HookSpec("", "", 0, _RELUP),
    "pre_edit_relup": HookSpec("", "", 0, "relups are not edited by hand here: " + _RELUP),
    "pre_erlang_update": HookSpec("", "", 0, _RUN_LEVEL),
    "post_erlang_deployed_update": HookSpec("", "", 0, _RUN_LEVEL),
    "post_erlang_update": HookSpec("", "", 0, _RUN_LEVEL),
}
# deliver's (edeliver's ancestor) Ruby-era steps: defined in edeliver, never called for Erlang
for _step in ("rvmrc_trust", "bundle_install", "npm_install", "foreman_export", "launch",
              "upstart", "permissions"):
    for _when in ("pre", "post"):
        HOOKS[f"{_when}_{_step}"] = HookSpec("", "", 0, "edeliver's Erlang/Elixir commands never "
                                             "call it (it is from deliver's Ruby strategies)")

# the order hooks are written in (the order they run in)
KEY_ORDER = ("before_push", "after_push", "before_build", "before_deps", "after_deps",
             "before_compile", "after_compile",
             "after_build", "before_fetch", "after_fetch", "before_upload", "after_upload",
             "before_extract", "after_extract", "before_stop", "after_stop", "before_start",
             "after_start")


def _unknown(name: str) -> str:
    if not re.match(r"(pre|post)_", name):
        return "a helper function, not an edeliver hook: imported only where a hook calls it"
    close = difflib.get_close_matches(name, list(HOOKS), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"edeliver calls no hook of this name, so it never ran{hint}"


def map_hooks(parsed: ParsedFile) -> tuple[dict[str, list[str]], list[Finding]]:
    """Our `hooks` mapping, and a finding for every function and every line not carried over."""
    findings: list[Finding] = []
    collected: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)
    helpers = {f.name: f for f in parsed.functions if f.name not in HOOKS}
    for fn in parsed.functions:
        last = parsed.function(fn.name)
        if last is not fn and last is not None:
            findings.append(not_mapped(fn.line, fn.name, f"defined again at line {last.line}; "
                                                         "bash keeps the later definition"))
            continue
        spec = HOOKS.get(fn.name)
        if spec is None or not spec.key:
            findings.append(not_mapped(fn.line, fn.name, spec.note if spec else _unknown(fn.name)))
            continue
        done = translate(fn, spec.context, parsed.values, helpers)
        if done.commands:
            count = len(done.commands)
            detail = f"{count} command{'s' if count != 1 else ''}"
            findings.append(mapped(fn.line, fn.name, f"hooks.{spec.key}",
                                   f"{detail}; {spec.note}" if spec.note else detail))
            collected[spec.key].append((spec.order, done.commands))
        else:
            findings.append(not_mapped(fn.line, fn.name, "nothing in it runs on a host"))
        findings.extend(done.findings)
    hooks = {key: [c for _, cmds in sorted(collected[key], key=lambda x: x[0]) for c in cmds]
             for key in KEY_ORDER if key in collected}
    return hooks, list(dict.fromkeys(findings))  # a helper called twice is told once
