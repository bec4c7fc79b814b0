"""The importer's bash reading: words, statements, functions and hook bodies, never run."""

from __future__ import annotations

import random

import pytest

from pydeliver_tasks.importer import import_text, invoke_yaml, report_lines
from pydeliver_tasks.importer.bash import parse
from pydeliver_tasks.importer.lexer import block_parts, statements
from pydeliver_tasks.importer.scan import Source
from pydeliver_tasks.importer.translate import script_commands, translate
from pydeliver_tasks.importer.words import expand

KNOWN = {"APP": "shop", "EMPTY": "", "USER_": "deploy"}


def value(raw: str) -> str:
    return expand(raw, KNOWN.get, 1).value


@pytest.mark.parametrize("raw, expected", [
    ("plain", "plain"),
    ("'$APP is literal'", "$APP is literal"),
    ('"$APP-${APP}"', "shop-shop"),
    ('"/home/$USER_/x"', "/home/deploy/x"),
    ('a"b"\'c\'\\ d', "abc d"),
    ('"say \\"hi\\" \\$APP \\\\ \\q"', 'say "hi" $APP \\ \\q'),
    ('"two\\\nlines"', "twolines"),
    ("${NOPE:-fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${EMPTY-fallback}", ""),
    ("${APP:-fallback}", "shop"),
    ("${NOPE:-$APP}", "shop"),
    ("${APP:+set}", "set"),
    ("${NOPE:+set}", ""),
    ("$'tab\\there'", "tab\there"),
    ('"$\'not ansi\'"', "$'not ansi'"),
    ("cost$", "cost$"),
])
def test_words_are_worked_out_as_bash_would(raw: str, expected: str) -> None:
    assert value(raw) == expected


def test_what_needs_a_running_shell_is_left_as_written_and_noted() -> None:
    exp = expand('"$(hostname)-`date`-$1-${#APP}-$MISSING"', KNOWN.get, 7)
    assert exp.value == "$(hostname)-`date`-$1-${#APP}-$MISSING"
    assert not exp.clean
    assert exp.substitutions == ["$(hostname)", "`date`"]
    assert [(n.line, n.message) for n in exp.notes] == [
        (7, "$(hostname) is a command substitution: not run, left as is"),
        (7, "`date` is a command substitution: not run, left as is"),
        (7, "$1 is a shell parameter that only a running shell has: left as is"),
        (7, "${#APP} is an expansion the importer does not work out: left as is"),
        (7, "$MISSING is not set before this line: left as is"),
    ]


def test_notes_carry_the_line_of_the_expansion_in_a_multi_line_value() -> None:
    exp = expand('"a\nb $X\nc ${Y:-d}"', {}.get, 10)
    assert [n.line for n in exp.notes] == [11, 12]
    assert exp.ref_lines == {"X": 11, "Y": 12}


def test_colon_equals_sets_the_variable_too() -> None:
    parsed = parse('A=${B:=bee}\nC="$B"\n')
    assert parsed.values == {"A": "bee", "B": "bee", "C": "bee"}


def test_an_unquoted_tilde_in_an_assignment_is_noted() -> None:
    parsed = parse("DELIVER_TO=~/apps\n")
    assert parsed.values["DELIVER_TO"] == "~/apps"
    assert [p.message for p in parsed.problems] == [
        "an unquoted ~ here is your local home directory to bash: kept as ~ (quote it in the file to say so)"]


@pytest.mark.parametrize("text", [
    "pre_git_push() {\n  echo one\n}\n",
    "pre_git_push () {\n  echo one\n}\n",
    "function pre_git_push {\n  echo one\n}\n",
    "function pre_git_push() {\n  echo one\n}\n",
    "pre_git_push()\n{\n  echo one\n}\n",
])
def test_every_function_form_is_found_with_its_body(text: str) -> None:
    parsed = parse("X=1\n" + text + "Y=2\n")
    [fn] = parsed.functions
    assert fn.name == "pre_git_push"
    assert fn.line == 2
    assert fn.body.strip() == "echo one"
    assert fn.body_line + fn.body[:fn.body.index("echo")].count("\n") == (4 if "\n{" in text else 3)
    assert parsed.values == {"X": "1", "Y": "2"}


def test_a_one_line_function_and_braces_inside_quotes() -> None:
    parsed = parse('post_git_push() { __sync_remote "echo }"; }\nAFTER=yes\n')
    assert parsed.functions[0].body == ' __sync_remote "echo }"; '
    assert parsed.values == {"AFTER": "yes"}


def test_a_function_defined_twice_keeps_the_later_one() -> None:
    parsed = parse("f() { a; }\nf() { b; }\n")
    assert parsed.function("f").line == 2
    assert [(p.line, p.message) for p in parsed.problems] == [
        (2, "defined again (first at line 1): bash keeps this later definition")]


def test_an_unclosed_quote_stops_the_reading_at_its_line() -> None:
    parsed = parse('APP=ok\nBUILD_HOST="never closed\nDELIVER_TO=/srv\n')
    assert parsed.values == {"APP": "ok"}
    assert [(p.line, p.name, p.message, p.skipped) for p in parsed.problems] == [
        (2, "syntax", '" opened here is never closed: bash would refuse the file; nothing from this line on '
                      "is read", True)]


def test_windows_line_ends_and_a_byte_order_mark() -> None:
    parsed = parse('\ufeffAPP="shop"\r\nBUILD_HOST=b\r\n')
    assert parsed.values == {"APP": "shop", "BUILD_HOST": "b"}
    assert parsed.problems[0].message.startswith("Windows (CRLF) line ends")


def test_a_here_document_at_top_level_is_one_command() -> None:
    parsed = parse("cat > x <<EOF\nAPP=inside\nEOF\nAPP=outside\n")
    assert parsed.values == {"APP": "outside"}
    assert [(p.line, p.name) for p in parsed.problems] == [(1, "cat")]


def test_block_parts_find_then_else_fi_at_their_own_level() -> None:
    src = Source('if [ a ]; then\n  if b; then c; fi\nelse\n  case x in (y) z;; esac\nfi')
    [st] = statements(src)
    assert [st.tokens[i].text for i in block_parts(st.tokens)] == ["then", "else", "fi"]


def test_a_case_block_with_bare_patterns_ends_at_esac() -> None:
    src = Source("case $x in\n  a|b) echo ab ;;\n  *) echo other ;;\nesac\nnext")
    found = statements(src)
    assert [s.kind for s in found] == ["compound", "simple"]
    assert found[1].words() == ["next"]


def test_a_remote_script_splits_into_commands_where_that_is_safe() -> None:
    commands, findings = script_commands("set -e; npm ci\nMIX_ENV=prod mix phx.digest && echo ok\n",
                                         5, "hook", "here")
    assert commands == ["npm ci", "MIX_ENV=prod mix phx.digest && echo ok"]
    assert [(f.line, f.what) for f in findings] == [
        (5, "dropped `set -e`: each command of a hook runs on its own and a failing one fails the step")]


@pytest.mark.parametrize("changer", ["cd assets", "export NODE_ENV=production", "FOO=bar",
                                     "source ./env.sh", "set -u"])
def test_a_command_that_changes_the_shell_keeps_the_script_whole(changer: str) -> None:
    commands, findings = script_commands(f"set -e\n{changer}\nnpm ci\n", 1, "hook", "here")
    assert commands == [f"set -e\n{changer}\nnpm ci"]
    assert findings[-1].what == f"kept as one command: `{changer}` changes the shell for the commands after it"


def test_a_loop_and_a_here_document_in_a_remote_script_stay_whole_commands() -> None:
    commands, _ = script_commands("for f in a b; do\n  echo $f\ndone\ncat > x <<EOT\nline\nEOT\n",
                                  1, "hook", "here")
    assert commands == ["for f in a b; do\n  echo $f\ndone", "cat > x <<EOT\nline\nEOT"]


def _hook(body: str, values: dict[str, str] | None = None, context: str = "work"):
    parsed = parse(f"post_git_submodules() {{\n{body}\n}}\n")
    return translate(parsed.functions[0], context, values or {})


def test_an_if_decided_by_the_files_values_keeps_only_the_branch_taken() -> None:
    body = ('  if [ "$APP" != "shop" ]; then\n    __sync_remote "echo other"\n  else\n'
            '    __sync_remote "echo shop"\n  fi')
    done = _hook(body, {"APP": "shop"})
    assert done.commands == ["echo shop"]
    assert [(f.line, f.what) for f in done.findings] == [
        (2, '`if [ "$APP" != "shop" ]` is false with the file\'s values: its else-part is imported')]


def test_an_if_the_file_cannot_decide_is_not_imported() -> None:
    done = _hook('  if [ -f /etc/flag ]; then\n    __sync_remote "echo x"\n  fi')
    assert done.commands == []
    assert [(f.line, f.status) for f in done.findings] == [(2, "not mapped")]


def test_remote_calls_naming_their_own_hosts_and_local_commands_are_not_imported() -> None:
    done = _hook('  __remote "uptime" "$HOSTS"\n  __remote "df" "deploy@other"\n  echo local\n'
                 '  __sync_remote "x" || error "failed"')
    assert done.commands == ["uptime"]
    assert [(f.line, f.what) for f in done.findings] == [
        (3, 'not mapped: `__remote "df" "deploy@other"` names its own hosts ("deploy@other"); our hooks run '
            "on every host of their step"),
        (4, "not mapped: `echo local` runs on your machine in edeliver, not on a host"),
        (5, 'not mapped: `__sync_remote "x" || error "failed"` runs on your machine in edeliver, not on a host'),
    ]


def test_in_deploy_hooks_deliver_to_and_app_become_the_release_root() -> None:
    done = _hook('  __remote "cp a $DELIVER_TO/shared; cd ${DELIVER_TO}/$APP/bin && ls"',
                 {"APP": "shop", "DELIVER_TO": "/srv"}, context="deploy")
    assert done.commands == ["cp a ../shared", "cd ./bin && ls"]


def test_any_text_is_read_to_the_end_without_an_error() -> None:
    """Whatever the file holds, the import ends with a report: it never raises or loops."""
    pieces = ['APP=', 'X="', "'", "$", "${", "}", "$(", ")", "`", "\\", "\n", " ", ";", "&&", "|", "(",
              "{", "if ", "then ", "fi", "for ", "do ", "done", "case ", "esac", " in ", "<<EOF\n", "EOF\n",
              "#", "pre_git_push() {", '__sync_remote "', "STAGING_HOSTS=", "a.b", "~/", "+=", ":-",
              "function ", "$'", '"', "[", "]", "export ", "cd ", "set -e", "local x=", "*)", ";;"]
    rng = random.Random(7)
    for _ in range(400):
        result = import_text("".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))))
        invoke_yaml(result.config)
        report_lines(result)


def test_an_unclosed_here_document_is_reported_at_its_line() -> None:
    parsed = parse("APP=a\ncat <<EOF\nno end\n")
    assert parsed.values == {"APP": "a"}
    assert [(p.line, p.name) for p in parsed.problems] == [(2, "syntax")]
