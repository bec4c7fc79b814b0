"""Read an edeliver `.deliver/config` without running it, and map it onto our `deliver` config.

    text = read(Path(".deliver/config"))     # the only I/O: InvalidInput (exit 2) if unreadable
    result = import_text(text)               # ImportResult: config, report, unmapped
    invoke_yaml(result.config), report_lines(result), tasks_py()

Everything else in the package is pure: parse (bash.py) -> map (edeliver.py) -> render.
"""

from __future__ import annotations

from pathlib import Path

from ..validation import InvalidInput
from .bash import Assignment, Function, ParsedFile, Problem, parse
from .edeliver import ImportResult, import_text, map_config
from .findings import Finding
from .hooks import HOOKS, HookSpec
from .render import invoke_yaml, report_lines, tasks_py

__all__ = ["HOOKS", "Assignment", "Finding", "Function", "HookSpec", "ImportResult", "ParsedFile",
           "Problem", "import_text", "invoke_yaml", "map_config", "parse", "read", "report_lines",
           "tasks_py"]


def read(path: Path) -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file is bad input (exit 2) that names
    the file, because edeliver users often have several configs around."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file (the edeliver config is .deliver/config in "
                           "your project)") from None
    except OSError as e:
        raise InvalidInput(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InvalidInput(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); "
                           "save it as UTF-8 and run the import again") from None
