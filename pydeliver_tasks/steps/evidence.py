"""Failure causes named from evidence: after a check fails, is the node still there?"""

from __future__ import annotations

from ..fleet.host import HostContext, HostFailure
from .probe import log_tail, probe


class InstallFailed(HostFailure):
    """release_handler refused or failed the install (the node may restart: see hot.settle)."""


class NodeDied(HostFailure):
    """The node is gone (no BEAM of the root runs): named from that evidence, with its log."""


def dead(hc: HostContext, builder: str, when: str) -> None:
    """Raise NodeDied when no BEAM of this root runs (a failed answer is then not the cause)."""
    if not probe(hc, builder, ask=False).beams:
        raise NodeDied(f"the node died {when} (no BEAM of this release runs)", log_tail(hc))


def cause(hc: HostContext, builder: str, exc: HostFailure) -> HostFailure:
    """The failure as evidence names it: a check that failed because the node is gone is a
    NodeDied (with the log's tail), whatever the check said."""
    if isinstance(exc, (NodeDied, InstallFailed)):
        return exc
    try:
        dead(hc, builder, f"(seen after: {exc.message})")
    except NodeDied as died:
        return died
    except HostFailure:  # the host cannot be asked now: the failure stays as it was seen
        return exc
    return exc
