"""A user's `.appup` file read here, before anything runs anywhere: its first term, with lines.

OTP reads the first term of an appup (later terms are ignored, as ranch's own appup has them), so
we do too. What is checked: the file parses; the term is `{Vsn, [{UpFrom, Instrs}], [{DownTo,
Instrs}]}`; and, once the releases' modules are known, that each module an instruction loads,
updates, adds or deletes exists in the release it needs. Errors say file:line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..validation import InvalidInput

_TOKEN = re.compile(r"""
    (?P<space>\s+) | (?P<comment>%[^\n]*) |
    (?P<string>"(?:[^"\\]|\\.)*") | (?P<qatom>'(?:[^'\\]|\\.)*') |
    (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\$\\?.) |
    (?P<atom>[a-z][A-Za-z0-9_@]*) | (?P<var>[A-Z_][A-Za-z0-9_]*) |
    (?P<punct><<|>>|=>|\#\{|[{}\[\],|.])
""", re.X | re.S)


@dataclass
class Atom:
    name: str
    line: int


@dataclass
class Text:
    value: str
    line: int


@dataclass
class Node:
    """A tuple or list, with the line it starts on."""

    kind: str  # "tuple" | "list" | "other"
    items: list = field(default_factory=list)
    line: int = 0


@dataclass
class Appup:
    path: Path
    vsn: str
    modules: list[tuple[str, str, int]]  # (instruction, module, line): load_module/update/...


def _tokens(text: str, path: Path) -> list[tuple[str, str, int]]:
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise InvalidInput(f"{path}:{line}: cannot read {text[pos:pos + 20]!r} "
                               "(an appup is one Erlang term ending in '.')")
        kind, value = m.lastgroup or "", m.group()
        if kind not in ("space", "comment"):
            out.append((kind, value, line))
        line += value.count("\n")
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], path: Path) -> None:
        self.t, self.i, self.path = tokens, 0, path

    def fail(self, message: str) -> InvalidInput:
        line = self.t[min(self.i, len(self.t) - 1)][2] if self.t else 1
        return InvalidInput(f"{self.path}:{line}: {message}")

    def peek(self) -> tuple[str, str, int]:
        if self.i >= len(self.t):
            raise self.fail("the term ends too early (missing '}', ']' or '.')")
        return self.t[self.i]

    def term(self) -> object:
        kind, value, line = self.peek()
        self.i += 1
        if value in ("{", "[", "<<", "#{"):
            close = {"{": "}", "[": "]", "<<": ">>", "#{": "}"}[value]
            items: list = []
            while self.peek()[1] != close:
                items.append(self.term())
                if self.peek()[1] in (",", "|", "=>"):
                    self.i += 1
                elif self.peek()[1] != close:
                    raise self.fail(f"expected ',' or '{close}', got {self.peek()[1]!r}")
            self.i += 1
            return Node({"{": "tuple", "[": "list"}.get(value, "other"), items, line)
        if kind in ("atom", "qatom"):
            return Atom(value.strip("'") if kind == "qatom" else value, line)
        if kind == "string":
            return Text(value[1:-1], line)
        if kind == "number":
            return Node("other", [], line)
        raise self.fail(f"unexpected {value!r}")


def _check_instrs(node: object, path: Path, where: str) -> list[tuple[str, str, int]]:
    if not isinstance(node, Node) or node.kind != "list":
        raise InvalidInput(f"{path}:{getattr(node, 'line', 1)}: {where} must be a list of "
                           "{Vsn, Instructions}")
    found = []
    for pair in node.items:
        ok = isinstance(pair, Node) and pair.kind == "tuple" and len(pair.items) == 2 \
            and isinstance(pair.items[0], Text) and isinstance(pair.items[1], Node) \
            and pair.items[1].kind == "list"
        if not ok:
            raise InvalidInput(f"{path}:{getattr(pair, 'line', 1)}: each entry of {where} must be "
                               "{\"Vsn\", [Instruction, ...]}")
        for ins in pair.items[1].items:
            if isinstance(ins, Node) and ins.kind == "tuple" and len(ins.items) >= 2 \
                    and isinstance(ins.items[0], Atom) and isinstance(ins.items[1], Atom) \
                    and ins.items[0].name in ("load_module", "update", "add_module",
                                              "delete_module"):
                found.append((ins.items[0].name, ins.items[1].name, ins.items[1].line))
    return found


def read(path: Path) -> Appup:
    """The first term of the appup at `path`, checked for shape (InvalidInput: file:line)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read it: {exc}") from None
    tokens = _tokens(text, path)
    p = _Parser(tokens, path)
    if not tokens:
        raise InvalidInput(f"{path}:1: empty (an appup is one {{Vsn, UpFrom, DownTo}} term)")
    term = p.term()
    if p.peek()[1] != ".":
        raise p.fail("the term must end with '.'")
    shape = isinstance(term, Node) and term.kind == "tuple" and len(term.items) == 3 \
        and isinstance(term.items[0], Text)
    if not shape:
        raise InvalidInput(f"{path}:{getattr(term, 'line', 1)}: expected {{\"Vsn\", UpFrom, "
                           "DownTo}}")
    assert isinstance(term, Node)
    up = _check_instrs(term.items[1], path, "UpFrom")
    down = _check_instrs(term.items[2], path, "DownTo")
    return Appup(path, term.items[0].value, up + down)


def missing_modules(appup: Appup, new_modules: set[str], old_modules: set[str]) -> list[str]:
    """Instructions naming a module the release lacks: loaded/updated/added ones must be in the
    new release or the old (for the downgrade), deleted ones in either."""
    known = new_modules | old_modules
    return [f"{appup.path}:{line}: {{{ins}, {name}}} names a module that is in neither release"
            for ins, name, line in appup.modules if name not in known]
