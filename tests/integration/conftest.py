"""The sandbox the integration tests run on: real sshd hosts on loopback, real builds, real nodes.

One sandbox per test session (2 deploy hosts + a build host, own port and addresses so it never
meets the demo's), example projects made into real git repos with tags 0.0.1 and 0.0.2, and
`inv` run as a user runs it (a subprocess in the project dir). Everything started is ended by pid
in teardown (sandbox.down ends the sandbox users' processes: nodes, epmds, run_erl).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
from make_repo import make_repo  # noqa: E402

# pytest -n N (xdist): each worker its own sandboxes — sshd port, addresses, users, uids, epmd
# ports and dirs all follow from these two
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
PORT = int(os.environ.get("PDT_TEST_SSH_PORT", "2322")) + 1000 * WORKER
FIRST_ADDRESS = int(os.environ.get("PDT_TEST_FIRST_ADDRESS", "40")) + 60 * WORKER
INV = str(Path(sys.executable).with_name("inv"))

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def box() -> sb.Sandbox:
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.fail("OpenSSH server is not installed: apt-get install openssh-server")
    d = Path(f"/tmp/pdt-test-sandbox-{PORT}")  # parents must be searchable by sandbox users
    box = sb.up(d, hosts=2, port=PORT, first_address=FIRST_ADDRESS, fresh=True)
    yield box
    sb.down(d, purge=True)


@dataclass
class Run:
    rc: int
    out: str

    def ok(self) -> Run:
        assert self.rc == 0, self.out
        return self


@dataclass
class Project:
    """An example app as a user's project: git repo + tasks.py + invoke.yaml + sandbox config."""

    app: str
    dir: Path
    config: Path
    box: sb.Sandbox

    def inv(self, *args: str, config: Path | None = None, timeout: float = 300) -> Run:
        env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(config or self.config)}
        res = subprocess.run([INV, *args], cwd=self.dir, env=env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        return Run(res.returncode, res.stdout + res.stderr)

    def settings(self) -> dict:
        return json.loads(self.config.read_text())["deliver"]

    def variant(self, name: str, edit) -> Path:
        """A copy of the runtime config changed by edit(deliver_dict)."""
        data = json.loads(self.config.read_text())
        edit(data["deliver"])
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(data))
        return path

    def url(self, host: sb.SandboxHost, path: str = "/") -> str:
        return f"http://{host.address}:{self.http_port}{path}"

    @property
    def http_port(self) -> int:
        return int(self.settings()["stages"]["sandbox"]["hosts"][0]["env"]["HTTP_PORT"])

    def root(self, host: sb.SandboxHost) -> Path:
        """The host's deploy path in this project's config."""
        for h in self.settings()["stages"]["sandbox"]["hosts"]:
            if h["host"] == host.spec:
                return Path(h["deploy_path"])
        raise KeyError(f"{host.spec} is not a host of {self.config}")

    def cookie(self) -> str:
        return self.settings()["stages"]["sandbox"]["env"]["RELEASE_COOKIE"]


def make_project(app: str, box: sb.Sandbox, base: Path, http_port: int,
                 deployed: str | None = None,
                 versions: tuple[str, ...] = ("0.0.1", "0.0.2")) -> Project:
    """The example as a user's project (one tag per version); deployed=VERSION also builds and
    deploys that tag."""
    d = make_repo(app, base / app, versions)
    data = json.loads(write_runtime_config(box, app, http_port).read_text())
    for h in data["deliver"]["stages"]["sandbox"]["hosts"]:  # a root per project: no module
        h["deploy_path"] = f"{h['deploy_path'].rsplit('/', 1)[0]}/{base.name}/{app}"  # sees another's
    own = base / f"{app}-sandbox.json"
    own.write_text(json.dumps(data))
    own.chmod(0o600)  # holds the sandbox cookie
    project = Project(app, d, own, box)
    if deployed:
        project.inv("build.release", "--tag", deployed).ok()
        project.inv("deploy.release", "--version", deployed).ok()
    return project


def project_fixture(ports: dict[str, int], deployed: str | None = "0.0.1",
                    versions: tuple[str, ...] = ("0.0.1", "0.0.2")):
    """A module-scoped `project` fixture over both example apps (each on its own HTTP port),
    built and deployed at `deployed` unless None; its nodes are stopped afterwards."""

    @pytest.fixture(scope="module", params=sorted(ports))
    def project(request, box, tmp_path_factory):
        app = request.param
        p = make_project(app, box, tmp_path_factory.mktemp(app), ports[app], deployed=deployed,
                         versions=versions)
        yield p
        p.inv("stop")

    return project


def one_app(project: Project, why: str = "does not depend on the release's language") -> None:
    """Run a test of a both-apps module for the mix app only: what it checks (SSH, uploads,
    disks, input checks) is the same for a rebar3 release, and the suite's time is better
    spent elsewhere."""
    if project.app != "hello_ex":
        pytest.skip(f"{why}; one app is enough")


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def accepted_logins(box: sb.Sandbox, name: str) -> int:
    """How many SSH logins the host's sshd has accepted so far (its log, LogLevel VERBOSE)."""
    log = box.dir / "log" / f"{name}.log"
    return len(re.findall(r"Accepted publickey", log.read_text())) if log.exists() else 0


def beam_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and b"zombie" not in Path(f"/proc/{pid}/status").read_bytes()


def assert_refused(project: Project, cases: list[tuple[list[str], str]]) -> None:
    """Each (args, message): inv exits 2 with an error naming message."""
    for args, message in cases:
        res = project.inv(*args)
        assert res.rc == 2, (args, res.out)
        assert "error: " in res.out and message in res.out, (args, res.out)
