"""The `deliver` config subtree: defaults, and its reading into one typed, validated Settings.

Defaults are declared complete (see DEFAULTS) in the collection's `ns.configure`, so invoke.yaml,
a project's own `ns.configure`, `-f file` and `INVOKE_DELIVER_*` env vars all work. `load` reads the
subtree once and reports *every* problem at once, each with its key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import validation as v
from .model import HealthCheck, Host, Rollout, SmokeCheck, Stage

BUILDERS = ("auto", "mix", "rebar3")
HOST_KEY_POLICIES = ("strict", "accept-new")
HOOK_STEPS = ("push", "build", "fetch", "upload", "extract", "start", "stop")

DEFAULTS: dict[str, Any] = {
    "app": "",  # release name (required)
    "builder": "auto",  # auto | mix | rebar3
    "mix_env": "prod",
    "project_dir": ".",  # the git repository to build
    "stage": "",  # default stage; may be empty when only one stage exists
    "build": {"host": "local", "path": ""},  # path default: pydeliver-build/<app> ($HOME-relative)
    "rebar3_profile": "default",
    "store": ".deliver/releases",
    "deploy_path": "",  # default for every stage: apps/<app> (relative paths: from $HOME)
    "env": {},  # env for every bin/<app> call on every stage
    "stages": {},  # name -> {hosts: [...], deploy_path, env, health}
    "ssh": {
        "known_hosts": "",  # default ~/.ssh/known_hosts
        "host_key_policy": "strict",
        "identity_file": "",
        "config_file": "",  # default ~/.ssh/config (when it exists)
        "connect_timeout": 10,
    },
    "parallel": 8,
    "timeouts": {"start": 60, "stop": 30},
    # checks: more smoke checks, each {url, status, contains} or {eval: EXPR returning true}
    "health": {"url": "", "status": 200, "contains": "", "timeout": 5, "checks": []},
    "hooks": {},  # before_start: ["shell cmd", ...], after_upload: [...], ...
    "log_files": [],  # more logs for `inv logs`: paths/globs, relative to the release root
    "keep_releases": 5,  # versions kept on each host after a deploy (cleanup); 0 = no cleanup
    "strategy": {"kind": "parallel", "batch": "", "pause": 0, "canary": 1},  # stages may override
    "upgrade": {
        "on_unsafe": "restart",  # restart | abort: when a hot upgrade is not safe
        "on_failure": "restart",  # restart | downgrade | abort: when install/verification fails
        "apps": [],  # more own applications (umbrella/rebar3 apps) to generate appups for
        "appups_dir": "rel/appups",  # user appups: <appups_dir>/<from>-<to>/<app>.appup
    },
}
ON_UNSAFE = ("restart", "abort")
ON_FAILURE = ("restart", "downgrade", "abort")


@dataclass(frozen=True)
class UpgradeSettings:
    on_unsafe: str = "restart"
    on_failure: str = "restart"
    apps: tuple[str, ...] = ()
    appups_dir: str = "rel/appups"


@dataclass(frozen=True)
class SshSettings:
    known_hosts: str
    host_key_policy: str
    identity_file: str
    config_file: str
    connect_timeout: int


@dataclass(frozen=True)
class BuildSettings:
    host: v.HostAddress | None  # None: build on this machine
    path: str


@dataclass(frozen=True)
class Settings:
    app: str
    builder: str  # resolved: mix | rebar3
    mix_env: str
    rebar3_profile: str
    project_dir: Path
    default_stage: str
    build: BuildSettings
    store: Path
    stages: dict[str, Stage]
    ssh: SshSettings
    parallel: int
    start_timeout: float
    stop_timeout: float
    hooks: dict[str, tuple[str, ...]]
    log_files: tuple[str, ...] = ()
    upgrade: UpgradeSettings = UpgradeSettings()
    keep_releases: int = 5

    def stage(self, name: str | None = None, host: str | None = None) -> Stage:
        """The stage to act on (flag, else config default, else the only one), narrowed by --host."""
        name = name or self.default_stage
        if not name:
            if len(self.stages) != 1:
                raise v.InvalidInput(
                    "no stage given: pass --stage NAME or set deliver.stage "
                    f"(stages: {', '.join(sorted(self.stages)) or 'none configured'})"
                )
            name = next(iter(self.stages))
        v.stage_name(name)
        if name not in self.stages:
            raise v.InvalidInput(
                f"no stage {name!r} in deliver.stages "
                f"(configured: {', '.join(sorted(self.stages)) or 'none'})"
            )
        stage = self.stages[name]
        if host is None:
            return stage
        chosen = tuple(h for h in stage.hosts if host in (h.name, h.address))
        if not chosen:
            names = ", ".join(h.name for h in stage.hosts)
            raise v.InvalidInput(f"no host {host!r} in stage {name!r} (hosts: {names})")
        return Stage(name=stage.name, hosts=chosen, rollout=stage.rollout)


class ConfigError(v.InvalidInput):
    """All problems found in the `deliver` subtree, one per line with its key path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid deliver config:\n  " + "\n  ".join(problems))


def _plain(value: Any) -> Any:
    """Invoke's DataProxy -> plain dicts, so validation sees ordinary types."""
    if isinstance(value, Mapping) or hasattr(value, "_config"):  # DataProxy is no Mapping
        return {str(k): _plain(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(x) for x in value]
    return value


def detect_builder(project_dir: Path) -> str | None:
    if (project_dir / "mix.exs").exists():
        return "mix"
    if (project_dir / "rebar.config").exists():
        return "rebar3"
    return None


class _Reader:
    """Collects problems with their key paths instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(self, path: str, fn: Any, value: Any) -> Any:
        try:
            return fn(value)
        except (v.InvalidInput, TypeError, ValueError) as exc:
            self.problems.append(f"deliver.{path}: {exc}")
            return None

    def number(self, path: str, value: Any, minimum: float, kind: type = float) -> Any:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
        if not ok:
            self.problems.append(f"deliver.{path}: expected a number >= {minimum}, got {value!r}")
            return kind(minimum)
        return kind(value)

    def env(self, path: str, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            self.problems.append(f"deliver.{path}: expected a mapping of NAME: value")
            return {}
        out: dict[str, str] = {}
        for key, val in value.items():
            if self.check(f"{path}.{key}", v.env_name, key) is None:
                continue
            if isinstance(val, bool) or val is None or not isinstance(val, (str, int, float)):
                self.problems.append(f"deliver.{path}.{key}: expected a string or number, "
                                     f"got {val!r} (quote it in YAML)")
                continue
            out[key] = str(val)
        return out

    def section(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """A mapping section merged over its defaults; anything else is a problem, not a crash."""
        value = data.get(name) or {}
        if not isinstance(value, dict):
            self.problems.append(f"deliver.{name}: expected a mapping, got {value!r}")
            value = {}
        return {**DEFAULTS[name], **value}

    def known(self, path: str, value: dict[str, Any], allowed: Any) -> None:
        """Unknown keys are typos until proven otherwise: say so instead of ignoring them."""
        for key in value:
            if key not in allowed:
                self.problems.append(f"deliver.{path}{'.' if path else ''}{key}: unknown key "
                                     f"(known: {', '.join(sorted(allowed))})")

    def placeholders(self, path: str, url: str, host: str, env: dict[str, str]) -> None:
        try:
            url.format(host=host, env=env)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            self.problems.append(f"deliver.{path}: cannot fill {url!r} ({type(exc).__name__}: "
                                 f"{exc}); placeholders are {{host}} and {{env[NAME]}}")

    def rollout(self, path: str, value: Any, base: Rollout) -> Rollout:
        if not isinstance(value, dict):
            self.problems.append(f"deliver.{path}: expected a mapping (kind, batch, pause, canary)")
            return base
        self.known(path, value, DEFAULTS["strategy"])
        kind = str(value.get("kind", base.kind))
        if kind not in ("parallel", "rolling", "canary"):
            self.problems.append(f"deliver.{path}.kind: must be parallel, rolling or canary, "
                                 f"got {kind!r}")
        batch = str(value.get("batch", base.batch) or "")
        if batch and not re.fullmatch(r"[1-9]\d*%?", batch):
            self.problems.append(f"deliver.{path}.batch: a number of hosts or a percentage, "
                                 f"got {batch!r}")
        return Rollout(kind, batch, self.number(f"{path}.pause", value.get("pause", base.pause), 0),
                       int(self.number(f"{path}.canary", value.get("canary", base.canary), 1, int)))

    def health(self, path: str, value: Any, base: HealthCheck) -> HealthCheck:
        if not isinstance(value, dict):
            self.problems.append(f"deliver.{path}: expected a mapping (url, status, contains)")
            return base
        self.known(path, value, DEFAULTS["health"])
        url = str(value.get("url", base.url) or "")
        if url and not url.startswith(("http://", "https://")):
            self.problems.append(f"deliver.{path}.url: must start with http:// or https://")
        return HealthCheck(
            url=url,
            status=int(self.number(f"{path}.status", value.get("status", base.status), 100, int)),
            contains=str(value.get("contains", base.contains) or ""),
            timeout=self.number(f"{path}.timeout", value.get("timeout", base.timeout), 0.1),
            checks=(self.smoke_checks(f"{path}.checks", value["checks"]) if "checks" in value
                    else base.checks),
        )

    def smoke_checks(self, path: str, value: Any) -> tuple[SmokeCheck, ...]:
        if not isinstance(value, list):
            self.problems.append(f"deliver.{path}: expected a list of checks ({{url, status, "
                                 "contains}} or {eval})")
            return ()
        found = []
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(item, dict) or bool(item.get("url")) == bool(item.get("eval")):
                self.problems.append(f"deliver.{where}: each check has either url (with status, "
                                     "contains) or eval")
                continue
            self.known(where, item, ("url", "status", "contains", "eval"))
            url = str(item.get("url") or "")
            if url and not url.startswith(("http://", "https://")):
                self.problems.append(f"deliver.{where}.url: must start with http:// or https://")
            if item.get("eval") and ("status" in item or "contains" in item):
                self.problems.append(f"deliver.{where}: an eval check has no status/contains "
                                     "(its expression must return true)")
            found.append(SmokeCheck(
                url=url, status=int(self.number(f"{where}.status", item.get("status", 200), 100,
                                                int)),
                contains=str(item.get("contains") or ""), eval=str(item.get("eval") or "")))
        return tuple(found)


def load(config: Any) -> Settings:
    """Read `config.deliver` (an Invoke config or a plain dict) into Settings, or raise ConfigError."""
    raw = _plain(config.get("deliver", {}))
    data = {**DEFAULTS, **raw}
    r = _Reader()
    r.known("", raw, DEFAULTS)
    for section in ("build", "ssh", "timeouts", "upgrade", "strategy"):
        if isinstance(raw.get(section), dict):
            r.known(section, raw[section], DEFAULTS[section])

    app = r.check("app", v.app_name, data["app"]) or ""
    project_dir = _project_dir(str(data["project_dir"] or "."))
    builder = data["builder"]
    if builder not in BUILDERS:
        r.problems.append(f"deliver.builder: must be one of {', '.join(BUILDERS)}, got {builder!r}")
    elif builder == "auto":
        builder = detect_builder(project_dir) or "auto"
    mix_env = str(data["mix_env"])
    if not mix_env.isidentifier():
        r.problems.append(f"deliver.mix_env: invalid {mix_env!r}")

    build = r.section("build", data)
    build_host = None
    if str(build["host"]) != "local":
        build_host = r.check("build.host", v.host_address, str(build["host"]))
    build_path = str(build["path"] or f"pydeliver-build/{app or 'app'}")
    r.check("build.path", _safe_path, build_path)
    profile = str(data["rebar3_profile"])
    if not profile.isidentifier():
        r.problems.append(f"deliver.rebar3_profile: invalid {profile!r}")

    ssh_raw = r.section("ssh", data)
    if ssh_raw["host_key_policy"] not in HOST_KEY_POLICIES:
        r.problems.append(
            f"deliver.ssh.host_key_policy: must be strict or accept-new, "
            f"got {ssh_raw['host_key_policy']!r}"
        )
    ssh = SshSettings(
        known_hosts=str(ssh_raw["known_hosts"] or ""),
        host_key_policy=str(ssh_raw["host_key_policy"]),
        identity_file=str(ssh_raw["identity_file"] or ""),
        config_file=str(ssh_raw["config_file"] or ""),
        connect_timeout=r.number("ssh.connect_timeout", ssh_raw["connect_timeout"], 1, int),
    )
    if ssh.config_file and not Path(ssh.config_file).expanduser().is_file():
        r.problems.append(f"deliver.ssh.config_file: {ssh.config_file} does not exist")
    health = r.health("health", r.section("health", data), HealthCheck())
    rollout = r.rollout("strategy", r.section("strategy", data), Rollout())
    common_env = r.env("env", data["env"] or {})
    default_path = str(data["deploy_path"] or (f"apps/{app}" if app else ""))

    stages: dict[str, Stage] = {}
    if not isinstance(data["stages"], dict):
        r.problems.append("deliver.stages: expected a mapping of stage name -> settings")
        data["stages"] = {}
    for name, stage_raw in data["stages"].items():
        if r.check(f"stages.{name}", v.stage_name, name) is None:
            continue
        stages[name] = _read_stage(r, name, stage_raw or {}, default_path, common_env, health,
                                   rollout)

    default_stage = str(data["stage"] or "")
    if default_stage and default_stage not in stages:
        r.problems.append(f"deliver.stage: {default_stage!r} is not one of deliver.stages")

    hooks = _read_hooks(r, data["hooks"] or {})
    timeouts = r.section("timeouts", data)
    settings = Settings(
        app=app,
        builder=builder,
        mix_env=mix_env,
        rebar3_profile=profile,
        project_dir=project_dir,
        default_stage=default_stage,
        build=BuildSettings(host=build_host, path=build_path),
        store=project_dir / str(data["store"]),  # relative: to the project, not the cwd
        stages=stages,
        ssh=ssh,
        parallel=r.number("parallel", data["parallel"], 1, int),
        start_timeout=r.number("timeouts.start", timeouts["start"], 1),
        stop_timeout=r.number("timeouts.stop", timeouts["stop"], 1),
        hooks=hooks,
        log_files=_read_log_files(r, data["log_files"]),
        upgrade=_read_upgrade(r, r.section("upgrade", data)),
        keep_releases=r.number("keep_releases", data["keep_releases"], 0, int),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def _read_upgrade(r: _Reader, raw: dict[str, Any]) -> UpgradeSettings:
    for key, allowed in (("on_unsafe", ON_UNSAFE), ("on_failure", ON_FAILURE)):
        if raw[key] not in allowed:
            r.problems.append(f"deliver.upgrade.{key}: must be one of {', '.join(allowed)}, "
                              f"got {raw[key]!r}")
    apps = raw["apps"] if isinstance(raw["apps"], list) else []
    if not isinstance(raw["apps"], list):
        r.problems.append("deliver.upgrade.apps: expected a list of application names")
    for i, name in enumerate(apps):
        r.check(f"upgrade.apps[{i}]", v.app_name, str(name))
    r.check("upgrade.appups_dir", _safe_path, str(raw["appups_dir"] or ""))
    return UpgradeSettings(str(raw["on_unsafe"]), str(raw["on_failure"]),
                           tuple(str(a) for a in apps), str(raw["appups_dir"]))


def _project_dir(value: str) -> Path:
    """'.' means the project containing the current directory (its git top level), so `inv`
    run from a subdirectory still finds mix.exs / rebar.config and the release store."""
    here = Path(value).expanduser().resolve()
    if value == ".":
        for d in (here, *here.parents):
            if (d / ".git").exists():
                return d
    return here


def _safe_path(value: str) -> str:
    if not value or "\0" in value or "\n" in value:
        raise v.InvalidInput(f"invalid path {value!r}")
    return value


def _read_stage(
    r: _Reader, name: str, raw: Any, default_path: str, env: dict[str, str], health: HealthCheck,
    rollout: Rollout,
) -> Stage:
    path = f"stages.{name}"
    if not isinstance(raw, dict):
        r.problems.append(f"deliver.{path}: expected a mapping with hosts")
        return Stage(name=name, hosts=())
    r.known(path, raw, ("hosts", "deploy_path", "env", "health", "strategy"))
    if "strategy" in raw:
        rollout = r.rollout(f"{path}.strategy", raw["strategy"], rollout)
    stage_path = str(raw.get("deploy_path") or default_path)
    r.check(f"{path}.deploy_path", _safe_path, stage_path)
    stage_env = {**env, **r.env(f"{path}.env", raw.get("env") or {})}
    stage_health = r.health(f"{path}.health", raw.get("health") or {}, health)
    hosts_raw = raw.get("hosts") or []
    if not isinstance(hosts_raw, list) or not hosts_raw:
        r.problems.append(f"deliver.{path}.hosts: expected a non-empty list of user@host:port")
        hosts_raw = []
    hosts: list[Host] = []
    for i, item in enumerate(hosts_raw):
        hpath = f"{path}.hosts[{i}]"
        over = item if isinstance(item, dict) else {"host": item}
        r.known(hpath, over, ("host", "deploy_path", "env", "health", "health_url"))
        addr = r.check(hpath, v.host_address, str(over.get("host", "")))
        if addr is None:
            continue
        host_path = str(over.get("deploy_path") or stage_path)
        r.check(f"{hpath}.deploy_path", _safe_path, host_path)
        host_health = stage_health
        if over.get("health_url") or over.get("health"):
            given = dict(over.get("health") or {})
            if over.get("health_url"):
                given["url"] = over["health_url"]
            host_health = r.health(f"{hpath}.health", given, stage_health)
        host_env = {**stage_env, **r.env(f"{hpath}.env", over.get("env") or {})}
        if host_health.url:
            r.placeholders(f"{hpath}.health.url", host_health.url, addr.host, host_env)
        for i, check in enumerate(host_health.checks):
            if check.url:
                r.placeholders(f"{hpath}.health.checks[{i}].url", check.url, addr.host, host_env)
        hosts.append(
            Host(
                name=str(over["host"]),
                address=addr.host,
                user=addr.user,
                port=addr.port,
                deploy_path=host_path,
                env=host_env,
                health=host_health,
            )
        )
    names = [h.name for h in hosts]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        r.problems.append(f"deliver.{path}.hosts: {dup!r} is listed twice")
    return Stage(name=name, hosts=tuple(hosts), rollout=rollout)


_LOG_FILE_RE = re.compile(r"[A-Za-z0-9_./*-]+")


def _read_log_files(r: _Reader, raw: Any) -> tuple[str, ...]:
    """Paths or globs (`*` only): they reach the remote shell unquoted so the glob expands."""
    if not isinstance(raw, list):
        r.problems.append("deliver.log_files: expected a list of paths, e.g. [log/app.log]")
        return ()
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not _LOG_FILE_RE.fullmatch(item):
            r.problems.append(f"deliver.log_files[{i}]: {item!r}: letters, digits, _ . / - and * only")
    return tuple(x for x in raw if isinstance(x, str) and _LOG_FILE_RE.fullmatch(x))


def _read_hooks(r: _Reader, raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        r.problems.append("deliver.hooks: expected a mapping like before_start: [commands]")
        return {}
    hooks: dict[str, tuple[str, ...]] = {}
    for key, cmds in raw.items():
        when, _, step = str(key).partition("_")
        if when not in ("before", "after") or step not in HOOK_STEPS:
            r.problems.append(
                f"deliver.hooks.{key}: unknown hook; use before_/after_ + one of "
                f"{', '.join(HOOK_STEPS)}"
            )
            continue
        cmds = [cmds] if isinstance(cmds, str) else cmds
        if not isinstance(cmds, list) or not all(isinstance(c, str) and c for c in cmds):
            r.problems.append(f"deliver.hooks.{key}: expected a list of shell commands")
            continue
        hooks[key] = tuple(cmds)
    return hooks
