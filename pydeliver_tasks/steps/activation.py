"""After an activation failed or its connection dropped, the host is asked, never assumed: log in
again (bounded retries), let the journal finish or roll back what was interrupted, and report
what boots next as read from the host."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import otp
from ..commands import activation as acmd
from ..fleet.host import CommandResult, HostContext, HostFailure

RETRIES = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Activation:
    """What the host says after `recover`: the version start_erl.data names, what the journal
    did now (`finished=V` / `rolledback=V` / ""), and whether a journal is still there."""

    boots: str
    recovered: str
    journal: str

    def sentence(self) -> str:
        did = {"finished": "an interrupted activation of {v} was completed",
               "rolledback": "an interrupted activation of {v} was rolled back"}
        kind, _, vsn = self.recovered.partition("=")
        head = did[kind].format(v=vsn) + "; " if kind in did else ""
        if self.journal != "none":
            return head + f"an activation journal ({self.journal}) is still on the host"
        return head + (f"{self.boots} boots next" if self.boots else "no release boots next")


def parse(output: str) -> Activation:
    facts = otp.parse_markers(output) or {}
    return Activation(facts.get("boots", ""), facts.get("recovered", ""),
                      facts.get("journal", "none"))


def recover(hc: HostContext, looked: CommandResult | None = None) -> Activation:
    """Finish or roll back an interrupted activation (one round trip); say it when it did.
    looked: what acmd.recover_and_look printed (the recovery already ran in it)."""
    res = looked or hc.run(acmd.recover(hc.host.deploy_path))
    state = parse(res.stdout)
    if not res.ok or acmd.RECOVER_FAILED in res.stdout:
        raise HostFailure("could not check the activation journal "
                          f"({hc.host.deploy_path}/.deliver)", res.tail(),
                          f"inv doctor --host {hc.host.name}")
    if state.recovered:
        hc.say(state.sentence())
    return state


def read_back(hc: HostContext) -> Activation | None:
    """The host's state after a failure: reconnect with bounded retries, recover, read. None when
    the host could not be reached at all (then nothing may be claimed about it)."""
    for pause in (0.0, *RETRIES):
        time.sleep(pause)
        hc.reconnect()
        try:
            return recover(hc)
        except HostFailure:
            continue
    return None


def after_failure(hc: HostContext, version: str, before: str, what: str) -> tuple[bool, str]:
    """(activated?, one true sentence) for a failed activation of `version` (`before` booted
    next until then), from the host read back."""
    state = None if hc.dry_run else read_back(hc)
    if state is None:
        return False, (f"{what}; the host could not be reached again to read its state: run "
                       f"inv doctor --host {hc.host.name} before anything else")
    if state.journal != "none":
        return False, f"{what}; {state.sentence()}: run inv doctor --host {hc.host.name}"
    if state.boots == version and before != version:
        return True, f"{what}, but the host completed the activation: {state.sentence()}"
    if state.boots == before:
        was = f"{before} boots next, as before" if before else "no release boots next, as before"
        return False, f"{what}; nothing of {version} was activated: {was}"
    return False, f"{what}; {state.sentence()}"
