"""What an import writes (invoke.yaml, tasks.py, report lines) and how it reads the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pydeliver_tasks.importer import ImportResult, invoke_yaml, read, report_lines, tasks_py
from pydeliver_tasks.importer.findings import mapped, not_mapped, note
from pydeliver_tasks.importer.render import HEADER, yaml_string
from pydeliver_tasks.validation import InvalidInput

TRICKY = ["no", "yes", "on", "null", "~", "", "0755", "1e3", "a: b", "# not a comment", "- item",
          'say "hi"', "back\\slash", "tab\there", "two\nlines", "bell\x07", "nel\x85", "ls\u2028ps\u2029",
          "bom\ufeff", "caf\u00e9 \U0001f680", "{x}", "[y]", "*star", "&anchor", "!tag", "%dir", "@at", "`tick`"]


def test_yaml_strings_are_double_quoted_with_escapes() -> None:
    assert yaml_string('a "b" \\ c\n') == '"a \\"b\\" \\\\ c\\n"'
    assert yaml_string("nel\x85 ls\u2028") == '"nel\\x85 ls\\u2028"'
    assert yaml_string("caf\u00e9") == '"caf\u00e9"'


def test_the_yaml_text_is_exact() -> None:
    config = {"app": "shop", "build": {"host": "b@h", "path": "x"}, "ssh": {"connect_timeout": 15},
              "stages": {"on": {"hosts": ["a@h1", "a@h2"]}, "qa-1": {"hosts": []}},
              "hooks": {"before_compile": ["npm ci", "set -e\ncd assets"]}, "env": {}}
    assert invoke_yaml(config) == HEADER + (
        'deliver:\n'
        '  app: "shop"\n'
        '  build:\n'
        '    host: "b@h"\n'
        '    path: "x"\n'
        '  ssh:\n'
        '    connect_timeout: 15\n'
        '  stages:\n'
        '    "on":\n'
        '      hosts:\n'
        '        - "a@h1"\n'
        '        - "a@h2"\n'
        '    qa-1:\n'
        '      hosts: []\n'
        '  hooks:\n'
        '    before_compile:\n'
        '      - "npm ci"\n'
        '      - "set -e\\ncd assets"\n'
        '  env: {}\n')
    assert invoke_yaml({}) == HEADER + "deliver: {}\n"


def test_every_tricky_string_reads_back_as_itself() -> None:
    yaml = pytest.importorskip("yaml")  # a check of the text only; the importer does not use it
    config = {"hooks": {"before_start": TRICKY}, "stages": {t or "empty": {"hosts": [t]} for t in TRICKY},
              "nested": [["a", {"b": "c"}], {"d": ["e"]}], "flag": True, "none": None, "n": 1.5}
    assert yaml.safe_load(invoke_yaml(config)) == {"deliver": config}


def test_tasks_py_is_the_collection_import() -> None:
    text = tasks_py()
    assert "from pydeliver_tasks import ns  # noqa: F401\n" in text
    compile(text, "tasks.py", "exec")


def test_report_lines_have_the_file_line_and_name() -> None:
    result = ImportResult({}, [note(0, "APP", "no value imported"), mapped(3, "BUILD_AT", "build.path"),
                               not_mapped(7, "GIT_CLEAN_PATHS", "every build starts from a clean checkout")])
    assert report_lines(result) == [
        ".deliver/config APP: no value imported",
        ".deliver/config:3 BUILD_AT: mapped to deliver.build.path",
        ".deliver/config:7 GIT_CLEAN_PATHS: not mapped: every build starts from a clean checkout",
    ]
    assert report_lines(result, "old/config")[1] == "old/config:3 BUILD_AT: mapped to deliver.build.path"


def test_read_returns_the_text(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text('APP="caf\u00e9"\n', encoding="utf-8")
    assert read(path) == 'APP="caf\u00e9"\n'


def test_a_missing_file_is_bad_input_naming_it(tmp_path: Path) -> None:
    path = tmp_path / ".deliver" / "config"
    with pytest.raises(InvalidInput) as e:
        read(path)
    assert str(e.value) == f"{path}: no such file (the edeliver config is .deliver/config in your project)"
    assert e.value.code == 2


def test_a_directory_or_an_unreadable_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=f"^{tmp_path}: cannot be read"):
        read(tmp_path)
    locked = tmp_path / "locked"
    locked.write_text("APP=x\n")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anyway
            pytest.skip("running as a user that can read any file")
        with pytest.raises(InvalidInput, match="cannot be read"):
            read(locked)
    finally:
        locked.chmod(0o600)


def test_a_non_utf8_byte_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b'APP="shop"\n# caf\xe9\n')
    with pytest.raises(InvalidInput) as e:
        read(path)
    assert str(e.value) == f"{path}: not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8 and run the import again"
