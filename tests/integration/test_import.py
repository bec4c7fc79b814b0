"""An edeliver user moves over: a `mix new imported --sup` project whose config/config.exs imports a
secret file that only edeliver's pre_erlang_get_and_update_deps hook puts on the build host, and
whose pre_erlang_clean_compile hook makes an asset the release must carry. `inv deliver.import`
reads their .deliver/config (never running it) and writes invoke.yaml; the real build on the
sandbox build host then runs the translated hooks at the right points: the secret is there
before `mix deps.get` loads the config, the asset lands in the release."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from .conftest import Project, Run
from .shop import _sub, commit_version, init_repo

APP = "imported"
EDELIVER_CONFIG = """\
# .deliver/config as an edeliver user has it
APP="imported"

BUILD_HOST="build.example.com"
BUILD_USER="builder"
BUILD_AT="/home/$BUILD_USER/edeliver/$APP/builds"

STAGING_HOSTS="stage1.example.com stage2.example.com"
STAGING_USER="web"
DELIVER_TO="/home/web"

pre_erlang_get_and_update_deps() {
  status "Linking the secret config"
  __sync_remote "
    [ -f ~/.profile ] && source ~/.profile
    set -e
    cd '$BUILD_AT'
    echo 'import Config' > config/secret.exs
  "
}

pre_erlang_clean_compile() {
  status "Digesting assets"
  __sync_remote "
    set -e
    cd '$BUILD_AT'
    mkdir -p priv/static && echo digested-$TARGET_MIX_ENV > priv/static/assets.txt
  "
}
"""


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp(APP)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
    subprocess.run(["mix", "new", APP, "--sup"], cwd=base, check=True, capture_output=True,
                   env=env)
    d = base / APP
    init_repo(d)
    _sub(d / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl]")
    (d / "config").mkdir()
    (d / "config" / "config.exs").write_text('import Config\nimport_config "secret.exs"\n')
    with (d / ".gitignore").open("a") as ignore:
        ignore.write("/config/secret.exs\n.deliver/releases/\n")
    (d / ".deliver").mkdir()
    (d / ".deliver" / "config").write_text(EDELIVER_CONFIG)
    commit_version(d, APP, "0.1.0")
    cfg = base / f"{APP}-sandbox.json"
    data = json.loads(write_runtime_config(box, APP, 4097).read_text())
    cfg.write_text(json.dumps(data))  # the sandbox's hosts and build host over the imported ones
    return Project(APP, d, cfg, box)


def pydeliver(project: Project, *args: str) -> Run:
    """`python -m pydeliver_tasks` (the `pydeliver` command): tasks without a tasks.py."""
    res = subprocess.run([sys.executable, "-m", "pydeliver_tasks", *args], cwd=project.dir,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return Run(res.returncode, res.stdout + res.stderr)


def test_bad_files_are_refused_and_nothing_is_written(project: Project) -> None:
    latin1 = project.dir / ".deliver" / "latin1"
    latin1.write_bytes('APP="caf\xe9"\n'.encode("latin-1"))
    res = pydeliver(project, "deliver.import", "--source", ".deliver/latin1")
    assert res.rc == 2 and ".deliver/latin1: not UTF-8 text" in res.out, res.out
    partial = project.dir / ".deliver" / "partial"
    partial.write_text(EDELIVER_CONFIG + 'RELEASE_DIR="$(pwd)/rel"\n')
    res = pydeliver(project, "deliver.import", "--source", ".deliver/partial")
    assert res.rc == 1 and "nothing written" in res.out and "RELEASE_DIR" in res.out, res.out
    assert not (project.dir / "invoke.yaml").exists() and not (project.dir / "tasks.py").exists()


def test_imported_hooks_run_at_their_points_in_a_real_build(project: Project) -> None:
    res = pydeliver(project, "deliver.import")  # no tasks.py yet: `inv` would find no tasks
    assert res.rc == 0, res.out
    assert re.search(r"^\.deliver/config:12 pre_erlang_get_and_update_deps: mapped to "
                     r"deliver\.hooks\.before_deps", res.out, re.M), res.out
    assert "pre_erlang_clean_compile: mapped to deliver.hooks.before_compile" in res.out, res.out
    written = (project.dir / "invoke.yaml").read_text()
    assert '"web@stage1.example.com"' in written and '"web@stage2.example.com"' in written
    assert '"/home/web/imported"' in written, written  # DELIVER_TO/APP
    assert (project.dir / "tasks.py").exists()
    again = project.inv("deliver.import")
    assert again.rc == 2 and "invoke.yaml exists" in again.out and "--force" in again.out
    built = project.inv("build.release", "--tag", "0.1.0", timeout=600)
    assert built.rc == 0, built.out  # mix deps.get loads config.exs: the secret was there
    stored = project.dir / ".deliver" / "releases" / f"{APP}_0.1.0.release.tar.gz"
    with tarfile.open(stored) as tar:
        asset = tar.extractfile(f"lib/{APP}-0.1.0/priv/static/assets.txt")
        assert asset is not None and asset.read() == b"digested-prod\n"
