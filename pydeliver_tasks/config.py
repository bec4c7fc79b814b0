"""The `deliver` config subtree: defaults, and its reading into one typed, validated Settings.

Defaults are declared complete (see DEFAULTS) in the collection's `ns.configure`, so invoke.yaml,
a project's own `ns.configure`, `-f file` and `INVOKE_DELIVER_*` env vars all work. `load` reads the
subtree once and reports *every* problem at once, each with its key path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import store_url
from . import validation as v
from .config_reader import (
    LOCAL_STORE,
    Reader,
    detect_builder,
    plain,
    read_auto_version,
    read_balancer,
    read_endpoint,
    read_hooks,
)
from .model import SECRET_NAME_RE, SHORT_SECRET, Balancer, HealthCheck, Host, Rollout, Stage
from .settings import (
    BUILDERS,
    DEFAULTS,
    HOOK_STEPS,
    HOST_KEY_POLICIES,
    ON_FAILURE,
    ON_UNSAFE,
    BuildSettings,
    Settings,
    SshSettings,
    UpgradeSettings,
)

__all__ = ["BUILDERS", "DEFAULTS", "HOOK_STEPS", "HOST_KEY_POLICIES", "ON_FAILURE", "ON_UNSAFE",
           "BuildSettings", "ConfigError", "Settings", "SshSettings", "UpgradeSettings",
           "detect_builder", "load", "plain", "short_secrets"]

class ConfigError(v.InvalidInput):
    """All problems found in the `deliver` subtree, one per line with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid deliver config:\n  " + "\n  ".join(problems))


def load(config: Any) -> Settings:
    """Read `config.deliver` (an Invoke config or a plain dict) into Settings, or raise ConfigError."""
    raw = plain(config.get("deliver", {}))
    data = {**DEFAULTS, **raw}
    r = Reader()
    r.known("", raw, DEFAULTS)
    for section in ("build", "ssh", "timeouts", "upgrade", "strategy", "migrations"):
        if isinstance(raw.get(section), dict):
            r.known(section, raw[section], DEFAULTS[section])

    app = _read_app(r, data["app"])
    release = str(r.check("release", v.app_name, data["release"]) or "") if data["release"] else app
    project_dir = _project_dir(str(data["project_dir"] or "."))
    builder = data["builder"]
    if builder not in BUILDERS:
        r.problems.append(f"deliver.builder: must be one of {', '.join(BUILDERS)}, got {builder!r}")
    elif builder == "auto":
        builder = detect_builder(project_dir) or "auto"
    mix_env = str(data["mix_env"])
    if not mix_env.isidentifier():
        r.problems.append(f"deliver.mix_env: invalid {mix_env!r}")

    build = _read_build(r, r.section("build", data), release)
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
    # without a valid app, the default path is a placeholder: its error is the app's, said once
    default_path = str(data["deploy_path"] or f"apps/{release or 'app'}")

    stages: dict[str, Stage] = {}
    balancer = read_balancer(r, "balancer", data["balancer"] or None, None)
    if not isinstance(data["stages"], dict):
        r.problems.append("deliver.stages: expected a mapping of stage name -> settings")
        data["stages"] = {}
    for name, stage_raw in data["stages"].items():
        if r.check(f"stages.{name}", v.stage_name, name) is None:
            continue
        stages[name] = _read_stage(r, name, stage_raw or {}, default_path, common_env, health,
                                   rollout, balancer)

    default_stage = str(data["stage"] or "")
    if default_stage and default_stage not in stages:
        r.problems.append(f"deliver.stage: {default_stage!r} is not one of deliver.stages")

    hooks = read_hooks(r, data["hooks"] or {})
    shared = r.check("store", lambda t: store_url.parse(t, ""), str(data["store"] or LOCAL_STORE))
    timeouts = r.section("timeouts", data)
    settings = Settings(
        app=app,
        release=release,
        builder=builder,
        mix_env=mix_env,
        rebar3_profile=profile,
        project_dir=project_dir,
        default_stage=default_stage,
        build=build,
        store=project_dir / (LOCAL_STORE if shared else str(data["store"])),  # not the cwd's
        shared_store=shared,
        store_endpoint=read_endpoint(r, data["store_endpoint"], shared),
        stages=stages,
        ssh=ssh,
        parallel=r.number("parallel", data["parallel"], 1, int),
        start_timeout=r.number("timeouts.start", timeouts["start"], 1),
        stop_timeout=r.number("timeouts.stop", timeouts["stop"], 1),
        hooks=hooks,
        log_files=_read_log_files(r, data["log_files"]),
        upgrade=_read_upgrade(r, r.section("upgrade", data)),
        migrations=r.migrations(r.section("migrations", data), app, builder),
        keep_releases=r.number("keep_releases", data["keep_releases"], 0, int),
        auto_version=read_auto_version(r, data["auto_version"]),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def _read_upgrade(r: Reader, raw: dict[str, Any]) -> UpgradeSettings:
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
    """'.' means the project containing the current directory: the nearest directory up to the
    git top level that holds mix.exs or rebar.config (a project may sit in a subdirectory of a
    bigger repository), else that top level — so `inv` works from anywhere inside the project."""
    here = Path(value).expanduser().resolve()
    if value != ".":
        return here
    for d in (here, *here.parents):
        if (d / "mix.exs").exists() or (d / "rebar.config").exists():
            return d
        if (d / ".git").exists():
            return d
    return here


def _safe_path(value: str) -> str:
    if not value or "\0" in value or "\n" in value:
        raise v.InvalidInput(f"invalid path {value!r}")
    return value


def _read_stage(
    r: Reader, name: str, raw: Any, default_path: str, env: dict[str, str], health: HealthCheck,
    rollout: Rollout, balancer: Balancer | None = None,
) -> Stage:
    path = f"stages.{name}"
    if not isinstance(raw, dict):
        r.problems.append(f"deliver.{path}: expected a mapping with hosts")
        return Stage(name=name, hosts=())
    r.known(path, raw, ("hosts", "deploy_path", "env", "health", "strategy", "balancer"))
    balancer = read_balancer(r, f"{path}.balancer", raw.get("balancer"), balancer)
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
    return Stage(name=name, hosts=tuple(hosts), rollout=rollout, balancer=balancer)


_LOG_FILE_RE = re.compile(r"[A-Za-z0-9_./*-]+")


def _read_log_files(r: Reader, raw: Any) -> tuple[str, ...]:
    """Paths or globs (`*` only): they reach the remote shell unquoted so the glob expands."""
    if not isinstance(raw, list):
        r.problems.append("deliver.log_files: expected a list of paths, e.g. [log/app.log]")
        return ()
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not _LOG_FILE_RE.fullmatch(item):
            r.problems.append(f"deliver.log_files[{i}]: {item!r}: letters, digits, _ . / - and * only")
    return tuple(x for x in raw if isinstance(x, str) and _LOG_FILE_RE.fullmatch(x))


def _read_build(r: Reader, raw: dict[str, Any], release: str) -> BuildSettings:
    host = None
    if str(raw["host"]) != "local":
        host = r.check("build.host", v.host_address, str(raw["host"]))
    path = str(raw["path"] or f"pydeliver-build/{release or 'app'}")
    r.check("build.path", _safe_path, path)
    subdir = str(raw.get("subdir") or "")
    if subdir:
        subdir = r.check("build.subdir", v.subdir, subdir) or ""
    return BuildSettings(host=host, path=path, subdir=subdir)


def _read_app(r: Reader, value: Any) -> str:
    if value in ("", None):
        r.problems.append("deliver.app is empty: set it in invoke.yaml (your OTP application)")
        return ""
    return r.check("app", v.app_name, value) or ""


def short_secrets(settings: Settings) -> list[str]:
    """Warnings for secret env values shorter than SHORT_SECRET characters: output redacts a
    secret only where it stands as a whole value, so a short one may show inside other words."""
    seen = sorted({(st.name, name) for st in settings.stages.values() for h in st.hosts
                   for name, value in h.env.items()
                   if SECRET_NAME_RE.search(name) and value and len(value) < SHORT_SECRET})
    return [f"warning: {name} of stage {stage} is shorter than {SHORT_SECRET} characters: output "
            "hides it only where it stands alone; use a longer secret" for stage, name in seen]
