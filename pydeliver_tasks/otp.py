"""Erlang expressions we evaluate on running nodes, and the parsing of what they print.

Each query is written once, in Erlang, and returns one marker string `PDT{key=value;...}`; relx's
`eval` prints it as an Erlang term, mix's `rpc` prints it through IO.puts, so the parser looks for
the marker anywhere in the output rather than trusting either format.
"""

from __future__ import annotations

import base64
import re

_MARKER_RE = re.compile(r"PDT\{([^}]*)\}")

# Facts that prove a node is up and serving our release: its OS pid, whether our OTP application
# is started, the release version it runs, and its name. The version is the boot script's, unless
# release_handler says the booted release was hot-upgraded since (its status is then `old`, or a
# newer one is `current`); a cold deploy leaves RELEASES stale, so release_handler alone can lie.
NODE_FACTS = """
begin
  PdtApp = {app},
  PdtRunning = lists:keymember(PdtApp, 1, application:which_applications()),
  PdtScript = element(2, init:script_id()),
  PdtVsn = case catch release_handler:which_releases() of
    PdtRels when is_list(PdtRels) ->
      PdtCurrent = [V || {{_, V, _, current}} <- PdtRels],
      PdtPermanent = [V || {{_, V, _, permanent}} <- PdtRels],
      case {{lists:keyfind(PdtScript, 2, PdtRels), PdtCurrent ++ PdtPermanent}} of
        {{{{_, _, _, old}}, [PdtV | _]}} -> PdtV;
        {{{{_, _, _, permanent}}, _}} when PdtCurrent =/= [] -> hd(PdtCurrent);
        _ -> PdtScript
      end;
    _ -> PdtScript
  end,
  lists:flatten(io_lib:format("PDT{{pid=~s;app=~s;vsn=~s;node=~s}}",
                              [os:getpid(), PdtRunning, PdtVsn, node()]))
end.
"""


def node_facts_expr(app: str) -> str:
    """The Erlang expression (ending in '.') that reports a node's facts; app is validated."""
    return NODE_FACTS.format(app=app).strip()


def elixir_wrapper(erlang_expr: str) -> str:
    """Elixir code for mix's `rpc` that evaluates an Erlang expression and prints its string.

    The expression travels base64-encoded so no quoting rule of either language can bite.
    """
    b64 = base64.b64encode(erlang_expr.encode()).decode()
    return (
        f'{{:ok, t, _}} = :erl_scan.string(String.to_charlist(Base.decode64!("{b64}"))); '
        "{:ok, e} = :erl_parse.parse_exprs(t); "
        "{:value, v, _} = :erl_eval.exprs(e, []); IO.puts(v)"
    )


def parse_marker(output: str) -> dict[str, str] | None:
    """The key=value pairs of the last PDT{...} marker in output, or None when absent."""
    found = _MARKER_RE.findall(output or "")
    if not found:
        return None
    pairs = (item.partition("=") for item in found[-1].split(";") if item)
    return {k: val for k, _, val in pairs}
