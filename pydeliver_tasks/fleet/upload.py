"""A resumable upload over the host's SFTP channel: an interrupted upload leaves a `.part`
whose bytes a later run goes on from — once they are checked to be the release's own."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import lazy
from ..commands import tarball as tcmd
from .host import HostContext
from .output import size_text

paramiko = lazy.module("paramiko")

# one SFTP write request per SSH packet (OpenSSH takes 32 KiB packets): 16 KiB writes moved a
# 9 MB tarball over loopback in ~75 ms, 256 KiB writes (each cut in 32 KiB requests, each of
# those in two packets) in ~220 ms (medians of 10 fresh connections, paramiko 3, OpenSSH 9.2)
_CHUNK = 1 << 14


class UploadLost(Exception):
    """An upload stopped part way: how far it got (the `.part` keeps those bytes)."""

    def __init__(self, sent: int, size: int, reason: str, connected: bool = False) -> None:
        super().__init__(reason)
        self.sent, self.size, self.reason = sent, size, reason
        self.connected = connected  # the host refused a write (full disk?), the link is up

    def sentence(self, name: str) -> str:
        what = "the host refused a write (SFTP said: {r})" if self.connected else \
            "the connection was lost ({r})"
        return (f"{what.format(r=self.reason)} during the upload of {name} "
                f"({size_text(self.sent)} of {size_text(self.size)})")


def put_resuming(hc: HostContext, local: Path, remote: str) -> int:
    """Upload to `remote`, going on from the bytes an interrupted upload left there (a shorter
    file with the same first bytes); -> the byte it started at. A lost connection or a refused
    write is an UploadLost."""
    size = local.stat().st_size
    if hc.dry_run or hc.local:
        hc.put(local, remote)
        return 0
    sent = start = 0
    try:
        sftp = hc.conn.sftp()
        try:
            have = sftp.stat(remote).st_size or 0
        except OSError:
            have = 0
        start = have if 0 < have < size and same_prefix(hc, local, remote, have) else 0
        sent = start
        with local.open("rb") as src, sftp.open(remote, "ab" if start else "wb") as dst:
            dst.set_pipelined(True)
            src.seek(start)
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
                sent += len(chunk)
        # paramiko can drop the status of the last pipelined writes (seen: a full disk, no
        # error raised): what the host holds is read back, not assumed
        got = sftp.stat(remote).st_size or 0
        if got != size:
            sent = got
            raise OSError(f"the host holds {got} of {size} bytes after the upload")
    except (EOFError, OSError, paramiko.SSHException) as exc:
        transport = hc.conn.transport
        # an SFTP status answer (plain OSError) on a live link is the host refusing a write;
        # EOFError, SSHException or a socket error is the link itself going
        refused = (transport is not None and transport.is_active() and isinstance(exc, OSError)
                   and not isinstance(exc, (ConnectionError, TimeoutError)))
        why = str(exc) or ("the server closed it" if isinstance(exc, EOFError)
                           else type(exc).__name__)
        raise UploadLost(sent, size, why, refused) from exc
    return start


def same_prefix(hc: HostContext, local: Path, remote: str, length: int) -> bool:
    """Are the first `length` bytes on the host those of `local`? (A write refused part way and
    space freed later can leave a hole: such bytes are not resumed from.)"""
    digest = hashlib.sha256()
    with local.open("rb") as src:
        left = length
        while left and (chunk := src.read(min(_CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    there = hc.run(tcmd.prefix_sha256(remote, length), changes=False).stdout.strip()
    if there != digest.hexdigest():
        hc.say(f"the {length} bytes an interrupted upload left differ from the release: "
               "uploading from the start")
        return False
    return True
