"""Reading the raw `deliver` subtree: each field checked where it is read, every problem kept
with its key path (config.load reports them all at once)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import autoversion, store_url
from . import validation as v
from .model import Balancer, HealthCheck, Rollout, SmokeCheck
from .settings import DEFAULTS, HOOK_STEPS, MigrationSettings, migration_defaults


def plain(value: Any) -> Any:
    """Invoke's DataProxy -> plain dicts, so validation sees ordinary types."""
    if isinstance(value, Mapping) or hasattr(value, "_config"):  # DataProxy is no Mapping
        return {str(k): plain(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(x) for x in value]
    return value


def detect_builder(project_dir: Path) -> str | None:
    if (project_dir / "mix.exs").exists():
        return "mix"
    if (project_dir / "rebar.config").exists():
        return "rebar3"
    return None


class Reader:
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
            if self.check(f"{path}.{key}", lambda x, k=key: v.env_value(k, x), str(val)) is None:
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

    def migrations(self, value: dict[str, Any], app: str, builder: str) -> MigrationSettings:
        """deliver.migrations (merged over its defaults by `section`): each an expression,
        "" for the builder's default; `down` must hold `{to}` (where --to's value goes)."""
        default = migration_defaults(app or "app", builder)
        found = {}
        for key in ("run", "down", "pending"):
            text = value[key]
            if not isinstance(text, str) or "\0" in text:
                self.problems.append(f"deliver.migrations.{key}: expected an expression (Elixir "
                                     f"for mix, Erlang for rebar3) as a string, got {text!r}")
                text = ""
            found[key] = text.strip() or getattr(default, key)
        if "{to}" not in found["down"]:
            self.problems.append(f"deliver.migrations.down: {found['down']!r} has no {{to}}: "
                                 "write where --to's value goes, e.g. MyApp.Release.rollback({to})")
        return MigrationSettings(**found)

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
        kind = str(value.get("kind", base.strategy))
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


LOCAL_STORE = ".deliver/releases"  # the store, or a URL store's local copy


def read_endpoint(r: Reader, raw: Any, shared: store_url.StoreUrl | None) -> str:
    text = str(raw or "")
    if text and not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]_-]+/?", text):
        r.problems.append(f"deliver.store_endpoint: expected http(s)://host[:port], got {text!r}")
    if text and (shared is None or shared.scheme != "s3"):
        r.problems.append("deliver.store_endpoint: only for an s3:// deliver.store")
    return text


def read_auto_version(r: Reader, raw: Any) -> str:
    text = str(raw or "")
    if text:
        try:
            autoversion.pieces(text, "deliver.auto_version")
        except v.InvalidInput as exc:
            r.problems.append(str(exc))
    return text


_BALANCER_KEYS = ("host", "socket", "backend", "servers", "drain_timeout", "min_up")
_BALANCER_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def read_balancer(r: Reader, path: str, raw: Any, default: Balancer | None) -> Balancer | None:
    """`balancer` (top level: every stage's; a stage's own replaces it; `false` turns it off)."""
    if raw is None or raw == {}:
        return default
    if raw is False:
        return None
    if not isinstance(raw, dict):
        r.problems.append(f"deliver.{path}: expected a mapping (host, socket, backend, servers)")
        return default
    r.known(path, raw, _BALANCER_KEYS)
    addr = r.check(f"{path}.host", v.host_address, str(raw.get("host") or ""))
    socket_path = str(raw.get("socket") or "")
    if not re.fullmatch(r"/[A-Za-z0-9._/-]+", socket_path) or ".." in socket_path.split("/"):
        r.problems.append(f"deliver.{path}.socket: expected the absolute path of HAProxy's admin "
                          f"stats socket, got {socket_path!r}")
    backend = str(raw.get("backend") or "")
    servers = raw.get("servers") or {}
    if not isinstance(servers, dict):
        r.problems.append(f"deliver.{path}.servers: expected a mapping deploy host -> server name")
        servers = {}
    for what, name in [("backend", backend), *((f"servers.{k}", s) for k, s in servers.items())]:
        if not _BALANCER_NAME.fullmatch(str(name)):
            r.problems.append(f"deliver.{path}.{what}: invalid HAProxy name {name!r} (letters, "
                              "digits, . _ : -)")
    return Balancer(
        host=addr.spec if addr else "", socket=socket_path, backend=backend,
        servers=tuple((str(k), str(s)) for k, s in servers.items()),
        drain_timeout=r.number(f"{path}.drain_timeout", raw.get("drain_timeout", 30), 0),
        min_up=r.number(f"{path}.min_up", raw.get("min_up", 1), 0, int))


def read_hooks(r: Reader, raw: Any) -> dict[str, tuple[str, ...]]:
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
