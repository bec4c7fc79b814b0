"""`python -m pydeliver_tasks TASK` (or the `pydeliver` command): the same tasks as `inv`, for a
project that has no tasks.py yet — `pydeliver deliver.import` writes it from an edeliver config.
A project with a tasks.py uses `inv` (its invoke.yaml is read there)."""

from __future__ import annotations

from invoke import Program

from . import __version__, ns

program = Program(namespace=ns, version=__version__, name="pydeliver", binary="pydeliver")


def main() -> None:
    program.run()


if __name__ == "__main__":
    main()
