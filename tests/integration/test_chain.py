"""A user's own chain of steps (build -> deploy -> upgrade) in their tasks.py, under ONE deploy
lock (`steps.locked`), with run-level hooks — dry and real, on the sandbox (real sshd hosts, a
real mix build, real nodes hot-upgraded)."""

from __future__ import annotations

import pytest

from .conftest import http_get, project_fixture

# the user's tasks.py: our collection plus their own `ship` task built from our steps
USER_TASKS = '''
import sys
from pathlib import Path

from invoke import task

from pydeliver_tasks import hooks, ns, steps


@hooks.before_run("upgrade")
def announce(run):
    print(f"RUN-HOOK before upgrade {run.stage.name} {run.from_version}->{run.to_version} "
          f"dry={run.dry_run}", flush=True)


@hooks.after_run("upgrade")
def record(run):
    print(f"RUN-HOOK after upgrade ok={run.result.ok} hosts={len(run.result)}", flush=True)


@task
def ship(c, frm, to, dry_run=False):
    """build.upgrade -> deploy.upgrade -> upgrade, one lock over all three."""
    with steps.locked(c, "ship", dry_run=dry_run):
        built = steps.build_upgrade(c, frm, to, dry_run=dry_run)
        print(f"CHAIN built release={built.release and built.release.version}", flush=True)
        if not dry_run:  # another run meanwhile (another process) must be refused
            inv = Path(sys.executable).with_name("inv")
            other = c.run(f"{inv} restart", warn=True, hide=True)
            said = " | ".join((other.stdout + other.stderr).split(chr(10)))
            print(f"CONCURRENT rc={other.exited}: {said}", flush=True)
        steps.deploy_upgrade(c, to, dry_run=dry_run)
        result = steps.upgrade(c, frm, to, dry_run=dry_run)
        print(f"CHAIN upgrade ok={result.ok} modes="
              + ",".join(str(r.data.get("mode")) for r in result), flush=True)


ns.add_task(ship)
'''

project = project_fixture({"hello_ex": 4140})


@pytest.fixture(scope="module")
def shipping(project):
    (project.dir / "tasks.py").write_text(USER_TASKS)
    project.inv("start").ok()
    return project


def test_a_dry_chain_runs_end_to_end_and_changes_nothing(shipping) -> None:
    p = shipping
    res = p.inv("ship", "--frm", "0.0.1", "--to", "0.0.2", "--dry-run").ok()
    assert "would take the deploy lock" in res.out, res.out
    assert "CHAIN built release=None" in res.out
    assert "would upload and stage the upgrade to 0.0.2" in res.out  # not "no ... in the store"
    assert "would hot-upgrade" in res.out
    assert "RUN-HOOK" not in res.out and "would call before_run('upgrade') hook announce" in res.out
    store = p.dir / ".deliver" / "releases"
    assert not list(store.glob("hello_ex_0.0.2.*")), list(store.iterdir())
    status = p.inv("deploy.lock-status").ok()
    assert status.out.count("unlocked") == 2, status.out
    assert "ship" not in p.inv("history").ok().out
    for h in p.box.hosts:
        assert "Hello from hello_ex 0.0.1" in http_get(p.url(h))[1]


def test_a_chain_holds_one_lock_runs_hooks_and_is_audited(shipping) -> None:
    p = shipping
    res = p.inv("ship", "--frm", "0.0.1", "--to", "0.0.2", timeout=900).ok()
    assert "CHAIN built release=0.0.2" in res.out, res.out
    # the lock was held between the steps: another process was refused, naming the chain
    concurrent = next(line for line in res.out.splitlines() if line.startswith("CONCURRENT"))
    assert concurrent.startswith("CONCURRENT rc=1") and "ship" in concurrent, concurrent
    assert "RUN-HOOK before upgrade sandbox 0.0.1->0.0.2 dry=False" in res.out
    assert "RUN-HOOK after upgrade ok=True hosts=2" in res.out
    assert "CHAIN upgrade ok=True modes=hot,hot" in res.out, res.out
    for h in p.box.hosts:
        assert "from hello_ex 0.0.2" in http_get(p.url(h))[1]
    history = p.inv("history").ok().out
    for action in ("ship", "deploy.upgrade", "upgrade"):  # the chain, and each run inside it
        assert f"  {action}  0.0.1 -> 0.0.2  ok" in history or f"  {action}  - -> -  ok" in \
            history, (action, history)
    status = p.inv("deploy.lock-status").ok()
    assert status.out.count("unlocked") == 2, status.out
