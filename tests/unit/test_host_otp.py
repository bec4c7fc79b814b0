"""A release without ERTS boots on the host's Erlang: what deploy reads from the tarball (the ERTS
and OTP libraries it does not carry) and the host check, run by a real sh against Erlang trees
laid out as an OTP install is (bin/erl reached through a symlink on PATH)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from pydeliver_tasks import store
from pydeliver_tasks.commands import diagnose

REL = ('{release,{"shop","0.1.0"},\n {erts,"13.1.5"},\n [{kernel,"8.5.3"},\n  {stdlib,"4.2"},\n'
       '  {sasl,"4.2"},\n  {shop,"0.1.0"},\n  {tinydep,"0.2.0",load}]}.\n')


def _tarball(path: Path, names: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in names.items():
            if name.endswith("/"):
                info = tarfile.TarInfo(name.rstrip("/"))
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _contents(path: Path) -> store.Contents:
    return store.contents(path, path.read_bytes().hex()[:16], "shop", "0.1.0")


def test_a_tarball_with_erts_needs_nothing_from_the_host(tmp_path: Path) -> None:
    t = _tarball(tmp_path / "a.tar.gz", {"erts-13.1.5/bin/beam.smp": "x", "bin/shop": "#!/bin/sh",
                                        "lib/shop-0.1.0/": "", "releases/0.1.0/shop.rel": REL})
    assert _contents(t) == store.Contents(len("x") + len("#!/bin/sh") + len(REL), "", ())


def test_without_erts_the_erts_and_the_otp_libs_it_does_not_carry_are_named(tmp_path: Path) -> None:
    # mix's include_erts: false carries OTP's libs; relx's minimal mode carries only the app's
    t = _tarball(tmp_path / "b.tar.gz", {
        "bin/shop": "#!/bin/sh", "lib/shop-0.1.0/ebin/shop.app": "{}", "lib/tinydep-0.2.0/": "",
        "lib/sasl-4.2/": "", "releases/0.1.0/shop.rel": REL,
        "releases/start_erl.data": "13.1.5 0.1.0\n"})
    found = _contents(t)
    assert (found.erts, found.otp_libs) == ("erts-13.1.5", ("lib/kernel-8.5.3", "lib/stdlib-4.2"))


def _otp(tmp_path: Path, *dirs: str) -> tuple[Path, Path]:
    """An OTP install at tmp/otp with dirs, and a PATH dir whose erl links to its bin/erl."""
    otp = tmp_path / "otp"
    (otp / "bin").mkdir(parents=True)
    (otp / "bin" / "erl").write_text("#!/bin/sh\nexit 0\n")
    (otp / "bin" / "erl").chmod(0o755)
    for d in dirs:
        (otp / d).mkdir(parents=True)
    on_path = tmp_path / "path"
    on_path.mkdir()
    (on_path / "erl").symlink_to(otp / "bin" / "erl")
    return otp, on_path


def _run(script: str, path: str, root: Path) -> list[str]:
    env = {"PATH": path, "HOME": str(root)}
    out = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_the_host_check_names_what_the_hosts_erlang_lacks(tmp_path: Path) -> None:
    otp, on_path = _otp(tmp_path, "erts-13.1.5", "lib/kernel-8.5.3")
    script = diagnose.host_otp(str(tmp_path / "no root yet"), {},
                               ["erts-13.1.5", "lib/kernel-8.5.3", "lib/stdlib-4.2"])
    lines = _run(script, f"{on_path}:{os.environ['PATH']}", tmp_path)
    assert lines == [f"PDT_OTP {otp.resolve()}", "PDT_LACKS lib/stdlib-4.2"]
    (otp / "lib" / "stdlib-4.2").mkdir()
    assert _run(script, f"{on_path}:{os.environ['PATH']}", tmp_path) == [f"PDT_OTP {otp.resolve()}"]


def test_another_erts_version_is_lacking_too(tmp_path: Path) -> None:
    otp, on_path = _otp(tmp_path, "erts-14.0", "lib/kernel-8.5.3")
    script = diagnose.host_otp(str(tmp_path), {}, ["erts-13.1.5", "lib/kernel-8.5.3"])
    assert _run(script, f"{on_path}:/usr/bin:/bin", tmp_path) == [f"PDT_OTP {otp.resolve()}",
                                                                       "PDT_LACKS erts-13.1.5"]


def test_a_host_without_erl_on_its_path_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    script = diagnose.host_otp(str(tmp_path), {}, ["erts-13.1.5"])
    assert _run(script, str(empty), tmp_path) == ["PDT_NOERL"]


def test_the_stage_env_is_sourced_first_as_for_the_release_scripts(tmp_path: Path) -> None:
    """A PATH set in the stage env decides which erl the release finds: the check sees the same."""
    otp, on_path = _otp(tmp_path, "erts-13.1.5")
    (tmp_path / ".deliver").mkdir()
    (tmp_path / ".deliver" / "env").write_text(f"export PATH='{on_path}:/bin'\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    script = diagnose.host_otp(str(tmp_path), {"PATH": f"{on_path}:/bin"}, ["erts-13.1.5"])
    assert _run(script, str(empty), tmp_path) == [f"PDT_OTP {otp.resolve()}"]


def test_a_wrapper_erl_is_asked_where_its_otp_is(tmp_path: Path) -> None:
    """A version manager's erl is a script elsewhere (asdf's shims): its root is what erl says."""
    otp, _ = _otp(tmp_path, "erts-13.1.5")
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "erl").write_text(f"#!/bin/sh\nprintf %s '{otp}'\n")
    (shims / "erl").chmod(0o755)
    script = diagnose.host_otp(str(tmp_path), {}, ["erts-13.1.5", "lib/kernel-8.5.3"])
    assert _run(script, f"{shims}:/usr/bin:/bin", tmp_path) == [f"PDT_OTP {otp}",
                                                               "PDT_LACKS lib/kernel-8.5.3"]


def test_the_real_erl_names_its_own_otp_root(tmp_path: Path) -> None:
    real = subprocess.run(["erl", "-noshell", "-eval", 'io:format("~s", [code:root_dir()]), halt().'],
                          capture_output=True, text=True, timeout=60).stdout
    script = diagnose.host_otp(str(tmp_path), {}, ["lib"])
    assert _run(script, os.environ["PATH"], tmp_path) == [f"PDT_OTP {real}"]


def test_what_a_tarball_needs_is_read_once_and_kept_beside_it(tmp_path: Path) -> None:
    t = _tarball(tmp_path / "c.tar.gz", {"erts-13.1.5/bin/beam.smp": "x",
                                        "releases/0.1.0/shop.rel": REL})
    first = store.contents(t, "sha-1", "shop", "0.1.0")
    sidecar = json.loads((tmp_path / "c.tar.gz.contents").read_text())
    assert sidecar["sha256"] == "sha-1" and sidecar["extracted_bytes"] == first.extracted_bytes
    store.contents.cache_clear()
    t.write_bytes(b"not a tarball any more")  # the sidecar answers: the tarball is not opened
    assert store.contents(t, "sha-1", "shop", "0.1.0") == first


def test_a_sidecar_of_another_sha256_or_damaged_is_not_believed(tmp_path: Path) -> None:
    t = _tarball(tmp_path / "d.tar.gz", {"erts-13.1.5/bin/beam.smp": "x"})
    store.contents(t, "sha-old", "shop", "0.1.0")
    _tarball(t, {"bin/shop": "#!/bin/sh", "releases/0.1.0/shop.rel": REL})  # rebuilt, same path
    found = store.contents(t, "sha-new", "shop", "0.1.0")
    assert found.erts == "erts-13.1.5" and "lib/shop-0.1.0" in found.otp_libs
    assert json.loads((tmp_path / "d.tar.gz.contents").read_text())["sha256"] == "sha-new"
    (tmp_path / "d.tar.gz.contents").write_text("{not json")
    store.contents.cache_clear()
    assert store.contents(t, "sha-new", "shop", "0.1.0") == found
