"""A release store the team shares (`deliver.store` = ssh:// or s3://, see store_url).

The local store (`.deliver/releases`) stays the working copy every step reads; this module keeps
it and the shared one in step: a build publishes what it stored, and a step that needs a version
(deploy, build.upgrade's FROM, upgrade, `--to latest`) fetches it first when only the shared
store has it. Every file is published under a temporary name and renamed; the `.sha256` beside a
tarball is published last, so a tarball counts as there only once it is complete, and every
fetched tarball is checked against it. Different versions built at once never touch the same
names; the same version published twice at once can leave a tarball that does not match its
`.sha256`, which the next fetch refuses (rebuild it).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from invoke.exceptions import Exit

from .. import validation as v
from ..commands import store as store_commands
from ..config import Settings
from ..fleet import HostContext, HostFailure, say
from ..model import Host, manifest_name, release_file_name
from ..store import sha256_of
from ..store_url import StoreUrl


class StoreUnreachable(Exit):
    """The shared store could not be read or written: exit 1, the store and the reason named."""

    def __init__(self, url: StoreUrl, what: str, reason: str, hint: str) -> None:
        super().__init__(f"release store {url.text}: {what}: {reason}\n  next: {hint}", code=1)


class Backend(Protocol):
    def names(self) -> set[str]: ...
    def read(self, name: str) -> str | None: ...
    def get(self, name: str, dest: Path) -> None: ...
    def put(self, src: Path, name: str) -> None: ...


class SshStore:
    """A directory on an SSH host, through the same connections and host-key policy as hosts."""

    def __init__(self, settings: Settings, url: StoreUrl) -> None:
        self.url, self.path = url, url.path
        self.hc = HostContext(Host("store", url.host, url.user, url.port, url.path), settings,
                              dry_run=False)

    def _run(self, command: str, what: str) -> str:
        try:
            res = self.hc.run(command, changes=False)
        except HostFailure as exc:
            raise StoreUnreachable(self.url, what, exc.message, exc.hint or "check the store "
                                   "host, its SSH user and key, and known_hosts") from None
        if not res.ok:
            raise StoreUnreachable(self.url, what, res.tail(3) or f"exit {res.exited}",
                                   "check the directory and the store user's permissions")
        return res.stdout

    def names(self) -> set[str]:
        return set(self._run(store_commands.listing(self.path), "cannot list it").split())

    def read(self, name: str) -> str | None:
        return self._run(store_commands.read(self.path, name), f"cannot read {name}")

    def get(self, name: str, dest: Path) -> None:
        try:
            self.hc.get(f"{store_commands.directory(self.path)}/{name}", dest)
        except (OSError, HostFailure) as exc:
            raise StoreUnreachable(self.url, f"cannot fetch {name}", str(exc),
                                   "check the store host and run again") from None

    def put(self, src: Path, name: str) -> None:
        temporary = f".{name}.{os.urandom(6).hex()}.part"
        self._run(store_commands.prepare(self.path), "cannot create its directory")
        try:
            self.hc.put(src, f"{store_commands.directory(self.path)}/{temporary}")
        except (OSError, HostFailure) as exc:
            raise StoreUnreachable(self.url, f"cannot upload {name}", str(exc),
                                   "check the store's free space and permissions") from None
        self._run(store_commands.publish(self.path, temporary, name), f"cannot publish {name}")


class S3Store:
    """A bucket and prefix of any S3 API (AWS, MinIO, Ceph, moto), through boto3 and its
    credential chain (AWS_* variables, ~/.aws): no secret passes through our config."""

    def __init__(self, settings: Settings, url: StoreUrl) -> None:
        self.url, self.bucket, self.prefix = url, url.bucket, url.path
        try:  # an optional extra: loaded by name where it is needed, a clear error without it
            boto3 = importlib.import_module("boto3")
            self.errors = importlib.import_module("botocore.exceptions")
        except ImportError:
            raise v.InvalidInput("an s3:// deliver.store needs boto3: pip install "
                                 "'pydeliver-tasks[s3]'") from None
        self.client = boto3.client("s3", endpoint_url=settings.store_endpoint or None)

    def _call(self, what: str, fn: Callable[..., dict], **kwargs: object) -> dict:
        try:
            return fn(**kwargs) or {}
        except (self.errors.BotoCoreError, self.errors.ClientError) as exc:
            raise StoreUnreachable(self.url, what, str(exc), "check deliver.store_endpoint, the "
                                   "bucket and the AWS credentials (AWS_ACCESS_KEY_ID ...)") from None

    def names(self) -> set[str]:
        found: set[str] = set()
        token: dict[str, str] = {}
        while True:
            page = self._call("cannot list it", self.client.list_objects_v2, Bucket=self.bucket,
                              Prefix=self.prefix, **token)
            for item in page.get("Contents", []):
                rest = item["Key"][len(self.prefix):]
                if "/" not in rest:
                    found.add(rest)
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def read(self, name: str) -> str | None:
        got = self._call(f"cannot read {name}", self.client.get_object, Bucket=self.bucket,
                         Key=self.prefix + name)
        return got["Body"].read().decode()

    def get(self, name: str, dest: Path) -> None:
        self._call(f"cannot fetch {name}", self.client.download_file, Bucket=self.bucket,
                   Key=self.prefix + name, Filename=str(dest))

    def put(self, src: Path, name: str) -> None:
        """Uploaded beside, then copied to its name (S3 has no rename) and the upload removed."""
        temporary = f"{self.prefix}.part/{name}.{os.urandom(6).hex()}"
        self._call(f"cannot upload {name}", self.client.upload_file, Filename=str(src),
                   Bucket=self.bucket, Key=temporary)
        self._call(f"cannot publish {name}", self.client.copy_object, Bucket=self.bucket,
                   Key=self.prefix + name, CopySource={"Bucket": self.bucket, "Key": temporary})
        self._call(f"cannot publish {name}", self.client.delete_object, Bucket=self.bucket,
                   Key=temporary)


def backend(settings: Settings) -> tuple[Backend, StoreUrl] | None:
    url = settings.shared_store
    if url is None:
        return None
    return (SshStore(settings, url) if url.scheme == "ssh" else S3Store(settings, url)), url


def _sha(text: str | None) -> str:
    words = (text or "").split()
    return words[0] if words else ""


def pull(settings: Settings, version: str, kinds: tuple[str, ...] = ("release",),
         dry_run: bool = False) -> list[str]:
    """Fetch into the local store what the shared store has of `version` and the local one
    lacks (tarballs sha256-checked, with their .sha256/.source and an upgrade's plan)."""
    found = backend(settings)
    if found is None:
        return []
    shared, url = found
    if dry_run:  # a dry run connects nowhere
        say(f"would fetch {version} from the release store {url.text} if the local copy lacks it")
        return []
    app, local, fetched = settings.release, settings.store, []
    names = shared.names()
    for kind in kinds:
        name = release_file_name(app, version, kind)
        extras = [f"{name}.source"] + ([manifest_name(app, version)] if kind == "upgrade" else [])
        if not (local / name).exists() and f"{name}.sha256" in names:
            local.mkdir(parents=True, exist_ok=True)
            sidecar = shared.read(f"{name}.sha256") or ""
            part = local / f"{name}.part"
            shared.get(name, part)
            if sha256_of(part) != _sha(sidecar):
                part.unlink()
                raise StoreUnreachable(url, f"{name} does not match its .sha256",
                                       "published twice at once, or damaged",
                                       f"build it again: inv build.release --tag {version} --rebuild")
            part.replace(local / name)
            (local / f"{name}.sha256").write_text(sidecar)
            fetched.append(name)
        for extra in extras:  # a plan exists without a tarball when the upgrade is not hot-safe
            if extra in names and not (local / extra).exists():
                shared.get(extra, local / extra)
    for name in fetched:
        say(f"fetched {name} from the release store {url.text}")
    return fetched


def publish(settings: Settings, tarball: Path, dry_run: bool = False) -> bool:
    """Publish a stored tarball (and its .source, an upgrade's plan), its .sha256 last; skipped
    when the shared store holds the same file (same sha256). True when something was sent."""
    found = backend(settings)
    if found is None:
        return False
    shared, url = found
    name = tarball.name
    if dry_run:
        say(f"would publish {name} to the release store {url.text}")
        return False
    sidecar = tarball.with_name(f"{name}.sha256")
    if f"{name}.sha256" in shared.names() and \
            _sha(shared.read(f"{name}.sha256")) == _sha(sidecar.read_text()):
        say(f"{name} is in the release store {url.text} already")
        return False
    shared.put(tarball, name)
    extras = [f"{name}.source"]
    if name.endswith(".upgrade.tar.gz"):
        extras.append(manifest_name(settings.release, name[len(settings.release) + 1:
                                                             -len(".upgrade.tar.gz")]))
    for extra in extras:
        if (tarball.parent / extra).exists():
            shared.put(tarball.parent / extra, extra)
    shared.put(sidecar, sidecar.name)
    say(f"published {name} to the release store {url.text}")
    return True


def publish_plan(settings: Settings, version: str) -> None:
    """An upgrade found not hot-safe has a plan and no tarball: the plan alone is published."""
    found, plan = backend(settings), settings.store / manifest_name(settings.release, version)
    if found is not None and plan.exists():
        found[0].put(plan, plan.name)


def versions(settings: Settings) -> list[str]:
    """The versions of complete release tarballs in the shared store ([] without one)."""
    found = backend(settings)
    if found is None:
        return []
    head, tail = f"{settings.release}_", ".release.tar.gz.sha256"
    return [n[len(head):-len(tail)] for n in found[0].names()
            if n.startswith(head) and n.endswith(tail)]
