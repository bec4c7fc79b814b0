"""A release store two machines share (edeliver's RELEASE_STORE): two clones of one `mix new
shared --sup` project (two project dirs, each with its own local store) with `deliver.store` set
to the same URL — an ssh:// directory on the sandbox build host, or an s3:// bucket of a moto
S3 server this test starts (and ends by pid). Machine A builds; machine B, which built nothing,
lists, deploys, and builds the upgrade from what A published; the store's files are checked on
disk (ssh) or through the S3 API (s3); a damaged copy, an unreachable store and an unknown host
key are refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from .conftest import Project
from .shop import _sub, commit_version, init_repo

APP = "shared"
TEXT = 'defmodule Shared.Text do\n  def text, do: "WORDS"\nend\n'
BUCKET = "team-releases"


def make_origin(base: Path) -> Path:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
    subprocess.run(["mix", "new", APP, "--sup"], cwd=base, check=True, capture_output=True,
                   env=env)
    d = base / APP
    init_repo(d)
    _sub(d / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl]")
    (d / "lib" / APP / "text.ex").write_text(TEXT.replace("WORDS", "shared one"))
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(f"deliver:\n  app: {APP}\n")
    with (d / ".gitignore").open("a") as ignore:
        ignore.write(".deliver/\n*.json\n")
    commit_version(d, APP, "0.1.0")
    _sub(d / "mix.exs", 'version: "0.1.0"', 'version: "0.1.1"')
    (d / "lib" / APP / "text.ex").write_text(TEXT.replace("WORDS", "shared two"))
    commit_version(d, APP, "0.1.1")
    return d


def machines(box: sb.Sandbox, base: Path, store: dict[str, str], port: int) -> tuple[Project, Project]:
    """Machine A (the repository) and machine B (a clone of it), one deliver.store."""
    a = make_origin(base)
    b = base / "machine-b" / APP
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    subprocess.run(["git", "-C", str(b), "fetch", "-q", "--tags"], check=True)
    data = json.loads(write_runtime_config(box, APP, port).read_text())
    data["deliver"].update(store)
    data["deliver"]["stages"]["sandbox"]["health"] = {
        "url": "", "checks": [{"eval": "is_pid(Process.whereis(Shared.Supervisor))"}]}
    projects = []
    for name, d in (("a", a), ("b", b)):
        cfg = base / f"{name}-sandbox.json"
        cfg.write_text(json.dumps(data))
        projects.append(Project(APP, d, cfg, box))
    return projects[0], projects[1]


def texts(project: Project) -> list[str]:
    out = project.inv("eval", "Shared.Text.text()").ok().out
    return re.findall(r'^\[\S+\] "(shared \w+)"$', out, re.M)


def shared_flow(a: Project, b: Project, url: str, names: Callable[[], set[str]],
                upgrade: bool = True) -> None:
    """What both stores must do: A publishes, B lists, fetches, deploys and (upgrade) builds the
    upgrade from A's release (it does not build 0.1.0 itself) and publishes it."""
    built = a.inv("build.release", "--tag", "0.1.0").ok()
    assert f"published {APP}_0.1.0.release.tar.gz to the release store {url}" in built.out, built.out
    assert {f"{APP}_0.1.0.release.tar.gz", f"{APP}_0.1.0.release.tar.gz.sha256",
            f"{APP}_0.1.0.release.tar.gz.source"} <= names()
    assert not any(".part" in n for n in names()), names()  # nothing left under a temporary name
    again = a.inv("build.release", "--tag", "0.1.0").ok()
    assert "not built again" in again.out and "in the release store" in again.out, again.out
    listed = b.inv("releases").ok()
    assert re.search(rf"^{APP} 0\.1\.0 +in the release store {re.escape(url)} only", listed.out,
                     re.M), listed.out
    deployed = b.inv("deploy.release", "--version", "0.1.0").ok()
    assert f"fetched {APP}_0.1.0.release.tar.gz from the release store {url}" in deployed.out
    assert (b.dir / ".deliver" / "releases" / f"{APP}_0.1.0.release.tar.gz").exists()
    if not upgrade:
        return
    b.inv("start").ok()
    assert texts(b) == ["shared one"] * 2
    up = b.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1", timeout=600)
    assert up.rc == 0 and up.out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, up.out
    assert "building it from tag 0.1.0" not in up.out, up.out  # A's 0.1.0, from the store
    assert f"published {APP}_0.1.1.upgrade.tar.gz to the release store {url}" in up.out, up.out
    assert {f"{APP}_0.1.1.upgrade.tar.gz", f"{APP}_0.1.1.upgrade.json",
            f"{APP}_0.1.1.release.tar.gz.sha256"} <= names()
    assert texts(b) == ["shared two"] * 2
    # machine A now gets the upgrade B built (it does not build it again)
    relup = a.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1")
    assert relup.rc == 0 and "every host already runs 0.1.1: nothing to do" in relup.out, relup.out
    assert (a.dir / ".deliver" / "releases" / f"{APP}_0.1.1.upgrade.tar.gz").exists()


# ---- ssh:// on the sandbox build host ----

@pytest.fixture(scope="module")
def over_ssh(box: sb.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    url = f"ssh://{box.build.user}@{box.build.address}:{box.build.port}/~/shared-store"
    a, b = machines(box, tmp_path_factory.mktemp("ssh-store"), {"store": url}, 4064)
    yield a, b, url, Path(box.build.home) / "shared-store"
    b.inv("stop")


def test_two_machines_share_an_ssh_store(over_ssh: tuple) -> None:
    a, b, url, where = over_ssh
    shared_flow(a, b, url, lambda: {p.name for p in where.iterdir()})


def test_a_damaged_copy_an_unreachable_store_and_an_unknown_key_are_refused(over_ssh: tuple) -> None:
    a, b, url, where = over_ssh
    local = b.dir / ".deliver" / "releases"
    for p in local.glob(f"{APP}_0.1.0.release.tar.gz*"):
        p.unlink()
    with (where / f"{APP}_0.1.0.release.tar.gz").open("ab") as fh:
        fh.write(b"damage")
    bad = b.inv("deploy.release", "--version", "0.1.0")
    assert bad.rc == 1 and f"{APP}_0.1.0.release.tar.gz does not match its .sha256" in bad.out
    assert "inv build.release --tag 0.1.0 --rebuild" in bad.out, bad.out
    assert not (local / f"{APP}_0.1.0.release.tar.gz").exists()  # nothing half-fetched kept
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gone = a.variant("gone", lambda d: d.update(store=url.replace(f":{a.box.build.port}/",
                                                                 f":{closed}/")))
    res = a.inv("releases", config=gone)
    assert res.rc == 1 and "release store ssh://" in res.out and "cannot list it" in res.out
    assert "Traceback" not in res.out, res.out
    empty = a.dir / "empty_known_hosts"
    empty.write_text("")
    unknown = a.variant("unknown", lambda d: d["ssh"].update(known_hosts=str(empty)))
    res = a.inv("releases", config=unknown)
    assert res.rc == 1 and "cannot list it" in res.out and "known_hosts" in res.out, res.out
    ftp = a.variant("ftp", lambda d: d.update(store="ftp://example.com/releases"))
    res = a.inv("releases", config=ftp)
    assert res.rc == 2 and "unknown scheme 'ftp'" in res.out, res.out


# ---- s3:// on a moto S3 server started here ----

@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()  # by pid: the server this fixture started
        proc.wait(timeout=10)
        for k, val in saved.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val


def test_two_machines_share_an_s3_store(box: sb.Sandbox, moto: str,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    s3 = boto3.client("s3", endpoint_url=moto)  # the test's own view of what the store holds
    s3.create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/shop/releases"
    a, b = machines(box, tmp_path_factory.mktemp("s3-store"),
                    {"store": url, "store_endpoint": moto}, 4066)
    try:
        def names() -> set[str]:
            listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="shop/releases/")
            return {o["Key"].removeprefix("shop/releases/") for o in listed.get("Contents", [])}

        shared_flow(a, b, url, names, upgrade=False)  # the upgrade path: the ssh test
        nowhere = a.variant("nowhere", lambda d: d.update(
            store_endpoint=moto.rsplit(":", 1)[0] + ":9"))
        res = a.inv("releases", config=nowhere)
        assert res.rc == 1 and f"release store {url}: cannot list it" in res.out, res.out
        assert "Traceback" not in res.out and "testing" not in res.out, res.out
    finally:
        b.inv("stop")  # nothing started; a no-op kept for a failure half-way


PUBLISH = """
import json, sys
from pathlib import Path
from pydeliver_tasks.config import load
from pydeliver_tasks.steps import shared_store
deliver = json.loads(Path(sys.argv[1]).read_text())
shared_store.publish(load({"deliver": deliver}), Path(sys.argv[2]))
"""


def test_different_versions_published_at_once_are_both_complete(over_ssh: tuple,
                                                                 tmp_path: Path) -> None:
    """Two machines (two processes) publishing two versions to the real SSH store at the same
    moment: both land whole, each with its .sha256, nothing left under a temporary name."""
    a, _, url, where = over_ssh
    deliver = tmp_path / "deliver.json"
    deliver.write_text(json.dumps({**a.settings(), "app": APP, "project_dir": str(a.dir)}))
    tarballs = []
    for vsn in ("7.0.1", "7.0.2"):
        local = tmp_path / vsn
        local.mkdir()
        tarball = local / f"{APP}_{vsn}.release.tar.gz"
        tarball.write_bytes(os.urandom(3 << 20))  # 3 MB: the uploads overlap
        tarball.with_name(tarball.name + ".sha256").write_text(
            f"{hashlib.sha256(tarball.read_bytes()).hexdigest()}  {tarball.name}\n")
        tarballs.append(tarball)
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISH, str(deliver), str(t)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for t in tarballs]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for tarball in tarballs:
        assert f"published {tarball.name} to the release store {url}" in "".join(outs), outs
        assert (where / tarball.name).read_bytes() == tarball.read_bytes()
        assert (where / f"{tarball.name}.sha256").read_text() == \
            tarball.with_name(tarball.name + ".sha256").read_text()
    assert not [p.name for p in where.iterdir() if ".part" in p.name]
