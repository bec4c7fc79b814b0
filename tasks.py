"""Developer tasks for this repository (run with the venv's inv: .venv/bin/inv --list).

The deploy tasks themselves live in pydeliver_tasks (a user's tasks.py imports `ns` from there);
these only lint, test, benchmark and demo this repository.
"""

from invoke import Collection, task


@task
def lint(c):
    """ruff over the whole tree."""
    c.run(".venv/bin/ruff check .", pty=False)


@task(help={"integration": "also run the integration tests (real sshd hosts, builds, nodes)",
            "k": "only tests matching this pytest -k expression"})
def test(c, integration=False, k=""):
    """Unit tests (fast); --integration for the whole suite."""
    paths = "tests" if integration else "tests/unit"
    select = f" -k {k!r}" if k else ""
    c.run(f".venv/bin/pytest -q {paths}{select}", pty=False)


@task
def bench(c):
    """Deploy + start on 1, 4 and 8 sandbox hosts; prints the ratios (see bench/README.md)."""
    c.run(".venv/bin/python bench/deploy_scale.py", pty=False)


@task
def demo(c):
    """The README demo: sandbox hosts, build, deploy, start, show each host's page."""
    c.run("bash examples/demo.sh", pty=False)


ns = Collection(lint, test, bench, demo)
