"""Pure builders of the commands an ssh:// release store runs on its host (store_url): list,
read a small file, and publish a file uploaded under a temporary name by renaming it."""

from __future__ import annotations

import shlex

q = shlex.quote


def directory(path: str) -> str:
    """The store's directory as the host's shell takes it: `/~/x` is x under the login's home."""
    return path[3:] if path.startswith("/~/") else path


def listing(path: str) -> str:
    """The names in the store directory, one per line (none when it does not exist yet)."""
    d = q(directory(path))
    return f"if [ -d {d} ]; then cd {d} && ls -1A; fi"


def read(path: str, name: str) -> str:
    """A small file's text (a .sha256 or .source beside a tarball); exit 1 when it is missing."""
    return f"cat {q(directory(path) + '/' + name)}"


def prepare(path: str) -> str:
    return f"mkdir -p {q(directory(path))}"


def publish(path: str, temporary: str, name: str) -> str:
    """Make an uploaded file visible under its name at once (a rename in one directory)."""
    return f"cd {q(directory(path))} && mv -f {q(temporary)} {q(name)}"
