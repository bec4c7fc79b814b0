#!/usr/bin/env python3
"""Hot-upgrade benchmark: `inv upgrade` against the plain relx script, and HTTP failures.

On one loopback sandbox host (plus the build host), with the rebar3 example hello_erl:

1. Time of `inv upgrade --from 0.0.1 --to 0.0.2` against a plain script over ssh that does the
   same job the relx way: copy the tarball `rebar3 relup && rebar3 tar` makes (the whole 0.0.2
   release with its relup, made here from our stored release and upgrade tarballs) to
   `releases/hello_erl-0.0.2.tar.gz` (scp), then `bin/hello_erl upgrade 0.0.2` (ssh). Ours
   uploads its own upgrade tarball (only what 0.0.1 lacks). The upgrade is built and stored once
   beforehand, so both sides measure deploy + install only, never a build. Every run starts from
   the same state: node stopped, deploy dir wiped, 0.0.1 deployed and started.
2. Failed HTTP requests (GET / every 20 ms, 1 s timeout, from a thread) while `inv upgrade` runs,
   and while `inv deploy.release --version 0.0.2` + `inv restart` run.

It prints the numbers and asserts nothing about time. It exits non-zero when any command fails
or does not end where it claims (0.0.2 serving, same OS pid for the hot paths), so a broken run
never prints a good-looking number.

Run as root (the sandbox makes one Unix user per host), from the repository root:

    .venv/bin/python bench/upgrade.py [--repeat 3] [--keep-sandbox] [-v]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The helpers deploy_scale.py already has (this file's dir is sys.path[0] when run as a script).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_scale import (  # noqa: E402
    BenchError,
    accepted_logins,
    children_cpu_seconds,
    compile_package,
    inv_path,
    load_make_repo,
    log,
)

from pydeliver_tasks import sandbox as sb  # noqa: E402
from pydeliver_tasks.sandbox.config import write_runtime_config  # noqa: E402

APP = "hello_erl"
FROM, TO = "0.0.1", "0.0.2"
# Own port, addresses, HTTP port and dir: never meets the demo (2222), the tests (2322) or
# deploy_scale (2422). The hosts' epmd ports follow from the SSH port (4523 here).
PORT = 2522
FIRST_ADDRESS = 120
HTTP_PORT = 4700
SANDBOX_DIR = Path(f"/tmp/pdt-bench-upgrade-{PORT}")
INV_TIMEOUT = 600.0
SSH_TIMEOUT = 300.0
POLL_INTERVAL = 0.020  # seconds between the starts of two HTTP requests
POLL_TIMEOUT = 1.0  # a request slower than this counts as failed
# Straight to the sandbox address, whatever http_proxy says.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---- what one run cost, seen from the host ----

def sessions(box: sb.Sandbox, name: str) -> tuple[int, int]:
    """(command sessions, subsystem sessions such as SFTP) the host's sshd has started so far
    (LogLevel VERBOSE logs each one)."""
    path = box.dir / "log" / f"{name}.log"
    text = path.read_text() if path.exists() else ""
    return (len(re.findall(r"Starting session: command ", text)),
            len(re.findall(r"Starting session: subsystem ", text)))


def _proc_stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()  # fields after "pid (comm) "


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (the node's BEAM), 0 when it is gone."""
    try:
        f = _proc_stat(pid)
    except (OSError, ValueError):
        return 0.0
    return (int(f[11]) + int(f[12])) / _ticks()


@dataclass
class Cost:
    """One timed way of upgrading, with what it cost on the host."""

    seconds: float
    parts: dict[str, float]  # named sub-times (wall seconds)
    logins: int = 0
    commands: int = 0
    subsystems: int = 0
    node_cpu: float = 0.0  # CPU-s of the running node during the run
    local_cpu: float = 0.0  # CPU-s of the local processes (inv, or scp + ssh)


# ---- HTTP load ----

@dataclass
class Hit:
    sent: float  # time.monotonic() when sent
    ms: float
    ok: bool
    what: str  # the version served, or why it failed


class Poller(threading.Thread):
    """GET the page every POLL_INTERVAL (start to start; a slow answer delays the next one)."""

    def __init__(self, url: str):
        super().__init__(name="http-poller", daemon=True)
        self.url = url
        self.hits: list[Hit] = []
        self._halt = threading.Event()

    def _get(self) -> tuple[bool, str]:
        try:
            with DIRECT.open(self.url, timeout=POLL_TIMEOUT) as resp:
                status, body = resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code}"
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError):
                return False, "connection refused"
            if isinstance(reason, TimeoutError):
                return False, f"no answer in {POLL_TIMEOUT:g} s"
            return False, type(reason).__name__ if isinstance(reason, OSError) else str(reason)
        except TimeoutError:
            return False, f"no answer in {POLL_TIMEOUT:g} s"
        except (OSError, ValueError) as exc:  # reset, closed without a response, ...
            return False, type(exc).__name__
        m = re.search(rf"{APP} (\S+) \(visits", body)
        if status != 200 or not m:
            return False, f"HTTP {status}, unexpected page"
        return True, m[1]

    def run(self) -> None:
        due = time.monotonic()
        while not self._halt.is_set():
            sent = time.monotonic()
            ok, what = self._get()
            self.hits.append(Hit(sent, (time.monotonic() - sent) * 1000, ok, what))
            due += POLL_INTERVAL
            wait = due - time.monotonic()
            if wait < 0:  # behind (a slow answer): go on from now, no burst
                due, wait = time.monotonic(), 0.0
            self._halt.wait(wait)

    def halt(self) -> None:
        self._halt.set()
        self.join(POLL_TIMEOUT + 5)


@dataclass
class Traffic:
    """The requests sent in one window."""

    label: str
    seconds: float
    hits: list[Hit] = field(default_factory=list)

    @property
    def failed(self) -> list[Hit]:
        return [h for h in self.hits if not h.ok]

    def served(self) -> Counter:
        return Counter(h.what for h in self.hits if h.ok)

    def why(self) -> Counter:
        return Counter(h.what for h in self.failed)

    def longest_outage(self) -> float:
        """Longest time from a failed request's send to the next good request's send."""
        worst, first_bad = 0.0, None
        for h in self.hits:
            if not h.ok and first_bad is None:
                first_bad = h.sent
            elif h.ok and first_bad is not None:
                worst, first_bad = max(worst, h.sent - first_bad), None
        if first_bad is not None:  # still failing at the end of the window
            last = self.hits[-1]
            worst = max(worst, last.sent + last.ms / 1000 - first_bad)
        return worst

    def slowest_ok_ms(self) -> float:
        return max((h.ms for h in self.hits if h.ok), default=0.0)


def window(hits: list[Hit], label: str, start: float, end: float) -> Traffic:
    return Traffic(label, end - start, [h for h in hits if start <= h.sent < end])


# ---- the benchmark ----

class UpgradeBench:
    def __init__(self, box: sb.Sandbox, project: Path, config: Path, verbose: bool = False):
        self.box, self.project, self.config, self.verbose = box, project, config, verbose
        self.inv = inv_path()
        self.host = box.hosts[0]
        self.work = box.dir / "bench"
        self.work.mkdir(exist_ok=True)
        deliver = json.loads(config.read_text())["deliver"]
        stage = deliver["stages"]["sandbox"]
        self.root = stage["hosts"][0]["deploy_path"]
        self.env = {**stage["env"], **stage["hosts"][0]["env"]}
        self.url = f"http://{self.host.address}:{self.env['HTTP_PORT']}/"
        self.store = project / ".deliver" / "releases"
        self.runs = 0

    # -- running things --

    def run(self, *args: str, check: bool = True) -> tuple[float, str]:
        """`inv ARGS` in the project, as a user runs it; -> (wall seconds, output)."""
        self.runs += 1
        env = {**os.environ, "INVOKE_RUNTIME_CONFIG": str(self.config)}
        start = time.monotonic()
        try:
            res = subprocess.run([self.inv, *args], cwd=self.project, env=env,
                                 capture_output=True, text=True, timeout=INV_TIMEOUT,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"inv {' '.join(args)} timed out after {INV_TIMEOUT:.0f}s") from exc
        seconds = time.monotonic() - start
        out = res.stdout + res.stderr
        if self.verbose:
            log(f"$ inv {' '.join(args)}  ({seconds:.2f}s)\n{out.rstrip()}")
        if check and res.returncode:
            tail = "\n".join(out.splitlines()[-60:])
            raise BenchError(f"inv {' '.join(args)} exited {res.returncode}:\n{tail}")
        return seconds, out

    def ssh_argv(self, *extra: str) -> list[str]:
        return ["-F", str(self.box.ssh_config), "-o", "BatchMode=yes", *extra]

    def shell(self, argv: list[str], what: str) -> tuple[float, str]:
        """A plain command (scp, ssh) timed; fails the benchmark when it fails."""
        start = time.monotonic()
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=SSH_TIMEOUT,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{what} timed out after {SSH_TIMEOUT:.0f}s") from exc
        seconds = time.monotonic() - start
        out = res.stdout + res.stderr
        if self.verbose:
            log(f"$ {what}  ({seconds:.2f}s)\n{out.rstrip()}")
        if res.returncode:
            raise BenchError(f"{what} exited {res.returncode}:\n{out[-3000:]}")
        return seconds, out

    # -- facts about the node --

    def node(self) -> tuple[int, str]:
        """(OS pid, release version) of the running node, from `inv ping`."""
        _, out = self.run("ping")
        m = re.search(r"pong: \S+ \(pid (\d+), ([^)]+)\)", out)
        if not m:
            raise BenchError(f"inv ping: no pid/version in:\n{out}")
        return int(m[1]), m[2]

    def page(self) -> str:
        with DIRECT.open(self.url, timeout=5) as resp:
            body = resp.read().decode(errors="replace")
        m = re.search(r"<h1>(.*)</h1>", body)
        return m[1] if m else body[:200]

    def expect_serving(self, vsn: str, pid: int | None, what: str) -> int:
        """The node runs `vsn` (with OS pid `pid` when given), boots it next, and the page is
        vsn's; -> its pid."""
        now_pid, now_vsn = self.node()
        seen = self.page()
        _, version = self.run("version")
        problems = []
        if now_vsn != vsn:
            problems.append(f"node runs {now_vsn}, not {vsn}")
        if pid is not None and now_pid != pid:
            problems.append(f"OS pid changed {pid} -> {now_pid}: restarted, not hot")
        if f"{APP} {vsn} (visits" not in seen:
            problems.append(f"page says {seen!r}")
        if f"running {vsn}; {vsn} boots next" not in version:
            problems.append(f"inv version: {version.strip().splitlines()[-1]}")
        if problems:
            raise BenchError(f"after {what}: " + "; ".join(problems))
        return now_pid

    # -- the starting state of every run --

    def reset(self) -> int:
        """Node stopped, deploy dir wiped, FROM deployed and started: -> the node's pid."""
        self.run("stop")
        path = Path(self.root)
        if not path.resolve().is_relative_to(Path(self.host.home).resolve()):
            raise BenchError(f"refusing to wipe {path}: not under {self.host.home}")
        if path.exists():
            shutil.rmtree(path)
        _, out = self.run("deploy.release", "--version", FROM)
        if f"{FROM} uploaded, extracted" not in out:
            raise BenchError(f"deploy.release {FROM} did not upload:\n{out}")
        _, out = self.run("start")
        if f"running {FROM} " not in out or "application started, health ok" not in out:
            raise BenchError(f"start of {FROM} not verified:\n{out}")
        pid, _ = self.node()
        return pid

    # -- builds, once --

    def build(self) -> tuple[float, Path, Path]:
        """-> (build seconds, our upgrade tarball, relx's: the whole TO release with its relup)."""
        log(f"building {APP} {FROM}, then the upgrade {FROM} -> {TO} (once, on the build host)")
        t1, _ = self.run("build.release", "--tag", FROM)
        t2, out = self.run("build.upgrade", "--from", FROM, "--to", TO)
        tarball = self.store / f"{APP}_{TO}.upgrade.tar.gz"
        if not tarball.exists() or "with relup from" not in out:
            raise BenchError(f"build.upgrade stored no {tarball.name}:\n{out}")
        return t1 + t2, tarball, self.relx_tarball(tarball)

    def relx_tarball(self, upgrade: Path) -> Path:
        """What `rebar3 relup && rebar3 tar` hands a relx user: the whole TO release (ERTS and
        every lib dir) with the relup and appups. Made from our two stored tarballs: the full
        release, overlaid with the upgrade tarball's files (ours carries only what a host
        running FROM lacks)."""
        out = self.work / f"{APP}-{TO}.relx.tar.gz"
        with tarfile.open(upgrade) as up:
            newer = {m.name.removeprefix("./"): (m, up.extractfile(m).read() if m.isfile() else b"")
                     for m in up.getmembers()}
        with tarfile.open(self.store / f"{APP}_{TO}.release.tar.gz") as full, \
                tarfile.open(out, "w:gz") as dst:
            for m in full.getmembers():
                if m.name.removeprefix("./") not in newer:
                    dst.addfile(m, full.extractfile(m) if m.isfile() else None)
            for m, data in newer.values():
                dst.addfile(m, io.BytesIO(data) if m.isfile() else None)
        return out

    # -- part 1 --

    def _measured(self, pid: int, fn: Any) -> Cost:
        """Run fn() -> (seconds, parts) and count what it cost on the host."""
        logins0 = accepted_logins(self.box, self.host.name)
        cmd0, sub0 = sessions(self.box, self.host.name)
        node0, local0 = own_cpu_seconds(pid), children_cpu_seconds()
        seconds, parts = fn()
        local = children_cpu_seconds() - local0
        node = own_cpu_seconds(pid) - node0
        cmd1, sub1 = sessions(self.box, self.host.name)  # logged when a session starts
        return Cost(seconds, parts, accepted_logins(self.box, self.host.name) - logins0,
                    cmd1 - cmd0, sub1 - sub0, node, local)

    def ours(self) -> Cost:
        pid = self.reset()
        summary = self.work / f"upgrade-{self.runs}.json"

        def go() -> tuple[float, dict[str, float]]:
            seconds, out = self.run("upgrade", "--from", FROM, "--to", TO, "--json", str(summary))
            if f"hot-upgraded {FROM} -> {TO}, same pid {pid}" not in out:
                raise BenchError(f"inv upgrade did not report a verified hot upgrade:\n{out}")
            if "using the stored upgrade" not in out or "staging " + TO + ": uploaded" not in out:
                raise BenchError(f"inv upgrade did not use the stored upgrade and upload it:\n{out}")
            pre = re.search(r"upgrade: pre-check — stage .*\n.*\n\s*\S+\s+ok\s+([\d.]+)s", out)
            main = re.search(r"\nupgrade — stage .*\n.*\n\s*\S+\s+ok\s+([\d.]+)s", out)
            parts = {"pre-check": float(pre[1]) if pre else 0.0,
                     "stage+install+verify": float(main[1]) if main else 0.0}
            parts["inv process (startup, local sha256, summary)"] = (
                seconds - sum(parts.values()))
            return seconds, parts

        cost = self._measured(pid, go)
        self.expect_serving(TO, pid, "inv upgrade")
        return cost

    def scripted_command(self, redact: bool = False) -> str:
        """What an ops person types: the stage's env, relx's per-root pipe/log dirs, upgrade.
        redact: the cookie shown as *** (for printing)."""
        cookie = self.env.get("COOKIE", "")
        env = " ".join(f"{k}={'***' if redact and v == cookie else shlex.quote(v)}"
                       for k, v in self.env.items())
        return (f"cd {shlex.quote(self.root)} && env {env} PIPE_DIR=\"$PWD/tmp/pipe/\" "
                f"RUNNER_LOG_DIR=\"$PWD/log\" bin/{APP} upgrade {TO}")

    def scripted(self, tarball: Path) -> Cost:
        pid = self.reset()
        dest = f"{self.root}/releases/{APP}-{TO}.tar.gz"
        h = self.host.name

        def go() -> tuple[float, dict[str, float]]:
            t_copy, _ = self.shell(["scp", "-q", *self.ssh_argv(), str(tarball), f"{h}:{dest}"],
                                   "scp of the upgrade tarball")
            t_up, out = self.shell(["ssh", *self.ssh_argv(), h, self.scripted_command()],
                                   f"ssh {h} bin/{APP} upgrade {TO}")
            if f"Made release permanent: \"{TO}\"" not in out:
                raise BenchError(f"bin/{APP} upgrade {TO} did not make {TO} permanent:\n{out}")
            return t_copy + t_up, {"scp": t_copy, f"ssh bin/{APP} upgrade": t_up}

        cost = self._measured(pid, go)
        self.expect_serving(TO, pid, f"bin/{APP} upgrade {TO}")
        return cost

    # -- part 2 --

    def under_load(self, steps: list[tuple[str, tuple[str, ...]]]) -> tuple[list[Traffic], Traffic]:
        """Run the inv commands one after another while the page is polled; -> traffic per
        command and over all of them."""
        poller = Poller(self.url)
        poller.start()
        marks = [time.monotonic()]
        outs = []
        try:
            for _, args in steps:
                _, out = self.run(*args)
                outs.append(out)
                marks.append(time.monotonic())
        finally:
            poller.halt()
        per = [window(poller.hits, label, a, b)
               for (label, _), a, b in zip(steps, marks[:-1], marks[1:], strict=True)]
        return per, window(poller.hits, " + ".join(label for label, _ in steps), marks[0],
                           marks[-1])

    def hot_under_load(self) -> Traffic:
        pid = self.reset()
        _, total = self.under_load([("inv upgrade", ("upgrade", "--from", FROM, "--to", TO))])
        self.expect_serving(TO, pid, "inv upgrade under load")
        return total

    def restart_under_load(self) -> tuple[list[Traffic], Traffic]:
        pid = self.reset()
        per, total = self.under_load([
            (f"inv deploy.release --version {TO}", ("deploy.release", "--version", TO)),
            ("inv restart", ("restart",)),
        ])
        new_pid = self.expect_serving(TO, None, "deploy.release + restart under load")
        if new_pid == pid:
            raise BenchError(f"inv restart left the same OS pid {pid}: nothing was restarted")
        return per, total


# ---- output ----

def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


ADDITIONS = """\
what inv upgrade does beyond `bin/hello_erl upgrade` (read from its code in pydeliver_tasks/steps/:
hot.py and the upgrade step). relx's install_upgrade.escript runs, in one go:
release_handler:unpack_release (the serving node itself gunzips and untars the whole tarball: the
node CPU above), check_install_release, install_release, make_permanent, then copies
bin/hello_erl-0.0.2 over bin/hello_erl. It checks nothing after that but release_handler's own
return values.
  - sha256 of the stored tarball checked against its .sha256 locally, before anything else
  - pre-check on every host before any change: refuses when a node does not answer or runs
    neither 0.0.1 nor (already done) 0.0.2; when release_handler does not list 0.0.1 as
    running, --on-unsafe decides (verified restart into 0.0.2, or abort)
  - upload skipped when the host already has the same sha256; the uploaded file is checked
    against the sha256 on the host before it is unpacked (by tar, outside the node)
  - staged beside the running release: lib dirs 0.0.2 adds are written, others only added when
    missing; bin/ is kept per version; nothing that boots changes yet
  - installed through release_handler, NOT made permanent until verified: same OS pid, the node
    reports 0.0.2, every module of the changed apps is loaded from the new beams (md5 match),
    no old code left in memory, and the HTTP health check passes
  - then make_permanent, bin/ switched, releases/start_erl.data checked to boot 0.0.2
  - on a failed install or check: 0.0.1 serves again (--on-failure restart/downgrade/abort)
  - a per-host summary table (and --json)"""


def render_part1(ours: list[Cost], scripted: list[Cost], build_s: float, tarball: Path,
                 relx: Path, command: str) -> list[str]:
    o, s = median([c.seconds for c in ours]), median([c.seconds for c in scripted])
    lines = [
        f"1. time of `inv upgrade --from {FROM} --to {TO}` vs the plain relx script over ssh",
        f"   The upgrade was built and stored beforehand ({build_s:.1f} s for both builds), so "
        "both sides",
        "   only upload it and install it on the running node: deploy + install, no build. "
        "Before every",
        f"   run (not timed): stop, wipe the deploy dir, deploy {FROM}, start - the same state "
        "for both.",
        f"   ours uploads {tarball.name} ({tarball.stat().st_size / 1e6:.2f} MB: relup, bin/, "
        "the changed apps' lib dirs);",
        "   the relx way uploads what `rebar3 relup && rebar3 tar` makes "
        f"({relx.stat().st_size / 1e6:.1f} MB: the whole release, relup inside).",
        "   scripted = scp that tarball to releases/hello_erl-0.0.2.tar.gz, then:",
        f"     ssh h1 '{command}'",
        "",
        f"   {'run':<8}{'ours s':>8}{'scripted s':>12}",
    ]
    for i, (a, b) in enumerate(zip(ours, scripted, strict=True), 1):
        lines.append(f"   {i:<8}{a.seconds:>8.2f}{b.seconds:>12.2f}")
    lines += [f"   {'median':<8}{o:>8.2f}{s:>12.2f}",
              "",
              f"   ours ÷ scripted (medians): {o / s:.2f}" if s else "   (no scripted time)",
              "",
              f"   per run (median)                         {'ours':>8}  {'scripted':>8}"]

    def row(name: str, get: Any, fmt: str = ".2f") -> None:
        a, b = median([get(c) for c in ours]), median([get(c) for c in scripted])
        lines.append(f"   {name:<42}{a:>8{fmt}}  {b:>8{fmt}}")

    row("SSH logins", lambda c: c.logins, ".0f")
    row("SSH exec sessions (the run's shell is one)", lambda c: c.commands, ".0f")
    row("SFTP sessions (the upload)", lambda c: c.subsystems, ".0f")
    row("node CPU s (the running BEAM)", lambda c: c.node_cpu)
    row("local CPU s (inv / scp+ssh processes)", lambda c: c.local_cpu)
    lines += ["", "   where the time goes (median s)"]
    for who, costs in (("ours", ours), ("scripted", scripted)):
        for name in costs[0].parts:
            lines.append(f"   {who + ': ' + name:<56}{median([c.parts[name] for c in costs]):>6.2f}")
    return lines + ["", *("   " + x for x in ADDITIONS.splitlines())]


def render_traffic(t: Traffic, indent: str = "") -> str:
    why = ", ".join(f"{n}× {w}" for w, n in t.why().most_common()) or "-"
    served = ", ".join(f"{v}: {n}" for v, n in sorted(t.served().items())) or "-"
    return (f"   {indent + t.label:<50}{t.seconds:>6.1f}{len(t.hits):>6}{len(t.failed):>8}"
            f"{t.longest_outage():>10.2f}{t.slowest_ok_ms():>8.0f}   served {served}; "
            f"failed: {why}")


def render_part2(hot: Traffic, per: list[Traffic], cold: Traffic) -> list[str]:
    lines = [
        f"2. failed HTTP requests: GET {'/'} every {POLL_INTERVAL * 1000:.0f} ms (start to start), "
        f"{POLL_TIMEOUT:g} s timeout, a new connection each,",
        f"   only while the inv commands run; each case starts from a freshly started {FROM}",
        "",
        f"   {'while':<50}{'s':>6}{'sent':>6}{'failed':>8}{'outage s':>10}{'max ms':>8}",
        render_traffic(hot),
        render_traffic(cold),
        *(render_traffic(t, "  of which ") for t in per),
        "",
        "   s: how long the commands ran.  outage s: longest time from a failed request to the",
        "   next good one.  max ms: the slowest successful request.  sent ÷ s is the rate reached",
        "   (asked: 50/s; each request is a new connection from one Python thread, and the machine",
        "   is shared).",
    ]
    return lines


# ---- setup and teardown ----

def sandbox_uids(box: sb.Sandbox) -> set[int]:
    import pwd

    uids = set()
    for h in box.all_hosts:
        try:
            uids.add(pwd.getpwnam(h.user).pw_uid)
        except KeyError:
            pass
    return uids - {0, os.geteuid()}


def _sandbox_procs(uids: set[int]) -> dict[int, str]:
    """pid -> description of processes running as a sandbox user or naming its dir or homes."""
    found = {}
    marks = (str(SANDBOX_DIR).encode(), f"/home/pdt{PORT}-".encode())
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            status = dict(line.split(":", 1) for line in (d / "status").read_text().splitlines()
                          if ":" in line)
            uid = int(status["Uid"].split()[0])
        except (OSError, KeyError, ValueError):
            continue
        if uid in uids or any(m in cmd for m in marks):
            text = cmd.replace(b"\0", b" ").decode(errors="replace")[:160]
            found[int(d.name)] = (f"pid {d.name} uid {uid} ppid {status['PPid'].strip()} "
                                  f"{status['State'].strip()}: {text or status['Name'].strip()}")
    return found


def leftovers(uids: set[int]) -> list[str]:
    """The sandbox's processes still there after down(); one that is just exiting gets 3 s."""
    left = _sandbox_procs(uids)
    deadline = time.monotonic() + 3.0
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        now = _sandbox_procs(uids)
        left = {pid: text for pid, text in now.items() if pid in left}
    return list(left.values())


def teardown(bench: UpgradeBench | None, keep: bool, uids: set[int]) -> bool:
    if bench is not None:
        try:
            bench.run("stop", check=False)
        except BenchError as exc:
            log(f"teardown: inv stop: {exc}")
    if keep:
        log(f"--keep-sandbox: sandbox left in {SANDBOX_DIR}; end it with: .venv/bin/python -c "
            f"\"from pydeliver_tasks import sandbox; sandbox.down('{SANDBOX_DIR}', purge=True)\"")
        return True
    try:
        lines = sb.down(SANDBOX_DIR)  # sshds and the users' processes, by pid
        # look while the users still exist (after userdel their uids may go to someone else)
        left = leftovers(uids)
        lines += sb.down(SANDBOX_DIR, purge=True)  # users, homes, the dir
    except (OSError, sb.SandboxError) as exc:
        log(f"teardown failed: {exc}")
        return False
    bad = [x for x in lines if "failed" in x]
    for line in bad:
        log(f"teardown: {line}")
    for line in left:
        log(f"teardown: left behind: {line}")
    if not left:
        log("teardown: no process of the sandbox is left (checked by uid, dir and homes)")
    return not bad and not left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, metavar="K",
                        help="timed runs per side in part 1, interleaved; medians are compared "
                             "(default 3)")
    parser.add_argument("--keep-sandbox", action="store_true",
                        help="leave the sandbox (sshds, users; nodes stopped) up for debugging")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every command output")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("run as root: the sandbox makes one Unix user per host")
        return 2
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    bench: UpgradeBench | None = None
    uids: set[int] = set()
    compile_package()
    ok, load = False, os.getloadavg()[0]
    try:
        log(f"sandbox: 1 host + build host on port {PORT} in {SANDBOX_DIR}")
        box = sb.up(SANDBOX_DIR, hosts=1, port=PORT, first_address=FIRST_ADDRESS, fresh=True)
        uids = sandbox_uids(box)
        config = write_runtime_config(box, APP, http_port=HTTP_PORT)
        project = box.dir / "project" / APP
        if project.exists():
            shutil.rmtree(project)
        load_make_repo()(APP, project)
        bench = UpgradeBench(box, project, config, verbose=args.verbose)
        build_s, tarball, relx = bench.build()
        ours, scripted = [], []
        for i in range(args.repeat):
            log(f"part 1, round {i + 1}/{args.repeat}: inv upgrade")
            ours.append(bench.ours())
            log(f"part 1, round {i + 1}/{args.repeat}: scp + bin/{APP} upgrade")
            scripted.append(bench.scripted(relx))
        log("part 2: inv upgrade under HTTP load")
        hot = bench.hot_under_load()
        log("part 2: inv deploy.release + inv restart under HTTP load")
        per, cold = bench.restart_under_load()
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        head = (f"hot upgrade of {APP} {FROM} -> {TO} on 1 sandbox host ({when}, "
                f"{os.cpu_count()} CPUs, 1-min load before the run {load:.1f})")
        print("\n".join([head, "", *render_part1(ours, scripted, build_s, tarball, relx,
                                                  bench.scripted_command(redact=True)),
                         "", *render_part2(hot, per, cold)]), flush=True)
        ok = True
    except (BenchError, sb.SandboxError, OSError, subprocess.SubprocessError) as exc:
        log(f"upgrade bench FAILED: {exc}")
    finally:
        clean = teardown(bench, args.keep_sandbox, uids)
    return 0 if ok and clean else 1


if __name__ == "__main__":
    sys.exit(main())
