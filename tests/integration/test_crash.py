"""Crash-consistent activation, with faults injected for real (issue 11): every line of the
install script failing or killed on a real release root, a read-only release root, and the SSH
session killed while the host installs. Each ends with the host on exactly one complete version,
a message that says which (read back from the host) and a re-run that completes."""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pydeliver_tasks.commands import activation as acmd
from pydeliver_tasks.commands import retention as rcmd

from .conftest import INV, Project, http_get, one_app, project_fixture
from .faults import PsWatch, diff, kill_sessions, tmpfs, tree
from .install_faults import (
    boots,
    disk_full_at_each_call,
    fault_at_each_call,
    followed_by,
    undisturbed,
)

APPS = {"hello_ex": 4090, "hello_erl": 4091}
project = project_fixture(APPS, deployed="0.0.1")
SIZE = r"\d+(?:\.\d)? [KM]B"  # as fleet/output.size_text writes it: 950 KB, 5.6 MB


def size_bytes(text: str) -> float:
    """'950 KB' / '5.6 MB' back to bytes, so two sizes in different units compare."""
    number, unit = text.split()
    return float(number) * (1e3 if unit == "KB" else 1e6)


@pytest.fixture(scope="module")
def built(project: Project) -> Project:
    """0.0.2 is in the store too."""
    project.inv("build.release", "--tag", "0.0.2").ok()
    return project


def tarball(project: Project, vsn: str) -> tuple[Path, str]:
    path = project.dir / ".deliver" / "releases" / f"{project.app}_{vsn}.release.tar.gz"
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def tarballs(project: Project, *versions: str) -> dict[str, Path]:
    return {v: tarball(project, v)[0] for v in versions}


def test_a_fault_at_any_line_of_the_install_leaves_the_old_or_the_new_release(
        built: Project, tmp_path: Path) -> None:
    """Each external command the install script runs fails once, and every 2nd kills the script
    (SIGKILL) (for the mix app — the same script, a bigger release — every 4th call fails and
    every 6th is killed, for the suite's time): before the commit point the root is exactly as
    before (after the script's own rollback, or `recover` after a kill), after it `recover`
    completes the new release; never a mix. The two trees to match are the root before and
    after an undisturbed install."""
    ins = undisturbed(built.app, tarballs(built, "0.0.1", "0.0.2"), tmp_path, tmp_path)
    steps = {"fail": 1, "kill": 2} if built.app == "hello_erl" else {"fail": 4, "kill": 6}
    outcomes = fault_at_each_call(ins, steps)
    assert outcomes["old"] >= 8 and outcomes["new"] >= 8, outcomes


def test_a_fault_at_any_line_of_a_rollback_or_a_bin_switch_leaves_one_version(
        built: Project, tmp_path: Path) -> None:
    """The other scripts that change what boots, each call failing and each 2nd killed: the
    cold rollback's activation of 0.0.1 (after 0.0.2 was installed) and (relx) the bin/ switch
    after a hot downgrade. Before the commit the root is as before, after it as after, never a
    mix."""
    ins = undisturbed(built.app, tarballs(built, "0.0.1", "0.0.2"), tmp_path, tmp_path)
    root = str(ins.root)
    rollback = followed_by(ins, rcmd.activate_version(root, built.app, "0.0.1"), "0.0.1")
    assert boots(ins.root) == "0.0.1"
    outcomes = fault_at_each_call(rollback, {"fail": 1, "kill": 2})
    assert outcomes["old"] > 5 and outcomes["new"] > 3, outcomes
    if built.app == "hello_ex":
        return  # a mix release's bin/ names no version: the switch changes no file there
    switch = followed_by(ins, acmd.activate_bin(root, "0.0.1"), "0.0.1")
    assert switch.old != switch.new, "relx's bin/ has its version baked in"
    outcomes = fault_at_each_call(switch, {"fail": 1, "kill": 2})
    assert outcomes["old"] > 3 and outcomes["new"] > 1, outcomes


def test_a_full_disk_at_any_line_of_the_install_leaves_the_old_or_the_new_release(
        built: Project, tmp_path: Path) -> None:
    """The root on a filesystem of its own, filled up for real (until ENOSPC) just before each
    external command of the install (every 2nd for the mix app): every write after that point
    fails — tar's, awk's RELEASES, and the shell's own redirects (journal, start_erl.data.new).
    Before the commit point the script stops and rolls back to exactly the old tree on the full
    disk; from the commit point on, the finish needs no new room and completes."""
    outcomes = disk_full_at_each_call(built.app, tarballs(built, "0.0.1", "0.0.2"), tmp_path,
                                      1 if built.app == "hello_erl" else 2)
    assert outcomes["old"] > 10 and outcomes["new"] > 5, outcomes


def test_read_only_release_root_activates_nothing_and_says_so(built: Project) -> None:
    """`chmod 555` on the release root: the deploy fails, names what boots (0.0.1, read back)
    and changes nothing that boots; once writable again the same command completes."""
    one_app(built)
    h1 = built.box.hosts[0]
    root = built.root(h1)
    bin_before = (root / "bin" / built.app).read_bytes()
    outside_deliver = lambda: {k: v for k, v in tree(root).items()  # noqa: E731
                               if not k.startswith(".deliver")}
    before = outside_deliver()
    os.chmod(root, 0o555)
    try:
        res = built.inv("deploy.release", "--version", "0.0.2", "--host", h1.spec)
    finally:
        os.chmod(root, 0o755)
    assert res.rc == 1, res.out
    assert "nothing of 0.0.2 was activated: 0.0.1 boots next, as before" in res.out, res.out
    assert "Traceback" not in res.out
    assert boots(root) == "0.0.1" and (root / "bin" / built.app).read_bytes() == bin_before
    assert not list((root / ".deliver").glob("journal.*"))
    assert outside_deliver() == before, diff(outside_deliver(), before)
    built.inv("deploy.release", "--version", "0.0.2", "--host", h1.spec).ok()
    assert boots(root) == "0.0.2"
    built.inv("deploy.release", "--version", "0.0.1", "--host", h1.spec).ok()


def test_ssh_session_killed_during_the_install_is_reported_from_the_host(built: Project) -> None:
    """The sshd sessions of h1 are killed once the install has extracted the release: the deploy
    logs in again, lets the journal settle, and reports what the host boots — the same version
    start_erl.data names. A re-run then completes."""
    one_app(built)
    h1 = built.box.hosts[0]
    root = built.root(h1)
    listener = built.box.pids()[h1.name]
    env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(built.config)}
    proc = subprocess.Popen([INV, "deploy.release", "--version", "0.0.2", "--host", h1.spec],
                            cwd=built.dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    staged = root / ".deliver" / "staging" / "0.0.2" / "lib"
    deadline = time.monotonic() + 120
    while not staged.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed = kill_sessions(listener)
    out = proc.communicate(timeout=300)[0]
    assert killed, out
    assert "Traceback" not in out, out
    now = boots(root)
    assert not list((root / ".deliver").glob("journal.*")), out
    if proc.returncode == 0:  # the script went on without its session, as scripts do
        assert now == "0.0.2" and "but the host completed the activation: 0.0.2 boots next" in out, out
    else:
        assert now == "0.0.1", out
        assert re.search(r"nothing of 0\.0\.2 was activated: 0\.0\.1 boots next", out), out
    built.inv("deploy.release", "--version", "0.0.2", "--host", h1.spec).ok()
    assert boots(root) == "0.0.2"
    built.inv("restart", "--host", h1.spec).ok()
    assert "0.0.2" in http_get(built.url(h1))[1]


def test_connection_lost_during_the_upload_is_one_line_and_a_rerun_resumes(built: Project) -> None:
    """h2's sshd sessions are killed as soon as the upload's `.part` appears: one line says how
    far the upload got and that nothing was activated (no traceback); the re-run resumes from
    the bytes on the host and completes."""
    one_app(built)
    h2 = built.box.hosts[1]
    root = built.root(h2)
    part = root / ".deliver" / "releases" / f"{built.app}_0.0.2.release.tar.gz.part"
    listener = built.box.pids()[h2.name]
    env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(built.config)}
    for _ in range(3):  # the upload can win the race against the kill: then again
        proc = subprocess.Popen([INV, "deploy.release", "--version", "0.0.2", "--host", h2.spec],
                                cwd=built.dir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while not (part.exists() and part.stat().st_size > 0) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.001)
        assert kill_sessions(listener), "no session to kill"
        out = proc.communicate(timeout=300)[0]
        lost = re.search(r"the connection was lost \([^)]*\) during the upload of \S+ "
                         rf"\(({SIZE}) of ({SIZE})\)", out)
        if proc.returncode == 1 and lost and size_bytes(lost[1]) < size_bytes(lost[2]):
            break
        built.inv("deploy.release", "--version", "0.0.1", "--host", h2.spec).ok()
        for left in (root / ".deliver" / "releases").glob(f"{built.app}_0.0.2.*"):
            left.unlink()
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "EOFError" not in out, out
    assert lost and size_bytes(lost[1]) < size_bytes(lost[2]), out
    assert "nothing activated; a re-run resumes" in out, out
    assert boots(root) == "0.0.1"
    have = part.stat().st_size
    assert 0 < have < tarball(built, "0.0.2")[0].stat().st_size
    doctor = built.inv("doctor", "--host", h2.spec).out  # says the leftover as the host has it
    left = re.search(rf"leftover of an interrupted run: \.deliver/releases/{part.name} "
                     rf"\(({SIZE}); the next deploy removes or resumes it\)", doctor)
    assert left and abs(size_bytes(left[1]) - have) <= max(0.06 * have, 8192), (have, doctor)
    res = built.inv("deploy.release", "--version", "0.0.2", "--host", h2.spec).ok()
    assert "resumed an interrupted upload at" in res.out, res.out
    assert boots(root) == "0.0.2" and not part.exists()


def test_too_little_disk_is_refused_before_anything_is_uploaded(built: Project) -> None:
    """h2's deploy path on a 24 MB filesystem (a tmpfs the test mounts): the release needs more
    (upload + extracted files + margin), so the deploy says where, how much is free and how much
    is needed, before a byte is uploaded."""
    one_app(built)
    h2 = built.box.hosts[1]
    with tmpfs(Path(h2.home) / "small", "24m", Path(h2.home)) as small:
        root = small / built.app

        def on_small(d: dict) -> None:
            d["stages"]["sandbox"]["hosts"][1]["deploy_path"] = str(root)

        res = built.inv("deploy.release", "--version", "0.0.2", "--host", h2.spec,
                        config=built.variant("small-disk", on_small))
        assert res.rc == 1, res.out
        found = re.search(rf"not enough disk space for {built.app}_0\.0\.2\.release\.tar\.gz: "
                          r"(\S+) has (\d+) bytes free, the upload and extract need (\d+) \(with a "
                          r"margin\); nothing was changed", res.out)
        assert found, res.out
        assert found[1] == f"{root}/.deliver/releases" and int(found[2]) < int(found[3]), res.out
        assert 20_000_000 < int(found[2]) <= 24 * 1024 * 1024
        assert "inv cleanup --keep N" in res.out and "Traceback" not in res.out
        assert list((root / ".deliver" / "releases").iterdir()) == [], "nothing uploaded"


def test_disk_full_during_the_extract_activates_nothing_and_a_rerun_completes(
        built: Project) -> None:
    """The check passes, then an after_upload hook fills the filesystem (dd until ENOSPC): the
    extract fails for real, the script rolls back, the report says nothing was activated (read
    back: nothing boots on this new root); with room again the same command completes."""
    one_app(built)
    h2 = built.box.hosts[1]
    with tmpfs(Path(h2.home) / "full", "160m", Path(h2.home)) as full:
        root = full / built.app

        def filling(d: dict) -> None:
            d["stages"]["sandbox"]["hosts"][1]["deploy_path"] = str(root)
            d["hooks"] = {"after_upload": "dd if=/dev/zero of=../filler bs=1M 2>/dev/null; true"}

        res = built.inv("deploy.release", "--version", "0.0.2", "--host", h2.spec,
                        config=built.variant("filling", filling))
        assert res.rc == 1, res.out
        assert "No space left on device" in res.out, res.out
        assert re.search(r"install failed \(exit \d+\) for \S+; nothing of 0\.0\.2 was "
                         r"activated: no release boots next, as before", res.out), res.out
        assert not (root / "releases" / "start_erl.data").exists()
        assert not list((root / ".deliver").glob("journal.*"))
        assert not (root / "bin").exists()
        assert not (root / "lib").exists() or not any((root / "lib").iterdir())
        (full / "filler").unlink()

        def roomy(d: dict) -> None:
            d["stages"]["sandbox"]["hosts"][1]["deploy_path"] = str(root)

        built.inv("deploy.release", "--version", "0.0.2", "--host", h2.spec,
                  config=built.variant("roomy", roomy)).ok()
        assert boots(root) == "0.0.2"


def fill_up(filler: Path) -> None:
    """Take every free byte of filler's filesystem: all but 8 MB with one fallocate (more than an
    upload can take meanwhile: a fallocate that fails gives all its space back, and a deploy then
    read back a disk with room, seen on a fresh machine), then unbuffered writes until ENOSPC (a
    buffered file would raise ENOSPC again when it is closed, with its last bytes unwritten).
    The deploy may take more than those 8 MB between the look at the free space and the
    fallocate (its extract, when the upload won the race; seen on a fresh machine): then the
    free space is read again and the fallocate tried again."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(20):
            try:
                os.posix_fallocate(fd, 0, max(shutil.disk_usage(filler.parent).free
                                              - (8 << 20), 1))
                break
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        os.lseek(fd, 0, os.SEEK_END)
        chunk = b"\0" * 65536
        try:
            while True:
                os.write(fd, chunk)
        except OSError:
            pass  # full
    finally:
        os.close(fd)


def test_disk_full_during_the_upload_is_read_back_and_a_rerun_resumes(built: Project) -> None:
    """The room check passes, then the test fills h2's filesystem as soon as the upload's `.part`
    appears: SFTP says only "Failure", so the deploy reads the host back and says the disk is
    full with the bytes free there; nothing was activated; with room again the same command
    resumes the upload (from the bytes there, once checked to be the release's) and completes.
    (The upload can win the race on a fast or busy machine — the deploy then succeeds, or its
    extract meets the full disk: the root is emptied and the fault injected again, at most 5
    times.) When paramiko drops the
    error of the last writes, the host's sha256 check refuses the bytes and the deploy says the
    disk is full, read back."""
    one_app(built)
    h2 = built.box.hosts[1]
    size = tarball(built, "0.0.2")[0].stat().st_size
    with tmpfs(Path(h2.home) / "upfull", "160m", Path(h2.home)) as disk:
        root = disk / built.app
        part = root / ".deliver" / "releases" / f"{built.app}_0.0.2.release.tar.gz.part"
        config = built.variant("upfull", lambda d: d["stages"]["sandbox"]["hosts"][1].update(
            deploy_path=str(root)))
        filler = disk / "filler"
        for _ in range(5):
            env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(config)}
            proc = subprocess.Popen([INV, "deploy.release", "--version", "0.0.2", "--host",
                                     h2.spec], cwd=built.dir, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            try:
                deadline = time.monotonic() + 120
                while not part.exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.001)
                fill_up(filler)
                out = proc.communicate(timeout=300)[0]
            finally:
                if proc.poll() is None:  # the deploy this test started, by pid
                    proc.kill()
                    proc.wait()
            if proc.returncode == 1 and "install failed" not in out:
                break
            shutil.rmtree(root)  # the upload won the race (the extract may have hit the full disk)
            filler.unlink()
        assert proc.returncode == 1, out
        assert "Traceback" not in out, out
        found = re.search(r"the host refused a write \(SFTP said: [^)]*\) during the upload of "
                          rf"\S+ \(({SIZE}) of ({SIZE})\): the disk is full: (\S+) has "
                          r"(\d+) bytes free, (\d+) more were to come \(read back\); nothing "
                          r"activated; a re-run resumes from the bytes there", out)
        # paramiko may drop the error of a last pipelined write: the host's sha256 check then
        # refuses the bytes, and the deploy reads the disk back and says it is full
        lost = re.search(r"sha256 check failed \(the disk is full: (\S+) has (\d+) bytes free "
                         r"\(read back\); a write was lost\) for \S+; nothing of 0\.0\.2 was "
                         r"activated", out)
        assert found or lost, out
        if found:
            assert found[3] == f"{root}/.deliver/releases" and int(found[4]) < int(found[5]), out
            assert "inv cleanup --keep N" in out
        else:
            assert lost[1] == f"{root}/.deliver/releases" and int(lost[2]) < size, out
        assert not (root / "releases" / "start_erl.data").exists()
        have = part.stat().st_size if part.exists() else 0
        assert 0 <= have < size
        filler.unlink()
        res = built.inv("deploy.release", "--version", "0.0.2", "--host", h2.spec,
                        config=config).ok()
        # bytes freed while the upload ran (the filler's first grab failing) can leave a hole:
        # then the .part's first bytes are checked, found different, and not resumed from
        assert have == 0 or "resumed an interrupted upload at" in res.out or (
            f"the {have} bytes an interrupted upload left differ from the release: uploading "
            "from the start") in res.out, res.out
        assert boots(root) == "0.0.2" and not part.exists()


def test_a_big_env_value_reaches_the_node_and_a_too_big_one_is_refused(built: Project) -> None:
    """A 100 KB env value (no command line could carry many of those) reaches the node through
    the env file: after a restart the node's own os:getenv sees all of it and ping/stop work. A
    200 KB one — more than Linux lets a program receive in one env entry — is refused with its
    key path before any host is touched."""
    h1 = built.box.hosts[0]
    big = "x" * 100_000
    config = built.variant("big-env", lambda d: d["stages"]["sandbox"]["env"].update(
        BIG_VALUE=big))
    expr = ('String.length(System.get_env("BIG_VALUE", ""))' if built.app == "hello_ex"
            else 'length(os:getenv("BIG_VALUE", "")).')
    try:
        built.inv("restart", "--host", h1.spec, config=config).ok()
        seen = built.inv("eval", "--host", h1.spec, expr, config=config).ok()
        assert "100000" in seen.out, seen.out
        ping = built.inv("ping", "--host", h1.spec, config=config).ok()
        assert re.search(r"\s+ok\s+.*pid \d+", ping.out), ping.out
        too_big = built.variant("too-big-env", lambda d: d["stages"]["sandbox"]["env"].update(
            BIG_VALUE="x" * 200_000))
        before = tree(built.root(h1) / ".deliver")
        refused = built.inv("restart", "--host", h1.spec, config=too_big)
        assert refused.rc == 2 and "BIG_VALUE" in refused.out, refused.out
        assert "Traceback" not in refused.out
        after = tree(built.root(h1) / ".deliver")  # refused: not even an audit line
        assert after == before, diff(after, before)
    finally:
        built.inv("restart", "--host", h1.spec).ok()
    assert built.inv("eval", "--host", h1.spec, expr).ok().out.split()[-1] == "0"


def test_no_secret_stands_on_a_command_line_the_tool_runs(built: Project) -> None:
    """While a deploy, a restart, ping and doctor run, every shell command the tool ran on the
    hosts (as `ps` shows it) is sampled: the cookie is in none of them — the env comes from the
    0600 env file — and the sampler did see the tool's commands."""
    uids = {pwd.getpwnam(h.user).pw_uid for h in built.box.hosts}
    with PsWatch(uids) as watch:
        built.inv("deploy.release", "--version", "0.0.1").ok()
        built.inv("restart").ok()
        built.inv("ping").ok()
        built.inv("doctor").ok()
    seen = [cmd for cmd in watch.shells if ". ./.deliver/env" in cmd]
    assert seen, f"the sampler saw none of the tool's commands: {sorted(watch.shells)[:5]}"
    leaks = [cmd for cmd in watch.shells if built.cookie() in cmd]
    assert leaks == [], leaks
    for h in built.box.hosts:
        env_file = built.root(h) / ".deliver" / "env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert built.cookie() in env_file.read_text()
