"""Bash text cut into tokens and statements, without running any of it.

Enough of bash's grammar to find where a statement, a function body or an if-block ends: quotes,
`$(...)`, `${...}`, backticks, comments, line continuations, here-documents and the reserved
words that open and close compound commands. Words are kept as written (quotes included); their
meaning is words.py's business.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .scan import Source, Unterminated, heredoc_end, word_end

OPERATORS = ("<<<", "<<-", "&&", "||", ";;", ";&", "|&", ">>", "<<", ">&", "<&", "&>", ">|",
             ";", "&", "|", "(", ")", "<", ">")
TERMINATORS = {"newline", ";", "&", ";;", ";&"}
CHAINS = {"&&", "||", "|", "|&"}
REDIRECTS = {"<", ">", ">>", "<<", "<<-", "<<<", ">&", "<&", "&>", ">|"}
CLOSERS = {"if": "fi", "for": "done", "while": "done", "until": "done", "select": "done",
           "case": "esac", "{": "}"}
# after these words the next word is again in command position (where reserved words count)
COMMAND_STARTERS = {"then", "do", "else", "elif", "if", "while", "until", "{", "!", "}", "fi",
                    "done", "esac"}
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FUNC_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_:.-]*")


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "op", "newline" or "heredoc"
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Statement:
    """One complete command: simple, compound (if/for/while/case/{}/()), or a function definition."""

    kind: str  # "simple", "compound" or "function"
    tokens: tuple[Token, ...]
    start: int
    end: int
    keyword: str = ""  # compound: its opening word; function: its name
    body: tuple[int, int] = (0, 0)  # function: the text between its braces

    def words(self) -> list[str]:
        return [t.text for t in self.tokens if t.kind == "word"]

    def ops(self) -> list[str]:
        return [t.text for t in self.tokens if t.kind in ("op", "heredoc")]


def tokenize(src: Source, start: int = 0, end: int | None = None) -> list[Token]:
    """The tokens of src.text[start:end]; raises Unterminated for an unclosed quote or heredoc."""
    text = src.text[:end] if end is not None else src.text
    out: list[Token] = []
    pending: list[tuple[str, bool, int]] = []  # here-documents whose bodies follow the next newline
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
        elif c == "\\" and text[i + 1:i + 2] == "\n":
            i += 2
        elif c == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
        elif c == "\n":
            out.append(Token("newline", "\n", i, i + 1))
            i += 1
            for delimiter, strip, opened_at in pending:
                body_end = heredoc_end(text, i, delimiter, strip, opened_at)
                out.insert(len(out) - 1, Token("heredoc", text[i:body_end], i, body_end))
                i = min(body_end + 1, n)
            pending.clear()
        else:
            op = next((o for o in OPERATORS if text.startswith(o, i)), None)
            if op is None:
                j = word_end(text, i)
                out.append(Token("word", text[i:j], i, j))
                i = j
                continue
            out.append(Token("op", op, i, i + len(op)))
            i += len(op)
            if op in ("<<", "<<-"):
                while i < n and text[i] in " \t":
                    i += 1
                j = word_end(text, i)
                out.append(Token("word", text[i:j], i, j))
                pending.append((re.sub(r"['\"\\]", "", text[i:j]), op == "<<-", i))
                i = j
    return out


def block_parts(tokens: Sequence[Token], i: int = 0) -> list[int]:
    """Indices of the words that divide the compound command opened at tokens[i], at its own
    level (then, elif, else, do), ending with the index of the word or `)` that closes it."""
    stack: list[str] = []
    found: list[int] = []
    command_pos = True
    for j in range(i, len(tokens)):
        t = tokens[j]
        in_case = bool(stack) and stack[-1] == "esac"
        word_cmd = t.kind == "word" and command_pos
        if word_cmd and stack and t.text == stack[-1]:
            stack.pop()
        elif word_cmd and t.text in CLOSERS:
            stack.append(CLOSERS[t.text])
        elif word_cmd and len(stack) == 1 and t.text in ("then", "elif", "else", "do"):
            found.append(j)
        elif t.kind == "op" and t.text == "(" and not in_case:
            stack.append(")")
        elif t.kind == "op" and t.text == ")" and stack and stack[-1] == ")":
            stack.pop()
        if not stack:
            return [*found, j]
        command_pos = (t.kind in ("newline", "heredoc") or (t.kind == "op" and t.text not in REDIRECTS)
                       or (word_cmd and t.text in COMMAND_STARTERS))
        if in_case and t.kind == "word" and t.text == "in":
            command_pos = True
    raise Unterminated(tokens[i].start, tokens[i].text)


def _compound_end(tokens: Sequence[Token], i: int) -> int:
    """The index after the token that closes the compound command opened at tokens[i]."""
    return block_parts(tokens, i)[-1] + 1


def _function_at(tokens: list[Token], i: int) -> tuple[str, int] | None:
    """(name, index of the body's first token) when a function definition starts at i."""
    t = tokens[i]
    if t.kind != "word":
        return None
    j, name = i + 1, t.text
    if t.text == "function" and j < len(tokens) and tokens[j].kind == "word":
        name, j = tokens[j].text, j + 1
    elif not (j + 1 < len(tokens) and tokens[j].text == "(" and tokens[j + 1].text == ")"):
        return None
    if not _FUNC_NAME_RE.fullmatch(name):
        return None
    if j + 1 < len(tokens) and tokens[j].text == "(" and tokens[j + 1].text == ")":
        j += 2
    while j < len(tokens) and tokens[j].kind == "newline":
        j += 1
    if j < len(tokens) and (tokens[j].text == "{" or (tokens[j].kind == "op" and tokens[j].text == "(")):
        return name, j
    return None


def _command_end(tokens: list[Token], i: int) -> int:
    """The index after one command (simple or compound) that starts at i."""
    t = tokens[i]
    if (t.kind == "word" and t.text in CLOSERS) or (t.kind == "op" and t.text == "("):
        i = _compound_end(tokens, i)
    while i < len(tokens) and not (tokens[i].kind in TERMINATORS or tokens[i].text in TERMINATORS
                                   or tokens[i].text in CHAINS):
        i += 1
    return i


def _statement_end(tokens: list[Token], i: int) -> int:
    """The index after a whole list of commands chained with && || |."""
    while True:
        i = _command_end(tokens, i)
        if i < len(tokens) and tokens[i].kind == "op" and tokens[i].text in CHAINS:
            i += 1
            while i < len(tokens) and tokens[i].kind == "newline":
                i += 1
            if i >= len(tokens):
                return i
            continue
        return i


def statements(src: Source, start: int = 0, end: int | None = None) -> list[Statement]:
    """The top-level statements of src.text[start:end]; raises Unterminated like tokenize."""
    tokens = tokenize(src, start, end)
    out: list[Statement] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "newline" or t.text in TERMINATORS:
            i += 1
            continue
        func = _function_at(tokens, i)
        if func:
            name, body_at = func
            close = _compound_end(tokens, body_at)
            part = tuple(tokens[i:close])
            body = (tokens[body_at].end, tokens[close - 1].start)
            out.append(Statement("function", part, t.start, part[-1].end, name, body))
            i = close
            continue
        j = _statement_end(tokens, i)
        part = tuple(tokens[i:j])
        opener = t.text if (t.text in CLOSERS or t.text == "(") else ""
        kind = "compound" if opener and t.kind in ("word", "op") else "simple"
        out.append(Statement(kind, part, t.start, max(x.end for x in part), opener))
        i = j
    return out
