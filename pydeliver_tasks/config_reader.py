"""Reading the raw `deliver` subtree: each field checked where it is read, every problem kept
with its key path (config.load reports them all at once)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import autoversion, store_url
from . import validation as v
from .model import HealthCheck, Rollout, SmokeCheck
from .settings import DEFAULTS, MigrationSettings, migration_defaults


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
