"""The text an import writes: invoke.yaml, a minimal tasks.py, and the report's lines.

The YAML is written here rather than by a YAML library (none is a dependency). Every string is a
double-quoted scalar with escapes, so no value (a host like `no`, a hook with `: ` or `#`, a
Unicode line separator) can be read back as anything but the string it was.
"""

from __future__ import annotations

import re
from typing import Any

from .edeliver import ImportResult

_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# words YAML 1.1 readers (PyYAML among them) take as booleans or null when unquoted
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}
HEADER = ("# The deliver config imported from edeliver's .deliver/config (inv deliver.import).\n"
          "# Read the import's report first; every task checks this config before it connects.\n")


def yaml_string(text: str) -> str:
    """text as a YAML double-quoted scalar that reads back exactly (also as JSON-style text)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif ch in "\u2028\u2029\ufeff" or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    if _PLAIN_KEY_RE.fullmatch(key) and key.lower() not in _YAML_WORDS:
        return key
    return yaml_string(key)


def _inline(value: object) -> str | None:
    """The one-line form of a value, or None when it needs a block (a non-empty dict or list)."""
    if isinstance(value, dict):
        return None if value else "{}"
    if isinstance(value, list):
        return None if value else "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "null"
    return yaml_string(str(value))


def _block(value: dict[str, Any] | list[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for key, item in items:
        head = f"{pad}{_key(str(key))}:" if key is not None else f"{pad}-"
        inline = _inline(item)
        if inline is not None:
            lines.append(f"{head} {inline}")
        elif key is not None:
            lines.append(head)
            lines.extend(_block(item, indent + 2))
        else:
            inner = _block(item, indent + 2)
            lines.append(f"{head} {inner[0].lstrip()}")
            lines.extend(inner[1:])
    return lines


def invoke_yaml(config: dict[str, Any]) -> str:
    """invoke.yaml text holding `config` as the `deliver` subtree."""
    if not config:
        return HEADER + "deliver: {}\n"
    return HEADER + "deliver:\n" + "\n".join(_block(config, 2)) + "\n"


def tasks_py() -> str:
    """A tasks.py that makes pydeliver_tasks' collection this project's tasks."""
    return ('"""Invoke tasks of this project: pydeliver_tasks\' collection, configured by '
            'invoke.yaml."""\n\nfrom pydeliver_tasks import ns  # noqa: F401\n')


def report_lines(result: ImportResult, path: str = ".deliver/config") -> list[str]:
    """One line per finding, `path:LINE NAME: what happened` (no line for the file as a whole)."""
    return [f"{path}:{f.line} {f.name}: {f.what}" if f.line else f"{path} {f.name}: {f.what}"
            for f in result.report]
