"""Live output: one line at a time under one lock, so host-prefixed lines of parallel hosts
never mix; every line the tool prints goes through `say`."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TextIO

_print_lock = threading.Lock()


def say(line: str, target: TextIO | None = None) -> None:
    """Print one line. A reader that went away (`inv eval … | head`) ends the output quietly:
    the run itself goes on to its end (a deploy is never cut off by a closed pipe)."""
    out = target or sys.stdout
    with _print_lock:
        try:
            print(line, file=out, flush=True)
        except BrokenPipeError:
            silence(out)


def silence(out: TextIO) -> None:
    """Point the closed stream's descriptor at /dev/null: later lines, and the flush at exit,
    then go nowhere instead of raising (and printing a traceback)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to redirect
        pass


class PrefixedWriter:
    """A stream that writes complete lines prefixed with the host name (for live output).

    Invoke hands it chunks (cut anywhere) and flushes after each: a partial line waits for its
    end, so lines are printed whole — unless nothing more comes for `partial_wait` seconds (a
    prompt, a log line still being written), then it is shown as it is. partial_wait=0: every
    flush shows the partial line at once (following a log, where a prompt must show now)."""

    PARTIAL_WAIT = 0.3

    def __init__(self, prefix: str, redact: Callable[[str], str],
                 target: TextIO | None = None, partial_wait: float = PARTIAL_WAIT) -> None:
        self.prefix = prefix
        self.redact = redact
        self.target = target or sys.stdout
        self.partial_wait = partial_wait
        self.buf = ""
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def write(self, text: str) -> int:
        with self._lock:
            self._cancel()
            self.buf += text
            while "\n" in self.buf:
                line, self.buf = self.buf.split("\n", 1)
                say(f"{self.prefix}{self.redact(line)}", self.target)
        return len(text)

    def flush(self) -> None:
        """Called after every chunk: a partial line is shown only if it stays partial."""
        with self._lock:
            if self.buf and not self.partial_wait:
                self._emit()
            elif self.buf and self._timer is None:
                self._timer = threading.Timer(self.partial_wait, self._partial, [self.buf])
                self._timer.daemon = True
                self._timer.start()

    def finish(self) -> None:
        """The command ended: print what is left of its last line."""
        with self._lock:
            self._cancel()
            self._emit()

    def _partial(self, seen: str) -> None:
        with self._lock:
            self._timer = None
            if self.buf == seen:  # nothing came since: show it as it is
                self._emit()

    def _emit(self) -> None:
        if self.buf:
            say(f"{self.prefix}{self.redact(self.buf)}", self.target)
            self.buf = ""

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def size_text(size: float) -> str:
    """Bytes as a person reads them: 9.2 MB, or 48 KB (an upgrade tarball is often below 1 MB,
    where "0.0 MB" would say nothing); a few bytes are 1 KB, and only nothing is 0 KB."""
    if size >= 1e6:
        return f"{size / 1e6:.1f} MB"
    return f"{max(1, round(size / 1e3)) if size > 0 else 0} KB"
