"""An edeliver `.deliver/config` (parsed by bash.py) mapped onto our `deliver` config subtree.

Every assignment and function in the file ends up in the report: mapped to a key, or not mapped
with the reason and what to use instead. Values are checked with the same validators the tasks
use, but a value that fails is still written (with the problem in the report), so nothing the user
wrote silently disappears; the tasks refuse it until it is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..validation import app_name, host_address, stage_name
from .bash import Assignment, ParsedFile, parse
from .findings import Finding, mapped, not_mapped, note
from .hooks import map_hooks
from .reasons import why_not
from .values import auto_version_check, check, home_relative, host_list, join, join_path

KEY_ORDER = ("app", "builder", "mix_env", "rebar3_profile", "stage", "build", "store",
             "deploy_path", "auto_version", "ssh", "stages", "hooks")
BUILDERS = ("mix", "rebar3")
_NOT_STAGES = {"BUILD", "AUTHORIZED_REMOTE", "RUNTIME"}


@dataclass
class ImportResult:
    config: dict[str, Any]  # the `deliver` subtree
    report: list[Finding] = field(default_factory=list)  # every finding, by line
    unmapped: list[Finding] = field(default_factory=list)  # the "not mapped" ones


class _Mapper:
    def __init__(self, parsed: ParsedFile) -> None:
        self.p = parsed
        self.config: dict[str, Any] = {}
        self.findings: list[Finding] = []
        self.done: set[str] = set()

    def take(self, name: str) -> Assignment | None:
        """The value bash keeps for name, unless it comes from a command (then: reported)."""
        a = self.p.last(name)
        self.done.add(name)
        if a is not None and a.substituted:
            self.findings.append(not_mapped(a.line, name, "its value comes from a command the "
                                                          "importer does not run"))
            return None
        return a

    def put(self, a: Assignment, key: str, value: object, detail: str = "") -> None:
        node = self.config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        if not a.clean:
            detail = join(detail, "check it: parts are left as written (see the notes)")
        self.findings.append(mapped(a.line, a.name, key, detail))

    def skip(self, a: Assignment, why: str) -> None:
        self.findings.append(not_mapped(a.line, a.name, why))

    def run(self) -> ImportResult:
        for pr in self.p.problems:
            make = not_mapped if pr.skipped else note
            self.findings.append(make(pr.line, pr.name, pr.message))
        for i, a in enumerate(self.p.assignments):
            later = [x for x in self.p.assignments[i + 1:] if x.name == a.name]
            if not later:
                continue
            if later[0].append:
                self.findings.append(note(a.line, a.name, f"added to at line {later[0].line} "
                                                          "(+=): the value used is the sum"))
            else:
                self.skip(a, f"assigned again at line {later[-1].line}; that later value is used")
        app = self.app()
        self.builder()
        self.simple("TARGET_MIX_ENV", "mix_env", str.isidentifier)
        self.simple("REBAR_PROFILE", "rebar3_profile", str.isidentifier)
        self.build()
        self.stages()
        self.paths(app)
        self.store()
        self.other()
        hooks, found = map_hooks(self.p)
        if hooks:
            self.config["hooks"] = hooks
        self.findings.extend(found)
        self.leftovers()
        report = sorted(self.findings, key=lambda f: f.line)
        config = {k: self.config[k] for k in KEY_ORDER if k in self.config}
        return ImportResult(config, report, [f for f in report if f.status == "not mapped"])

    def app(self) -> str | None:
        a = self.take("APP")
        if a is None:
            self.findings.append(note(0, "APP", "no value imported: edeliver used the project "
                                                "directory's name; set deliver.app"))
            return None
        value = a.value.strip()
        self.put(a, "app", value, check(app_name, value))
        return value if a.clean else None

    def simple(self, name: str, key: str, ok: Callable[[str], bool]) -> None:
        a = self.take(name)
        if a is not None:
            value = a.value.strip()
            self.put(a, key, value, "" if ok(value) else f"check it: {value!r} is not a valid name")

    def builder(self) -> None:
        chosen = ""
        for name in ("BUILD_CMD", "RELEASE_CMD"):
            a = self.take(name)
            if a is None:
                continue
            value = a.value.strip()
            if value not in BUILDERS:
                self.skip(a, f"{value!r} builds are not supported: deliver.builder is mix or rebar3")
            elif chosen and chosen != value:
                self.skip(a, f"differs from BUILD_CMD ({chosen}): one tool builds and releases here")
            else:
                self.put(a, "builder", value, "the same as BUILD_CMD" if chosen else "")
                chosen = value
        a = self.take("USING_DISTILLERY")
        if a is not None:
            self.skip(a, "distillery is not used: mix builds run Elixir's own `mix release`"
                      if a.value.strip() == "true" else "nothing to set: mix builds run `mix release`")

    def build(self) -> None:
        host, user, at = self.take("BUILD_HOST"), self.take("BUILD_USER"), self.take("BUILD_AT")
        names = host.value.split() if host else []
        if host is None:
            self.findings.append(note(0, "BUILD_HOST", "no value imported: builds run on this "
                                                       "machine (deliver.build.host: local)"))
        elif len(names) != 1:
            self.skip(host, "edeliver takes exactly one build host" if names else "it is empty")
        elif names[0] == "docker":
            self.skip(host, "docker builds are not supported: give a build host")
        else:
            spec = names[0]
            if user is not None and user.value.strip() and "@" not in spec:
                spec = f"{user.value.strip()}@{spec}"
            self.put(host, "build.host", spec, check(host_address, spec))
            if user is not None:
                self.put(user, "build.host", spec, "the user of the build host")
                user = None
            elif "@" not in spec:
                self.findings.append(note(host.line, host.name, "no BUILD_USER: ssh logs in as "
                                                                "the user your ssh_config or login gives"))
        if user is not None:
            self.skip(user, "there is no usable BUILD_HOST for it to go with")
        if at is not None and "build" not in self.config:
            self.skip(at, "there is no usable BUILD_HOST: a local build lives under .deliver/")
        elif at is not None:
            path, detail = home_relative(at.value)
            self.put(at, "build.path", path, join(detail, "edeliver built in it directly; ours "
                                                           "keeps repo.git, src and out in it"))

    def stages(self) -> None:
        groups = [a.name[:-6] for a in self.p.assignments if re.fullmatch(r"[A-Z][A-Z0-9_]*_HOSTS", a.name)
                  and a.name[:-6] not in _NOT_STAGES]
        stages: dict[str, Any] = {}
        for prefix in dict.fromkeys(groups):
            a = self.take(f"{prefix}_HOSTS")
            user = self.take(f"{prefix}_USER") if self.p.last(f"{prefix}_USER") else None
            if a is None:
                continue
            if user is not None and not user.value.strip():
                self.skip(user, "it is empty")
                user = None
            stage = prefix.lower()
            problem = check(stage_name, stage)
            hosts, found = host_list(a, user)
            if problem or not hosts:
                why = f"{stage!r} cannot be a stage name" if problem else "there are no hosts in it"
                self.skip(a, why)
                self.findings.extend(found)
                if user is not None:
                    self.skip(user, f"its hosts ({a.name}) are not imported")
                continue
            stages[stage] = {"hosts": hosts}
            detail = f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}"
            if stage not in ("staging", "production"):
                detail += "; edeliver itself deploys only to staging and production"
            self.put(a, f"stages.{stage}.hosts", hosts, detail)
            self.findings.extend(found)
            if user is not None:
                self.findings.append(mapped(user.line, user.name, f"stages.{stage}.hosts",
                                            "the user of each host"))
            else:
                self.findings.append(note(a.line, a.name, f"no {prefix}_USER: ssh logs in as the "
                                                           "user your ssh_config or login gives"))
        if "staging" in stages:
            first = self.p.last("STAGING_HOSTS")
            if first is not None:
                self.put(first, "stage", "staging", "edeliver's default target")
        elif list(stages) == ["production"]:
            first = self.p.last("PRODUCTION_HOSTS")
            if first is not None:
                self.findings.append(note(first.line, first.name, "the only stage: our tasks use "
                                          "it when no --stage is given (edeliver's default target "
                                          "was staging)"))

    def paths(self, app: str | None) -> None:
        deliver_to, test_at = self.take("DELIVER_TO"), self.take("TEST_AT")
        stages = self.config.get("stages", {})
        if deliver_to is not None:
            path, detail = home_relative(deliver_to.value)
            if app is None:
                self.skip(deliver_to, "APP is not known: edeliver deployed into DELIVER_TO/APP")
            else:
                self.put(deliver_to, "deploy_path", join_path(path, app),
                         join("edeliver deployed into DELIVER_TO/APP", detail))
        elif stages and app:
            owner = self.p.values.get("APP_USER") or app  # edeliver's default: ~$APP_USER/app
            self.findings.append(note(0, "DELIVER_TO", f"not set: edeliver deployed into "
                                      f"~{owner}/app/{app} (the home of the user {owner}); "
                                      "set deliver.deploy_path to where your releases are"))
        if test_at is None:
            return
        if "staging" not in stages or app is None:
            self.skip(test_at, "there is no staging stage for it" if app else "APP is not known")
            return
        path, detail = home_relative(test_at.value)
        staging_path = join_path(path, app)
        if staging_path == self.config.get("deploy_path"):
            self.put(test_at, "deploy_path", staging_path, "the same as DELIVER_TO's")
        else:
            self.put(test_at, "stages.staging.deploy_path", staging_path,
                     join("edeliver deployed staging into TEST_AT/APP", detail))

    def store(self) -> None:
        a = self.take("RELEASE_STORE")
        if a is None:
            return
        value = a.value.strip()
        s3 = re.fullmatch(r"(?i)s3://(?:[^@/]*@[^:/]*:)?([a-z0-9.-]+)(/.*)?", value)
        ssh = re.fullmatch(r"([^@/]+)@([^:/]+):(.+)", value)
        if s3:  # edeliver's form carries the keys: never written, never repeated
            self.put(a, "store", f"s3://{s3[1]}{(s3[2] or '').rstrip('/')}",
                     "the AWS keys are not written: set AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY where inv runs; edeliver's tarballs there are not "
                     "ours: build the versions you need again")
        elif value.startswith("docker://"):
            self.skip(a, "a docker image release store: not supported")
        elif ssh:
            path = ssh[3] if ssh[3].startswith("/") else "/~/" + ssh[3].removeprefix("~/")
            self.put(a, "store", f"ssh://{ssh[1]}@{ssh[2]}{path.rstrip('/')}",
                     "a shared store over SSH; edeliver's tarballs there are not ours: build "
                     "the versions you need again")
        else:
            detail = "edeliver keeps the tarballs in releases/ inside it"
            if value.startswith("~"):
                detail += "; check it: ~ is not expanded in deliver.store, write the absolute path"
            self.put(a, "store", f"{value.rstrip('/') or '.'}/releases", detail)

    def other(self) -> None:
        a = self.take("AUTO_VERSION")
        if a is not None:
            self.put(a, "auto_version", a.value, auto_version_check(a.value))
        a = self.take("SSH_TIMEOUT")
        if a is not None:
            value = a.value.strip()
            if value.isdigit() and int(value) >= 1:
                self.put(a, "ssh.connect_timeout", int(value))
            else:
                self.skip(a, f"{value!r} is not a whole number of seconds (1 or more)")

    def leftovers(self) -> None:
        users: dict[str, list[str]] = {}
        for a in self.p.assignments:
            for ref in a.refs:
                users.setdefault(ref, []).append(a.name)
        for name in dict.fromkeys(a.name for a in self.p.assignments):
            a = self.p.last(name)
            if name in self.done or a is None:
                continue
            why = why_not(name)
            if why is None:
                why = "not an edeliver setting"
                used = sorted(set(users.get(name, [])) - {name})
                if used:
                    why += f"; its value is used in {', '.join(used)}"
            self.skip(a, why)


def map_config(parsed: ParsedFile) -> ImportResult:
    """Our `deliver` settings for a parsed edeliver config, with a finding for every line."""
    return _Mapper(parsed).run()


def import_text(text: str) -> ImportResult:
    """map_config(parse(text)): the whole import of a `.deliver/config`'s text."""
    return map_config(parse(text))
