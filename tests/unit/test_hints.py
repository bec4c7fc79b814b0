"""Every `inv …` command the tool prints as the next thing to run is one the CLI accepts: each
hint in the package (HostFailure hints, doctor's next commands, the finish/undo steps) is rendered
with sample values and parsed by Invoke's own parser against our collection."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
from invoke.parser import ParseError, Parser

from pydeliver_tasks import ns
from pydeliver_tasks.model import NextStep
from pydeliver_tasks.tasks.flags import command_line

PACKAGE = Path(__file__).resolve().parents[2] / "pydeliver_tasks"
FAILURES = {"HostFailure", "InstallFailed", "NotHotSafe", "BadAppup"}
# values of the names hints are built from (anything else renders as a plain word)
SAMPLES = {"h": "--host h1", "cmds.UNLOCK_FORCE": "inv deploy.unlock --force"}


def render(node: ast.expr) -> str | None:
    """The text of a str constant or f-string, its {…} filled with sample values."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            else:
                assert isinstance(v, ast.FormattedValue)
                parts.append(SAMPLES.get(ast.unparse(v.value), "v1"))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = render(node.left), render(node.right)
        return None if left is None or right is None else left + right
    return None


def hints() -> list[tuple[str, str]]:
    """(where, text) of every hint argument in the package's source."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else \
                node.func.attr if isinstance(node.func, ast.Attribute) else ""
            args: list[ast.expr] = []
            if name in FAILURES:
                args += [k.value for k in node.keywords if k.arg == "hint"] + node.args[2:3]
            elif name == "Diagnosis":
                args += node.args[2:3]
            for arg in args:
                for branch in (arg.body, arg.orelse) if isinstance(arg, ast.IfExp) else (arg,):
                    text = render(branch)
                    if text:
                        found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", text))
    return found


def commands(text: str) -> list[list[str]]:
    """The `inv …` commands in a hint, as argv (without `inv`)."""
    found = []
    for m in re.finditer(r"\binv ([^;,()—]*)", text):
        for one in m.group(1).split("&&"):
            words = shlex.split(one.replace(" inv ", " "))
            while words and not words[-1].startswith("-") and words[-1] in ("then", "later", "or"):
                words.pop()
            words = [w.rstrip(".") for w in words if w != "inv"]
            if words:
                found.append(words)
    return found


def accepted(argv: list[str]) -> None:
    Parser(contexts=ns.to_contexts()).parse_argv(argv)


HINTS = hints()


def test_hints_are_found() -> None:  # the scan itself can fail
    assert len(HINTS) > 40
    assert any("inv doctor --host v1" in text for _, text in HINTS)


@pytest.mark.parametrize(("where", "text"), HINTS, ids=[w for w, _ in HINTS])
def test_every_hint_is_a_command_the_cli_accepts(where: str, text: str) -> None:
    for argv in commands(text):
        try:
            accepted(argv)
        except ParseError as exc:
            pytest.fail(f"{where}: `inv {' '.join(argv)}` is refused: {exc}")


def test_the_checker_refuses_what_the_cli_refuses() -> None:
    for bad in (["restart", "h1"], ["rollback", "-o", "h1"], ["upgrade", "--frm", "1"]):
        with pytest.raises(ParseError):
            accepted(bad)


@pytest.mark.parametrize("step", [
    NextStep("deploy.release", (("version", "1.0.0"),)), NextStep("restart"),
    NextStep("upgrade", (("from", "0.0.1"), ("to", "0.0.2"))), NextStep("downgrade", (("to", "1"),)),
    NextStep("rollback"), NextStep("rollback", (("to", "0.0.1"),)), NextStep("start"),
])
def test_finish_and_undo_steps_are_accepted(step: NextStep) -> None:
    accepted(shlex.split(command_line(step, "deploy@h1:2222"))[1:])
