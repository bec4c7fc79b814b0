"""Modules bound with pydeliver_tasks.lazy: not loaded by importing the package, loaded whole by
load_all before the fleet's threads touch them (Python 3.11's lazy modules race otherwise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RACE = """
import sys, threading
from pydeliver_tasks import lazy
from pydeliver_tasks.fleet import host
assert type(host.ssh).__name__ == "_LazyModule"
lazy.load_all()
errors = []
def use():
    try:
        host.ssh.connection, host.paramiko.SSHException
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=use) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(errors, type(host.ssh).__name__)
"""


def test_after_load_all_many_threads_find_every_name() -> None:
    out = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[] module", out


def test_a_missing_module_is_named_at_once() -> None:
    code = ("from pydeliver_tasks import lazy\ntry:\n    lazy.module('pdt_no_such_module')\n"
            "except ModuleNotFoundError as exc:\n    print(exc.name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "pdt_no_such_module"


def test_load_all_leaves_main_thread_modules_alone() -> None:
    """A deploy or a ping loads what the fleet's threads use, never GitPython or the importer
    (bound with fleet=False: their first use is in the main thread)."""
    code = ("import sys\nimport pydeliver_tasks.tasks\nfrom pydeliver_tasks import lazy\n"
            "lazy.load_all()\n"
            "print(sorted(m for m in ('git.repo', 'pydeliver_tasks.importer.scan', 'paramiko.transport',"
            " 'pydeliver_tasks.fleet.ssh') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "['paramiko.transport', 'pydeliver_tasks.fleet.ssh']", out
