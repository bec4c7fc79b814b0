"""A user's appup is read here before anything runs: parse errors and wrong shapes with
file:line, the first term only, and instructions naming modules neither release has."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydeliver_tasks.otp import appup_file
from pydeliver_tasks.validation import InvalidInput

GOOD = """%% shop 0.1.0 -> 0.1.1
{"0.1.1",
 [{"0.1.0", [{load_module, 'Elixir.Shop.Page'},
             {update, shop_srv, {advanced, []}},
             {apply, {supervisor, restart_child, [shop_sup, stats]}},
             {add_module, shop_new}]}],
 [{"0.1.0", [{load_module, 'Elixir.Shop.Page'},
             {delete_module, shop_new}]}]}.
{"ignored", [], []}.
"""


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "shop.appup"
    f.write_text(text)
    return f


def test_good_appup_lists_its_modules_with_lines(tmp_path: Path) -> None:
    a = appup_file.read(write(tmp_path, GOOD))
    assert a.vsn == "0.1.1"
    assert a.modules == [("load_module", "Elixir.Shop.Page", 3), ("update", "shop_srv", 4),
                         ("add_module", "shop_new", 6), ("load_module", "Elixir.Shop.Page", 7),
                         ("delete_module", "shop_new", 8)]


@pytest.mark.parametrize(("text", "message"), [
    ('{"0.1.1",\n [{"0.1.0", [{load_module, m}]}]\n', ":2: the term ends too early"),
    ('{"0.1.1", [], []}', ":1: the term ends too early"),
    ('{"0.1.1",\n [{"0.1.0" [{load_module, m}]}], []}.', ":2: expected ',' or '}', got '['"),
    ("", ":1: empty"),
    ("{\"0.1.1\", [], []} ~", ":1: cannot read '~'"),
    ("[{load_module, m}].", ":1: expected {\"Vsn\", UpFrom, DownTo}"),
    ('{"0.1.1",\n not_a_list, []}.', ":2: UpFrom must be a list"),
    ('{"0.1.1", [],\n [{"0.1.0", load_module}]}.', ":2: each entry of DownTo must be"),
    ('{"0.1.1", [], []} x.', ":1: the term must end with '.'"),
])
def test_bad_appups_are_refused_with_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(InvalidInput) as err:
        appup_file.read(f)
    assert str(err.value).startswith(str(f)) and message in str(err.value), str(err.value)


def test_missing_modules_are_named_with_their_line(tmp_path: Path) -> None:
    a = appup_file.read(write(tmp_path, GOOD))
    found = appup_file.missing_modules(a, {"Elixir.Shop.Page", "shop_new"}, {"Elixir.Shop.Page"})
    assert found == [f"{a.path}:4: {{update, shop_srv}} names a module that is in neither release"]
    assert appup_file.missing_modules(a, {"Elixir.Shop.Page", "shop_new", "shop_srv"}, set()) == []
