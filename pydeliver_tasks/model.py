"""Plain data the other layers pass around: hosts, stages, rollouts, releases, upgrade plans."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# Env values whose names look like this are secrets: never printed, replaced by *** in output.
SECRET_NAME_RE = re.compile(r"COOKIE|SECRET|PASSWORD|TOKEN|KEY", re.IGNORECASE)
SHORT_SECRET = 8  # shorter secret values are warned about: they may stand inside other words


def redacted(text: str, secrets: Iterable[str], shown: str = "***") -> str:
    """TEXT with every secret value replaced where it stands as a whole value (not next to a
    letter, digit or _): a cookie `x` must not turn `next` into `ne***t`."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])",
                          lambda _: shown, text)
    return text


@dataclass(frozen=True)
class SmokeCheck:
    """One more check after start, restart and upgrade: an HTTP GET from this machine (`url`,
    `status`, `contains`) or an expression evaluated on the node (`eval`: Elixir for mix,
    Erlang for relx) that must return true."""

    url: str = ""
    status: int = 200
    contains: str = ""
    eval: str = ""


@dataclass(frozen=True)
class HealthCheck:
    """An HTTP check run from this machine (`url` may use {host} and {env[NAME]}), plus smoke
    checks; all must pass."""

    url: str = ""
    status: int = 200
    contains: str = ""
    timeout: float = 5.0
    checks: tuple[SmokeCheck, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.url or self.checks)


@dataclass(frozen=True)
class Host:
    """One deploy target of a stage, with its own overrides already merged in."""

    name: str  # what output and --host use: the spec as written in config
    address: str  # host name / IP (or ssh_config alias) to connect to
    user: str | None
    port: int | None
    deploy_path: str
    env: dict[str, str] = field(default_factory=dict)
    health: HealthCheck = HealthCheck()

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(v for k, v in self.env.items() if SECRET_NAME_RE.search(k) and v)

    def health_url(self, url: str | None = None) -> str:
        """The health URL (or another check's `url`) with {host} and {env[NAME]} filled in."""
        url = self.health.url if url is None else url
        return url.format(host=self.address, env=self.env) if url else ""


@dataclass(frozen=True)
class Rollout:
    """How a run walks a stage's hosts: the strategy (parallel, rolling batches, canary first)
    and its knobs. A stage's config gives the defaults; a run's flags override them."""

    strategy: str = "parallel"  # parallel | rolling | canary
    batch: str = ""  # "N" hosts or "P%" of the hosts; rolling default 1, canary's rest default all
    pause: float = 0.0  # seconds between batches
    canary: int = 1  # hosts in the canary batch
    keep_going: bool = False  # start new batches after a failure
    auto_rollback: bool = False  # return a failed batch to the previous version
    skip_unreachable: bool = False  # go on without hosts that do not answer before the run
    lock_wait: float = 0.0  # seconds to wait for another run's deploy lock
    asked: bool = False  # the strategy came from the run's flag, not from the stage's config


@dataclass(frozen=True)
class Balancer:
    """An HAProxy in front of a stage's hosts, reached over SSH on its own host: its admin
    socket, the backend, and each deploy host's server name (default: the host's address)."""

    host: str  # user@host:port, as a deploy host is written
    socket: str
    backend: str
    servers: tuple[tuple[str, str], ...] = ()  # (deploy host name or address, server name)
    drain_timeout: float = 30.0
    min_up: int = 1

    def server(self, host: Host) -> str:
        named = dict(self.servers)
        return named.get(host.name) or named.get(host.address) or host.address


@dataclass(frozen=True)
class Stage:
    name: str
    hosts: tuple[Host, ...]
    rollout: Rollout = Rollout()
    balancer: Balancer | None = None


@dataclass(frozen=True)
class Release:
    """A release tarball in the local store."""

    app: str
    version: str
    kind: str  # "release" (upgrade tarballs come later)
    path: Path
    sha256: str

    @property
    def file_name(self) -> str:
        return self.path.name


def release_file_name(app: str, version: str, kind: str = "release") -> str:
    return f"{app}_{version}.{kind}.tar.gz"


def manifest_name(app: str, version: str) -> str:
    """The plan of the upgrade to `version` (UpgradeManifest), beside its tarball."""
    return f"{app}_{version}.upgrade.json"


@dataclass(frozen=True)
class NextStep:
    """A task to run next (to finish or undo a run on a host), as data: the task layer words
    it as a command line."""

    task: str  # e.g. "deploy.release"
    flags: tuple[tuple[str, str], ...] = ()  # (flag, value); value "" for a switch
    host: str = ""


@dataclass(frozen=True)
class Replacing:
    """What the relup replaces (from the upgrade plan): modules whose code changes or goes, the
    process modules it suspends and upgrades itself, and apps whose user appup may restart
    processes on purpose."""

    modules: tuple[str, ...] = ()
    suspended: tuple[str, ...] = ()
    restarting_apps: tuple[str, ...] = ()


@dataclass
class UpgradeManifest:
    """What build.upgrade decided, stored beside the upgrade tarball (and read by `upgrade`)."""

    app: str
    from_version: str
    to_version: str
    unsafe: list[str] = field(default_factory=list)
    changed_apps: dict[str, list[str]] = field(default_factory=dict)  # app: [from vsn, to vsn]
    appups: dict[str, dict[str, str]] = field(default_factory=dict)  # app: {source, text}
    lib_dirs: list[str] = field(default_factory=list)  # the new release's lib dirs
    replaced_modules: list[str] = field(default_factory=list)  # code changes or goes
    suspended_modules: list[str] = field(default_factory=list)  # processes the relup updates

    def replacing(self) -> Replacing:
        """What the relup replaces, for the per-host checks of a hot install. An appup someone
        wrote (the project's, or one a library ships) may restart processes on purpose."""
        written = tuple(a for a, up in sorted(self.appups.items())
                        if up.get("source") in ("user", "shipped"))
        return Replacing(tuple(self.replaced_modules), tuple(self.suspended_modules), written)

    @property
    def new_lib_dirs(self) -> list[str]:
        """Lib dirs of changed applications: the new release adds them, the old never uses them."""
        return [f"{a}-{vs[1]}" for a, vs in sorted(self.changed_apps.items())]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> UpgradeManifest:
        raw = json.loads(path.read_text())
        for old, new in (("old", "from_version"), ("new", "to_version")):  # stores before 0.2
            if old in raw:
                raw[new] = raw.pop(old)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
