"""Character-level bash scanning: where a quote, a substitution, a word or a here-document
ends. Kept apart from the token and statement logic (lexer.py) that builds on it."""

from __future__ import annotations

import bisect
import re

_ARRAY_START_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")


class Unterminated(Exception):
    """A quote, substitution or block that the text never closes (bash would refuse the file)."""

    def __init__(self, pos: int, what: str) -> None:
        super().__init__(what)
        self.pos = pos
        self.what = what


class Source:
    """A text and the line number of its first character, so positions can be told as lines."""

    def __init__(self, text: str, first_line: int = 1) -> None:
        self.text = text
        self.first_line = first_line
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line(self, pos: int) -> int:
        return self.first_line + bisect.bisect_left(self._newlines, pos)


def _skip_quoted(text: str, i: int, quote: str) -> int:
    """The index after the closing quote of a quote opened at i."""
    n = len(text)
    j = i + 1
    if quote == "'":
        end = text.find("'", j)
        if end < 0:
            raise Unterminated(i, "'")
        return end + 1
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
        elif c == quote:
            return j + 1
        elif quote == '"' and c == "`":
            j = _skip_quoted(text, j, "`")
        elif quote == '"' and c == "$" and text[j + 1:j + 2] in ("(", "{"):
            j = _skip_dollar(text, j)
        else:
            j += 1
    raise Unterminated(i, quote)


def skip_nested(text: str, i: int, opening: str, closing: str) -> int:
    """The index after the `closing` that matches the `opening` at i (quotes skipped)."""
    depth, j, n = 0, i, len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c in "'\"`":
            j = _skip_quoted(text, j, c)
            continue
        if c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise Unterminated(i, opening)


def _skip_dollar(text: str, i: int) -> int:
    """The index after `$(...)`, `$((...))` or `${...}` starting at i."""
    if text[i + 1] == "(":
        return skip_nested(text, i + 1, "(", ")")
    return skip_nested(text, i + 1, "{", "}")


def word_end(text: str, i: int) -> int:
    """The index after the word that starts at i."""
    n, start = len(text), i
    while i < n:
        c = text[i]
        if c == "(" and _ARRAY_START_RE.fullmatch(text[start:i]):
            i = skip_nested(text, i, "(", ")")  # NAME=(a b): one word, an array
        elif c in " \t\n;&|()<>":
            break
        elif c == "\\":
            i += 2
        elif c in "'\"`":
            i = _skip_quoted(text, i, c)
        elif c == "$" and text[i + 1:i + 2] in ("(", "{"):
            i = _skip_dollar(text, i)
        else:
            i += 1
    return min(i, n)


def heredoc_end(text: str, i: int, delimiter: str, strip_tabs: bool, opened_at: int) -> int:
    """The index after the here-document body that starts at i (after its newline)."""
    n = len(text)
    while i < n:
        end = text.find("\n", i)
        end = n if end < 0 else end
        line = text[i:end]
        if (line.lstrip("\t") if strip_tabs else line) == delimiter:
            return end
        i = end + 1
    raise Unterminated(opened_at, f"<<{delimiter}")
