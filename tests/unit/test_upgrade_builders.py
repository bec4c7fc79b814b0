"""Hot-upgrade command builders, run for real in tmp_path; the Erlang expressions, parsed and run
by a real VM; parse_releases; the `upgrade` config subtree."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from pydeliver_tasks import commands, config, otp
from pydeliver_tasks.commands import activation as acmd
from pydeliver_tasks.commands import build as builders
from pydeliver_tasks.config import ConfigError, load

needs_erl = pytest.mark.skipif(shutil.which("erl") is None, reason="erl not installed")


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def tree(root: Path) -> dict[str, str]:
    """Every file and dir under root: relative path -> text (binary files: sha256; dirs: '/');
    the activation lock (an empty file kept for flock) is not the host's state."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel == ".deliver/activation.lock":
            continue
        if p.is_dir():
            out[rel] = "/"
        else:
            data = p.read_bytes()
            try:
                out[rel] = data.decode()
            except UnicodeDecodeError:
                out[rel] = hashlib.sha256(data).hexdigest()
    return out


def targz(dest: Path, files: dict[str, str]) -> str:
    """A .tar.gz holding files (path -> text; bin/ files executable); its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def shell_words(cmd: str, tmp_path: Path, fake: str) -> list[str]:
    """The argv bash passes to program `fake` when it runs cmd (fake is a function printing it)."""
    script = f'{fake}() {{ printf "%s\\0" "$@"; }}; cd() {{ :; }}; {cmd}'
    res = bash(script, tmp_path)
    assert res.returncode == 0, res.stderr
    return res.stdout.split("\0")[:-1]


# --- builders: every value reaches the command as one word ------------------------------------------

def test_escript_builders_pass_every_value_as_one_word(tmp_path: Path) -> None:
    b = f"/b x/$(touch {tmp_path}/pwned)'\""
    rel = f"{b}/src/_build/prod/rel/hello"
    script = f"{b}/pdt_upgrade.escript"
    assert builders.escript_path(b + "/") == script
    cases = {
        builders.upgrade_facts("mix", b, "hello", "prod", "0.0.1", "0.0.2+b.1"):
            [script, "facts", rel, "hello", "0.0.1", "0.0.2+b.1"],
        builders.install_appup("mix", b, "hello", "prod", "dep_app", "1.0.0-rc.1", f"{b}/out/x y.appup"):
            [script, "appup", rel, "dep_app", "1.0.0-rc.1", f"{b}/out/x y.appup"],
        builders.make_relup("rebar3", b, "hello", "prod", "0.0.1", "0.0.2"):
            [script, "relup", rel, "hello", "0.0.1", "0.0.2"],
    }
    for cmd, argv in cases.items():
        assert shell_words(cmd, tmp_path, "escript") == argv
    assert not (tmp_path / "pwned").exists()
    assert builders.upload_path("/b/", "hello_1.release.tar.gz") == "/b/out/hello_1.release.tar.gz"


def test_command_builders_quote_roots_with_spaces_and_quotes(tmp_path: Path) -> None:
    root = f"apps/my app/$(touch {tmp_path}/pwned)'"
    for cmd in (acmd.stage_upgrade(root, "hello", "0.0.1", "0.0.2", "ab" * 32, True, ["hello-0.0.2"]),
                acmd.activate_bin(root, "0.0.2"),
                builders.package_upgrade("mix", root, "hello", "prod", "0.0.2", ["a b-1"]),
                builders.overlay_old("mix", root, "hello", "prod", "0.0.1", f"{root}/out/t.tar.gz")):
        assert subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0
        assert f"cd {shlex.quote(root)}" in cmd or f"cd {shlex.quote(root + '/src/_build/prod/rel/hello')}" in cmd
    stage = acmd.stage_upgrade("r", "hello", "0.0.1", "0.0.2", "ab" * 32, True, ["x y-1", "z-2"])
    assert "for n in 'x y-1' z-2; do" in stage
    pkg = builders.package_upgrade("mix", "/b", "hello", "prod", "0.0.2", ["x y-1", "z-2"])
    assert "'lib/x y-1' lib/z-2 releases/0.0.2 " in pkg


# --- stage_upgrade, run for real -----------------------------------------------------------------

UPGRADE_FILES = {
    "bin/demo": "new bin",
    "lib/demo-2/ebin/demo.app": "demo 2",
    "lib/dep-1/ebin/x": "dep from the tarball",
    "lib/newdep-1/ebin/y": "newdep",
    "releases/2/relup": "relup",
    "releases/2/demo.rel": "rel 2",
    "releases/start_erl.data": "13.1.5 2",
    "releases/COOKIE": "cookie from tarball",
    "erts-13.1.5/bin/beam": "erts",
}


def running_root(tmp_path: Path, files: dict[str, str] | None = None, at: str = "") -> tuple[Path, str]:
    """A deploy root running demo 1, with the upgrade tarball to 2 uploaded (at `at` + '' or '.part')."""
    root = tmp_path / "my root"
    write(root / "bin/demo", "old bin", 0o755)
    write(root / "lib/demo-1/ebin/demo.app", "demo 1")
    write(root / "lib/dep-1/ebin/x", "dep installed")
    write(root / "lib/demo-2/stale", "left by an earlier attempt")
    write(root / "releases/1/demo.rel", "rel 1")
    write(root / "releases/start_erl.data", "13.1.5 1")
    write(root / "releases/RELEASES", "releases")
    write(root / "releases/COOKIE", "cookie")
    sha = targz(root / ".deliver/releases" / f"demo_2.upgrade.tar.gz{at}",
                UPGRADE_FILES if files is None else files)
    return root, sha


def stage(root: Path, sha: str, uploaded: bool = True, new_dirs: tuple[str, ...] = ("demo-2",)) -> str:
    return acmd.stage_upgrade(str(root), "demo", "1", "2", sha, uploaded, list(new_dirs))


def test_stage_upgrade_puts_the_new_release_beside_the_running_one(tmp_path: Path) -> None:
    root, sha = running_root(tmp_path)
    res = bash(stage(root, sha), tmp_path)
    assert res.returncode == 0, res.stderr
    assert "PDT{staged=2}" in res.stdout
    t = tree(root)
    assert t["lib/demo-1/ebin/demo.app"] == "demo 1", "the running release's libs stay"
    assert t["lib/dep-1/ebin/x"] == "dep installed", "an existing lib dir is never replaced"
    assert t["lib/newdep-1/ebin/y"] == "newdep", "a missing lib dir is added"
    assert t["lib/demo-2/ebin/demo.app"] == "demo 2", "a new lib dir is replaced"
    assert "lib/demo-2/stale" not in t
    assert t["releases/2/relup"] == "relup" and t["releases/2/demo.rel"] == "rel 2"
    assert t["releases/1/demo.rel"] == "rel 1"
    # nothing that boots or runs changes
    assert t["bin/demo"] == "old bin"
    assert t["releases/start_erl.data"] == "13.1.5 1"
    assert t["releases/RELEASES"] == "releases" and t["releases/COOKIE"] == "cookie"
    assert not any(k.startswith("erts-") for k in t)
    # both start scripts are kept for the switch
    assert t[".deliver/bin/1/demo"] == "old bin" and t[".deliver/bin/2/demo"] == "new bin"
    assert os.access(root / ".deliver/bin/2/demo", os.X_OK)
    assert not (root / ".deliver/staging/2").exists()
    assert (root / ".deliver/releases/demo_2.upgrade.tar.gz").is_file()

    before = tree(root)
    res = bash(stage(root, sha), tmp_path)
    assert res.returncode == 0, res.stderr
    assert tree(root) == before, "staging twice (deploy.upgrade, then upgrade) changes nothing more"


def test_stage_upgrade_keeps_bin_of_the_old_version_once(tmp_path: Path) -> None:
    root, sha = running_root(tmp_path)
    write(root / ".deliver/bin/1/demo", "kept earlier", 0o755)
    assert bash(stage(root, sha), tmp_path).returncode == 0
    assert (root / ".deliver/bin/1/demo").read_text() == "kept earlier"


def test_stage_upgrade_with_a_wrong_sha256_exits_3_and_changes_nothing(tmp_path: Path) -> None:
    root, _ = running_root(tmp_path)
    before = tree(root)
    res = bash(stage(root, "0" * 64), tmp_path)
    assert res.returncode == 3
    assert "sha256 mismatch" in res.stderr
    assert tree(root) == before


def test_stage_upgrade_checks_and_moves_an_uploaded_part_file(tmp_path: Path) -> None:
    root, sha = running_root(tmp_path, at=".part")
    res = bash(stage(root, sha), tmp_path)
    assert res.returncode == 0, res.stderr
    assert (root / ".deliver/releases/demo_2.upgrade.tar.gz").is_file()
    assert not (root / ".deliver/releases/demo_2.upgrade.tar.gz.part").exists()
    assert (root / "releases/2/relup").is_file()


def test_stage_upgrade_drops_a_bad_part_file(tmp_path: Path) -> None:
    root, _ = running_root(tmp_path, at=".part")
    before = tree(root)
    res = bash(stage(root, "0" * 64), tmp_path)
    assert res.returncode == 3 and "uploaded" in res.stderr
    del before[".deliver/releases/demo_2.upgrade.tar.gz.part"]
    assert tree(root) == before


def test_stage_upgrade_without_upload_ignores_a_stale_part_file(tmp_path: Path) -> None:
    root, sha = running_root(tmp_path)
    write(root / ".deliver/releases/demo_2.upgrade.tar.gz.part", "interrupted upload")
    res = bash(stage(root, sha, uploaded=False), tmp_path)
    assert res.returncode == 0, res.stderr
    assert not (root / ".deliver/releases/demo_2.upgrade.tar.gz.part").exists()
    assert (root / "releases/2/relup").is_file()


@pytest.mark.parametrize("missing", ["releases/2/relup", "bin/demo"])
def test_stage_upgrade_refuses_a_tarball_without_relup_or_bin(tmp_path: Path, missing: str) -> None:
    files = {k: val for k, val in UPGRADE_FILES.items() if k != missing}
    root, sha = running_root(tmp_path, files)
    lib_before = tree(root / "lib")
    res = bash(stage(root, sha), tmp_path)
    assert res.returncode == 4
    assert f"upgrade tarball lacks {missing.replace('2/relup', '2/relup')}" in res.stderr
    assert tree(root / "lib") == lib_before and not (root / "releases/2").exists()
    assert not (root / ".deliver/bin/2").exists()


# --- activate_bin ---------------------------------------------------------------------------------

def test_activate_bin_switches_bin_by_copy_and_rename(tmp_path: Path) -> None:
    root = tmp_path / "my root"
    write(root / "bin/demo", "v1", 0o755)
    write(root / ".deliver/bin/2/demo", "v2", 0o755)
    cmd = acmd.activate_bin(str(root), "2")
    # bin/ is never missing for good: the copy is made beside it before the commit point
    assert cmd.index("cp -a .deliver/bin/2 bin.new") < cmd.index("mv .deliver/journal.prepare")
    res = bash(cmd, tmp_path)
    assert res.returncode == 0, res.stderr
    assert (root / "bin/demo").read_text() == "v2" and os.access(root / "bin/demo", os.X_OK)
    assert (root / ".deliver/bin/2/demo").read_text() == "v2", "the kept copy stays for later switches"
    assert not (root / "bin.new").exists() and not (root / ".deliver/trash").exists()
    assert not list((root / ".deliver").glob("journal.*")), "the journal is gone once finished"


def test_activate_bin_of_an_unknown_version_fails_and_keeps_bin(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "bin/demo", "v1", 0o755)
    res = bash(acmd.activate_bin(str(root), "3"), tmp_path)
    assert res.returncode != 0
    assert (root / "bin/demo").read_text() == "v1"
    assert sorted(p.name for p in root.iterdir()) == [".deliver", "bin"]
    assert [p.name for p in (root / ".deliver").iterdir()] == ["activation.lock"]


# --- package_upgrade and overlay_old on the build host ----------------------------------------------

def build_release_dir(build: Path, cookie_and_erts: bool) -> Path:
    rel = build / "src/_build/prod/rel/demo"
    write(rel / "bin/demo", "bin", 0o755)
    for d in ("demo-1", "demo-2", "kernel-8.5.3", "dep-1"):
        write(rel / "lib" / d / "ebin/x", d)
    write(rel / "releases/1/demo.rel", "rel 1")
    write(rel / "releases/2/demo.rel", "rel 2")
    write(rel / "releases/2/relup", "relup")
    write(rel / "releases/start_erl.data", "13.1.5 2")
    if cookie_and_erts:
        write(rel / "releases/COOKIE", "c")
        write(rel / "erts-13.1.5/bin/beam", "erts")
    (build / "out").mkdir()
    return rel


@pytest.mark.parametrize("cookie_and_erts", [True, False])
def test_package_upgrade_packs_exactly_the_given_lib_dirs(tmp_path: Path, cookie_and_erts: bool) -> None:
    """The changed apps' lib dirs only: ERTS and the other libs are the running release's."""
    build = tmp_path / "build dir"
    build_release_dir(build, cookie_and_erts)
    write(build / "src/_build/prod/rel/demo/lib/stdlib-4.2/ebin/x", "unchanged")
    res = bash(builders.package_upgrade("mix", str(build), "demo", "prod", "2",
                                        ["demo-2", "kernel-8.5.3"]), tmp_path)
    assert res.returncode == 0, res.stderr
    out = build / "out/demo_2.upgrade.tar.gz"
    assert res.stdout.strip().splitlines()[-1] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert not (build / "out/demo_2.upgrade.tar.gz.part").exists()
    with tarfile.open(out) as tar:
        files = {m.name for m in tar.getmembers() if m.isfile()}
    want = {"bin/demo", "lib/demo-2/ebin/x", "lib/kernel-8.5.3/ebin/x", "releases/2/demo.rel",
            "releases/2/relup", "releases/start_erl.data"}
    if cookie_and_erts:
        want |= {"releases/COOKIE"}
    assert files == want


def test_package_upgrade_fails_on_a_missing_lib_dir(tmp_path: Path) -> None:
    build = tmp_path / "b"
    build_release_dir(build, True)
    res = bash(builders.package_upgrade("mix", str(build), "demo", "prod", "2", ["demo-9"]), tmp_path)
    assert res.returncode != 0
    assert not (build / "out/demo_2.upgrade.tar.gz").exists()


def test_overlay_old_adds_the_old_release_without_touching_the_new_build(tmp_path: Path) -> None:
    build = tmp_path / "build dir"
    rel = build / "src/_build/prod/rel/demo"
    write(rel / "lib/demo-2/ebin/x", "new demo")
    write(rel / "lib/kernel-8.5.3/ebin/k", "new build's kernel")
    write(rel / "releases/2/demo.rel", "rel 2")
    write(rel / "bin/demo", "new bin", 0o755)
    old = tmp_path / "old release.tar.gz"
    targz(old, {"bin/demo": "old bin", "lib/demo-1/ebin/x": "old demo",
                "lib/kernel-8.5.3/ebin/k": "old kernel", "releases/1/demo.rel": "rel 1",
                "releases/start_erl.data": "13.1.5 1"})
    res = bash(builders.overlay_old("mix", str(build), "demo", "prod", "1", str(old)), tmp_path)
    assert res.returncode == 0, res.stderr
    t = tree(rel)
    assert t["lib/demo-1/ebin/x"] == "old demo" and t["releases/1/demo.rel"] == "rel 1"
    assert t["lib/kernel-8.5.3/ebin/k"] == "new build's kernel" and t["bin/demo"] == "new bin"
    assert "releases/start_erl.data" not in t
    res = bash(builders.overlay_old("mix", str(build), "demo", "prod", "0.9", str(old)), tmp_path)
    assert res.returncode != 0


# --- parse_releases --------------------------------------------------------------------------------

def test_parse_releases() -> None:
    assert otp.parse_releases("0.0.2:permanent,0.0.1:old") == {"0.0.2": "permanent", "0.0.1": "old"}
    assert otp.parse_releases("1.0.0+b.1:current,0.9:permanent") == {
        "1.0.0+b.1": "current", "0.9": "permanent"}
    assert otp.parse_releases("") == {}
    assert otp.parse_releases("error:('EXIT',(noproc,(gen_server,call,[release_handler]))))") == {}


# --- the Erlang expressions, parsed and evaluated by a real VM ---------------------------------------

DRIVER = """
Dir = os:getenv("PDT_DIR"),
Eval = os:getenv("PDT_EVAL") =:= "1",
lists:foreach(fun(F) ->
    Name = filename:basename(F, ".expr"),
    try
        {ok, B} = file:read_file(F),
        {ok, T, _} = erl_scan:string(unicode:characters_to_list(B)),
        {ok, E} = erl_parse:parse_exprs(T),
        case Eval of
            true -> {value, V, _} = erl_eval:exprs(E, []), io:format("~s ~s~n", [Name, V]);
            false -> io:format("~s parsed ~b~n", [Name, length(E)])
        end
    catch C:R -> io:format("~s FAILED ~p:~p~n", [Name, C, R])
    end
end, lists:sort(filelib:wildcard(filename:join(Dir, "*.expr")))),
halt().
"""


def run_exprs(tmp_path: Path, exprs: dict[str, str], setup: str = "", evaluate: bool = True) -> dict[str, str]:
    """{name: what the VM printed for it} (evaluated, or only scanned and parsed)."""
    d = tmp_path / "exprs"
    d.mkdir(exist_ok=True)
    for name, expr in exprs.items():
        (d / f"{name}.expr").write_text(expr)
    env = {**os.environ, "PDT_DIR": str(d), "PDT_EVAL": "1" if evaluate else "0"}
    res = subprocess.run(["erl", "-noshell", "-eval", setup + DRIVER], capture_output=True, text=True,
                         env=env, timeout=60)
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    assert set(exprs) <= set(lines), res.stdout + res.stderr
    return {name: lines[name] for name in exprs}


EXPRS = {
    "hot_install": otp.hot_install_expr("my_app", "1.2.3-rc.1+build.7"),
    "downgrade": otp.hot_install_expr("my_app", "0.0.1"),
    "make_permanent": otp.make_permanent_expr("1.2.3-rc.1+build.7"),
    "release_state": otp.release_state_expr(),
    "code_check": otp.code_check_expr(["my_app", "other_app"]),
    "node_facts": otp.node_facts_expr("my_app"),
}


@needs_erl
def test_expressions_are_valid_erlang(tmp_path: Path) -> None:
    out = run_exprs(tmp_path, EXPRS, evaluate=False)
    assert out == {name: "parsed 1" for name in EXPRS}
    # the check itself can fail: a broken expression is reported
    assert run_exprs(tmp_path, {"broken": "begin 1 + end."}, evaluate=False)["broken"].startswith("FAILED")


@needs_erl
def test_expressions_evaluated_with_a_real_release_handler(tmp_path: Path) -> None:
    """sasl's release_handler reads a RELEASES we write; errors come back as ok=false markers."""
    rdir = tmp_path / "rel dir" / "releases"
    rdir.mkdir(parents=True)
    (rdir / "RELEASES").write_text(
        '[{release,"demo","0.0.2","13.1.5",[],permanent},{release,"demo","0.0.1","13.1.5",[],old}].\n')
    no_sasl = run_exprs(tmp_path, {"a_state": otp.release_state_expr()})
    marker = otp.parse_marker(no_sasl["a_state"])
    assert marker is not None and marker["releases"].startswith("error:")
    assert marker["pid"].isdigit() and otp.parse_releases(marker["releases"]) == {}

    setup = (f'ok = application:set_env(sasl, releases_dir, "{rdir}"), '
             "ok = application:start(sasl), ")
    out = run_exprs(tmp_path, {
        "a_state": otp.release_state_expr(),
        "b_permanent": otp.make_permanent_expr("0.0.9"),
        "c_known": otp.hot_install_expr("demo", "0.0.1"),
        "d_hot": otp.hot_install_expr("demo", "0.0.9"),
        "e_facts": otp.node_facts_expr("stdlib"),
    }, setup=setup)
    state = otp.parse_marker(out["a_state"])
    assert state is not None
    assert otp.parse_releases(state["releases"]) == {"0.0.2": "permanent", "0.0.1": "old"}
    for name in ("b_permanent", "c_known", "d_hot"):
        m = otp.parse_marker(out[name])
        assert m is not None and m["ok"] == "false", out[name]
        assert m["result"].startswith("(error,") and "{" not in m["result"]
    assert "no_such_release" in otp.parse_marker(out["b_permanent"])["result"]
    assert "0.0.9/demo.rel" in otp.parse_marker(out["d_hot"])["result"], "unknown: set_unpacked first"
    assert "releases/0.0.2/relup" in otp.parse_marker(out["c_known"])["result"], \
        "a known release is installed directly (a downgrade runs the current release's relup)"
    facts = otp.parse_marker(out["e_facts"])
    assert facts is not None and facts["app"] == "true" and facts["node"] == "nonode@nohost"
    assert facts["pid"] == state["pid"]


@needs_erl
def test_code_check_finds_stale_old_and_misplaced_code(tmp_path: Path) -> None:
    if shutil.which("erlc") is None:
        pytest.skip("erlc not installed")
    ebin = tmp_path / "lib" / "demo_app-1" / "ebin"
    v2, shadow = tmp_path / "v2", tmp_path / "shadow"
    for d in (ebin, v2, shadow):
        d.mkdir(parents=True)
    src = tmp_path / "src"
    src.mkdir()
    for mod in ("m_stale", "m_old", "m_fine", "m_unloaded", "m_shadowed"):
        (src / f"{mod}.erl").write_text(f"-module({mod}).\n-export([v/0]).\nv() -> 1.\n")
    subprocess.run(["erlc", "-o", str(ebin), *map(str, sorted(src.glob("*.erl")))], check=True, timeout=60)
    subprocess.run(["erlc", "-o", str(shadow), str(src / "m_shadowed.erl")], check=True, timeout=60)
    for mod in ("m_stale", "m_old"):
        (src / f"{mod}.erl").write_text(f"-module({mod}).\n-export([v/0]).\nv() -> 2.\n")
        subprocess.run(["erlc", "-o", str(v2), str(src / f"{mod}.erl")], check=True, timeout=60)
    setup = (
        f'true = code:add_patha("{ebin}"), true = code:add_patha("{shadow}"), '
        "[{module, _} = code:ensure_loaded(M) || M <- [m_stale, m_old, m_fine]], "
        f'{{ok, _}} = file:copy("{v2}/m_stale.beam", "{ebin}/m_stale.beam"), '
        f'{{ok, _}} = file:copy("{v2}/m_old.beam", "{ebin}/m_old.beam"), '
        "{module, m_old} = code:load_file(m_old), "
    )
    out = run_exprs(tmp_path, {"check": otp.code_check_expr(["demo_app", "no_such_app"])}, setup=setup)
    m = otp.parse_marker(out["check"])
    assert m is not None, out
    assert m["dirs"] == "demo_app-1" and m["beams"] == "5"
    assert m["stale"] == "m_stale"
    assert m["old_code"] == "m_old"
    assert m["path"].startswith("m_shadowed@") and str(shadow) in m["path"]


# --- the `upgrade` config subtree ------------------------------------------------------------------

def cfg(**deliver) -> dict:
    base = copy.deepcopy(config.DEFAULTS)
    base.update(app="hello", builder="mix", stages={"prod": {"hosts": ["a.example.com"]}})
    base.update(deliver)
    return {"deliver": base}


def test_upgrade_settings_defaults_and_values() -> None:
    s = load(cfg())
    assert (s.upgrade.on_unsafe, s.upgrade.on_failure, s.upgrade.apps, s.upgrade.appups_dir) == (
        "restart", "restart", (), "rel/appups")
    s = load(cfg(upgrade={"on_unsafe": "abort", "on_failure": "downgrade", "apps": ["web", "core_2"],
                          "appups_dir": "priv/appups"}))
    assert s.upgrade == config.UpgradeSettings("abort", "downgrade", ("web", "core_2"), "priv/appups")
    partial = load({"deliver": {"app": "hello", "builder": "mix", "upgrade": {"on_failure": "abort"}}})
    assert partial.upgrade.on_failure == "abort" and partial.upgrade.on_unsafe == "restart"


def test_upgrade_config_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as err:
        load(cfg(upgrade={"on_unsafe": "ignore", "on_failure": "retry", "apps": ["web", "Bad-App", 7],
                          "appups_dir": "", "apppus_dir": "x"}))
    text = str(err.value)
    for expected in ["deliver.upgrade.on_unsafe: must be one of restart, abort, got 'ignore'",
                     "deliver.upgrade.on_failure: must be one of restart, downgrade, abort, got 'retry'",
                     "deliver.upgrade.apps[1]: invalid app name 'Bad-App'",
                     "deliver.upgrade.apps[2]: invalid app name '7'",
                     "deliver.upgrade.appups_dir: invalid path ''",
                     "deliver.upgrade.apppus_dir: unknown key"]:
        assert expected in text, expected
    assert len(err.value.problems) == 6
    assert not [p for p in err.value.problems if "apps[0]" in p]


def test_upgrade_apps_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match=r"deliver.upgrade.apps: expected a list"):
        load(cfg(upgrade={"apps": "web"}))


def test_upgrade_that_is_not_a_mapping_is_reported() -> None:
    with pytest.raises(ConfigError, match="deliver.upgrade"):
        load(cfg(upgrade="abort"))


# ---- equal to a fresh boot: expressions, tree comparison, the restart gate --------------------

def test_fresh_eval_runs_the_new_versions_eval_with_the_stage_env() -> None:

    cmd = commands.fresh_eval("apps/x", "x", {"MOTD": "a b"}, "0.2.0", "ok.")
    assert cmd.startswith("cd apps/x && . ./.deliver/env && env RELEASE_VSN=0.2.0 bin/x eval ")


@pytest.mark.skipif(shutil.which("erl") is None, reason="erl not installed")
@pytest.mark.parametrize("name", ["fresh_env_mix", "fresh_env_relx", "env_check", "tree",
                                  "holders", "watch_start", "watch_end"])
def test_fresh_boot_expressions_parse_as_erlang(name: str, tmp_path: Path) -> None:
    from pydeliver_tasks.otp import fresh as f
    from pydeliver_tasks.otp import watch as w

    expr = {
        "fresh_env_mix": lambda: f.fresh_env_expr("shop", "0.2.0", True),
        "fresh_env_relx": lambda: f.fresh_env_expr("shop", "0.2.0", False),
        "env_check": lambda: f.env_check_expr("0.2.0", ["shop", "kernel"]),
        "tree": f.tree_expr,
        "holders": lambda: f.holders_expr(["Elixir.Shop.Formatter", "shop_fmt"], ["shop_srv"]),
        "watch_start": w.watch_start_expr,
        "watch_end": w.watch_end_expr,
    }[name]()
    src = tmp_path / "e.erl"
    src.write_text(expr)
    out = subprocess.run(
        ["erl", "-noshell", "-eval", f'{{ok, B}} = file:read_file("{src}"), '
         "{ok, T, _} = erl_scan:string(binary_to_list(B)), "
         "io:format(\"~p\", [element(1, erl_parse:parse_exprs(T))]), halt()."],
        capture_output=True, text=True, timeout=60)
    assert out.stdout == "ok", out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("erl") is None, reason="erl not installed")
def test_holders_finds_a_kept_local_fun_and_skips_external_funs_and_suspended_processes() -> None:
    """The expression run in a real VM: a process keeping a local fun of a replaced module is
    named; an external fun (&M.f/1) is not; a process whose module is suspended is not."""
    from pydeliver_tasks import otp
    from pydeliver_tasks.otp import fresh as f

    setup = (
        "{ok, XMod, XBin} = compile:forms([{attribute, 1, module, pdt_fmt}, {attribute, 1, export, "
        "[{make, 0}]}, {function, 1, make, 0, [{clause, 1, [], [], [{'fun', 1, {clauses, "
        "[{clause, 1, [], [], [{atom, 1, ok}]}]}}]}]}]), {module, _} = code:load_binary(XMod, "
        "\"pdt_fmt.erl\", XBin), "
        "XKeep = fun(XT) -> proc_lib:spawn(fun() -> put(kept, XT), receive stop -> ok end end) end, "
        "XP1 = XKeep(pdt_fmt:make()), _ = XKeep(fun pdt_fmt:make/0), register(pdt_keeper, XP1), "
        "timer:sleep(100), "
    )
    expr = f.holders_expr(["pdt_fmt"], [])
    run = setup + "io:format(\"~s\", [" + expr.rstrip(".") + "]), halt()."
    out = subprocess.run(["erl", "-noshell", "-eval", run], capture_output=True, text=True,
                         timeout=60)
    found = otp.parse_marker(out.stdout)
    assert found, out.stdout + out.stderr
    rows = f.decode_lines(found["holders"])
    assert [r[1:] for r in rows] == [["pdt_keeper", "none", "its process dictionary", "pdt_fmt"]]
    suspended = f.holders_expr(["pdt_fmt"], ["pdt_fmt"])
    # a process whose initial-call module is suspended by the relup is not reported
    assert "PdtSuspended = [pdt_fmt]" in suspended


def test_tree_changes_name_lost_restarted_and_not_running_children() -> None:
    from pydeliver_tasks.steps.equal import Tree, tree_changes

    before = Tree({"shop": ("<0.1.0>", "supervisor"), "shop/keeper": ("<0.2.0>", "worker"),
                   "shop/stats": ("<0.3.0>", "worker"), "shop/idle": ("undefined", "worker"),
                   "web": ("<0.9.0>", "supervisor")})
    same = Tree(dict(before.children))
    assert tree_changes(before, same) == []
    after = Tree({"shop": ("<0.1.0>", "supervisor"), "shop/keeper": ("<0.7.0>", "worker"),
                  "shop/idle": ("undefined", "worker"), "shop/new": ("undefined", "worker"),
                  "web": ("<0.9.0>", "supervisor")})
    assert tree_changes(before, after) == [
        "shop/keeper was restarted (<0.2.0> -> <0.7.0>)",
        "shop/stats (<0.3.0>) is gone",
        "shop/new is declared by its supervisor but not running",
    ]
    # a user appup may restart its application's processes on purpose
    assert tree_changes(before, after, ("shop",)) == [
        "shop/new is declared by its supervisor but not running"]


def test_tree_changes_ignore_children_that_come_and_go_with_the_traffic() -> None:
    from pydeliver_tasks.steps.equal import Tree, tree_changes

    conns = "inets/httpd_sup/httpd_instance_sup_4080/httpd_connection_sup_4080"
    before = Tree({"inets": ("<0.1.0>", "supervisor", "-"),
                   conns: ("<0.2.0>", "supervisor", "permanent"),
                   f"{conns}/undefined": ("<0.3.0>", "worker", "-"),  # a request in flight
                   "shop/undefined/worker": ("<0.4.0>", "worker", "permanent"),
                   "shop/job": ("<0.5.0>", "worker", "temporary"),
                   "shop/keeper": ("<0.6.0>", "worker", "permanent")})
    after = Tree({"inets": ("<0.1.0>", "supervisor", "-"),
                  conns: ("<0.2.0>", "supervisor", "permanent"),
                  f"{conns}/undefined": ("<0.8.0>", "worker", "-"),  # another request
                  "shop/keeper": ("<0.6.0>", "worker", "permanent")})
    assert tree_changes(before, after) == []
    del after.children[conns]
    after.children["shop/keeper"] = ("<0.9.0>", "worker", "permanent")
    assert tree_changes(before, after) == [
        f"{conns} (<0.2.0>) is gone", "shop/keeper was restarted (<0.6.0> -> <0.9.0>)"]


def test_restart_gate_lets_one_host_restart_at_a_time_and_none_after_a_failure() -> None:
    import threading
    import time

    from pydeliver_tasks.fleet import HostFailure
    from pydeliver_tasks.steps.hot import RestartGate

    gate = RestartGate(serial=True)
    inside, most = [0], [0]

    def restart(name: str, fail: bool) -> str:
        try:
            with gate.turn(name):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.05)
                inside[0] -= 1
                if fail:
                    raise HostFailure("did not come up")
            return "ok"
        except HostFailure as exc:
            return exc.message

    results: dict[str, str] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, restart(n, n == "h1")))
               for n in ("h1", "h2", "h3")]
    threads[0].start()
    time.sleep(0.01)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert results["h1"] == "did not come up"
    assert results["h2"].startswith("not restarted: the restart of h1 failed first")
    parallel = RestartGate(serial=False)
    with parallel.turn("a"), parallel.turn("b"):
        pass


@pytest.mark.skipif(shutil.which("erl") is None, reason="erl not installed")
def test_combined_expressions_answer_in_one_evaluation_with_their_own_variables() -> None:
    """Two of our expressions (both binding PdtText, PdtFile...) evaluated as one: no clash, and
    parse_markers merges both markers."""
    from pydeliver_tasks.otp import watch as w

    expr = otp.combined(w.watch_start_expr(), otp.release_state_expr(), w.watch_end_expr())
    out = subprocess.run(["erl", "-noshell", "-eval",
                          f"io:format(\"~s\", [{expr.rstrip('.')}]), halt()."],
                         capture_output=True, text=True, timeout=60)
    found = otp.parse_markers(out.stdout)
    assert found and found["watching"] == "true" and found["errors"] == "", out.stdout + out.stderr
    assert found["releases"].startswith("error:")  # no release_handler in a bare VM
    assert otp.parse_markers("PDT{a=1;b=2} x PDT{b=3}") == {"a": "1", "b": "3"}


def test_an_upgrade_to_a_version_nobody_has_is_refused_before_any_host(tmp_path) -> None:
    """No tag and nothing stored: exit 2 at once — the hosts (unroutable here) are never asked."""
    import git

    from pydeliver_tasks import steps
    from pydeliver_tasks.validation import InvalidInput

    repo = git.Repo.init(tmp_path)
    (tmp_path / "mix.exs").write_text("# app\n")
    repo.index.add(["mix.exs"])
    repo.index.commit("one")
    repo.create_tag("0.0.1")
    cfg = {"deliver": {"app": "demo", "builder": "mix", "project_dir": str(tmp_path),
                       "store": str(tmp_path / "store"),
                       "stages": {"prod": {"hosts": ["a@203.0.113.7"]}}}}
    for args, missing in ((("0.0.1", "9.9.9"), "9.9.9"), (("0.0.0", "0.0.1"), "0.0.0")):
        with pytest.raises(InvalidInput) as err:
            steps.upgrade(cfg, *args)
        assert f"no tag '{missing}'" in str(err.value) and "release store has no demo" in str(err.value)
        with pytest.raises(InvalidInput):
            steps.build_upgrade(cfg, *args)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_outside_links_finds_links_out_of_the_release_only(tmp_path, shell) -> None:
    import subprocess

    rel = tmp_path / "bp" / "src" / "_build" / "default" / "rel" / "myrel"
    (rel / "lib" / "own-1").mkdir(parents=True)
    (rel / "releases" / "0.1.0").mkdir(parents=True)
    outside = tmp_path / "buildtree" / "myrel-0.1.0"
    outside.mkdir(parents=True)
    cmd = builders.outside_links("rebar3", str(tmp_path / "bp"), "myrel", "default")
    (rel / "lib" / "inner").symlink_to("own-1")  # inside the release: fine
    clean = subprocess.run([shell, "-c", cmd], capture_output=True, text=True)
    assert (clean.returncode, clean.stdout) == (0, "")
    (rel / "lib" / "myrel-0.1.0").symlink_to(outside)  # what relx dev mode makes
    (rel / "releases" / "0.1.0" / "sys.config").symlink_to(tmp_path / "gone" / "sys.config")
    dev = subprocess.run([shell, "-c", cmd], capture_output=True, text=True)
    assert dev.returncode == builders.OUTSIDE_LINKS_RC, dev
    assert f"./lib/myrel-0.1.0 -> {outside}" in dev.stdout
    assert "./releases/0.1.0/sys.config -> " in dev.stdout and "inner" not in dev.stdout


@pytest.mark.parametrize("on_unsafe", ["restart", "abort"])
def test_a_host_that_is_not_hot_safe_goes_by_the_policy(on_unsafe) -> None:
    """upgrade_host.HostUpgrade before anything touches the host: the plan's reasons decide."""
    from pydeliver_tasks.fleet import HostContext, HostFailure
    from pydeliver_tasks.model import UpgradeManifest
    from pydeliver_tasks.steps.upgrade_host import HostUpgrade, Policy

    s = config.load({"deliver": {"app": "demo", "builder": "mix",
                                 "stages": {"prod": {"hosts": ["a@h1"]}}}})
    hc = HostContext(s.stage("prod").hosts[0], s, dry_run=False)
    restarted: list[str] = []
    for reason, appups_help in (("application extra is added: the relup cannot start it", False),
                                ("dependency x changes version (1 -> 2) and ships no appup", True)):
        manifest = UpgradeManifest("demo", "1", "2", unsafe=[reason])
        one = HostUpgrade(s, "mix", Policy("1", "2", on_unsafe, "restart"), {"a@h1": {"pid": "7"}},
                          None, manifest, lambda hc: restarted.append(hc.host.name) or "restarted")
        if on_unsafe == "restart":
            message, data = one(hc)
            assert message == f"not hot-upgradable ({reason}): restarted" and data["mode"] == "restart"
            continue
        with pytest.raises(HostFailure) as err:
            one(hc)
        assert "nothing was changed (--on-unsafe abort)" in err.value.message
        assert err.value.hint.endswith("inv upgrade --from 1 --to 2 --on-unsafe restart --host a@h1")
        assert ("supply appups in rel/appups/1-2/" in err.value.hint) == appups_help
    assert restarted == (["a@h1", "a@h1"] if on_unsafe == "restart" else [])
