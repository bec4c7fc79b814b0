"""The `deliver` config as the other layers see it: the defaults (every key, declared complete in
the collection's `ns.configure`) and the typed Settings that config.load makes of them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import validation as v
from .model import Stage
from .store_url import StoreUrl

BUILDERS = ("auto", "mix", "rebar3")
HOST_KEY_POLICIES = ("strict", "accept-new")
HOOK_STEPS = ("push", "build", "deps", "compile", "fetch", "upload", "extract", "start", "stop")

DEFAULTS: dict[str, Any] = {
    "app": "",  # your OTP application: its start is checked, it gets appups (required)
    "release": "",  # the release's name when it is not app's (an umbrella); default: app
    "builder": "auto",  # auto | mix | rebar3
    "mix_env": "prod",
    "auto_version": "",  # pieces like commit-count+revision: every build's version gets them
    "project_dir": ".",  # the git repository to build
    "stage": "",  # default stage; may be empty when only one stage exists
    "build": {"host": "local", "path": "", "subdir": ""},  # path default: pydeliver-build/<app>
    # ($HOME-relative); subdir default: where project_dir sits in its git repository
    "rebar3_profile": "default",
    "store": ".deliver/releases",  # a directory, ssh://user@host[:port]/path or s3://bucket/prefix
    "store_endpoint": "",  # s3 stores: the S3 API's URL (an S3-compatible server); "" = AWS
    "deploy_path": "",  # default for every stage: apps/<release> (relative paths: from $HOME)
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
    # an HAProxy in front of the hosts (stages may override; false: none): host, socket, backend,
    # servers {deploy host: server name}, drain_timeout, min_up
    "balancer": {},
    "upgrade": {
        "on_unsafe": "restart",  # restart | abort: when a hot upgrade is not safe
        "on_failure": "restart",  # restart | downgrade | abort: when install/verification fails
        "apps": [],  # more own applications (umbrella/rebar3 apps) to generate appups for
        "appups_dir": "rel/appups",  # user appups: <appups_dir>/<from>-<to>/<app>.appup
    },
    # inv migrate / migrations, --migrate: expressions (Elixir for mix, Erlang for rebar3);
    # "" = <App>.Release.migrate() / <app>_release:migrate() etc. (migration_defaults)
    "migrations": {"run": "", "down": "", "pending": ""},  # down: {to} = --to's value
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
class MigrationSettings:
    """The migration expressions, defaults filled in (config.load): run, down (with `{to}`),
    pending — evaluated with the release's code and env (steps.migrate)."""

    run: str = ""
    down: str = ""
    pending: str = ""


def migration_defaults(app: str, builder: str) -> MigrationSettings:
    """mix: MyShop.Release.migrate() (the app camelized); rebar3: my_shop_release:migrate()."""
    if builder == "mix":
        mod = "".join(part[:1].upper() + part[1:] for part in app.split("_")) + ".Release."
    else:
        mod = f"{app}_release:"
    return MigrationSettings(f"{mod}migrate()", f"{mod}rollback({{to}})", f"{mod}pending()")


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
    subdir: str = ""  # the project's directory inside the repository ("" = auto, see steps.build)


@dataclass(frozen=True)
class Settings:
    app: str  # the OTP application whose start proves the node serves
    release: str  # the release's name: bin/<release>, tarballs, releases/<vsn>/<release>.rel
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
    migrations: MigrationSettings = MigrationSettings()
    keep_releases: int = 5
    shared_store: StoreUrl | None = None  # a URL store; `store` is then its local copy
    store_endpoint: str = ""
    auto_version: str = ""  # edeliver-style pieces (autoversion.PIECES), "" = the project's own

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
        return replace(stage, hosts=chosen)
