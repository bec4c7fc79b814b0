"""Live output: one line at a time under one lock, so host-prefixed lines of parallel hosts
never mix; every line the tool prints goes through `say`."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

_print_lock = threading.Lock()


def say(line: str, target: TextIO | None = None) -> None:
    with _print_lock:
        print(line, file=target or sys.stdout, flush=True)


class PrefixedWriter:
    """A stream that writes complete lines prefixed with the host name (for live output)."""

    def __init__(self, prefix: str, redact: Callable[[str], str], target: TextIO | None = None) -> None:
        self.prefix = prefix
        self.redact = redact
        self.target = target or sys.stdout
        self.buf = ""

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            say(f"{self.prefix}{self.redact(line)}", self.target)
        return len(text)

    def flush(self) -> None:
        if self.buf:
            say(f"{self.prefix}{self.redact(self.buf)}", self.target)
            self.buf = ""
