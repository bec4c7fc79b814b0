"""Auto-version pieces, joining, rewriting of the project's version files, and the order of the
versions they make (compared the way `packaging` compares PEP 440 versions)."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pydeliver_tasks import autoversion as av
from pydeliver_tasks import versions
from pydeliver_tasks.commands import build as builders
from pydeliver_tasks.config import ConfigError, load
from pydeliver_tasks.steps import versioning
from pydeliver_tasks.validation import InvalidInput

FACTS = av.Facts(sha="82a5834f00d", commit_count=3027, commit_count_all=3100, branch="feature/x_y",
                 now=datetime(2026, 12, 2, 14, 5, 9, tzinfo=timezone.utc), env="prod")


@pytest.mark.parametrize("text,pieces", [
    ("commit-count", ("commit-count",)),
    ("commit-count+git-revision", ("commit-count", "revision")),
    ("append-git-commit-count+append-git-branch-unless-master", ("commit-count",
                                                                 "branch-unless-master")),
    ("build-date+build-time+mix-env", ("date", "time", "mix-env")),
    ("git-commit-count-branch", ("commit-count",)),
    ("commit-count-all-branches", ("commit-count-all",)),
    (" Revision ", ("revision",)),
])
def test_pieces_accept_edelivers_spellings(text: str, pieces: tuple[str, ...]) -> None:
    assert av.pieces(text) == pieces


@pytest.mark.parametrize("text,message", [
    ("commit-count+bogus", "unknown piece 'bogus'"),
    ("", "unknown piece ''"),
    ("revision+git-revision", "piece 'revision' given twice"),
])
def test_bad_pieces_are_named(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        av.pieces(text)


@pytest.mark.parametrize("pieces,suffix", [
    ("commit-count", "+3027"),
    ("git-revision", "+82a5834"),
    ("commit-count+git-revision", "+3027-82a5834"),
    ("git-revision+commit-count", "+82a5834-3027"),
    ("commit-count+revision+branch", "+3027-82a5834-feature-x-y"),
    ("commit-count-all", "+3100"),
    ("date+time", "+20261202-140509"),
    ("mix-env", "+prod"),
])
def test_the_first_piece_joins_with_plus_the_others_with_a_dash(pieces: str, suffix: str) -> None:
    assert av.suffix(av.pieces(pieces), FACTS) == suffix


def test_branch_unless_master_leaves_out_master_and_main() -> None:
    for main in ("master", "main"):
        facts = av.Facts(**{**FACTS.__dict__, "branch": main})
        assert av.suffix(av.pieces("commit-count+branch-unless-master"), facts) == "+3027"
        assert av.suffix(av.pieces("branch-unless-master"), facts) == ""
        assert av.suffix(av.pieces("branch"), facts) == f"+{main}"
    unknown = av.Facts(**{**FACTS.__dict__, "branch": None})
    with pytest.raises(InvalidInput, match="the branch built is not known"):
        av.suffix(av.pieces("branch"), unknown)


# (older, newer) as PEP 440 orders them: the local part after + compares piece by piece,
# numbers as numbers, and a version with metadata is newer than the same one without
ORDERED = [
    ("1.0.0", "1.0.0+1"),
    ("1.0.0+9-82a5834", "1.0.0+10-0000000"),
    ("1.0.0+3027-82a5834", "1.0.0+3028-1111111"),
    ("1.0.0+3027-82a5834-feature", "1.0.0+3028-82a5834"),
    ("1.0.0+20261201-235959", "1.0.0+20261202-000000"),
    ("1.0.0+99999", "1.0.1+1"),
    ("0.9.0+main", "1.0.0+3027"),
    ("1.0.0+3027", "1.0.0+3027-82a5834"),
]
UNORDERED = [
    ("1.0.0+82a5834", "1.0.0+9f00000"),
    ("1.0.0+main", "1.0.0+3027"),
    ("1.0.0+3027-82a5834", "1.0.0+3027-9f00000"),
    ("1.0.0+feature", "1.0.0+main"),
]


@pytest.mark.parametrize("older,newer", ORDERED)
def test_ordered_versions_compare_as_packaging_does(older: str, newer: str) -> None:
    assert av.ordered(older, newer) and av.ordered(newer, older)
    assert versions.version_key(older) < versions.version_key(newer)
    assert versions.latest([newer, older]) == newer


@pytest.mark.parametrize("a,b", UNORDERED)
def test_metadata_that_differs_first_in_a_word_has_no_order(a: str, b: str) -> None:
    assert not av.ordered(a, b) and not av.ordered(b, a)
    with pytest.raises(InvalidInput, match="cannot tell which is latest"):
        versions.latest([a, b])


def test_latest_of_none_and_of_plain_versions() -> None:
    assert versions.latest([]) is None
    assert versions.latest(["0.0.9", "0.0.10", "0.0.2"]) == "0.0.10"


MIX = '''defmodule Shop.MixProject do
  use Mix.Project

  def project do
    [app: :shop, version: "0.3.1", elixir: "~> 1.14", deps: deps()]
  end
end
'''


def test_rewrite_mix_version_keyword_and_attribute() -> None:
    new, base = av.rewrite(MIX, "mix", "+7-abcdef0", "mix.exs")
    assert base == "0.3.1" and 'version: "0.3.1+7-abcdef0"' in new
    assert new.replace("+7-abcdef0", "") == MIX
    attr = MIX.replace('version: "0.3.1"', "version: @version").replace(
        "  use Mix.Project\n", '  use Mix.Project\n  @version "2.0.0"\n')
    new, base = av.rewrite(attr, "mix", "+1", "mix.exs")
    assert base == "2.0.0" and '@version "2.0.0+1"' in new and "version: @version" in new


@pytest.mark.parametrize("text,message", [
    (MIX.replace('version: "0.3.1"', 'version: File.read!("VERSION")'), "no literal version"),
    (MIX.replace("deps: deps()", 'version: "9.9.9"'), "2 version strings match"),
    (MIX.replace('"0.3.1"', '"0.3.1+dev"'), "already carries build metadata"),
])
def test_rewrite_refuses_what_it_cannot_rewrite_exactly(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        av.rewrite(text, "mix", "+1", "mix.exs")


def test_rewrite_relx_release_and_app_src() -> None:
    config = ('{relx, [{release, {other, "9.0.0"}, [other]},\n'
              '        {release, {shop, "0.1.0"}, [shop, sasl]}]}.\n')
    new, base = av.rewrite(config, "relx", "+5", "rebar.config", "shop")
    assert base == "0.1.0" and '{shop, "0.1.0+5"}' in new and '{other, "9.0.0"}' in new
    app_src = '{application, shop, [{description, "x"}, {vsn, "0.1.2"}, {registered, []}]}.\n'
    new, base = av.rewrite(app_src, "app_src", "+5", "src/shop.app.src")
    assert base == "0.1.2" and '{vsn, "0.1.2+5"}' in new
    with pytest.raises(InvalidInput, match=r"no literal version \(\{vsn"):
        av.rewrite(app_src.replace('"0.1.2"', "git"), "app_src", "+5", "src/shop.app.src")


def test_write_files_quotes_the_text_and_refuses_paths_outside() -> None:
    cmd = builders.write_files("b", {"mix.exs": "it's $(id)\n"})
    assert "'it'\"'\"'s $(id)\n'" in cmd and "test -f mix.exs" in cmd and "mv mix.exs.pdt mix.exs" in cmd
    with pytest.raises(ValueError):
        builders.write_files("b", {"../x": "y"})


def test_config_names_a_bad_piece() -> None:
    with pytest.raises(ConfigError, match=r"deliver.auto_version: unknown piece 'nope'"):
        load({"deliver": {"app": "shop", "builder": "mix", "auto_version": "revision+nope"}})
    assert load({"deliver": {"app": "shop", "builder": "mix",
                             "auto_version": "commit-count"}}).auto_version == "commit-count"


def _git(d: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=d, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_plan_reads_the_commit_not_the_work_tree(tmp_path: Path) -> None:
    """An umbrella-like rebar3 project: rebar.config's release and the app's .app.src both get
    the metadata; an uncommitted edit in the work tree is not what gets built."""
    d = tmp_path / "proj"
    (d / "apps" / "shop" / "src").mkdir(parents=True)
    (d / "rebar.config").write_text('{relx, [{release, {shop, "0.1.0"}, [shop]}]}.\n')
    (d / "apps" / "shop" / "src" / "shop.app.src").write_text(
        '{application, shop, [{vsn, "0.2.0"}]}.\n')
    _git(d.parent, "init", "-q", "--initial-branch=main", str(d))
    _git(d, "-c", "user.email=t@t", "-c", "user.name=t", "add", "--all")
    _git(d, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "one")
    (d / "rebar.config").write_text('{relx, [{release, {shop, "7.7.7"}, [shop]}]}.\n')
    settings = load({"deliver": {"app": "shop", "builder": "rebar3", "project_dir": str(d)}})
    sha = _git(d, "rev-parse", "HEAD")
    facts = versioning.facts(settings, sha, None)
    assert (facts.commit_count, facts.branch, facts.env) == (1, "main", "default")
    made = versioning.plan(settings, sha, "+1")
    assert made.version == "0.1.0+1"
    assert made.files == {"rebar.config": '{relx, [{release, {shop, "0.1.0+1"}, [shop]}]}.\n',
                          "apps/shop/src/shop.app.src": '{application, shop, [{vsn, "0.2.0+1"}]}.\n'}
    assert versioning.auto_plan(settings, sha, None, None) is None  # nothing asked
    assert versioning.auto_plan(settings, sha, "main", "commit-count+branch").version == "0.1.0+1-main"
