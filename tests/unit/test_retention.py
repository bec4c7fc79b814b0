"""Retention: the builders run for real with bash on a fake deploy root (which files go, which
lib dirs stay because another release still uses them, what is refused), the pure choice of what
to keep and what to roll back to, the release_handler expressions on a real sasl, and the local
store cleanup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pydeliver_tasks import otp
from pydeliver_tasks.commands import retention as rcmd
from pydeliver_tasks.otp import retention as otp_retention
from pydeliver_tasks.steps import retention
from pydeliver_tasks.steps.retention import parse_listing
from pydeliver_tasks.validation import InvalidInput
from pydeliver_tasks.versions import keep_count, plan_cleanup, previous_good, version_key

needs_erl = pytest.mark.skipif(shutil.which("erl") is None, reason="erl not installed")


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60)


def write(path: Path, text: str = "", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def rel(vsn: str, apps: dict[str, str], erts: str = "13.1.5") -> str:
    """A .rel file laid out the way relx/mix write it."""
    body = ",\n          ".join(f"{{{a},\"{v}\"}}" for a, v in apps.items())
    return f'{{release,{{"demo","{vsn}"}},\n         {{erts,"{erts}"}},\n         [{body}]}}. %% coding: utf-8\n'


BASE = {"kernel": "8.5.3", "stdlib": "4.2"}


def fake_root(tmp_path: Path, name: str = "my root 'x'") -> Path:
    """Versions 1, 2, 3 (3 boots next and is the only one RELEASES lists), 4 only as a tarball;
    dep-1 is used by 1 and 2, old-1 by 1 only, kernel by all; 2 is marked failed."""
    root = tmp_path / name
    write(root / "releases/1/demo.rel", rel("1", {**BASE, "dep": "1", "old": "1", "demo": "1"}))
    write(root / "releases/1/start.boot", "boot 1")
    write(root / "releases/2/demo.rel", rel("2", {**BASE, "dep": "1", "demo": "2"}))
    write(root / "releases/3/demo.rel", rel("3", {**BASE, "dep": "2", "demo": "3"}))
    write(root / "releases/start_erl.data", "13.1.5 3\n")
    write(root / "releases/RELEASES", '[{release,"demo","3","13.1.5",\n  [{kernel,"8.5.3","/r/lib/kernel-8.5.3"}],permanent}].\n')
    write(root / "releases/COOKIE", "cookie")
    for lib in ("kernel-8.5.3", "stdlib-4.2", "dep-1", "dep-2", "old-1", "demo-1", "demo-2", "demo-3"):
        write(root / "lib" / lib / "ebin/x.beam", lib)
    for f in ("demo_1.release.tar.gz", "demo_1.release.tar.gz.sha256", "demo_1.upgrade.tar.gz",
              "demo_1.release.tar.gz.sha256-kept", "demo_2.release.tar.gz.sha256-kept",
              "demo_2.release.tar.gz", "demo_4.release.tar.gz", "other_9.release.tar.gz"):
        write(root / ".deliver/releases" / f, f)
    for vsn in ("1", "2", "3"):
        write(root / ".deliver/bin" / vsn / "demo", f"bin {vsn}", 0o755)
    write(root / "bin/demo", "bin 3", 0o755)
    write(root / ".deliver/failed", "2\n1.0\n")
    return root


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- listing -------------------------------------------------------------------------------------

def test_listing_reports_every_version_once_with_its_files(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    res = bash(rcmd.listing(str(root), "demo"), tmp_path)
    assert res.returncode == 0, res.stderr
    lines = sorted(x for x in res.stdout.splitlines() if x.startswith(rcmd.VSN_MARK))
    assert lines == ["PDT_VSN 1 dir rel release_tar upgrade_tar bin",
                     "PDT_VSN 2 dir rel release_tar bin failed",
                     "PDT_VSN 3 dir rel bin",
                     "PDT_VSN 4 release_tar"]  # RELEASES, COOKIE, start_erl.data, other app: no
    s = parse_listing(res.stdout)
    assert s.deployed and s.boots_next == "3" and s.listed == {"3"}
    assert s.failed == {"2"} and set(s.versions) == {"1", "2", "3", "4"}
    assert s.previous_good() == "1", "2 is marked failed"
    nothing = parse_listing(bash(rcmd.listing(str(tmp_path / "absent"), "demo"), tmp_path).stdout)
    assert not nothing.deployed and not nothing.versions


def test_listing_ignores_names_that_are_not_versions(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "releases" / "bad name").mkdir()
    (root / "releases" / "$(id)").mkdir()
    s = parse_listing(bash(rcmd.listing(str(root), "demo"), tmp_path).stdout)
    assert set(s.versions) == {"1", "2", "3", "4"}
    assert sorted(s.ignored) == ["$(id) dir", "bad name dir"]


# --- removal -------------------------------------------------------------------------------------

def test_remove_takes_the_version_and_only_the_lib_dirs_no_other_release_uses(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    res = bash(rcmd.remove_version(str(root), "demo", "1"), tmp_path)
    assert res.returncode == 0, res.stderr
    assert "PDT{removed=1}" in res.stdout
    left = files(root)
    for gone in ("releases/1", "lib/demo-1", "lib/old-1", ".deliver/bin/1",
                 ".deliver/releases/demo_1.release.tar.gz", ".deliver/releases/demo_1.upgrade.tar.gz"):
        assert gone not in left, gone
        assert f"PDT_RM {gone}" in res.stdout
    assert "lib/dep-1" in left and "PDT_KEEP lib/dep-1 (used by another release)" in res.stdout
    assert {"lib/kernel-8.5.3", "lib/stdlib-4.2", "lib/demo-2", "releases/2/demo.rel",
            "releases/3/demo.rel", ".deliver/bin/2", "bin/demo"} <= left
    assert ".deliver/releases/demo_1.release.tar.gz.sha256" in left  # not ours to judge
    # the sha256 the host kept of the removed tarball goes with it, silently; 2's stays
    assert ".deliver/releases/demo_1.release.tar.gz.sha256-kept" not in left
    assert ".deliver/releases/demo_2.release.tar.gz.sha256-kept" in left
    assert "sha256-kept" not in res.stdout
    assert (root / "releases/start_erl.data").read_text() == "13.1.5 3\n"
    assert not (root / ".deliver/removing/1").exists()

    res = bash(rcmd.remove_version(str(root), "demo", "2"), tmp_path)
    assert res.returncode == 0, res.stderr
    assert "lib/dep-1" not in files(root), "its last user is gone now"
    assert "lib/dep-2" in files(root) and "lib/kernel-8.5.3" in files(root)
    assert (root / ".deliver/failed").read_text() == "1.0\n", "its failed mark goes with it"

    res = bash(rcmd.remove_version(str(root), "demo", "4"), tmp_path)  # a tarball only
    assert res.returncode == 0 and "PDT_RM .deliver/releases/demo_4.release.tar.gz" in res.stdout
    assert ".deliver/releases/other_9.release.tar.gz" in files(root)


def test_remove_refuses_what_boots_next_what_releases_lists_and_a_booted_vm(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    before = files(root)
    res = bash(rcmd.remove_version(str(root), "demo", "3"), tmp_path)
    assert res.returncode == rcmd.REFUSED_BOOTS_NEXT and "3 boots next" in res.stderr
    write(root / "releases/start_erl.data", "13.1.5 2\n")
    res = bash(rcmd.remove_version(str(root), "demo", "3"), tmp_path)
    assert res.returncode == rcmd.REFUSED_RELEASE_HANDLER and "RELEASES lists 3" in res.stderr
    # a process whose command line says it booted from releases/1
    real = bash("pwd -P", root).stdout.strip()
    vm = subprocess.Popen(["bash", "-c", "sleep 30; :", "x", "-boot", f"{real}/releases/1/start"])
    try:
        time.sleep(0.2)
        res = bash(rcmd.remove_version(str(root), "demo", "1"), tmp_path)
        assert res.returncode == rcmd.REFUSED_BOOTED, res.stdout + res.stderr
    finally:
        vm.kill()
        vm.wait()
    assert files(root) == before, "a refusal changes nothing"


def test_remove_keeps_every_lib_dir_when_a_remaining_release_has_no_rel(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "releases/2/demo.rel").unlink()
    res = bash(rcmd.remove_version(str(root), "demo", "1"), tmp_path)
    assert res.returncode == 0, res.stderr
    assert "releases/1" not in files(root)
    assert {"lib/old-1", "lib/demo-1", "lib/dep-1"} <= files(root)
    assert "PDT_KEEP lib/old-1 (what releases/2 uses is unknown: no .rel)" in res.stdout


def test_remove_with_a_missing_root_changes_nothing(tmp_path: Path) -> None:
    res = bash(rcmd.remove_version(str(tmp_path / "nope"), "demo", "1"), tmp_path)
    assert res.returncode == 0 and "PDT{removed" not in res.stdout and rcmd.NOROOT_MARK in res.stdout


# --- activation (cold rollback from the files on the host) ----------------------------------------

def test_activate_makes_an_on_disk_version_boot_next(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "erts-14.0").mkdir()
    write(root / "releases/2/demo.rel", rel("2", {**BASE, "dep": "1", "demo": "2"}, erts="14.0"))
    res = bash(rcmd.activate_version(str(root), "demo", "2"), tmp_path)
    assert res.returncode == 0, res.stderr
    assert "PDT{activated=2}" in res.stdout
    assert (root / "releases/start_erl.data").read_text() == "14.0 2\n", "its own erts"
    assert (root / "bin/demo").read_text() == "bin 2" and not (root / "bin.old").exists()
    assert (root / ".deliver/bin/3/demo").read_text() == "bin 3"
    res = bash(rcmd.activate_version(str(root), "demo", "1"), tmp_path)  # erts-13.1.5 not there
    assert res.returncode == 0 and (root / "releases/start_erl.data").read_text() == "14.0 1\n"


def test_activate_refuses_incomplete_versions_and_changes_nothing(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    shutil.rmtree(root / "lib/old-1")
    before = {p: (root / p).read_text() for p in ("bin/demo", "releases/start_erl.data")}
    for vsn, message in (("1", "lib dirs that are gone: lib/old-1"),
                         ("4", "releases/4 is not on the host")):
        res = bash(rcmd.activate_version(str(root), "demo", vsn), tmp_path)
        assert res.returncode == rcmd.INCOMPLETE and message in res.stderr, res.stderr
    shutil.rmtree(root / ".deliver/bin/2")
    res = bash(rcmd.activate_version(str(root), "demo", "2"), tmp_path)
    assert res.returncode == rcmd.INCOMPLETE and ".deliver/bin/2/demo is not" in res.stderr
    assert {p: (root / p).read_text() for p in before} == before


# --- failed marks --------------------------------------------------------------------------------

def test_mark_and_unmark_failed_match_whole_lines_only(tmp_path: Path) -> None:
    root = tmp_path / "r oot"
    root.mkdir()
    for _ in range(2):
        assert bash(rcmd.mark_failed(str(root), "1.0"), tmp_path).returncode == 0
    assert bash(rcmd.mark_failed(str(root), "1"), tmp_path).returncode == 0
    assert (root / ".deliver/failed").read_text() == "1.0\n1\n", "once each"
    assert bash(rcmd.unmark_failed(str(root), "1"), tmp_path).returncode == 0
    assert (root / ".deliver/failed").read_text() == "1.0\n"
    assert bash(rcmd.unmark_failed(str(tmp_path / "absent"), "1"), tmp_path).returncode == 0


def test_values_reach_the_scripts_as_one_quoted_word() -> None:
    nasty = "/srv/a b;$(touch /tmp/pwned)'\""
    for script in (rcmd.listing(nasty, "demo"), rcmd.remove_version(nasty, "demo", "1.0"),
                   rcmd.activate_version(nasty, "demo", "1.0"), rcmd.mark_failed(nasty, "1.0"),
                   rcmd.unmark_failed(nasty, "1.0")):
        assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
        assert "cd '/srv/a b;$(touch /tmp/pwned)'\"'\"'\"'" in script


# --- the choices (pure) --------------------------------------------------------------------------

def test_version_order() -> None:
    ordered = ["0.0.9", "0.0.10", "1.0.0rc1", "1.0.0", "1.0.0+build.2"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert sorted(["b-10", "b-9", "a"], key=version_key) == ["a", "b-9", "b-10"]
    assert version_key("1.0") < version_key("rel-1"), "PEP 440 versions first"


def test_previous_good_is_the_newest_older_one_not_marked_failed() -> None:
    vs = ["0.0.1", "0.0.2", "0.0.3", "0.0.10", "0.0.4"]
    assert previous_good(vs, "0.0.4") == "0.0.3"
    assert previous_good(vs, "0.0.4", failed={"0.0.3"}) == "0.0.2"
    assert previous_good(vs, "0.0.10") == "0.0.4", "newer-but-not-running never counts"
    assert previous_good(vs, "0.0.1") is None and previous_good(vs, None) is None
    assert previous_good(vs, "0.0.3", failed={"0.0.1", "0.0.2"}) is None


def test_cleanup_never_removes_running_boots_next_or_previous_good() -> None:
    vs = ["0.0.1", "0.0.2", "0.0.3", "0.0.4"]
    plan = plan_cleanup(vs, 1, running="0.0.3", boots_next="0.0.3", previous="0.0.2")
    assert plan.remove == ("0.0.1", "0.0.4")
    assert plan.keep == {"0.0.3": ("running", "boots next"), "0.0.2": ("previous good",)}
    # a deploy waiting for its restart: what boots next stays, so does what runs
    plan = plan_cleanup(vs, 1, running="0.0.2", boots_next="0.0.4", previous="0.0.1")
    assert plan.remove == ("0.0.3",)
    assert set(plan.keep) == {"0.0.4", "0.0.2", "0.0.1"}


def test_cleanup_keeps_the_newest_good_ones_up_to_keep() -> None:
    vs = [f"0.0.{i}" for i in range(1, 9)]
    plan = plan_cleanup(vs, 3, running="0.0.8", boots_next="0.0.8", previous="0.0.7")
    assert set(plan.keep) == {"0.0.8", "0.0.7", "0.0.6"} and plan.keep["0.0.6"] == ("newest 3",)
    assert plan.remove == ("0.0.1", "0.0.2", "0.0.3", "0.0.4", "0.0.5"), "oldest first"
    assert plan_cleanup(vs[:3], 5, running="0.0.3").remove == ()


def test_failed_versions_go_first_and_do_not_count_as_good() -> None:
    vs = ["0.0.1", "0.0.2", "0.0.3", "0.0.4", "0.0.5"]
    plan = plan_cleanup(vs, 3, running="0.0.5", boots_next="0.0.5", previous="0.0.3",
                        failed={"0.0.4", "0.0.1"})
    assert plan.remove == ("0.0.1", "0.0.4"), "failed first, even with room to keep"
    assert set(plan.keep) == {"0.0.5", "0.0.3", "0.0.2"}
    # a failed version still running is kept (and does not count toward keep)
    plan = plan_cleanup(vs, 1, running="0.0.5", boots_next="0.0.5", failed={"0.0.5"})
    assert plan.keep == {"0.0.5": ("running", "boots next"), "0.0.4": ("newest 1",)}
    assert plan.remove == ("0.0.1", "0.0.2", "0.0.3")


def test_booted_permanent_and_needed_versions_stay() -> None:
    vs = ["1", "2", "3", "4", "5"]
    plan = plan_cleanup(vs, 1, running="5", boots_next="5", booted="1",
                        permanent={"5": "permanent", "2": "current"}, previous="4", needed={"3"})
    assert plan.remove == ()
    assert plan.keep["1"] == ("the running VM booted from it",)
    assert plan.keep["2"] == ("release_handler: current",)
    assert plan.keep["3"] == ("in use by a deploy or upgrade",)
    assert plan_cleanup(vs, 1, needed={"9"}).keep == {"5": ("newest 1",)}, "unknown names ignored"
    assert plan_cleanup(vs, 1, running="5", booted="5").keep == {"5": ("running",)}


def test_keep_must_be_a_whole_number_of_at_least_one() -> None:
    assert keep_count("3") == 3 and keep_count(1) == 1
    for bad in ("0", 0, "-1", "x", "1.5", ""):
        with pytest.raises(InvalidInput):
            keep_count(bad)


# --- release_handler expressions on a real sasl --------------------------------------------------

RUNNER = """
{ok, Dir} = application:get_env(sasl, releases_dir),
Eval = fun(File) ->
  {ok, Bin} = file:read_file(File),
  {ok, T, _} = erl_scan:string(binary_to_list(Bin)),
  {ok, E} = erl_parse:parse_exprs(T),
  {value, V, _} = erl_eval:exprs(E, []),
  io:format("~s~n", [V])
end,
[Eval(F) || F <- lists:sort(filelib:wildcard(filename:join(os:getenv("PDT_DIR"), "*.expr")))],
halt().
"""


def run_on_sasl(tmp_path: Path, exprs: list[str]) -> list[dict[str, str]]:
    d = tmp_path / "exprs"
    d.mkdir()
    for i, expr in enumerate(exprs):
        (d / f"{i:02}.expr").write_text(expr)
    rdir = tmp_path / "releases"
    setup = f'ok = application:set_env(sasl, releases_dir, "{rdir}"), ok = application:start(sasl), '
    res = subprocess.run(["erl", "-noshell", "-eval", setup + RUNNER], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PDT_DIR": str(d)})
    found = [otp.parse_marker(line) for line in res.stdout.splitlines() if "PDT{" in line]
    assert len(found) == len(exprs), res.stdout + res.stderr
    return found  # type: ignore[return-value]


@needs_erl
def test_release_handler_expressions(tmp_path: Path) -> None:
    rdir = tmp_path / "releases"
    (rdir / "0.0.1").mkdir(parents=True)
    (rdir / "0.0.0").mkdir(parents=True)
    (rdir / "RELEASES").write_text(
        '[{release,"demo","0.0.2","13.1.5",[],permanent},{release,"demo","0.0.1","13.1.5",[],old},'
        '{release,"demo","0.0.0","13.1.5",[],old}].\n')
    before, permanent, forgot, removed, after = run_on_sasl(tmp_path, [
        otp_retention.retention_state_expr(),
        otp_retention.remove_release_expr("0.0.2"),
        otp_retention.set_removed_expr("0.0.1"),
        otp_retention.remove_release_expr("0.0.0"),
        otp_retention.retention_state_expr(),
    ])
    booted, statuses = otp_retention.parse_state(before)
    assert statuses == {"0.0.2": "permanent", "0.0.1": "old", "0.0.0": "old"}
    assert booted == otp.parse_marker(f"PDT{{b={booted}}}")["b"] and booted  # the VM's boot script
    assert permanent["ok"] == "false" and "permanent" in permanent["result"]
    assert forgot["ok"] == "true" and removed["ok"] == "true"
    assert otp_retention.parse_state(after)[1] == {"0.0.2": "permanent"}
    assert (rdir / "0.0.1").is_dir(), "set_removed touches no file"
    assert not (rdir / "0.0.0").exists(), "remove_release deletes the release's dir"
    assert '"0.0.1"' not in (rdir / "RELEASES").read_text()
    assert otp_retention.parse_state(None) == (None, {})


# --- local store ---------------------------------------------------------------------------------

def test_store_cleanup_keeps_the_newest_and_what_their_upgrades_start_from(tmp_path: Path,
                                                                           capsys) -> None:
    store = tmp_path / "store"
    for vsn in ("0.0.1", "0.0.2", "0.0.3", "0.0.10"):
        write(store / f"demo_{vsn}.release.tar.gz", vsn)
        write(store / f"demo_{vsn}.release.tar.gz.sha256", "ab" * 32)
    for new, old in (("0.0.10", "0.0.2"), ("0.0.2", "0.0.1")):
        write(store / f"demo_{new}.upgrade.tar.gz", new)
        write(store / f"demo_{new}.upgrade.tar.gz.sha256", "cd" * 32)
        keys = ("from_version", "to_version") if new == "0.0.10" else ("old", "new")  # and a 0.1 store
        write(store / f"demo_{new}.upgrade.json", json.dumps({"app": "demo", keys[0]: old, keys[1]: new}))
    write(store / "other_0.0.1.release.tar.gz", "not ours")
    config = {"deliver": {"app": "demo", "store": str(store), "builder": "mix"}}
    before = sorted(p.name for p in store.iterdir())
    assert [r.version for r in retention.cleanup_store(config, keep=1, dry_run=True).releases] \
        == ["0.0.1", "0.0.3"]
    assert sorted(p.name for p in store.iterdir()) == before
    assert [r.version for r in retention.cleanup_store(config, keep=1).releases] == ["0.0.1", "0.0.3"]
    assert sorted(p.name for p in store.iterdir()) == [
        "demo_0.0.10.release.tar.gz", "demo_0.0.10.release.tar.gz.sha256",
        "demo_0.0.10.upgrade.json", "demo_0.0.10.upgrade.tar.gz", "demo_0.0.10.upgrade.tar.gz.sha256",
        "demo_0.0.2.release.tar.gz", "demo_0.0.2.release.tar.gz.sha256",  # 0.0.10's upgrade is from it
        "other_0.0.1.release.tar.gz"]
    out = capsys.readouterr().out
    assert "kept 0.0.10 (newest 1), 0.0.2 (0.0.10's stored upgrade starts from it)" in out
    with pytest.raises(InvalidInput):
        retention.cleanup_store(config, keep=0)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_upgrade_manifests_of_older_stores_still_load(tmp_path) -> None:
    from pydeliver_tasks.model import UpgradeManifest

    path = tmp_path / "m.json"
    path.write_text(json.dumps({"app": "demo", "old": "1", "new": "2", "unsafe": ["x"],
                                "a_later_field": 1}))
    m = UpgradeManifest.load(path)
    assert (m.from_version, m.to_version, m.unsafe) == ("1", "2", ["x"])
    m.save(path)
    assert json.loads(path.read_text())["from_version"] == "1"
    assert UpgradeManifest.load(path) == m
