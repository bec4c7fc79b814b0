#!/usr/bin/env python3
"""Deploy-scale benchmark: deploy + start time of hello_ex on 1, 4 and 8 sandbox hosts.

Times `inv deploy.release` and `inv start` of the hello_ex example release on 1, 4 and 8 loopback
sandbox hosts (one sandbox, own port 2422), with the executor's default bounded parallelism.

It prints a table (hosts, deploy s, start s, deploy+start s, SSH logins per host per `inv` run)
and the ratios "N hosts / 1 host" of deploy+start time: close to 1 means the hosts are served in
parallel, close to N means one after the other. It asserts nothing about time; it exits non-zero
if any `inv` command fails or a round did not do what it claims (upload on every host, healthy
start on every host), so a broken deploy never prints a nice ratio.

Run as root (the sandbox makes one Unix user per host):

    .venv/bin/python bench/deploy_scale.py [--hosts 1,4,8] [--save] [--keep-sandbox] [--raw]

--raw also runs the same deploy + start by raw commands after each round and prints the CPU per
host of ours ÷ raw: the part of the machine's CPU that any tool doing this job pays.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.config import DEFAULTS
from pydeliver_tasks.sandbox.config import write_runtime_config

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
APP = "hello_ex"
VERSION = "0.0.1"
# Own port, addresses and dir: never meets the demo (2222, 127.0.0.2..) or the tests (2322, .40..).
PORT = 2422
FIRST_ADDRESS = 60
SANDBOX_DIR = Path(f"/tmp/pdt-bench-sandbox-{PORT}")
HTTP_PORT = 4000
INV_TIMEOUT = 600.0
MAX_HOSTS = 16


class BenchError(RuntimeError):
    """An `inv` run failed or a round did not do what the benchmark measures."""


@dataclass
class InvRun:
    """One timed `inv` subprocess: wall seconds, SSH logins and summary seconds per host."""

    args: list[str]
    seconds: float
    logins: dict[str, int]
    host_seconds: dict[str, float] = field(default_factory=dict)
    inv_cpu: float = 0.0  # user+sys seconds of the inv process itself (Python, paramiko)
    busy_cpu: float = 0.0  # CPU-seconds the whole machine was busy during the run

    @property
    def max_logins(self) -> int:
        return max(self.logins.values(), default=0)

    @property
    def min_logins(self) -> int:
        return min(self.logins.values(), default=0)

    @property
    def slowest_host(self) -> float:
        return max(self.host_seconds.values(), default=0.0)

    @property
    def host_sum(self) -> float:
        return sum(self.host_seconds.values())


@dataclass
class Round:
    """deploy + start on the first `hosts` sandbox hosts."""

    hosts: int
    deploy: InvRun
    start: InvRun
    node_cpu: float = 0.0  # CPU-seconds of the started nodes' own processes (boot included)

    @property
    def total(self) -> float:
        return self.deploy.seconds + self.start.seconds

    @property
    def logins(self) -> int:
        """Max SSH logins on any host in any of the two timed runs (expected: 1)."""
        return max(self.deploy.max_logins, self.start.max_logins)


@dataclass
class RawRound:
    """The same deploy + start by raw commands, as a user's script would fan them out: ssh +
    `tar -xzf -` of the tarball, ssh + `bin/<app> daemon`, then the health URL polled every 0.1 s
    until it answers."""

    hosts: int
    deploy_seconds: float
    start_seconds: float
    busy_cpu: float  # the whole machine's busy CPU-seconds during deploy + start
    node_cpu: float


def load_make_repo(name: str = "make_repo") -> Any:
    """A function of examples/make_repo.py, make_repo by default (examples/ is no package)."""
    spec = importlib.util.spec_from_file_location("make_repo", REPO / "examples" / "make_repo.py")
    if spec is None or spec.loader is None:
        raise BenchError("cannot load examples/make_repo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def compile_package() -> None:
    """Write the package's bytecode, as `pip install` does. This machine sets
    PYTHONDONTWRITEBYTECODE, so a checkout installed editable would otherwise compile every module
    in every `inv` process (about 0.13 s each), a cost no installed copy has."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "pydeliver_tasks")],
                   check=True, stdout=subprocess.DEVNULL)


def inv_path() -> str:
    """The `inv` next to this interpreter (the venv's), else the one on PATH."""
    here = Path(sys.executable).with_name("inv")
    found = str(here) if here.exists() else shutil.which("inv")
    if not found:
        raise BenchError("no `inv` found: run with the project's venv (.venv/bin/python)")
    return found


def accepted_logins(box: sb.Sandbox, name: str) -> int:
    """SSH logins the host's sshd has accepted so far (its log has LogLevel VERBOSE)."""
    log = box.dir / "log" / f"{name}.log"
    return len(re.findall(r"Accepted publickey", log.read_text())) if log.exists() else 0


def busy_cpu_seconds() -> float:
    """CPU-seconds this machine has been busy (all CPUs, all users) since boot: /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is in user already


def node_cpu_seconds(roots: list[Path]) -> float:
    """CPU-seconds of the nodes running from these release roots: each BEAM (`-root ROOT` on
    its command line; the start scripts it was exec'd from and their reaped children count in
    it), its run_erl and their descendants (erl_child_setup, port programs)."""
    wanted = {str(r.resolve()) for r in roots}
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        beam = any(a == "-root" and i + 1 < len(argv) and argv[i + 1] in wanted
                   for i, a in enumerate(argv))
        run_erl = argv[0].endswith("run_erl") and any(w + "/" in a for a in argv for w in wanted)
        if beam or run_erl:
            found.add(int(entry.name))
    total = 0.0
    for pid in found | sb.descendants(found):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    """The sandbox, the example project and its runtime configs; runs and times `inv`."""

    def __init__(self, box: sb.Sandbox, project: Path, config: Path, verbose: bool = False,
                 parallel: int | None = None):
        self.box = box
        self.parallel = parallel
        self.project = project
        self.config = config
        self.verbose = verbose
        self.inv = inv_path()
        self.work = box.dir / "bench"
        self.work.mkdir(exist_ok=True)
        self.runs = 0

    def variant(self, n: int) -> Path:
        """A runtime config whose stage `sandbox` keeps only the first n hosts."""
        data = json.loads(self.config.read_text())
        hosts = data["deliver"]["stages"]["sandbox"]["hosts"]
        if n > len(hosts):
            raise BenchError(f"the sandbox has {len(hosts)} hosts, {n} asked")
        data["deliver"]["stages"]["sandbox"]["hosts"] = hosts[:n]
        if self.parallel is not None:  # a control run; by default the executor's own bound
            data["deliver"]["parallel"] = self.parallel
        path = self.work / f"hosts-{n}.json"
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)  # holds the cookie
        return path

    def deploy_paths(self, config: Path) -> list[Path]:
        data = json.loads(config.read_text())
        return [Path(h["deploy_path"]) for h in data["deliver"]["stages"]["sandbox"]["hosts"]]

    def run(self, config: Path, *args: str, hosts: tuple[sb.SandboxHost, ...] = (),
            check: bool = True) -> tuple[InvRun, str, int]:
        """Run `inv ARGS --json FILE` in the project; time it and count logins on `hosts`."""
        self.runs += 1
        summary = self.work / f"run-{self.runs}.json"
        argv = [self.inv, *args, "--json", str(summary)]
        env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(config)}
        before = {h.name: accepted_logins(self.box, h.name) for h in hosts}
        cpu0, busy0 = children_cpu_seconds(), busy_cpu_seconds()
        start = time.monotonic()
        try:
            res = subprocess.run(argv, cwd=self.project, env=env, capture_output=True, text=True,
                                 timeout=INV_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"inv {' '.join(args)} timed out after {INV_TIMEOUT:.0f}s") from exc
        seconds = time.monotonic() - start
        inv_cpu, busy = children_cpu_seconds() - cpu0, busy_cpu_seconds() - busy0
        logins = {h.name: accepted_logins(self.box, h.name) - before[h.name] for h in hosts}
        out = res.stdout + res.stderr
        if self.verbose:
            log(out.rstrip())
        if check and res.returncode:
            tail = "\n".join(out.splitlines()[-60:])
            raise BenchError(f"inv {' '.join(args)} exited {res.returncode} "
                             f"(config {config}):\n{tail}")
        host_seconds: dict[str, float] = {}
        if summary.exists():
            report = json.loads(summary.read_text())
            host_seconds = {h["host"]: float(h["seconds"]) for h in report["hosts"]}
        run = InvRun(list(args), seconds, logins, host_seconds, inv_cpu, busy)
        return run, out, res.returncode

    def build(self) -> float:
        log(f"building {APP} {VERSION} on the build host (once)")
        run, _, _ = self.run(self.config, "build.release", "--tag", VERSION)
        return run.seconds

    def measure(self, n: int) -> Round:
        """Stop, wipe the deploy dirs, then time deploy and start on the first n hosts; stop."""
        config = self.variant(n)
        hosts = self.box.hosts[:n]
        self.run(config, "stop")
        for host, path in zip(hosts, self.deploy_paths(config), strict=True):  # always upload
            if not path.resolve().is_relative_to(Path(host.home).resolve()):
                raise BenchError(f"refusing to wipe {path}: not under {host.name}'s home {host.home}")
            if path.exists():
                shutil.rmtree(path)
        log(f"{n} host(s): deploy.release")
        deploy, out, _ = self.run(config, "deploy.release", "--version", VERSION, hosts=hosts)
        if out.count(f"{VERSION} uploaded, extracted") != n:
            raise BenchError(f"deploy on {n} host(s) did not upload to every host:\n{out}")
        log(f"{n} host(s): start")
        start, out, _ = self.run(config, "start", hosts=hosts)
        if out.count("application started, health ok") != n:
            raise BenchError(f"start on {n} host(s) did not verify every host:\n{out}")
        node_cpu = node_cpu_seconds(self.deploy_paths(config))
        self.run(config, "stop")
        return Round(n, deploy, start, node_cpu)

    def stage_hosts(self, config: Path) -> list[tuple[str, Path, dict[str, str]]]:
        """(ssh name, deploy path, stage env + host env) of each host of this config."""
        stage = json.loads(config.read_text())["deliver"]["stages"]["sandbox"]
        return [(self.box.hosts[i].name, Path(h["deploy_path"]), {**stage["env"], **h["env"]})
                for i, h in enumerate(stage["hosts"])]

    def on_hosts(self, commands: list[tuple[str, str, Path | None]], what: str) -> None:
        """One `ssh NAME COMMAND` per host, all at once (stdin: a file or nothing)."""
        procs = []
        for name, command, stdin in commands:
            with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as fh:
                procs.append(subprocess.Popen(
                    ["ssh", "-F", str(self.box.ssh_config), "-o", "BatchMode=yes", name, command],
                    stdin=fh, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for p in procs:
            out, _ = p.communicate(timeout=INV_TIMEOUT)
            if p.returncode:
                raise BenchError(f"{what} exited {p.returncode}:\n{out.decode()[-2000:]}")

    def measure_raw(self, n: int) -> RawRound:
        """Stop, wipe, then the raw commands' deploy + start on the first n hosts; stop."""
        config = self.variant(n)
        self.run(config, "stop")
        hosts = self.stage_hosts(config)
        for name, path, _ in hosts:
            home = next(h.home for h in self.box.hosts if h.name == name)
            if not path.resolve().is_relative_to(Path(home).resolve()):
                raise BenchError(f"refusing to wipe {path}: not under {name}'s home {home}")
            shutil.rmtree(path, ignore_errors=True)
        tarball = self.project / ".deliver" / "releases" / f"{APP}_{VERSION}.release.tar.gz"
        log(f"{n} host(s): raw deploy + start")
        busy0, start = busy_cpu_seconds(), time.monotonic()
        self.on_hosts([(name, f"mkdir -p {shlex.quote(str(path))} && cd {shlex.quote(str(path))}"
                        " && tar -xzf - && cat releases/start_erl.data", tarball)
                       for name, path, _ in hosts], "raw deploy")
        deployed = time.monotonic()
        self.on_hosts([(name, f"cd {shlex.quote(str(path))} && export "
                        + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
                        + f" && bin/{APP} daemon", None) for name, path, env in hosts], "raw start")
        for _, _, env in hosts:
            wait_health(f"http://{env['HTTP_IP']}:{env['HTTP_PORT']}/health", start + INV_TIMEOUT)
        done, busy = time.monotonic(), busy_cpu_seconds() - busy0
        node_cpu = node_cpu_seconds([path for _, path, _ in hosts])
        self.run(config, "stop")
        return RawRound(n, deployed - start, done - deployed, busy, node_cpu)


def wait_health(url: str, deadline: float) -> None:
    """Poll url every 0.1 s until its body says ok (a raw start's own check)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if b"ok" in resp.read():
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"raw start: {url} did not answer ok in time")
        time.sleep(0.1)


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from exc
    if not counts or any(not 1 <= n <= MAX_HOSTS for n in counts):
        raise argparse.ArgumentTypeError(f"host counts must be 1..{MAX_HOSTS}: {text!r}")
    return list(dict.fromkeys(counts))  # in order, each once


def best_rounds(rounds: list[Round]) -> list[Round]:
    """Per host count, the round with the least deploy+start time (best of --repeat), in order."""
    best: dict[int, Round] = {}
    for r in rounds:
        if r.hosts not in best or r.total < best[r.hosts].total:
            best[r.hosts] = r
    return list(best.values())


def max_logins(rounds: list[Round], hosts: int) -> int:
    """Max SSH logins per host per run over every round with this host count."""
    return max(r.logins for r in rounds if r.hosts == hosts)


def ratios(rounds: list[Round]) -> dict[int, float]:
    """deploy+start time of N hosts / that of 1 host (needs a 1-host round)."""
    one = next((r for r in rounds if r.hosts == 1), None)
    if one is None or one.total <= 0:
        return {}
    return {r.hosts: r.total / one.total for r in rounds if r.hosts != 1}


def render(every: list[Round], build_seconds: float, load: float, parallel: int) -> str:
    """The result table (best of the repeats), the ratios and where the time goes."""
    rounds = best_rounds(every)
    repeats = len(every) // max(1, len(rounds))
    lines = [
        f"deploy + start of {APP} {VERSION} on sandbox hosts (parallel={parallel}, "
        f"{os.cpu_count()} CPUs, 1-min load before the run {load:.1f}; build once: {build_seconds:.1f}s)"
        + (f"\nbest of {repeats} rounds per host count (least deploy+start)" if repeats > 1 else ""),
        "",
        f"{'hosts':>5}  {'deploy s':>8}  {'start s':>7}  {'deploy+start s':>14}  "
        f"{'SSH logins/host/run':>19}",
    ]
    for r in rounds:
        lines.append(f"{r.hosts:>5}  {r.deploy.seconds:>8.2f}  {r.start.seconds:>7.2f}  "
                     f"{r.total:>14.2f}  {max_logins(every, r.hosts):>19}")
    lines.append("")
    if not ratios(rounds):
        lines.append("(no ratios: they need a 1-host round, e.g. --hosts 1,4,8)")
    for n, x in ratios(rounds).items():
        lines.append(f"{n} hosts ÷ 1 host (deploy+start): {x:.2f}   "
                     f"(parallel ≈ 1, serial ≈ {n})")
    lines += ["", "CPU-seconds per host for deploy+start (client + hosts: the whole machine's busy "
              "CPU time during the runs ÷ hosts), and what of it is the started nodes' own "
              "processes (their boot) and what the tool's (the rest):",
              f"{'hosts':>5}  {'all':>5}  {'nodes':>5}  {'tool':>5}  {'of which inv':>12}"]
    for r in rounds:
        busy = (r.deploy.busy_cpu + r.start.busy_cpu) / r.hosts
        node = r.node_cpu / r.hosts
        lines.append(f"{r.hosts:>5}  {busy:>5.2f}  {node:>5.2f}  {busy - node:>5.2f}  "
                     f"{(r.deploy.inv_cpu + r.start.inv_cpu) / r.hosts:>12.2f}")
    lines += ["", "where the time goes (from each run's --json summary):",
              f"{'hosts':>5}  {'run':<7}  {'wall s':>6}  {'slowest host s':>14}  "
              f"{'sum of hosts s':>14}  {'overlap':>7}  {'inv CPU s':>9}  {'machine CPU busy':>16}"]
    cpus = os.cpu_count() or 1
    for r in rounds:
        for name, run in (("deploy", r.deploy), ("start", r.start)):
            overlap = run.host_sum / run.seconds if run.seconds else 0.0
            busy = run.busy_cpu / (run.seconds * cpus) if run.seconds else 0.0
            lines.append(f"{r.hosts:>5}  {name:<7}  {run.seconds:>6.2f}  {run.slowest_host:>14.2f}  "
                         f"{run.host_sum:>14.2f}  {overlap:>7.2f}  {run.inv_cpu:>9.2f}  {busy:>15.0%}")
    lines += [
        "  wall - slowest host: inv startup, config, summary.  overlap: sum of host times / wall,",
        "  ~N when the N hosts really run at once.  inv CPU: the inv process itself (Python, SSH).",
        f"  machine CPU busy: all {cpus} CPUs, all users (other work on the machine counts too);",
        "  near 100% means the hosts' work (BEAM boots, rpc probes, gunzip, sshd) is CPU-bound.",
    ]
    odd = [r for r in every if r.logins != 1 or min(r.deploy.min_logins, r.start.min_logins) != 1]
    for r in odd:
        lines.append(f"NOTE: a {r.hosts}-host round: logins per host per run were "
                     f"deploy {r.deploy.logins}, start {r.start.logins} (expected 1 each)")
    return "\n".join(lines)


def render_raw(every: list[Round], raws: list[RawRound]) -> str:
    """Ours against the raw commands: the least machine CPU per host over the repeats of each."""
    lines = ["", "CPU-seconds per host for deploy+start, ours against the raw commands (ssh + tar "
             "-xzf -, ssh + bin/app daemon, health polled every 0.1 s); least of the repeats:",
             f"{'hosts':>5}  {'ours':>5}  {'raw':>5}  {'ours ÷ raw':>10}  {'raw nodes':>9}  "
             f"{'raw deploy+start s':>18}"]
    for n in dict.fromkeys(r.hosts for r in raws):
        ours = min((r.deploy.busy_cpu + r.start.busy_cpu) / n for r in every if r.hosts == n)
        raw = min((r for r in raws if r.hosts == n), key=lambda r: r.busy_cpu)
        lines.append(f"{n:>5}  {ours:>5.2f}  {raw.busy_cpu / n:>5.2f}  "
                     f"{ours / (raw.busy_cpu / n):>10.2f}  {raw.node_cpu / n:>9.2f}  "
                     f"{raw.deploy_seconds + raw.start_seconds:>18.2f}")
    return "\n".join(lines)


def results_json(every: list[Round], build_seconds: float, load: float,
                 parallel: int) -> dict[str, Any]:
    rounds = best_rounds(every)

    def as_dict(r: Round) -> dict[str, Any]:
        return {"hosts": r.hosts, "deploy_seconds": round(r.deploy.seconds, 3),
                "start_seconds": round(r.start.seconds, 3), "total_seconds": round(r.total, 3),
                "logins_per_host_per_run": r.logins, "deploy": asdict(r.deploy),
                "start": asdict(r.start), "node_cpu": r.node_cpu}

    return {
        "benchmark": "deploy_scale",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "app": APP, "version": VERSION,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_before": round(load, 2)},
        "parallel": parallel, "parallel_is_default": parallel == DEFAULTS["parallel"],
        "build_seconds": round(build_seconds, 3),
        "repeat": len(every) // max(1, len(rounds)),
        "rounds": [as_dict(r) for r in rounds],  # best of the repeats, per host count
        "all_rounds": [as_dict(r) for r in every],
        "ratios": {f"{n}/1": round(x, 3) for n, x in ratios(rounds).items()},
    }


def save(payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    path = RESULTS / f"deploy_scale-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def teardown(bench: Bench | None, keep: bool) -> bool:
    """inv stop on every host (failure ignored), then sandbox down --purge; -> clean?"""
    if bench is not None:
        try:
            bench.run(bench.config, "stop", check=False)
        except BenchError as exc:
            log(f"teardown: inv stop: {exc}")
    if keep:
        log(f"--keep-sandbox: sandbox left in {SANDBOX_DIR}; end it with: .venv/bin/python -c "
            f"\"from pydeliver_tasks import sandbox; sandbox.down('{SANDBOX_DIR}', purge=True)\"")
        return True
    try:
        lines = sb.down(SANDBOX_DIR, purge=True)
    except (OSError, sb.SandboxError) as exc:
        log(f"teardown failed: {exc}")
        return False
    bad = [x for x in lines if "failed" in x]
    for line in bad:
        log(f"teardown: {line}")
    return not bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=parse_counts, default=[1, 4, 8],
                        help="comma-separated host counts (default 1,4,8)")
    parser.add_argument("--save", action="store_true",
                        help="also write the results to bench/results/deploy_scale-<UTC time>.json")
    parser.add_argument("--keep-sandbox", action="store_true",
                        help="leave the sandbox (sshds, users, nodes stopped) up for debugging")
    parser.add_argument("--parallel", type=int, default=None, metavar="N",
                        help="control run: set deliver.parallel=N (e.g. 1 = serial) instead of "
                             "the executor's default")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="measure every host count K times (interleaved) and report the "
                             "best; for a machine shared with other work (default 1)")
    parser.add_argument("--raw", action="store_true",
                        help="also run the same deploy + start by raw commands after each round "
                             "and print CPU per host, ours ÷ raw")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every inv output")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("run as root: the sandbox makes one Unix user per host")
        return 2
    counts: list[int] = args.hosts
    if args.parallel is not None and args.parallel < 1:
        parser.error("--parallel must be >= 1")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    parallel = DEFAULTS["parallel"] if args.parallel is None else args.parallel
    bench: Bench | None = None
    compile_package()
    ok, load = False, os.getloadavg()[0]
    try:
        log(f"sandbox: {max(counts)} hosts on port {PORT} in {SANDBOX_DIR}")
        box = sb.up(SANDBOX_DIR, hosts=max(counts), port=PORT, first_address=FIRST_ADDRESS,
                    fresh=True)
        config = write_runtime_config(box, APP, http_port=HTTP_PORT)
        project = box.dir / "project" / APP
        if project.exists():
            shutil.rmtree(project)
        load_make_repo()(APP, project)
        bench = Bench(box, project, config, verbose=args.verbose, parallel=args.parallel)
        build_seconds = bench.build()
        rounds: list[Round] = []
        raws: list[RawRound] = []
        for _ in range(args.repeat):
            for n in counts:
                rounds.append(bench.measure(n))
                if args.raw:
                    raws.append(bench.measure_raw(n))
        print(render(rounds, build_seconds, load, parallel)
              + (render_raw(rounds, raws) if raws else ""), flush=True)
        if args.save:
            log(f"saved {save(results_json(rounds, build_seconds, load, parallel))}")
        ok = True
    except (BenchError, sb.SandboxError, OSError, subprocess.SubprocessError) as exc:
        log(f"deploy_scale FAILED: {exc}")
    finally:
        clean = teardown(bench, args.keep_sandbox)
    return 0 if ok and clean else 1


if __name__ == "__main__":
    sys.exit(main())
