"""Command builders: pinned strings, and every value quoted so the shell sees it as one word."""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from pydeliver_tasks import commands, otp
from pydeliver_tasks.commands import activation as acmd
from pydeliver_tasks.commands import build as builders
from pydeliver_tasks.commands import tarball as tcmd
from pydeliver_tasks.config import SshSettings
from pydeliver_tasks.fleet.ssh import git_ssh_command
from pydeliver_tasks.otp import control as otp_control
from pydeliver_tasks.steps import activation
from pydeliver_tasks.steps.probe import parse_probe

NASTY = "a b;$(touch /tmp/pwned)'\""


def test_node_command_sources_the_env_file_and_shows_no_value() -> None:
    cmd = commands.node("/srv/my app", "hello", "mix", {"RELEASE_COOKIE": NASTY}, "daemon")
    assert cmd == "cd '/srv/my app' && . ./.deliver/env && bin/hello daemon"
    assert commands.node("r", "hello", "mix", {}, "daemon") == "cd r && bin/hello daemon"


def test_env_file_round_trips_every_value_through_sh(tmp_path: Path) -> None:
    """What the node sees is the configured value, byte for byte: quotes, $(...), newlines,
    a 100 KB value (no command line carries it)."""
    env = {"A": NASTY, "B": "line1\nline2 $HOME `id`", "C": "x" * 100_000, "D": ""}
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver" / "env").write_text(commands.env_file_text(env))
    script = 'printf "%s\\0" "$A" "$B" "$C" "$D"'
    cmd = f"cd {shlex.quote(str(tmp_path))} && {commands.env_prefix(env)}sh -c {shlex.quote(script)}"
    assert len(cmd) < 300
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:4] == [env["A"], env["B"], env["C"], ""]


def test_relx_gets_per_root_pipe_and_log_dirs_unless_set() -> None:
    cmd = commands.node("r", "hello", "rebar3", {}, "ping")
    assert 'PIPE_DIR="$PWD/tmp/pipe/"' in cmd and 'RUNNER_LOG_DIR="$PWD/log"' in cmd
    cmd = commands.node("r", "hello", "rebar3", {"PIPE_DIR": "/p/"}, "ping")
    assert "$PWD/tmp/pipe" not in cmd and ". ./.deliver/env && " in cmd  # the file sets it


def test_eval_uses_rpc_for_mix_and_eval_for_relx() -> None:
    """...when erl_call cannot reach the node with what an earlier answer left (otp.control);
    the slow path carries the setup with the question."""
    expr = otp.node_facts_expr("hello")
    mix = commands.node_eval("r", "hello", "mix", {}, expr)
    assert "; else bin/hello rpc " in mix and "erl_call" not in mix
    relx = commands.node_eval("r", "hello", "rebar3", {}, expr)
    slow = relx.split("; else ", 1)[1]
    assert " bin/hello eval " in slow and shlex.split(slow.removesuffix("; fi"))[-1] == otp.combined(
        otp_control.setup_expr(commands.control_key("hello", "rebar3", {})), expr)
    assert subprocess.run(["sh", "-n", "-c", relx]).returncode == 0


def test_elixir_wrapper_carries_the_expression_base64() -> None:
    code = otp.elixir_wrapper("io_lib:format(\"~s\", [\"it's | fine\"]).")
    assert "it's" not in code and "Base.decode64!" in code


def test_parse_marker_and_probe() -> None:
    out = ('"PDT{pid=42;app=true;vsn=0.0.1;node=a@b}"\nPDT_RC=0\n'
           "PDT_PROC 42 /r/erts/bin/beam.smp -- -root /r -progname erl\n")
    p = parse_probe(out)
    assert p.facts == {"pid": "42", "app": "true", "vsn": "0.0.1", "node": "a@b"}
    assert p.app_started and p.beams == [42]
    down = parse_probe("--rpc-eval : RPC failed with reason :nodedown\nPDT_RC=1\n")
    assert down.facts is None and not down.beams and "nodedown" in down.output
    assert otp.parse_marker("nothing") is None


def test_install_release_script_is_valid_shell_and_quotes_values() -> None:
    script = acmd.install_release("apps/my app", "hello", "0.0.1", "ab" * 32)
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    assert "cd 'apps/my app'" in script
    assert "sha256sum --check" in script.split("tar -xzf")[0], "verify before extracting"
    body = script.split("pdt_recover\n", 2)[-1]  # after the shell functions and the recovery
    commit = body.index("mv .deliver/journal.prepare .deliver/journal.commit")
    assert max(body.index("cp -a"), body.index("> releases/start_erl.data.new")) < commit, \
        "every write is prepared before the commit point"
    assert body.index("pdt_finish") > commit


def test_build_commands() -> None:
    assert builders.init_repo("b") == "mkdir -p b && git init -q --bare b/repo.git"
    assert builders.checkout("b", "ab12").endswith("git -C src checkout -q --detach ab12 && git -C src log -1 --format=%H")
    assert "MIX_ENV=prod" in builders.build("mix", "b", "hello", "prod")
    assert builders.build("rebar3", "b", "hello", "default") == "cd b/src && rebar3 as default release -n hello"
    pkg = builders.package("mix", "/b", "hello", "prod", "0.0.1")
    assert "cd /b/src/_build/prod/rel/hello && tar -czf /b/out/hello_0.0.1.release.tar.gz.part" in pkg
    for cmd in (builders.checkout("b", NASTY), builders.build("mix", NASTY, "x", "prod")):
        assert subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0


def test_git_ssh_command_enforces_the_host_key_policy() -> None:
    strict = git_ssh_command(SshSettings("/k h", "strict", "/id", "", 7), None)
    assert "StrictHostKeyChecking=yes" in strict and "'UserKnownHostsFile=/k h'" in strict
    assert "IdentitiesOnly=yes" in strict and "BatchMode=yes" in strict
    tofu = git_ssh_command(SshSettings("", "accept-new", "", "", 7), None)
    assert "StrictHostKeyChecking=accept-new" in tofu


@pytest.mark.parametrize("subdir", ["", "services/shop"])
def test_checkout_makes_src_the_project_even_in_a_subdirectory(tmp_path, subdir) -> None:
    """A project inside a bigger repository: `src` is its directory in a clean clone at sha."""
    import git

    work = tmp_path / "mono"
    project = work / subdir if subdir else work
    project.mkdir(parents=True)
    (project / "mix.exs").write_text("v1\n")
    (work / "README").write_text("the monorepo\n")
    repo = git.Repo.init(work)
    repo.index.add([str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()
                    and ".git" not in p.parts])
    sha = repo.index.commit("one").hexsha
    build = tmp_path / "build"
    build.mkdir()
    git.Repo.clone_from(work, build / "repo.git", bare=True)
    (build / "src").mkdir()
    (build / "src" / "leftover").write_text("from the last build")
    res = subprocess.run(["sh", "-c", builders.checkout(str(build), sha, subdir)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == sha
    assert (build / "src" / "mix.exs").read_text() == "v1\n"
    assert not (build / "src" / "leftover").exists()
    bad = subprocess.run(["sh", "-c", builders.checkout(str(build), sha, "no/such/dir")],
                         capture_output=True, text=True)
    assert bad.returncode != 0


def test_project_dir_is_the_nearest_project_inside_the_repository(tmp_path, monkeypatch) -> None:
    from pydeliver_tasks import config

    (tmp_path / ".git").mkdir()
    shop = tmp_path / "services" / "shop"
    (shop / "lib").mkdir(parents=True)
    (shop / "mix.exs").write_text("")
    cfg = {"deliver": {"app": "shop", "stages": {"s": {"hosts": ["a@h"]}}}}
    monkeypatch.chdir(shop / "lib")
    s = config.load(cfg)
    assert (s.project_dir, s.builder, s.store) == (shop, "mix", shop / ".deliver/releases")
    monkeypatch.chdir(tmp_path / "services")
    assert config.load(cfg).project_dir == tmp_path  # no project here: the top level
    for bad in ("../x", "/abs", "a/../b", "a b"):
        with pytest.raises(config.ConfigError, match="deliver.build.subdir"):
            config.load({"deliver": {**cfg["deliver"], "build": {"subdir": bad}}})
    assert config.load({"deliver": {**cfg["deliver"], "build": {"subdir": "services/shop/"}}}
                       ).build.subdir == "services/shop"


def test_activation_state_is_read_from_every_marker_line() -> None:
    """recover prints one marker per fact; all of them count (what was done, what boots, the
    journal), and the sentence says what the host said."""
    state = activation.parse("PDT{recovered=finished=0.0.2}\nPDT{boots=0.0.2}\nPDT{journal=none}\n")
    assert (state.recovered, state.boots, state.journal) == ("finished=0.0.2", "0.0.2", "none")
    assert state.sentence() == ("an interrupted activation of 0.0.2 was completed; "
                                "0.0.2 boots next")
    left = activation.parse("PDT{boots=0.0.1}\nPDT{journal=commit}\n")
    assert "journal (commit) is still on the host" in left.sentence()


def test_prefix_sha256_and_room_and_access_read_a_nasty_path(tmp_path: Path) -> None:
    """Run for real by sh on a path with spaces and quotes: the prefix hash is that of the
    first bytes only, and the free space / writability answer is two lines."""
    d = tmp_path / NASTY
    d.mkdir(parents=True)
    f = d / "x.part"
    f.write_bytes(b"abcdef")
    out = subprocess.run(["sh", "-c", tcmd.prefix_sha256(str(f), 3)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == hashlib.sha256(b"abc").hexdigest()
    free, access = subprocess.run(["sh", "-c", tcmd.room_and_access(str(d))],
                                  capture_output=True, text=True, check=True).stdout.split()
    assert free.isdigit() and access == "writable"


MIX_REL = """%% coding: utf-8
{release,{"hello_ex","0.0.2"},
         {erts,"13.1.5"},
         [{kernel,"8.5.3",permanent},
          {stdlib,"4.2",permanent},
          {sasl,"4.2",permanent},
          {hello_ex,"0.0.2",permanent},
          {iex,"1.14.0",none}]}.
"""
RELX_REL = """{release,{"shop","1.0.0+3-abc"},{erts,"13.1.5"},[{kernel,"8.5.3"},{stdlib,"4.2"},
 {sasl,"4.2"},{my_lib,"2.0",load,[dep_a,dep_b]},{my_app,"1.0.0",[my_lib]}]}.
"""


def _releases_by(script_lines: list[str], root: Path) -> subprocess.CompletedProcess:
    script = "set -eu\ncd " + shlex.quote(str(root)) + "\n" + "\n".join(script_lines)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


@pytest.mark.parametrize("rel", [MIX_REL, RELX_REL], ids=["mix", "relx"])
def test_releases_is_written_as_release_handler_writes_it(tmp_path: Path, rel: str) -> None:
    """No VM boots for RELEASES: the file our script writes from a .rel as mix and relx write it
    holds the same terms as release_handler:create_RELEASES's, on a root with a space in its path."""
    root = tmp_path / "my root"
    (root / "releases" / "1").mkdir(parents=True)
    (root / "lib" / "sasl-4.2" / "ebin").mkdir(parents=True)
    (root / "releases" / "1" / "x.rel").write_text(rel)
    res = _releases_by(commands.releases_file("x", "1"), root)
    assert res.returncode == 0, res.stderr
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    expr = (f'R = "{root}", ok = release_handler:create_RELEASES(R, "{theirs}", '
            f'R ++ "/releases/1/x.rel", []), {{ok, A}} = file:consult("{theirs}/RELEASES"), '
            f'{{ok, B}} = file:consult(R ++ "/releases/RELEASES.new"), '
            'io:format("~p~n", [A =:= B]), halt().')
    same = subprocess.run(["erl", "-noshell", "-eval", expr], capture_output=True, text=True,
                          timeout=60)
    assert same.stdout.strip() == "true", (same.stdout, same.stderr,
                                           (root / "releases" / "RELEASES.new").read_text())


def test_releases_refuses_what_it_cannot_write_truly(tmp_path: Path) -> None:
    """A .rel in another form (a quoted app name) or a root whose path has a quote: exit 6 with
    the reason, never a guessed file; no sasl: only a warning."""
    root = tmp_path / "r"
    (root / "releases" / "1").mkdir(parents=True)
    (root / "lib" / "sasl-4.2" / "ebin").mkdir(parents=True)
    (root / "releases" / "1" / "x.rel").write_text(
        "{release,{\"x\",\"1\"},{erts,\"13.1.5\"},[{'My-App',\"1\"}]}.\n")
    res = _releases_by(commands.releases_file("x", "1"), root)
    assert res.returncode == commands.RELEASES_RC, res.stderr
    assert "releases/1/x.rel is not a .rel as mix and relx write it" in res.stderr
    quoted = tmp_path / 'q"x'
    shutil.copytree(root, quoted)
    (quoted / "releases" / "1" / "x.rel").write_text(MIX_REL)
    res = _releases_by(commands.releases_file("x", "1"), quoted)
    assert res.returncode == commands.RELEASES_RC and "quote or backslash" in res.stderr
    (root / "releases" / "RELEASES.new").unlink()  # the script's EXIT trap removes it
    shutil.rmtree(root / "lib" / "sasl-4.2")
    res = _releases_by(commands.releases_file("x", "1"), root)
    assert res.returncode == 0 and "warning: no sasl" in res.stderr
    assert not (root / "releases" / "RELEASES.new").exists()
