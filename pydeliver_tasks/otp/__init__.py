"""Erlang expressions we evaluate on running nodes, and the parsing of what they print.

Each query is written once, in Erlang, and returns one marker string `PDT{key=value;...}`; relx's
`eval` prints it as an Erlang term, mix's `rpc` prints it through IO.puts, so the parser looks for
the marker anywhere in the output rather than trusting either format.
"""

from __future__ import annotations

import base64
import re

from .control import decoded

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
    found = _MARKER_RE.findall(decoded(output))
    if not found:
        return None
    pairs = (item.partition("=") for item in found[-1].split(";") if item)
    return {k: val for k, _, val in pairs}


def parse_markers(output: str) -> dict[str, str] | None:
    """Every PDT{...} marker in output merged (later keys win): the answer of `combined`."""
    found = _MARKER_RE.findall(decoded(output))
    if not found:
        return None
    pairs = (item.partition("=") for marker in found for item in marker.split(";") if item)
    return {k: val for k, _, val in pairs}


def combined(*exprs: str) -> str:
    """Several of our expressions as one (one rpc instead of several; each keeps its own
    variables inside a fun); their markers are read back with parse_markers."""
    parts = [f"(fun() -> {e.rstrip().rstrip('.')} end)()" for e in exprs]
    return " ++ ".join(parts) + "."


# Release handling on the running node. Terms we print go through PdtText, which turns { } ;
# into ( ) , so a reason never breaks the PDT{...} marker.
_TEXT_FUN = (
    "PdtText = fun(T) -> [case C of ${ -> $(; $} -> $); $; -> $,; $\\n -> $\\s; _ -> C end"
    " || C <- lists:flatten(io_lib:format(\"~0p\", [T]))] end"
)

# What release_handler knows: every release's version:status, and whether sasl runs at all.
RELEASE_STATE = """
begin
  {text},
  PdtRels = case catch release_handler:which_releases() of
    L when is_list(L) -> string:join([V ++ ":" ++ atom_to_list(S) || {{_, V, _, S}} <- L], ",");
    Err -> "error:" ++ PdtText(Err)
  end,
  lists:flatten(io_lib:format("PDT{{pid=~s;releases=~s}}", [os:getpid(), PdtRels]))
end.
"""

# Install `vsn` hot: make it known as unpacked unless release_handler knows it already (our own
# checked extraction put its files there), then evaluate the relup — the new release's to go up,
# the running one's to go down. Not yet permanent: a crash now still boots the permanent one.
# release_handler applies releases/<vsn>/sys.config as the new env: while it installs, that file
# holds the env a fresh boot computed (pdt_fresh.config, when present), then the release's own.
HOT_INSTALL = """
begin
  {text},
  PdtRel = filename:join([code:root_dir(), "releases", "{vsn}", "{app}.rel"]),
  PdtKnown = [S || {{_, V, _, S}} <- release_handler:which_releases(), V =:= "{vsn}"],
  PdtUnpacked = case PdtKnown of
    [] -> release_handler:set_unpacked(PdtRel, []);
    _ -> {{ok, "{vsn}"}}
  end,
  PdtSys = filename:join([code:root_dir(), "releases", "{vsn}", "sys.config"]),
  PdtOrig = file:read_file(PdtSys),
  PdtSwap = case file:read_file(filename:join([code:root_dir(), "releases", "{vsn}",
                                               "pdt_fresh.config"])) of
    {{ok, PdtFresh}} -> file:write_file(PdtSys, PdtFresh);
    _ -> none
  end,
  PdtResult = try case PdtUnpacked of
      {{ok, _}} -> release_handler:install_release("{vsn}", [{{update_paths, true}}]);
      PdtErr -> PdtErr
    end
  after
    case {{PdtSwap, PdtOrig}} of
      {{ok, {{ok, PdtO}}}} -> file:write_file(PdtSys, PdtO);
      {{ok, _}} -> file:delete(PdtSys);
      _ -> ok
    end
  end,
  PdtOk = element(1, PdtResult) =:= ok,
  lists:flatten(io_lib:format("PDT{{pid=~s;ok=~s;result=~s}}",
                              [os:getpid(), PdtOk, PdtText(PdtResult)]))
end.
"""

MAKE_PERMANENT = """
begin
  {text},
  PdtResult = release_handler:make_permanent("{vsn}"),
  lists:flatten(io_lib:format("PDT{{pid=~s;ok=~s;result=~s}}",
                              [os:getpid(), PdtResult =:= ok, PdtText(PdtResult)]))
end.
"""

# Is the new code really running? For every beam in the current lib dir of the given apps: the
# loaded module's md5 must equal the file's, and no process may still run old code of it.
CODE_CHECK = """
begin
  {text},
  PdtDirs = [code:lib_dir(A) || A <- [{apps}], is_list(code:lib_dir(A))],
  PdtBeams = lists:append([filelib:wildcard(filename:join([D, "ebin", "*.beam"])) || D <- PdtDirs]),
  PdtCheck = fun(F) ->
    {{ok, {{M, Md5}}}} = beam_lib:md5(F),
    case code:is_loaded(M) of
      false -> case code:which(M) of F -> []; Other -> [{{M, path, Other}}] end;
      _ -> (case M:module_info(md5) of Md5 -> []; _ -> [{{M, stale}}] end)
           ++ (case erlang:check_old_code(M) of true -> [{{M, old_code}}]; false -> [] end)
    end
  end,
  PdtBad = lists:append([PdtCheck(F) || F <- PdtBeams]),
  PdtList = fun(L) -> string:join(L, ",") end,
  lists:flatten(io_lib:format("PDT{{pid=~s;dirs=~s;beams=~b;stale=~s;old_code=~s;path=~s}}",
    [os:getpid(), PdtList([filename:basename(D) || D <- PdtDirs]), length(PdtBeams),
     PdtList([atom_to_list(M) || {{M, stale}} <- PdtBad]),
     PdtList([atom_to_list(M) || {{M, old_code}} <- PdtBad]),
     PdtList([atom_to_list(M) ++ "@" ++ PdtText(P) || {{M, path, P}} <- PdtBad])]))
end.
"""


def _expr(template: str, **values: str) -> str:
    """A template filled in, with PdtText (terms made safe for the marker) defined."""
    return template.format(text=_TEXT_FUN, **values).strip()


def release_state_expr() -> str:
    return _expr(RELEASE_STATE)


def hot_install_expr(app: str, vsn: str) -> str:
    """app and vsn are validated (no quote or backslash can reach the Erlang string)."""
    return _expr(HOT_INSTALL, app=app, vsn=vsn)


def make_permanent_expr(vsn: str) -> str:
    return _expr(MAKE_PERMANENT, vsn=vsn)


def code_check_expr(apps: list[str]) -> str:
    """apps: validated application names (plain atoms)."""
    return _expr(CODE_CHECK, apps=", ".join(apps))


def parse_releases(value: str) -> dict[str, str]:
    """`0.0.2:permanent,0.0.1:old` -> {version: status}; {} when release_handler errored."""
    if value.startswith("error:"):
        return {}
    pairs = (item.rpartition(":") for item in value.split(",") if item)
    return {vsn: status for vsn, _, status in pairs}
