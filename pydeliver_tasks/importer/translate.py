"""One edeliver hook function turned into the shell commands of one of our hooks.

An edeliver hook runs on your machine; only what it hands to `__sync_remote "..."` or
`__remote "..."` runs on a host. That remote script is what we keep, as a list of commands (our
hooks run each one with `sh -c`, and a failing one fails the step, so `set -e` is not needed).
The script is split only where no command changes the shell for the next one (`cd`, `export`, ...);
otherwise it stays one command. Everything else in the function is reported with its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .bash import Function
from .findings import Finding, not_mapped, note
from .lexer import COMMAND_STARTERS, REDIRECTS, Statement, Token, block_parts, statements
from .scan import Source, Unterminated
from .words import Expansion, expand

# what edeliver assumes when the file does not set these
EDELIVER_DEFAULTS = {"TARGET_MIX_ENV": "prod", "MIX_CMD": "mix"}
RUNTIME = {
    "SILENCE": "edeliver's output silencing",
    "VERBOSE": "from edeliver's command-line options", "MODE": "from edeliver's command-line options",
    "DEPLOY_ENVIRONMENT": "the stage edeliver acted on", "NODE_ENVIRONMENT": "the stage edeliver acted on",
    "VERSION": "the version edeliver worked on", "RELEASE_VERSION": "the version edeliver built",
    "BRANCH": "the branch edeliver built", "REVISION": "the commit edeliver built",
    "PROFILE": "the profile file edeliver sourced", "HOSTS": "the hosts edeliver acted on",
    "HOSTS_APP_USER": "the hosts edeliver acted on", "APP_USER": "the user edeliver logged in as",
    "RELEASE_DIR": "the release directory edeliver found", "ORIGIN_DIR": "your project directory",
}
# where our hook runs, and so what edeliver's directory variables become there
CONTEXT_VARS = {
    "build": ({"BUILD_AT": ".", "DELIVER_TO": "."}, "the hook runs in build.path"),
    "work": ({"BUILD_AT": ".", "DELIVER_TO": "."}, "the hook runs in the project's work tree"),
    "deploy": ({"DELIVER_TO": "..", "TEST_AT": ".."}, "the hook runs in the release root "
               "(deploy_path), which is $DELIVER_TO/$APP"),
}
_HERE_RE = re.compile(r"\$\{?(?:DELIVER_TO|TEST_AT)\}?/+\$\{?APP\}?(?![A-Za-z0-9_])")
_HOSTS_ARGS = {"$HOSTS", '"$HOSTS"', "$HOSTS_APP_USER", '"$HOSTS_APP_USER"'}
_PROFILE_RE = re.compile(r"(\[\s+-[fers]\s+\S+\s+\]\s*&&\s*)?(source|\.)\s+\S*(profile|bashrc)\S*",
                         re.I)
_STATEFUL = {"cd", "pushd", "popd", "export", "unset", "source", ".", "alias", "umask", "set",
             "shopt", "trap", "local", "declare", "typeset", "readonly", "eval", "exec", "ulimit"}
_ASSIGN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")


def _unquoted(word: str) -> str:
    return re.sub(r"['\"]", "", word)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 70 else text[:67] + "..."


def _is_set_e(st: Statement) -> bool:
    return st.kind == "simple" and not st.ops() and \
        [_unquoted(w) for w in st.words()] in (["set", "-e"], ["set", "-o", "errexit"])


def _is_cd_here(words: list[str]) -> bool:
    rest = [_unquoted(w) for w in words[1:] if w not in ("$SILENCE", "${SILENCE}")]
    return bool(words) and words[0] == "cd" and rest in (["."], ["./"])


def _changes_state(st: Statement) -> bool:
    """Whether a command could change the shell for the commands after it (cd, export, ...)."""
    command_pos, bare = True, False  # bare: NAME=value with no command after it
    for t in st.tokens:
        if t.kind == "word":
            if command_pos and _ASSIGN_RE.match(t.text):
                bare = True
                continue
            if command_pos and t.text in _STATEFUL:
                return True
            bare = False
            command_pos = command_pos and t.text in COMMAND_STARTERS
        else:
            if bare:
                return True
            command_pos = t.kind != "heredoc" and t.text not in REDIRECTS
    return bare


def script_commands(script: str, line: int, name: str, why_here: str) -> tuple[list[str], list[Finding]]:
    """The commands of a remote script (already expanded) that starts on `line`."""
    src = Source(script, line)
    try:
        found = statements(src)
    except Unterminated:
        text = script.strip()
        return ([text] if text else []), [note(line, name, "kept the remote script as one "
                                                            "command: the importer cannot split it")]
    findings: list[Finding] = []
    kept: list[tuple[Statement, str]] = []
    for st in found:
        text = src.text[st.start:st.end]
        at = src.line(st.start)
        words = st.words()
        if _PROFILE_RE.fullmatch(text.strip()):
            findings.append(note(at, name, f"dropped `{_short(text)}`: edeliver's profile loading; "
                                           "if a command needs what it sets, prefix that command "
                                           "with `. ~/.profile && `"))
        elif st.kind == "simple" and not st.ops() and _is_cd_here(words):
            findings.append(note(at, name, f"dropped `{_short(text)}`: {why_here}"))
        else:
            toks = st.tokens
            if len(toks) > 3 and _is_cd_here([toks[0].text, toks[1].text]) and toks[2].text == "&&":
                findings.append(note(at, name, f"dropped `cd {toks[1].text} &&`: {why_here}"))
                text = src.text[toks[3].start:st.end]
            kept.append((st, text))
    rest = [st for st, _ in kept if not _is_set_e(st)]
    joiner = next((st for st in rest[:-1] if _changes_state(st)), None)
    if joiner is not None:
        findings.append(note(src.line(joiner.start), name, "kept as one command: `"
                             f"{_short(src.text[joiner.start:joiner.end])}` changes the shell "
                             "for the commands after it"))
        return ["\n".join(text for _, text in kept)], findings
    for st, _ in kept:
        if _is_set_e(st):
            findings.append(note(src.line(st.start), name, "dropped `set -e`: each command of a "
                                 "hook runs on its own and a failing one fails the step"))
    return [text for st, text in kept if not _is_set_e(st)], findings


@dataclass
class Translated:
    commands: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


class _Hook:
    def __init__(self, fn: Function, context: str, values: dict[str, str],
                 helpers: dict[str, Function], depth: int) -> None:
        self.fn, self.context, self.values = fn, context, values
        self.helpers, self.depth = helpers, depth
        self.src = Source(fn.body, fn.body_line)
        self.locals: dict[str, str] = {}
        self.overrides, self.why_here = CONTEXT_VARS[context]
        self.out = Translated()
        self.told: set[str] = set()

    def lookup(self, name: str) -> str | None:
        for scope in (self.locals, self.overrides, self.values, EDELIVER_DEFAULTS):
            if name in scope:
                return scope[name]
        return None

    def unset(self, name: str) -> str:
        if name in RUNTIME:
            return f"${name} is set by edeliver at run time ({RUNTIME[name]}); nothing sets it " \
                   "here: left as is"
        return f"${name} is not set in the file: left as is"

    def say(self, line: int, text: str) -> None:
        self.out.findings.append(note(line, self.fn.name, text))

    def skip(self, line: int, why: str) -> None:
        self.out.findings.append(not_mapped(line, self.fn.name, why))

    def expand(self, raw: str, line: int) -> Expansion:
        exp = expand(raw, self.lookup, line, unset=self.unset)
        for n in exp.notes:
            self.say(n.line, n.message)
        for name in dict.fromkeys(exp.refs):
            if name in self.told or name in self.locals:
                continue
            at = exp.ref_lines.get(name, line)
            if name in self.overrides:
                self.told.add(name)
                self.say(at, f"${name} became {self.overrides[name]}: {self.why_here}")
            elif name not in self.values and name in EDELIVER_DEFAULTS:
                self.told.add(name)
                self.say(at, f"${name} is not set in the file: edeliver's default "
                               f"{EDELIVER_DEFAULTS[name]!r} is used")
        return exp

    def body(self, start: int, end: int) -> None:
        for st in statements(self.src, start, end):
            self.statement(st, self.src.line(st.start))

    def statement(self, st: Statement, line: int) -> None:
        words = st.words()
        text = _short(self.src.text[st.start:st.end])
        if st.kind == "compound" and st.keyword == "if":
            self.branch(st, line)
        elif st.kind != "simple" or st.ops() or not words:
            self.skip(line, f"`{text}` runs on your machine in edeliver, not on a host")
        elif words[0] == "status":
            self.say(line, f"dropped `{text}`: edeliver's progress message")
        elif words[0] in ("local", "declare", "typeset") or all(_ASSIGN_RE.match(w) for w in words):
            self.assign(st)
        elif words[0] in ("__sync_remote", "__remote"):
            self.remote(st, line, text)
        elif words[0] in self.helpers and len(words) == 1 and self.depth < 3:
            helper = self.helpers[words[0]]
            self.say(line, f"`{words[0]}` is a function of this file (line {helper.line}): its "
                           "remote commands are imported here")
            inner = translate(helper, self.context, self.values, self.helpers, self.depth + 1)
            self.out.commands.extend(inner.commands)
            self.out.findings.extend(inner.findings)
        else:
            self.skip(line, f"`{text}` runs on your machine in edeliver, not on a host")

    def assign(self, st: Statement) -> None:
        for tok in st.tokens:
            m = _ASSIGN_RE.match(tok.text)
            if m:
                name = m.group().rstrip("+=")
                line = self.src.line(tok.start)
                self.locals[name] = self.expand(tok.text[m.end():], line).value
                self.say(line, f"the function's variable {name} is put into the commands below")

    def remote(self, st: Statement, line: int, text: str) -> None:
        args = [t for t in st.tokens[1:] if t.kind == "word"]
        if not args:
            self.skip(line, f"`{text}` gives no command")
            return
        if len(args) > 1 and args[1].text not in _HOSTS_ARGS:
            self.skip(line, f"`{text}` names its own hosts ({args[1].text}); our hooks run on "
                            "every host of their step")
            return
        raw = args[0].text
        if self.context == "deploy" and _HERE_RE.search(raw):
            raw = _HERE_RE.sub(".", raw)
            self.say(line, f"$DELIVER_TO/$APP became .: {self.why_here}")
        at = self.src.line(args[0].start)
        exp = self.expand(raw, at)
        for sub in exp.substitutions:
            self.say(at, f"{sub} ran on your machine in edeliver; here it runs on the host")
        commands, findings = script_commands(exp.value, at, self.fn.name, self.why_here)
        self.out.commands.extend(commands)
        self.out.findings.extend(findings)

    def branch(self, st: Statement, line: int) -> None:
        """An if-block whose test the file's values decide: only the branch taken is kept."""
        parts = block_parts(st.tokens)
        kinds = [st.tokens[i].text for i in parts]
        cond = [t for t in st.tokens[1:parts[0]] if t.kind != "newline" and t.text != ";"]
        cond_text = self.src.text[cond[0].start:cond[-1].end] if cond else ""
        decided = self.decide(cond, line) if kinds in (["then", "fi"], ["then", "else", "fi"]) \
            else None
        if decided is None:
            self.skip(line, f"`if {_short(cond_text)}` cannot be decided from the file's values, "
                            "so nothing in it is imported")
            return
        taken = (parts[0], parts[1]) if decided else ((parts[1], parts[2]) if len(parts) == 3 else None)
        part = "nothing in it runs" if taken is None else \
            f"its {'then' if decided else 'else'}-part is imported"
        self.say(line, f"`if {_short(cond_text)}` is {str(decided).lower()} with the file's "
                       f"values: {part}")
        if taken:
            self.body(st.tokens[taken[0]].end, st.tokens[taken[1]].start)

    def decide(self, cond: list[Token], line: int) -> bool | None:
        words = [t.text for t in cond]
        if any(t.kind != "word" for t in cond) or not words:
            return None
        if words[0] in ("[", "[[") and words[-1] in ("]", "]]"):
            words = words[1:-1]
        elif words[0] == "test":
            words = words[1:]
        else:
            return None
        exps = [self.expand(w, line) for w in words]
        if not all(e.clean for e in exps):
            return None
        vals = [e.value for e in exps]
        if len(vals) == 3 and vals[1] in ("=", "==", "!="):
            return (vals[0] == vals[2]) == (vals[1] != "!=")
        if len(vals) == 2 and vals[0] in ("-n", "-z"):
            return bool(vals[1]) == (vals[0] == "-n")
        return bool(vals[0]) if len(vals) == 1 else None


def translate(fn: Function, context: str, values: dict[str, str],
              helpers: dict[str, Function] | None = None, depth: int = 0) -> Translated:
    """The commands of one hook function, for a hook that runs in `context` (build, work or
    deploy), with the file's final values (a function runs after the whole file is sourced).
    A call of one of `helpers` (the file's other functions) brings in that function's commands."""
    hook = _Hook(fn, context, values, helpers or {}, depth)
    try:
        hook.body(0, len(fn.body))
    except Unterminated:
        hook.skip(fn.line, "its body cannot be read (an unclosed quote or block)")
        hook.out.commands.clear()
    return hook.out
