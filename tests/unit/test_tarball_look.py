"""tarball_look and the sha256 kept beside a tarball, run for real under /bin/sh on a local dir: the
host hashes a tarball once, hashes it again when the file was replaced or touched, says the free
space even before the tarball dir exists, and an install verifies the tarball without the cache."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

from pydeliver_tasks import otp
from pydeliver_tasks.commands import activation as acmd
from pydeliver_tasks.commands import retention as rcmd
from pydeliver_tasks.commands import tarball as tcmd
from pydeliver_tasks.steps.retention import parse_listing
from tests.unit.test_install import install, tarball


def look(path: Path) -> tuple[dict[str, str], str]:
    res = subprocess.run(["sh", "-c", tcmd.tarball_look(str(path))], capture_output=True,
                         text=True, check=True)
    return otp.parse_markers(res.stdout) or {}, res.stderr


def key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {int(st.st_ctime)} {st.st_ino}"


def test_a_tarball_is_hashed_once_and_again_when_it_changes(tmp_path: Path) -> None:
    t = tmp_path / "app_1.release.tar.gz"
    t.write_bytes(b"one" * 1000)
    real = hashlib.sha256(t.read_bytes()).hexdigest()
    found, err = look(t)
    assert found["sha256"] == real and found["free"].isdigit() and err == ""
    assert Path(f"{t}.sha256-kept").read_text() == f"{real} {key(t)}\n"

    # the kept line is what a second look answers from: a line naming another sha256 for this
    # very file (same size, ctime, inode) is believed, which shows nothing was hashed again
    Path(f"{t}.sha256-kept").write_text(f"{'0' * 64} {key(t)}\n")
    assert look(t)[0]["sha256"] == "0" * 64

    # the file rewritten (new ctime): hashed again, and the kept line follows
    time.sleep(1.05)
    t.write_bytes(b"two" * 1000)
    real = hashlib.sha256(t.read_bytes()).hexdigest()
    assert look(t)[0]["sha256"] == real
    assert Path(f"{t}.sha256-kept").read_text() == f"{real} {key(t)}\n"

    # replaced by another file of the same size (another inode): hashed again
    other = tmp_path / "other"
    other.write_bytes(b"six" * 1000)
    os.replace(other, t)
    assert look(t)[0]["sha256"] == hashlib.sha256(b"six" * 1000).hexdigest()


def test_no_tarball_and_no_dir_yet_still_says_the_free_space(tmp_path: Path) -> None:
    t = tmp_path / "apps" / "x" / ".deliver" / "releases" / "x_1.release.tar.gz"
    found, err = look(t)
    assert "sha256" not in found and found["free"].isdigit() and err == ""
    assert not t.parent.exists()


def test_a_sha256_that_cannot_be_kept_is_still_answered(tmp_path: Path) -> None:
    """A full or read-only disk fails the write of the kept line (here: a directory in its way,
    which fails for root too); the look still answers, silently, with exit 0."""
    t = tmp_path / "app_1.release.tar.gz"
    t.write_bytes(b"ro" * 500)
    Path(f"{t}.sha256-kept.tmp").mkdir()
    found, err = look(t)
    assert found["sha256"] == hashlib.sha256(b"ro" * 500).hexdigest() and err == ""
    assert not Path(f"{t}.sha256-kept").exists()


def test_an_install_checks_the_tarball_itself_and_keeps_its_sha256(tmp_path: Path) -> None:
    t, sha = tarball(tmp_path, "1")
    kept = Path(f"{t}.sha256-kept")
    kept.write_text(f"{sha} {key(t)}\n")
    t.write_bytes(t.read_bytes()[:-10])  # damaged after its sha256 was kept
    bad = install(tmp_path, "1", sha)
    assert bad.returncode == 3 and "sha256 mismatch" in bad.stderr

    t, sha = tarball(tmp_path, "1")
    good = install(tmp_path, "1", sha)
    assert good.returncode == 0 and "PDT{installed=1}" in good.stdout, good.stderr
    assert re.fullmatch(rf"{sha} {key(t)}\n", kept.read_text())
    assert look(t)[0]["sha256"] == sha


def test_the_look_before_a_deploy_recovers_first_and_reads_the_tarball(tmp_path: Path) -> None:
    """recover_and_look: an activation interrupted before its commit is rolled back, what boots
    next is read after that, then the tarball's sha256 and the free space; one round trip."""
    t, sha = tarball(tmp_path, "1")
    assert install(tmp_path, "1", sha).returncode == 0
    root = tmp_path / "root"
    (root / "lib" / "demo-2").mkdir()
    (root / ".deliver" / "journal.prepare").write_text("version=2\nstage=\nadded=lib/demo-2\n")
    res = subprocess.run(["sh", "-c", acmd.recover_and_look(str(root), str(t),
                                                           rcmd.listing(str(root), "demo"))],
                         capture_output=True, text=True)
    found = otp.parse_markers(res.stdout) or {}
    assert res.returncode == 0 and acmd.RECOVER_FAILED not in res.stdout, res.stderr
    assert found["recovered"] == "rolledback=2" and found["boots"] == "1"
    assert found["journal"] == "none" and not (root / "lib" / "demo-2").exists()
    assert found["sha256"] == sha and found["free"].isdigit()
    listed = parse_listing(res.stdout)  # the listing rides along, read after the recovery
    assert set(listed.versions) == {"1"} and listed.boots_next == "1" and not listed.ignored

    nothing = tmp_path / "nothing" / "x_1.release.tar.gz"  # a host deployed to for the first time
    res = subprocess.run(["sh", "-c", acmd.recover_and_look(str(nothing.parent), str(nothing))],
                         capture_output=True, text=True)
    found = otp.parse_markers(res.stdout) or {}
    assert found == {"boots": "", "journal": "none", "free": found["free"]} and res.stderr == ""
    assert not nothing.parent.exists()


def test_a_recovery_that_fails_is_said_and_the_look_still_answers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / ".deliver").write_text("not a dir")  # the activation lock cannot be taken
    t = tmp_path / "x_1.release.tar.gz"
    res = subprocess.run(["sh", "-c", acmd.recover_and_look(str(root), str(t))],
                         capture_output=True, text=True)
    assert acmd.RECOVER_FAILED in res.stdout and "activation.lock" in res.stderr
    assert (otp.parse_markers(res.stdout) or {})["free"].isdigit()
