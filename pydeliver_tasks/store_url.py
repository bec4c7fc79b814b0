"""`deliver.store` as a URL: a release store the team shares (edeliver's RELEASE_STORE). A
directory (today's local store), `ssh://[user@]host[:port]/path` (through the same SSH layer and
host-key policy as every host) or `s3://bucket[/prefix]` (boto3; any S3-compatible server with
`deliver.store_endpoint`). Pure: parsed and checked before anything connects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import validation as v

SCHEMES = ("ssh", "s3")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PATH = re.compile(r"[A-Za-z0-9._/~+-]+")


@dataclass(frozen=True)
class StoreUrl:
    text: str  # as given: it names the store in every message (it holds no secret)
    scheme: str  # ssh | s3
    host: str = ""  # ssh
    user: str | None = None
    port: int | None = None
    path: str = ""  # ssh: the directory on the host; s3: the key prefix ("" or ending in /)
    bucket: str = ""  # s3


def parse(text: str, where: str = "deliver.store") -> StoreUrl | None:
    """None for a local directory; a StoreUrl for ssh:// and s3://; InvalidInput naming the
    value otherwise (an unknown scheme, a password, a path with shell or `..` meaning)."""
    text = str(text).strip()
    pre = f"{where}: " if where else ""
    if "://" not in text:
        return None
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise v.InvalidInput(f"{pre}unknown scheme {scheme!r} in {text!r}: use a directory, "
                             "ssh://user@host[:port]/path or s3://bucket/prefix")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise v.InvalidInput(f"{pre}invalid URL {text!r}: {exc}") from None
    if parts.password is not None:
        raise v.InvalidInput(f"{pre}no password in the store URL {text!r}: SSH keys and the "
                             "AWS credential chain are used")
    if parts.query or parts.fragment:
        raise v.InvalidInput(f"{pre}{text!r} has a query or fragment; give only the location")
    path = parts.path
    if path and (not _PATH.fullmatch(path) or ".." in path.split("/")):
        raise v.InvalidInput(f"{pre}invalid path {path!r} in {text!r}: letters, digits, "
                             "and . _ / ~ + - only, no '..'")
    if scheme == "ssh":
        if not parts.hostname or path in ("", "/"):
            raise v.InvalidInput(f"{pre}{text!r} needs a host and a directory: "
                                 "ssh://user@host[:port]/path")
        try:
            addr = v.host_address(parts.netloc)
        except v.InvalidInput as exc:
            raise v.InvalidInput(f"{pre}{exc}") from None
        return StoreUrl(text, "ssh", addr.host, addr.user, addr.port, path)
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or parts.username or port:
        raise v.InvalidInput(f"{pre}invalid bucket in {text!r}: s3://bucket/prefix, the bucket "
                             "3-63 lowercase letters, digits, . and -")
    prefix = path.strip("/")
    return StoreUrl(text, "s3", path=f"{prefix}/" if prefix else "", bucket=bucket)
