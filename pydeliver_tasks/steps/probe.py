"""One look at a host's node: its facts (an rpc) and the OS processes of this release root;
the version start_erl.data boots next; the node log's tail."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import commands, otp
from ..commands import diagnose as dcmd
from ..commands import lock as lcmd
from ..fleet.host import HostContext

POLL_SECONDS = 0.5

@dataclass
class Probe:
    """One look at a host: the node's facts (None if it did not answer) and the OS processes
    whose command line names the release root."""

    facts: dict[str, str] | None
    procs: list[tuple[int, str]] = field(default_factory=list)
    output: str = ""

    @property
    def beams(self) -> list[int]:
        return [pid for pid, _ in self.procs]

    @property
    def app_started(self) -> bool:
        return bool(self.facts and self.facts.get("app") == "true")


def parse_probe(output: str) -> Probe:
    procs: list[tuple[int, str]] = []
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(commands.PROC_MARK):
            pid, _, args = line[len(commands.PROC_MARK):].strip().partition(" ")
            if pid.isdigit():
                procs.append((int(pid), args))
        elif not line.startswith(commands.RC_MARK):
            lines.append(line)
    procs.sort()  # oldest pid first: the node before any helper VM it spawned
    return Probe(otp.parse_marker(output), procs, "\n".join(lines))


def probe(hc: HostContext, builder: str, cheap_first: bool = False, ask: bool = True,
          client: bool = True) -> Probe:
    """Ask the node (through erl_call, or the release's client, which boots a helper VM: ~0.4
    CPU-s) and list this root's VMs.

    cheap_first: list the VMs first and skip the question when there are none to ask.
    ask=False: only list the VMs (facts stay None).
    client=False: the release's client only once the node is registered with epmd; before,
    no answer when erl_call cannot reach the node (commands.node_eval).
    """
    h = hc.host
    if cheap_first or not ask:
        res = hc.run(commands.vms(h.deploy_path), changes=False)
        listed = parse_probe(res.stdout)
        if not listed.procs or not ask:
            return listed
    s = hc.settings
    res = hc.run(commands.probe(h.deploy_path, s.release, s.app, builder, h.env, client),
                 changes=False)
    return parse_probe(res.stdout + res.stderr)


def log_tail(hc: HostContext, lines: int = 30) -> str:
    return hc.run(commands.log_tail(hc.host.deploy_path, lines), changes=False).stdout.strip()


def boot_version(hc: HostContext) -> str | None:
    """The release version releases/start_erl.data names (what the next start boots)."""
    if hc.dry_run:
        return None
    words = hc.run(commands.boot_version(hc.host.deploy_path), changes=False).stdout.split()
    return words[1] if len(words) == 2 else None


@dataclass
class Proc:
    pid: int
    uptime: int
    args: str

    def flag(self, name: str) -> str | None:
        m = re.search(rf"(?:^|\s)-{name}\s+(\S+)", self.args)
        return m[1] if m else None


@dataclass
class Survey:
    deployed: bool = True
    now: int = 0
    boot_version: str = ""
    vms: list[Proc] = field(default_factory=list)
    run_erls: list[Proc] = field(default_factory=list)
    epmd: list[str] = field(default_factory=list)
    disk_kb: int | None = None
    pipe: str = ""
    crash: tuple[int, str] | None = None
    crash_since_boot: bool | None = None  # None: no boot of this tool is marked on the host
    logfile: tuple[str, int] | None = None
    log: list[str] = field(default_factory=list)
    leftovers: list[tuple[str, int]] = field(default_factory=list)  # (path, KB)
    lock: lcmd.Holder | None = None

    @property
    def epmd_running(self) -> bool:
        return any(line.startswith("epmd: up and running") for line in self.epmd)

    def epmd_has(self, name: str) -> bool:
        return any(re.match(rf"name {re.escape(name)} at port", line) for line in self.epmd)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.vms + self.run_erls]


def _proc(rest: str) -> Proc | None:
    parts = rest.strip().split(None, 2)
    if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return Proc(int(parts[0]), int(parts[1]), parts[2])


def parse_survey(output: str) -> Survey:
    s = Survey()
    for line in output.splitlines():
        mark, _, rest = line.partition(" ")
        if mark == "PDT_NOROOT":
            s.deployed = False
        elif mark == "PDT_NOW" and rest.strip().isdigit():
            s.now = int(rest)
        elif mark == "PDT_BOOT":
            words = rest.split()
            s.boot_version = words[1] if len(words) == 2 else ""
        elif mark in ("PDT_VM", "PDT_RUNERL") and (proc := _proc(rest)):
            (s.vms if mark == "PDT_VM" else s.run_erls).append(proc)
        elif mark == "PDT_EPMD":
            s.epmd.append(rest.strip())
        elif mark == "PDT_DISK" and rest.strip().isdigit():
            s.disk_kb = int(rest)
        elif mark == "PDT_PIPE":
            s.pipe = rest.strip()
        elif mark == "PDT_CRASH":
            when, _, slogan = rest.partition(" ")
            s.crash = (int(when) if when.isdigit() else 0, slogan.strip())
        elif mark == "PDT_CRASH_SINCE_BOOT":
            s.crash_since_boot = rest.strip() not in ("", "0")
        elif mark == "PDT_LOGFILE":
            path, _, when = rest.rpartition(" ")
            s.logfile = (path, int(when) if when.isdigit() else 0)
        elif mark == "PDT_LOG":
            s.log.append(rest)
        elif mark == "PDT_LEFT":
            kb, _, path = rest.strip().partition(" ")
            s.leftovers.append((path, int(kb) if kb.isdigit() else 0))
    s.lock = lcmd.parse_holder(output)
    return s


def survey(hc: HostContext) -> Survey:
    return parse_survey(hc.run(dcmd.survey(hc.host.deploy_path, hc.host.env), changes=False).stdout)
