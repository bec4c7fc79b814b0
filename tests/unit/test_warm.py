"""Warm builds' scripts, run by a real sh on build trees laid out as mix and rebar3 leave them:
what is kept (dependencies only, never the project's own apps), when it is reused (same lock
file, config, profile, OTP), and that a cut save leaves no half entry."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydeliver_tasks.commands import warm

LOCK = '%{"jason": {:hex, :jason, "1.4.1", "abc", [:mix], [], "hexpm", "def"}}\n'
REBAR_LOCK = ('{"1.2.0",\n[{<<"cowlib">>,{pkg,<<"cowlib">>,<<"2.12.1">>},1},\n'
              ' {<<"ranch">>,{pkg,<<"ranch">>,<<"2.1.0">>},0}]}.\n'
              '[{pkg_hash,[{<<"cowlib">>, <<"AA">>},{<<"ranch">>, <<"BB">>}]}].\n')


def _sh(script: str) -> str:
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _files(d: Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}


def _mix_tree(root: Path, lock: str = LOCK) -> Path:
    """What a mix build leaves in src: deps/, their compiled libs, the project's own lib."""
    src = root / "src"
    for f in ("mix.lock", "deps/jason/mix.exs", "_build/prod/lib/jason/ebin/Elixir.Jason.beam",
              "_build/prod/lib/shop/ebin/Elixir.Shop.beam", "config/config.exs"):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text(lock if f == "mix.lock" else f)
    return src


def test_a_cold_mix_build_keeps_its_dependencies_and_the_next_one_reuses_them(tmp_path: Path):
    root = str(tmp_path)
    src = _mix_tree(tmp_path)
    key, state = warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))
    assert state == "cold" and len(key) == 24
    assert warm.parse(_sh(warm.save("mix", root, "prod"))) == (key, "saved")
    kept = tmp_path / warm.CACHE / key
    assert _files(kept) == {"deps/jason/mix.exs", "_build/prod/lib/jason/ebin/Elixir.Jason.beam"}
    # the next build: a fresh checkout (no deps, no _build) with the same lock and config
    subprocess.run(["rm", "-rf", str(src)], check=True)
    (src / "config").mkdir(parents=True)
    (src / "mix.lock").write_text(LOCK)
    (src / "config" / "config.exs").write_text("config/config.exs")
    assert warm.parse(_sh(warm.restore("mix", root, "prod", clean=False))) == (key, "restored")
    assert (src / "_build/prod/lib/jason/ebin/Elixir.Jason.beam").exists()
    assert not (src / "_build/prod/lib/shop").exists()  # the project is always compiled anew
    assert warm.parse(_sh(warm.save("mix", root, "prod"))) == (key, "kept")


def test_the_key_follows_the_lock_file_the_compile_time_config_and_the_profile(tmp_path: Path):
    root = str(tmp_path)
    src = _mix_tree(tmp_path)
    first, _ = warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))
    (src / "config" / "config.exs").write_text("config :jason, decoding: :fast")
    second, _ = warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))
    (src / "mix.lock").write_text(LOCK.replace("1.4.1", "1.4.2"))
    third, _ = warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))
    other_env, _ = warm.parse(_sh(warm.restore("mix", root, "staging", clean=False)))
    assert len({first, second, third, other_env}) == 4
    (src / "lib").mkdir()
    (src / "lib" / "shop.ex").write_text("defmodule Shop do end")  # code: same key
    assert warm.parse(_sh(warm.restore("mix", root, "staging", clean=False)))[0] == other_env


def test_clean_restores_nothing_and_no_lock_file_means_nothing_to_keep(tmp_path: Path):
    root = str(tmp_path)
    _mix_tree(tmp_path)
    key, _ = warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))
    _sh(warm.save("mix", root, "prod"))
    assert warm.parse(_sh(warm.restore("mix", root, "prod", clean=True))) == (key, "clean")
    (tmp_path / "src" / "mix.lock").unlink()
    assert warm.parse(_sh(warm.restore("mix", root, "prod", clean=False))) == ("-", "nolock")
    assert not (tmp_path / warm.KEY_FILE).exists()  # so save keeps nothing
    assert _sh(warm.save("mix", root, "prod")) == ""


def test_rebar3_keeps_the_locked_dependencies_of_both_lib_dirs_but_no_links(tmp_path: Path):
    root, src = str(tmp_path), tmp_path / "src"
    for f in ("rebar.lock", "rebar.config", "_build/default/lib/ranch/ebin/ranch.beam",
              "_build/default/lib/cowlib/ebin/cowlib.beam", "_build/prod/lib/myrel/ebin/x.beam"):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text(REBAR_LOCK if f == "rebar.lock" else f)
    (src / "_build/prod/lib/ranch").symlink_to(src / "_build/default/lib/ranch")
    key, state = warm.parse(_sh(warm.restore("rebar3", root, "prod", clean=False)))
    assert state == "cold"
    _sh(warm.save("rebar3", root, "prod"))
    assert _files(tmp_path / warm.CACHE / key) == {"_build/default/lib/ranch/ebin/ranch.beam",
                                                   "_build/default/lib/cowlib/ebin/cowlib.beam"}


def test_only_the_most_recently_used_builds_are_kept(tmp_path: Path):
    root = str(tmp_path)
    src = _mix_tree(tmp_path)
    keys = []
    for n in range(warm.KEEP + 2):
        (src / "mix.lock").write_text(LOCK.replace("1.4.1", f"1.4.{n}"))
        keys.append(warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))[0])
        _sh(warm.save("mix", root, "prod"))
        subprocess.run(["touch", "-d", f"@{1_700_000_000 + n}", str(tmp_path / warm.CACHE / keys[-1])],
                       check=True)
    left = sorted(p.name for p in (tmp_path / warm.CACHE).iterdir())
    assert left == sorted(keys[-warm.KEEP:]), (left, keys)


def test_a_save_cut_short_leaves_no_entry_the_next_build_would_trust(tmp_path: Path):
    root = str(tmp_path)
    _mix_tree(tmp_path)
    key, _ = warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))
    # cut where cp has written part of the copy: a .new.* dir, never <key>/
    script = warm.save("mix", root, "prod").replace('mv "$t"', 'exit 0; mv "$t"')
    _sh(script)
    assert not (tmp_path / warm.CACHE / key).exists()
    assert warm.parse(_sh(warm.restore("mix", root, "prod", clean=False))) == (key, "cold")
    assert warm.parse(_sh(warm.save("mix", root, "prod"))) == (key, "saved")


def test_a_clean_build_replaces_the_kept_build_it_was_asked_not_to_trust(tmp_path: Path):
    root = str(tmp_path)
    src = _mix_tree(tmp_path)
    key, _ = warm.parse(_sh(warm.restore("mix", root, "prod", clean=False)))
    _sh(warm.save("mix", root, "prod"))
    kept = tmp_path / warm.CACHE / key / "_build/prod/lib/jason/ebin/Elixir.Jason.beam"
    kept.write_text("damaged")
    assert warm.parse(_sh(warm.restore("mix", root, "prod", clean=True))) == (key, "clean")
    assert warm.parse(_sh(warm.save("mix", root, "prod", replace=True))) == (key, "saved")
    assert kept.read_text() == (src / "_build/prod/lib/jason/ebin/Elixir.Jason.beam").read_text()
