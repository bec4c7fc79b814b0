#!/usr/bin/env python3
"""Fast paths side by side: each operation of `inv` against the raw commands doing the same job,
in interleaved pairs (ours, raw, ours, raw, ...), printed as min / median / max and the ratio of
each pair.

On one loopback sandbox with 2 hosts (plus the build host) and the mix example hello_ex:

- ping, 2 hosts: `inv ping` vs `ssh HOST 'bin/hello_ex pid'` on both hosts at once;
- ping before the control channel: `inv ping` with the hosts' control files removed first (every
  question through `bin/hello_ex rpc`, one Erlang VM booted each) vs `inv ping`;
- stop, 2 hosts: `inv stop` vs `ssh HOST 'bin/hello_ex stop; until the BEAM pid is gone'` on
  both at once (a verified `inv start`, not timed, before each);
- deploy, 2 hosts, into an empty deploy dir: `inv deploy.release` vs the tarball streamed over
  `ssh HOST 'tar -xzf -'` to both at once;
- redeploy of the version the hosts have: `inv deploy.release` (seconds, and per host);
- build of a tag the store has from the same commit: `inv build.release --tag` vs the cold build
  (`--rebuild`);
- warm vs cold build of a project with a locked git dependency (`make_repo.make_locked`: 40
  modules to compile, and again with 600): `inv build.release --rebuild` (dependencies kept on
  the build host) vs `--clean`;
- `inv --list` vs `python -c 'import invoke, fabric'`.

It prints and asserts nothing about time. It exits 1 when a command fails or ends somewhere else
than it says (a ping without both pids, a stop that leaves a BEAM), so a broken run never prints
a good-looking number. Run as root from the repository root:

    .venv/bin/python bench/fast_paths.py [--rounds 5] [--keep-sandbox] [-v]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_scale import BenchError, compile_package, inv_path, load_make_repo, log  # noqa: E402

from pydeliver_tasks import sandbox as sb  # noqa: E402
from pydeliver_tasks.sandbox.config import write_runtime_config  # noqa: E402

APP = "hello_ex"
# Own port, addresses, HTTP port and dir: never meets the demo (2222), the tests (2322),
# deploy_scale (2422) or upgrade (2522).
PORT = 2622
FIRST_ADDRESS = 140
HTTP_PORT = 4800
SANDBOX_DIR = Path(f"/tmp/pdt-bench-fast-{PORT}")
TIMEOUT = 600.0
# The larger dependency of the warm-build pairs: a cold build compiles it in about 20 s here,
# less than the dependencies of a Phoenix app usually take.
HEAVY_MODULES = 600


class Fast:
    def __init__(self, box: sb.Sandbox, project: Path, config: Path, verbose: bool,
                 dep: str = "") -> None:
        self.box, self.project, self.config, self.verbose = box, project, config, verbose
        self.dep = dep  # a locked project's git dependency, compiled by a cold build
        self.inv = inv_path()
        stage = json.loads(config.read_text())["deliver"]["stages"]["sandbox"]
        self.hosts = [(h, stage["hosts"][i]["deploy_path"],
                       {**stage["env"], **stage["hosts"][i]["env"]})
                      for i, h in enumerate(box.hosts)]

    def run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
        res = subprocess.run(argv, cwd=self.project, capture_output=True, text=True,
                             timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=env)
        out = res.stdout + res.stderr
        if self.verbose:
            log(f"$ {what}\n{out.rstrip()}")
        if res.returncode:
            raise BenchError(f"{what} exited {res.returncode}:\n{out[-3000:]}")
        return out

    def inv_run(self, *args: str) -> str:
        env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(self.config)}
        return self.run([self.inv, *args], f"inv {' '.join(args)}", env)

    def on_hosts(self, script: Callable[[str, dict[str, str]], str], what: str) -> None:
        """One ssh command per host, all at once (as a user's script would fan out)."""
        procs = []
        for h, root, env in self.hosts:
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            cmd = f"cd {shlex.quote(root)} && export {exports} && {script(root, env)}"
            procs.append(subprocess.Popen(
                ["ssh", "-F", str(self.box.ssh_config), "-o", "BatchMode=yes", h.name, cmd],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True))
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT)
            if self.verbose:
                log(f"$ {what}\n{out.rstrip()}")
            if p.returncode:
                raise BenchError(f"{what} exited {p.returncode}:\n{out[-2000:]}")

    # -- the operations --

    def ping(self) -> None:
        out = self.inv_run("ping")
        if len(re.findall(r"pong: \S+ \(pid \d+", out)) != 2:
            raise BenchError(f"inv ping did not see both nodes:\n{out}")

    def raw_ping(self) -> None:
        self.on_hosts(lambda root, env: f"bin/{APP} pid", "ssh: bin/hello_ex pid")

    def forget_control(self) -> None:
        for _, root, _ in self.hosts:
            shutil.rmtree(Path(root) / ".deliver" / "control", ignore_errors=True)

    def slow_ping(self) -> None:
        self.forget_control()
        self.ping()

    def started(self) -> None:
        out = self.inv_run("start")
        if out.count("health ok") != 2:  # started now, or already running
            raise BenchError(f"inv start not verified on both hosts:\n{out}")

    def stop(self) -> None:
        self.inv_run("stop")
        self.no_beam()

    def raw_stop(self) -> None:
        self.on_hosts(lambda root, env: (
            f"p=$(bin/{APP} pid) && bin/{APP} stop >/dev/null && "
            'while kill -0 "$p" 2>/dev/null; do sleep 0.05; done'), "ssh: bin/hello_ex stop, wait")
        self.no_beam()

    def no_beam(self) -> None:
        for _, root, _ in self.hosts:
            ps = subprocess.run(["pgrep", "-f", "--", f"-root {root} "], capture_output=True, text=True)
            if ps.stdout.strip():
                raise BenchError(f"a BEAM of {root} still runs after the stop: {ps.stdout}")

    def wipe(self) -> None:
        """The nodes stopped and every deploy dir gone: the next deploy starts from nothing."""
        for h, root, _ in self.hosts:
            path = Path(root)
            if not path.resolve().is_relative_to(Path(h.home).resolve()):
                raise BenchError(f"refusing to wipe {path}: not under {h.home}")
            shutil.rmtree(path, ignore_errors=True)

    def deploy(self) -> None:
        out = self.inv_run("deploy.release", "--version", "0.0.1")
        if out.count("0.0.1 uploaded, extracted") != 2:
            raise BenchError(f"the deploy did not upload and extract on both hosts:\n{out}")

    def raw_deploy(self) -> None:
        """The tarball streamed over ssh and untarred in place (it holds start_erl.data)."""
        tarball = self.project / ".deliver" / "releases" / f"{APP}_0.0.1.release.tar.gz"
        procs = []
        for h, root, _ in self.hosts:
            cmd = (f"mkdir -p {shlex.quote(root)} && cd {shlex.quote(root)} && "
                   "tar -xzf - && cat releases/start_erl.data")
            with tarball.open("rb") as fh:
                procs.append(subprocess.Popen(
                    ["ssh", "-F", str(self.box.ssh_config), "-o", "BatchMode=yes", h.name, cmd],
                    stdin=fh, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT)
            if p.returncode or "0.0.1" not in out:
                raise BenchError(f"raw deploy exited {p.returncode}:\n{out[-2000:]}")

    def redeploy(self) -> None:
        out = self.inv_run("deploy.release", "--version", "0.0.1")
        if out.count("not extracted again") != 2:
            raise BenchError(f"the redeploy did not find 0.0.1 installed on both hosts:\n{out}")

    def stored_build(self) -> None:
        out = self.inv_run("build.release", "--tag", "0.0.1")
        if "not built again" not in out:
            raise BenchError(f"the stored tag was built again:\n{out}")

    def cold_build(self) -> None:
        out = self.inv_run("build.release", "--tag", "0.0.1", "--rebuild")
        if f"built {APP} 0.0.1" not in out:
            raise BenchError(f"the build with --rebuild did not build:\n{out}")

    def warm_build(self) -> None:
        out = self.inv_run("build.release", "--tag", "0.1.1", "--rebuild")
        if "dependencies as built before" not in out:
            raise BenchError(f"the warm build did not reuse the dependencies:\n{out}")

    def clean_build(self) -> None:
        out = self.inv_run("build.release", "--tag", "0.1.1", "--clean")
        if "cold, as asked (--clean)" not in out or f"==> {self.dep}" not in out:
            raise BenchError(f"the --clean build did not compile the dependency:\n{out}")

    def listing(self) -> None:
        self.run([self.inv, "--list"], "inv --list")

    def imports(self) -> None:
        self.run([sys.executable, "-c", "import invoke, fabric"], "import invoke, fabric")


def locked_project(box: sb.Sandbox, verbose: bool, app: str, dep: str, modules: int,
                   http_port: int) -> Fast:
    """A warm-build project (`app`) with a git dependency (`dep`, `modules` modules) owned by
    the build user (who clones it), built once so the build host keeps its dependency build."""
    base = box.dir / "project"
    for d in (base / app, base / "gitdeps" / dep):
        if d.exists():
            shutil.rmtree(d)
    project = load_make_repo(name="make_locked")(base / app, base / "gitdeps" / dep, modules)
    os.chmod(base, 0o755)
    os.chmod(base / "gitdeps", 0o755)
    subprocess.run(["chown", "-R", box.build.user, str(base / "gitdeps")], check=True)
    config = base / f"{app}.json"
    config.write_text(write_runtime_config(box, app, http_port=http_port).read_text())
    config.chmod(0o600)  # holds the sandbox cookie
    locked = Fast(box, project, config, verbose, dep)
    locked.inv_run("build.release", "--tag", "0.1.0")
    return locked


def timed(fn: Callable[[], None], before: Callable[[], None] | None = None) -> float:
    if before is not None:
        before()
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def pairs(name: str, ours: Callable[[], None], raw: Callable[[], None], rounds: int,
          before: Callable[[], None] | None = None) -> dict:
    log(f"{name}: {rounds} interleaved pairs")
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(ours, before))
        b.append(timed(raw, before))
    return {"name": name, "ours": a, "raw": b, "ratios": [x / y for x, y in zip(a, b, strict=True)]}


def spread(xs: list[float]) -> str:
    return f"{min(xs):6.2f} {statistics.median(xs):6.2f} {max(xs):6.2f}"


def render(rows: list[dict], alone: list[dict], head: str) -> str:
    w = max([len("operation"), *(len(r["name"]) for r in rows + alone)]) + 1  # the longest name
    lines = [head, "", f"{'operation':<{w}}{'ours min/med/max s':>22}{'raw min/med/max s':>22}"
             f"{'ratio min/med/max':>22}"]
    for r in rows:
        lines.append(f"{r['name']:<{w}}{spread(r['ours']):>22}{spread(r['raw']):>22}"
                     f"{spread(r['ratios']):>22}")
    lines.append("")
    for r in alone:
        lines.append(f"{r['name']:<{w}}{spread(r['ours']):>22}   {r['note']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="pairs per operation (default 5)")
    parser.add_argument("--keep-sandbox", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("run as root: the sandbox makes one Unix user per host")
        return 2
    fast: Fast | None = None
    compile_package()
    ok, load = False, os.getloadavg()[0]
    try:
        log(f"sandbox: 2 hosts + build host on port {PORT} in {SANDBOX_DIR}")
        box = sb.up(SANDBOX_DIR, hosts=2, port=PORT, first_address=FIRST_ADDRESS, fresh=True)
        config = box.dir / f"{APP}.json"  # write_runtime_config's file is rewritten per app
        config.write_text(write_runtime_config(box, APP, http_port=HTTP_PORT).read_text())
        config.chmod(0o600)  # holds the sandbox cookie
        project = box.dir / "project" / APP
        if project.exists():
            shutil.rmtree(project)
        load_make_repo()(APP, project)
        fast = Fast(box, project, config, args.verbose)
        warmy = locked_project(box, args.verbose, "warmy", "wdep", 40, HTTP_PORT + 1)
        heavy = locked_project(box, args.verbose, "heavy", "hdep", HEAVY_MODULES, HTTP_PORT + 2)
        fast.cold_build()
        fast.inv_run("deploy.release", "--version", "0.0.1")
        fast.started()
        n = args.rounds
        rows = [
            pairs("ping, 2 hosts (÷ ssh bin/app pid)", fast.ping, fast.raw_ping, n),
            pairs("ping: control channel ÷ rpc per question", fast.ping, fast.slow_ping, n),
            pairs("stop, 2 hosts (÷ bin/app stop + pid gone)", fast.stop, fast.raw_stop, n,
                  before=fast.started),
            pairs("deploy, 2 hosts (÷ ssh + tar -x of the tarball)", fast.deploy,
                  fast.raw_deploy, n, before=fast.wipe),
            pairs("stored tag: build.release ÷ --rebuild", fast.stored_build, fast.cold_build,
                  max(2, n // 2)),
            pairs("build: warm ÷ cold (--clean), 40-module dep", warmy.warm_build,
                  warmy.clean_build, max(2, n // 2)),
            pairs(f"build: warm ÷ cold, {HEAVY_MODULES}-module dep", heavy.warm_build,
                  heavy.clean_build, 2),
            pairs("inv --list (÷ import invoke, fabric)", fast.listing, fast.imports, n),
        ]
        fast.wipe()
        fast.deploy()
        redeploys = [timed(fast.redeploy) for _ in range(n)]
        alone = [{"name": "redeploy of the installed version, 2 hosts", "ours": redeploys,
                  "note": f"per host (median): {statistics.median(redeploys) / 2:.2f} s"}]
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        print(render(rows, alone, f"fast paths, {APP}, 2 sandbox hosts ({when}, "
                                  f"{os.cpu_count()} CPUs, 1-min load before {load:.1f})"))
        ok = True
    except (BenchError, sb.SandboxError, OSError, subprocess.SubprocessError) as exc:
        log(f"fast paths bench FAILED: {exc}")
    finally:
        if fast is not None:
            try:
                fast.inv_run("stop")
            except BenchError as exc:
                log(f"teardown: inv stop: {exc}")
        if args.keep_sandbox:
            log(f"--keep-sandbox: left in {SANDBOX_DIR}")
        else:
            for line in sb.down(SANDBOX_DIR, purge=True):
                if "failed" in line:
                    log(f"teardown: {line}")
                    ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
