"""What one bash word becomes, worked out without running anything.

Quotes are removed as bash removes them; `$VAR`, `${VAR}` and the default forms `${VAR:-x}`,
`${VAR:=x}`, `${VAR:+x}` are filled from the values the caller knows. Whatever would need a
running shell (command substitution, arithmetic, unknown variables, other `${...}` forms) is left
as written and noted, so the reader sees exactly what was not resolved and where.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .lexer import NAME_RE
from .scan import Unterminated, skip_nested

Lookup = Callable[[str], "str | None"]
_BRACED_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=+?])(.*))?", re.S)
_SPECIAL = set("@*#?$!-0123456789")
_DQ_ESCAPES = set('$`"\\')
_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f",
              "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _ansi_c(body: str) -> str:
    """The text of bash's $'...' quoting: backslash escapes decoded (\\xHH and the usual ones)."""
    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] == "x":
            return chr(int(esc[1:], 16))
        return _C_ESCAPES.get(esc, "\\" + esc)
    return re.sub(r"\\(x[0-9A-Fa-f]{1,2}|.)", one, body, flags=re.S)


def unset_before(name: str) -> str:
    """The note for a variable that no earlier line of the file sets."""
    return f"${name} is not set before this line: left as is"


@dataclass(frozen=True)
class Note:
    line: int
    message: str


@dataclass
class Expansion:
    """The value of a word, and everything about it that is not plain text."""

    value: str
    notes: list[Note] = field(default_factory=list)
    clean: bool = True  # False: something is left as written (unset name, substitution, ...)
    refs: list[str] = field(default_factory=list)  # names looked up, set or not
    ref_lines: dict[str, int] = field(default_factory=dict)  # the line each name is first used on
    assigned: dict[str, str] = field(default_factory=dict)  # by ${NAME:=x}
    substitutions: list[str] = field(default_factory=list)  # $(...) and `...` left as written


class _Expander:
    def __init__(self, raw: str, lookup: Lookup, line: int, unset: Callable[[str], str],
                 assignment: bool) -> None:
        self.raw, self.lookup, self.line, self.unset = raw, lookup, line, unset
        self.assignment = assignment
        self.result = Expansion("")

    def line_of(self, pos: int) -> int:
        return self.line + self.raw.count("\n", 0, pos)

    def ref(self, name: str, pos: int) -> None:
        self.result.refs.append(name)
        self.result.ref_lines.setdefault(name, self.line_of(pos))

    def note(self, pos: int, message: str, clean: bool = True) -> None:
        found = Note(self.line_of(pos), message)
        if found not in self.result.notes:  # "$A $A": one note is enough
            self.result.notes.append(found)
        self.result.clean = self.result.clean and clean

    def run(self) -> Expansion:
        raw, out, i = self.raw, [], 0
        while i < len(raw):
            c = raw[i]
            if c == "'":
                end = raw.find("'", i + 1)
                if end < 0:
                    raise Unterminated(i, "'")
                out.append(raw[i + 1:end])
                i = end + 1
            elif c == '"':
                i = self._double(i + 1, out)
            elif c == "\\":
                out.append("" if raw[i + 1:i + 2] == "\n" else raw[i + 1:i + 2])
                i += 2
            elif c in "$`":
                i = self._dollar(i, out)
            else:
                if c == "~" and self.assignment and (i == 0 or raw[i - 1] == ":"):
                    self.note(i, "an unquoted ~ here is your local home directory to bash: "
                                 "kept as ~ (quote it in the file to say so)")
                out.append(c)
                i += 1
        self.result.value = "".join(out)
        return self.result

    def _double(self, i: int, out: list[str]) -> int:
        raw = self.raw
        while i < len(raw):
            c = raw[i]
            if c == '"':
                return i + 1
            if c == "\\" and raw[i + 1:i + 2] == "\n":
                i += 2
            elif c == "\\" and raw[i + 1:i + 2] in _DQ_ESCAPES:
                out.append(raw[i + 1])
                i += 2
            elif c in "$`":
                i = self._dollar(i, out, quoted=True)
            else:
                out.append(c)
                i += 1
        raise Unterminated(i, '"')

    def _dollar(self, i: int, out: list[str], quoted: bool = False) -> int:
        """Expand the `$...` or backtick form at i; returns the index after it."""
        raw = self.raw
        nxt = raw[i + 1:i + 2]
        if raw[i] == "`" or nxt == "(":
            if raw[i] == "`":
                j = raw.find("`", i + 1)
                if j < 0:
                    raise Unterminated(i, "`")
                j += 1
            else:
                j = skip_nested(raw, i + 1, "(", ")")
            text = raw[i:j]
            kind = "arithmetic" if text.startswith("$((") else "a command substitution"
            self.note(i, f"{text} is {kind}: not run, left as is", clean=False)
            self.result.substitutions.append(text)
            out.append(text)
            return j
        if nxt == "'" and raw[i] == "$" and not quoted:
            j = i + 2
            while j < len(raw) and raw[j] != "'":
                j += 2 if raw[j] == "\\" else 1
            if j >= len(raw):
                raise Unterminated(i, "$'")
            out.append(_ansi_c(raw[i + 2:j]))
            return j + 1
        if nxt == "{":
            j = skip_nested(raw, i + 1, "{", "}")
            out.append(self._braced(raw[i + 2:j - 1], raw[i:j], i))
            return j
        m = NAME_RE.match(raw, i + 1)
        if m:
            out.append(self._lookup(m.group(), raw[i:m.end()], i))
            return m.end()
        if nxt and nxt in _SPECIAL:
            self.note(i, f"${nxt} is a shell parameter that only a running shell has: left as is",
                      clean=False)
            out.append(raw[i:i + 2])
            return i + 2
        out.append("$")
        return i + 1

    def _lookup(self, name: str, text: str, pos: int) -> str:
        self.ref(name, pos)
        value = self.lookup(name)
        if value is None:
            self.note(pos, self.unset(name), clean=False)
            return text
        return value

    def _sub(self, word: str, pos: int) -> str:
        """The default/alternative word of ${NAME:-word}, expanded the same way."""
        inner = _Expander(word, self.lookup, self.line_of(pos), self.unset, False).run()
        self.result.notes.extend(inner.notes)
        self.result.clean = self.result.clean and inner.clean
        self.result.refs.extend(inner.refs)
        for name, at in inner.ref_lines.items():
            self.result.ref_lines.setdefault(name, at)
        self.result.assigned.update(inner.assigned)
        self.result.substitutions.extend(inner.substitutions)
        return inner.value

    def _braced(self, inner: str, text: str, pos: int) -> str:
        m = _BRACED_RE.fullmatch(inner)
        if not m:
            what = "a shell parameter that only a running shell has" if inner in _SPECIAL or \
                inner.isdigit() else "an expansion the importer does not work out"
            self.note(pos, f"{text} is {what}: left as is", clean=False)
            return text
        name, op, word = m.groups()
        if op is None:
            return self._lookup(name, text, pos)
        self.ref(name, pos)
        value = self.lookup(name)
        missing = value is None or (op.startswith(":") and value == "")
        state = "not set" if value is None else "empty"
        if op in ("-", ":-", "=", ":="):
            if not missing:
                self.note(pos, f"{text}: {name} is set, so the default is not used")
                return str(value)
            default = self._sub(word, pos)
            if "=" in op:
                self.result.assigned[name] = default
                self.note(pos, f"{text}: {name} is {state}, so it is set to {default!r} here")
            else:
                self.note(pos, f"{text}: {name} is {state}, so the default {default!r} is used")
            return default
        if op in ("+", ":+"):
            if missing:
                self.note(pos, f"{text}: {name} is {state}, so it is empty")
                return ""
            alternative = self._sub(word, pos)
            self.note(pos, f"{text}: {name} is set, so {alternative!r} is used")
            return alternative
        if missing:
            self.note(pos, f"{text}: bash would stop here, as {name} is {state}: left as is",
                      clean=False)
            return text
        return str(value)


def expand(raw: str, lookup: Lookup, line: int, *, unset: Callable[[str], str] = unset_before,
           assignment: bool = False) -> Expansion:
    """The value of the word `raw` (as written in the file, starting on `line`).

    Raises lexer.Unterminated for an unclosed quote or substitution."""
    return _Expander(raw, lookup, line, unset, assignment).run()
