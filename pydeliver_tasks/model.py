"""Plain data the other layers pass around: hosts, stages, health checks, releases."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Env values whose names look like this are secrets: never printed, replaced by *** in output.
SECRET_NAME_RE = re.compile(r"COOKIE|SECRET|PASSWORD|TOKEN|KEY", re.IGNORECASE)


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
    """A stage's default rollout strategy (deliver.strategy / stages.<name>.strategy)."""

    kind: str = "parallel"  # parallel | rolling | canary
    batch: str = ""  # N hosts or P% per batch
    pause: float = 0.0
    canary: int = 1


@dataclass(frozen=True)
class Stage:
    name: str
    hosts: tuple[Host, ...]
    rollout: Rollout = Rollout()


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
