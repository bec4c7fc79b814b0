#!/usr/bin/env python3
"""Failed requests per operation, with and without the load balancer, side by side.

On one loopback sandbox with 3 hosts, a build host and an `lb` host running the sandbox's HAProxy
(`sandbox.up --balancer`), with the rebar3 example hello_erl at 0.0.2. Every operation that
restarts nodes runs three times, each while a client sends a GET every 20 ms and keeps one
HTTP/1.1 connection open with a GET on it every 20 ms:

- **direct**: no balancer at all — the client goes round the 3 hosts itself (what a fleet without
  a balancer has);
- **haproxy, not drained**: through HAProxy, but the deploy tool is not told about it (HAProxy
  finds out from its own health checks and retries);
- **deliver.balancer**: through HAProxy, each host drained before its stop and put back once
  verified.

The operations: `restart` (parallel), `update --tag 0.0.2` (deploy + restart), `upgrade --from
0.0.2 --to 0.0.3` (it adds an application, so not hot-upgradable: the restart fallback) and a
cold `rollback` (0.0.3 back to 0.0.2). A hot upgrade restarts nothing and is not here.

It prints failed / sent requests and seconds per operation, and asserts nothing about them. It
exits 1 when an `inv` command fails (a broken run never prints a good-looking number). Run as root
from the repository root:

    .venv/bin/python bench/balancer.py [--keep-sandbox] [-v]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_scale import BenchError, compile_package, inv_path, load_make_repo, log  # noqa: E402

from pydeliver_tasks import sandbox as sb  # noqa: E402
from pydeliver_tasks.sandbox import balancer as sandbox_balancer  # noqa: E402
from pydeliver_tasks.sandbox.config import write_runtime_config  # noqa: E402

APP = "hello_erl"
# Own port, addresses, HTTP port and dir: never meets the demo (2222), the tests (2322),
# deploy_scale (2422), upgrade (2522) or fast_paths (2622).
PORT = 2822
FIRST_ADDRESS = 200
HTTP_PORT = 4900
SANDBOX_DIR = Path(f"/tmp/pdt-bench-balancer-{PORT}")
TIMEOUT = 900.0
MODES = ("direct", "haproxy, not drained", "deliver.balancer")


class Clients:
    """A GET every 20 ms (round the urls) and one kept-alive connection with a GET every 20 ms;
    counts what was sent and what failed (an error, a status other than 200, no page)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls, self.sent, self.failed = urls, 0, 0
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self.loop, daemon=True),
                        threading.Thread(target=self.kept, daemon=True)]

    def count(self, ok: bool) -> None:
        self.sent += 1
        self.failed += not ok

    def loop(self) -> None:
        i = 0
        while not self.halt.is_set():
            url = self.urls[i % len(self.urls)]
            i += 1
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    self.count(resp.status == 200 and b"<h1>" in resp.read())
            except OSError:
                self.count(False)
            time.sleep(0.02)

    def kept(self) -> None:
        conn: http.client.HTTPConnection | None = None
        i = 0
        while not self.halt.is_set():
            if conn is None:  # direct: a connection per host in turn, re-opened after a failure
                host = self.urls[i % len(self.urls)].split("/")[2]
                i += 1
                conn = http.client.HTTPConnection(host, timeout=5)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                self.count(resp.status == 200 and b"<h1>" in resp.read())
            except (OSError, http.client.HTTPException):
                self.count(False)
                conn.close()
                conn = None
            time.sleep(0.02)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for t in self.threads:
            t.join()


class Bench:
    def __init__(self, box: sb.Sandbox, project: Path, configs: dict[str, Path],
                 verbose: bool) -> None:
        self.box, self.project, self.configs, self.verbose = box, project, configs, verbose
        self.inv = inv_path()
        lb = box.balancer
        assert lb is not None
        self.urls = {"direct": [f"http://{h.address}:{HTTP_PORT}/" for h in box.hosts],
                     "haproxy, not drained": [f"http://{lb.address}:{HTTP_PORT}/"],
                     "deliver.balancer": [f"http://{lb.address}:{HTTP_PORT}/"]}

    def inv_run(self, mode: str, *args: str, exits: tuple[int, ...] = (0,)) -> str:
        env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(self.configs[mode])}
        res = subprocess.run([self.inv, *args], cwd=self.project, capture_output=True, text=True,
                             timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=env)
        out = res.stdout + res.stderr
        if self.verbose:
            log(f"$ inv {' '.join(args)}   ({mode})\n{out.rstrip()}")
        if res.returncode not in exits:
            raise BenchError(f"inv {' '.join(args)} ({mode}) exited {res.returncode}:\n"
                             f"{out[-3000:]}")
        return out

    def all_up(self) -> None:
        """Every HAProxy server UP before the next measurement (its health check is 300 ms)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = self.inv_run("deliver.balancer", "balancer.status")
            if out.count(": UP,") == len(self.box.hosts):
                return
            time.sleep(0.3)
        raise BenchError(f"not every server UP after 30 s:\n{out}")

    def measure(self, mode: str, *args: str) -> dict[str, float]:
        self.all_up()
        with Clients(self.urls[mode]) as clients:
            start = time.monotonic()
            out = self.inv_run(mode, *args)
            seconds = time.monotonic() - start
        if mode == "deliver.balancer" and out.count("back in rotation") != len(self.box.hosts):
            raise BenchError(f"inv {' '.join(args)} did not put every host back:\n{out[-3000:]}")
        return {"sent": clients.sent, "failed": clients.failed, "seconds": seconds}


def configs(box: sb.Sandbox) -> dict[str, Path]:
    """One runtime config per mode: the balanced one as sandbox.up writes it, the others
    without deliver.balancer."""
    written = json.loads(write_runtime_config(box, APP, http_port=HTTP_PORT).read_text())
    found = {}
    for mode in MODES:
        data = json.loads(json.dumps(written))
        if mode != "deliver.balancer":
            data["deliver"]["stages"]["sandbox"].pop("balancer")
        path = box.dir / f"{APP}-{mode.replace(' ', '').replace(',', '-')}.json"
        path.write_text(json.dumps(data))
        path.chmod(0o600)  # holds the sandbox cookie
        found[mode] = path
    return found


def render(rows: list[tuple[str, dict[str, dict[str, float]]]], head: str) -> str:
    width = 44
    lines = [head, "", f"{'operation':<{width}}" + "".join(f"{m:>26}" for m in MODES),
             f"{'':<{width}}" + "".join(f"{'failed/sent   seconds':>26}" for _ in MODES)]
    for name, by_mode in rows:
        cells = "".join(f"{int(r['failed']):>8}/{int(r['sent']):<6}{r['seconds']:>9.1f} s"
                        .rjust(26) for r in (by_mode[m] for m in MODES))
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


OPERATIONS = [
    ("restart (parallel)", ("restart",)),
    ("update --tag 0.0.2", ("update", "--tag", "0.0.2")),
    ("upgrade 0.0.2 -> 0.0.3 (restart fallback)", ("upgrade", "--from", "0.0.2", "--to", "0.0.3")),
    ("rollback (cold, to 0.0.2)", ("rollback",)),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-sandbox", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("run as root: the sandbox makes one Unix user per host")
        return 2
    bench: Bench | None = None
    compile_package()
    ok, load = False, os.getloadavg()[0]
    try:
        log(f"sandbox: 3 hosts + build + lb host on port {PORT} in {SANDBOX_DIR}")
        box = sb.up(SANDBOX_DIR, hosts=3, port=PORT, first_address=FIRST_ADDRESS, fresh=True,
                    balancer=True)
        sandbox_balancer.start(box, HTTP_PORT)
        project = box.dir / "project" / APP
        if project.exists():
            shutil.rmtree(project)
        load_make_repo()(APP, project, ("0.0.1", "0.0.2", "0.0.3"))
        bench = Bench(box, project, configs(box), args.verbose)
        for what in (("build.release", "--tag", "0.0.2"), ("deploy.release", "--version", "0.0.2"),
                     ("start",)):
            bench.inv_run("direct", *what)
        # exit 1 and "NOT hot-upgradable" is what it should say: the upgrade restarts
        built = bench.inv_run("direct", "build.upgrade", "--from", "0.0.2", "--to", "0.0.3",
                              exits=(1,))
        if "0.0.3 built; 0.0.2 -> 0.0.3 is NOT hot-upgradable" not in built:
            raise BenchError(f"build.upgrade 0.0.2 -> 0.0.3 said something else:\n{built[-2000:]}")
        rows = []
        for name, op in OPERATIONS:
            by_mode = {}
            for mode in MODES:
                if op[0] == "rollback":  # back to 0.0.3 first, so there is one to go back from
                    bench.inv_run("direct", "upgrade", "--from", "0.0.2", "--to", "0.0.3")
                by_mode[mode] = bench.measure(mode, *op)
                if op[0] == "upgrade":  # back to 0.0.2 for the next mode (not measured)
                    bench.inv_run("direct", "rollback")
            log(f"{name}: " + "; ".join(f"{m} {int(r['failed'])}/{int(r['sent'])}"
                                        for m, r in by_mode.items()))
            rows.append((name, by_mode))
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        print(render(rows, f"failed requests per operation, {APP}, 3 sandbox hosts, a GET every "
                           f"20 ms + one kept-alive connection ({when}, {os.cpu_count()} CPUs, "
                           f"1-min load before {load:.1f})"))
        ok = True
    except (BenchError, sb.SandboxError, OSError, subprocess.SubprocessError) as exc:
        log(f"balancer bench FAILED: {exc}")
    finally:
        if bench is not None:
            try:
                bench.inv_run("direct", "stop")
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
