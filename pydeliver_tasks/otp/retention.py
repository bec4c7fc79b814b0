"""Erlang expressions for release retention, evaluated on the running node (conventions of otp.py:
one `PDT{key=value;...}` marker per answer, terms passed through PdtText).

- the node's retention state: the release its VM booted from (`init:script_id()`, what
  `init:restart()` would boot again) and release_handler's {version: status};
- `release_handler:remove_release(Vsn)`: forget a release and delete its files and the lib dirs
  no other release *release_handler knows* uses;
- `release_handler:set_removed(Vsn)`: forget it only (no file is touched) — for when releases
  on disk that release_handler does not know (cold deploys) might share its lib dirs; our own
  reference-checked removal (commands.retention.remove_version) deletes the files then.
"""

from __future__ import annotations

from .. import otp

RETENTION_STATE = """
begin
  {text},
  PdtBooted = element(2, init:script_id()),
  PdtRels = case catch release_handler:which_releases() of
    L when is_list(L) -> string:join([V ++ ":" ++ atom_to_list(S) || {{_, V, _, S}} <- L], ",");
    Err -> "error:" ++ PdtText(Err)
  end,
  lists:flatten(io_lib:format("PDT{{pid=~s;booted=~s;releases=~s}}",
                              [os:getpid(), PdtBooted, PdtRels]))
end.
"""

FORGET = """
begin
  {text},
  PdtResult = (catch release_handler:{fun}("{vsn}")),
  lists:flatten(io_lib:format("PDT{{pid=~s;ok=~s;result=~s}}",
                              [os:getpid(), PdtResult =:= ok, PdtText(PdtResult)]))
end.
"""


def retention_state_expr() -> str:
    """-> PDT{pid=..;booted=<vsn>;releases=<vsn>:<status>,...} (releases=error:... without sasl)."""
    return otp._expr(RETENTION_STATE)


def remove_release_expr(vsn: str) -> str:
    """vsn is validated (no quote or backslash can reach the Erlang string)."""
    return otp._expr(FORGET, fun="remove_release", vsn=vsn)


def set_removed_expr(vsn: str) -> str:
    return otp._expr(FORGET, fun="set_removed", vsn=vsn)


def parse_state(marker: dict[str, str] | None) -> tuple[str | None, dict[str, str]]:
    """(booted version, {version: status}) from a retention-state marker; (None, {}) if none."""
    if not marker or "releases" not in marker:
        return None, {}
    return marker.get("booted") or None, otp.parse_releases(marker["releases"])
