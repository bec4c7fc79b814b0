"""install_release run for real on a local root with a small release tarball: a second install
of the same tarball is recognised from the host's files and changes nothing; a changed boot file,
another tarball or an interrupted install means a real install."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

from pydeliver_tasks.commands import activation as acmd

REL = ('{release,{"demo","%s"},{erts,"13.1.5"},[{kernel,"8.5.3"},{stdlib,"4.2"},{sasl,"4.2"},'
       '{demo,"%s"}]}.\n')


def tarball(tmp_path: Path, vsn: str) -> tuple[Path, str]:
    src = tmp_path / f"src-{vsn}"
    for rel, text, mode in (("bin/demo", f"#!/bin/sh\necho {vsn}\n", 0o755),
                            (f"releases/{vsn}/demo.rel", REL % (vsn, vsn), 0o644),
                            ("releases/start_erl.data", f"13.1.5 {vsn}\n", 0o644),
                            (f"lib/demo-{vsn}/ebin/demo.app", vsn, 0o644),
                            ("lib/sasl-4.2/ebin/sasl.app", "sasl", 0o644)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
        (src / rel).chmod(mode)
    out = tmp_path / "root" / ".deliver" / "releases" / f"demo_{vsn}.release.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for name in ("bin", "releases", "lib"):
            tar.add(src / name, arcname=name)
    return out, hashlib.sha256(out.read_bytes()).hexdigest()


def install(tmp_path: Path, vsn: str, sha: str) -> subprocess.CompletedProcess[str]:
    script = acmd.install_release(str(tmp_path / "root"), "demo", vsn, sha, uploaded=False)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_the_same_tarball_installed_and_unchanged_is_not_extracted_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _, sha1 = tarball(tmp_path, "1")
    first = install(tmp_path, "1", sha1)
    assert first.returncode == 0 and "PDT{installed=1}" in first.stdout, first.stderr
    marker = (root / acmd.INSTALLED).read_text()
    assert marker.startswith(f"{sha1} ") and not (root / f"{acmd.INSTALLED}.new").exists()
    lib = (root / "lib" / "demo-1").stat().st_ino
    again = install(tmp_path, "1", sha1)
    assert again.returncode == 0 and f"{acmd.UNCHANGED}1}}" in again.stdout
    assert "PDT{boots=1}" in again.stdout and (root / "lib" / "demo-1").stat().st_ino == lib

    # a byte added at the end of RELEASES is a change too
    releases = root / "releases" / "RELEASES"
    kept = releases.read_text()
    releases.write_text(kept + "\n")
    assert acmd.UNCHANGED not in install(tmp_path, "1", sha1).stdout
    assert f"{acmd.UNCHANGED}1}}" in install(tmp_path, "1", sha1).stdout
    lib = (root / "lib" / "demo-1").stat().st_ino

    # what decides the boot changed by hand: installed again, and the marker follows
    (root / "releases" / "RELEASES").write_text("[].\n")
    third = install(tmp_path, "1", sha1)
    assert "PDT{installed=1}" in third.stdout and acmd.UNCHANGED not in third.stdout
    assert (root / "lib" / "demo-1").stat().st_ino != lib
    assert (root / "releases" / "RELEASES").read_text() != "[].\n"

    # another tarball: a real install; going back to 1 is a real install too (bin/ changed)
    _, sha2 = tarball(tmp_path, "2")
    assert "PDT{installed=2}" in install(tmp_path, "2", sha2).stdout
    assert (root / acmd.INSTALLED).read_text().startswith(f"{sha2} ")
    back = install(tmp_path, "1", sha1)
    assert "PDT{installed=1}" in back.stdout and acmd.UNCHANGED not in back.stdout


def test_a_rolled_back_install_keeps_the_marker_of_what_is_there(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _, sha1 = tarball(tmp_path, "1")
    assert install(tmp_path, "1", sha1).returncode == 0
    marker = (root / acmd.INSTALLED).read_text()
    path2, sha2 = tarball(tmp_path, "2")
    path2.write_bytes(path2.read_bytes()[:-20])  # damaged on the host: the sha256 check fails
    failed = install(tmp_path, "2", sha2)
    assert failed.returncode != 0
    assert (root / acmd.INSTALLED).read_text() == marker
    assert not (root / f"{acmd.INSTALLED}.new").exists()
    assert f"{acmd.UNCHANGED}1}}" in install(tmp_path, "1", sha1).stdout
