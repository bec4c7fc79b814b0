"""Retention and rollback tasks: cleanup, rollback, releases.cleanup (the local store) — thin
wrappers over the steps. `inv releases` (the store) and `inv releases --stage S` (each host's
versions) are release.py's `releases` task, made the default task of the `releases` collection
built here, so that `releases.cleanup` can exist beside it (Invoke forbids a task and a
collection of the same name in one collection)."""

from __future__ import annotations

from invoke import Collection, Context, Task

from .. import steps
from ..model import Rollout
from ..versions import keep_count
from .flags import DRY, HOST, JSON, STAGE, deliver_task

KEEP = "how many good versions to keep (>= 1; default 5); the running, boots-next, permanent " \
       "and previous good versions are always kept"


@deliver_task(help={"keep": KEEP, "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON})
def cleanup(c: Context, keep: str | None = None, stage: str | None = None, host: str | None = None,
            dry_run: bool = False, json: str | None = None) -> None:
    """Remove old release versions from every host, keeping the KEEP newest good ones.

    Never removes the running version, the one that boots next, release_handler's permanent one
    or the previous good one (the one `rollback` would pick). Versions marked failed go first.
    Versions release_handler knows are removed through it (remove_release) on the running node;
    the others by deleting their releases/<vsn>, tarballs, saved bin/ and the lib dirs no
    remaining release uses. See `inv releases --stage S` for what is there.
    """
    steps.cleanup(c, keep=None if keep is None else keep_count(keep),
                      stage=stage, host=host, dry_run=dry_run, json_path=json)


@deliver_task(auto_shortflags=False,  # no -h for --hot: `inv rollback -h` must not roll back hot
              rollout=True, auto_rollback=False,
              help={"to": "version to go back to (default: each host's previous good version)",
                    "hot": "downgrade the running node through release_handler (same OS pid) "
                           "instead of restarting; for hosts that were hot-upgraded",
                    "stage": STAGE, "host": HOST, "dry_run": DRY, "json": JSON})
def rollback(c: Context, to: str | None = None, hot: bool = False, stage: str | None = None,
             host: str | None = None, dry_run: bool = False, json: str | None = None,
             rollout: Rollout | None = None) -> None:
    """Go back to the previous good version (or TO) on every host, verified.

    Cold (default): make it boot next from its files on the host (or its tarball there), stop
    the node and start it; verified: the node runs it and the health check passes. If it does
    not come up it is marked failed and the version that ran before is put back.
    --hot: release_handler downgrade on the running node, verified like `inv downgrade`.
    "Previous good" = the newest version on the host older than the running one that is not
    marked failed (--hot: among the releases release_handler knows as old).
    """
    steps.rollback(c, to=to, hot=hot, stage=stage, host=host, dry_run=dry_run, json_path=json,
                   rollout=rollout)


@deliver_task(name="cleanup", help={"keep": "how many of the newest releases to keep (>= 1; default 5)",
                            "dry_run": "print what would be removed; remove nothing"})
def store_cleanup(c: Context, keep: str = "5", dry_run: bool = False) -> None:
    """Remove all but the KEEP newest releases from the local release store.

    Their upgrade tarballs, checksums and upgrade manifests go with them. A release a kept
    version's stored upgrade starts from stays too (only its own upgrade files go).
    """
    steps.cleanup_store(c, keep=keep_count(keep), dry_run=dry_run)


def releases_collection(list_task: Task) -> Collection:
    """The `releases` collection: list_task as its default (`inv releases`), plus `cleanup`."""
    ns = Collection("releases")
    ns.add_task(list_task, name="list", default=True)
    ns.add_task(store_cleanup)
    return ns
