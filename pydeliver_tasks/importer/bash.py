"""An edeliver `.deliver/config` read the way bash would source it, but never run.

edeliver sources the file, so its settings are whatever bash makes of it. We only need the
top-level assignments (resolved in file order, as bash does) and the function bodies (hooks);
everything else is reported with its line instead of guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexer import CLOSERS, NAME_RE, Statement, statements
from .scan import Source, Unterminated
from .words import expand

_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_DECLARERS = {"export", "readonly", "declare", "typeset"}
_DECLARE_FLAGS = {"-x", "-r", "-g", "-rx", "-xr"}


@dataclass(frozen=True)
class Problem:
    """Something in the file the reader cannot take as plain settings (1-based line)."""

    line: int
    name: str
    message: str
    skipped: bool = False  # True: the statement was not read at all


@dataclass(frozen=True)
class Assignment:
    name: str
    value: str  # resolved against the earlier assignments
    raw: str  # as written after the `=`
    line: int
    exported: bool = False
    clean: bool = True  # False: parts are left as written (unset names, substitutions)
    refs: tuple[str, ...] = ()
    substituted: bool = False  # it holds a command substitution
    append: bool = False  # NAME+=value: adds to the earlier value


@dataclass(frozen=True)
class Function:
    name: str
    line: int
    body: str  # the text between its braces
    body_line: int  # the line the body text starts on


@dataclass
class ParsedFile:
    assignments: list[Assignment]
    functions: list[Function]
    problems: list[Problem]
    values: dict[str, str]  # each name's value after the whole file

    def last(self, name: str) -> Assignment | None:
        """The assignment bash keeps for name (the last one), if any."""
        return next((a for a in reversed(self.assignments) if a.name == name), None)

    def function(self, name: str) -> Function | None:
        return next((f for f in reversed(self.functions) if f.name == name), None)


def _short(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= 60 and "\n" not in text.strip() else first[:57] + "..."


class _Reader:
    def __init__(self, text: str) -> None:
        self.problems: list[Problem] = []
        if text.startswith("\ufeff"):
            text = text[1:]
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
            self.problems.append(Problem(1, "file", "Windows (CRLF) line ends: read as plain "
                                                    "newlines (bash would keep the CR in values)"))
        self.src = Source(text)
        self.values: dict[str, str] = {}
        self.clean: dict[str, bool] = {}
        self.first: dict[str, int] = {}
        self.assignments: list[Assignment] = []
        self.functions: list[Function] = []

    def run(self) -> ParsedFile:
        for st in self._statements():
            line = self.src.line(st.start)
            if st.kind == "function":
                self._function(st, line)
            elif st.kind == "compound":
                self._block(st, line)
            else:
                self._simple(st, line)
        return ParsedFile(self.assignments, self.functions, self.problems, self.values)

    def _statements(self) -> list[Statement]:
        """The statements up to the first one bash could not parse (reported with its line)."""
        end = len(self.src.text)
        reported = False
        while True:
            try:
                return statements(self.src, 0, end)
            except Unterminated as e:
                line = self.src.line(e.pos)
                if not reported:
                    self.problems.append(Problem(
                        line, "syntax", f"{e.what} opened here is never closed: bash would refuse "
                        "the file; nothing from this line on is read", skipped=True))
                    reported = True
                # read up to the line it starts on (always less than before: this ends)
                end = self.src.text.rfind("\n", 0, min(e.pos, end - 1)) + 1

    def _function(self, st: Statement, line: int) -> None:
        earlier = next((f for f in self.functions if f.name == st.keyword), None)
        if earlier:
            self.problems.append(Problem(line, st.keyword, f"defined again (first at line "
                                         f"{earlier.line}): bash keeps this later definition"))
        start, end = st.body
        self.functions.append(Function(st.keyword, line, self.src.text[start:end],
                                       self.src.line(start)))

    def _block(self, st: Statement, line: int) -> None:
        names = sorted({m.group(1) for w in st.words() if (m := _ASSIGN_RE.match(w))})
        what = f"a top-level `{st.keyword}` block is not run by the importer"
        if names:
            what += f", so what it sets ({', '.join(names)}) is not imported"
        keyword = st.keyword if st.keyword in CLOSERS else "subshell"
        self.problems.append(Problem(line, keyword, what + "; set the values directly",
                                     skipped=True))

    def _simple(self, st: Statement, line: int) -> None:
        words = st.words()
        if not words:
            return
        if not st.ops() and all(_ASSIGN_RE.match(w) for w in words):
            for tok in st.tokens:
                self._assign(tok.text, self.src.line(tok.start), False)
            return
        if not st.ops() and words[0] in _DECLARERS and all(
                _ASSIGN_RE.match(w) or NAME_RE.fullmatch(w) or w in _DECLARE_FLAGS
                for w in words[1:]):
            for tok in st.tokens[1:]:
                if _ASSIGN_RE.match(tok.text):
                    self._assign(tok.text, self.src.line(tok.start), words[0] == "export")
            return
        text = _short(self.src.text[st.start:st.end])
        names = [m.group(1) for w in words if (m := _ASSIGN_RE.match(w))]
        if words[0] in ("source", "."):
            why = f"`{text}` is not followed: the importer reads only this file"
        else:
            why = f"`{text}` is a command: the importer does not run commands"
            if names:
                why += f", so the {', '.join(dict.fromkeys(names))} in it is not imported"
        self.problems.append(Problem(line, names[0] if names else words[0], why, skipped=True))

    def _assign(self, word: str, line: int, exported: bool) -> None:
        m = _ASSIGN_RE.match(word)
        if m is None:
            return
        name, append, raw = m.group(1), m.group(2) == "+", word[m.end():]
        if raw.startswith("("):
            self.problems.append(Problem(line, name, "an array: not imported", skipped=True))
            return
        try:
            exp = expand(raw, self.values.get, line, assignment=True)
        except Unterminated:
            self.problems.append(Problem(line, name, "a value bash cannot read: not imported",
                                         skipped=True))
            return
        self.problems.extend(Problem(n.line, name, n.message) for n in exp.notes)
        for other, value in exp.assigned.items():  # ${OTHER:=x} sets OTHER too
            self.values[other] = value
            self.clean.setdefault(other, True)
        clean = exp.clean
        value = exp.value
        if append:
            value = self.values.get(name, "") + value
            clean = clean and self.clean.get(name, True)
        elif name in self.first:
            self.problems.append(Problem(line, name, f"assigned again (first at line "
                                         f"{self.first[name]}): the later value wins, as in bash"))
        self.first.setdefault(name, line)
        self.values[name] = value
        self.clean[name] = clean
        self.assignments.append(Assignment(name, value, raw, line, exported, clean,
                                           tuple(exp.refs), bool(exp.substitutions), append))


def parse(text: str) -> ParsedFile:
    """Read the text of a `.deliver/config` as bash would source it, without running anything."""
    return _Reader(text).run()
