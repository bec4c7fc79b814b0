"""A project's migration expression (deliver.migrations), run where the release's code is: on
the running node (commands.node_eval) or in a fresh VM of a version (commands.migrations).

The user's text is Elixir for mix (Code.eval_string) and Erlang for rebar3 (erl_eval). It
travels base64-encoded inside our own Erlang expression, which catches whatever it raises and
answers one marker, `PDT{migrated=true|false;out=<base64>}`: the value as inspect/~p prints it,
or the exception with its stack trace. No backslash appears here (relx's `eval` passes the
expression through `echo`).
"""

from __future__ import annotations

import base64

from . import parse_marker

_GUARDED = """
begin
  PdtSrc = base64:decode("@SRC@"),
  PdtB64 = fun(T) -> base64:encode_to_string(unicode:characters_to_binary(T)) end,
  {PdtOk, PdtOut} = try
    {true, @RUN@}
  catch
    PdtClass:PdtReason:PdtStack -> {false, @ERROR@}
  end,
  lists:flatten(io_lib:format("PDT{migrated=~s;out=~s}", [PdtOk, PdtB64(PdtOut)]))
end.
"""

_ELIXIR_RUN = """begin
      {PdtV, _} = 'Elixir.Code':eval_string(PdtSrc),
      'Elixir.Kernel':inspect(PdtV, [{pretty, true}, {limit, infinity}, {printable_limit, infinity}])
    end"""
_ELIXIR_ERROR = "'Elixir.Exception':format(PdtClass, PdtReason, PdtStack)"

_ERLANG_RUN = """begin
      PdtSyntax = fun({_, PdtMod, PdtWhy}) ->
        error({syntax_error, lists:flatten(PdtMod:format_error(PdtWhy))}) end,
      PdtExprs = case erl_scan:string(unicode:characters_to_list(PdtSrc)) of
        {ok, PdtToks, _} -> case erl_parse:parse_exprs(PdtToks) of
                              {ok, PdtEs} -> PdtEs;
                              {error, PdtParseError} -> PdtSyntax(PdtParseError)
                            end;
        {error, PdtScanError, _} -> PdtSyntax(PdtScanError)
      end,
      {value, PdtV, _} = erl_eval:exprs(PdtExprs, []),
      io_lib:format("~tp", [PdtV])
    end"""
_ERLANG_ERROR = """try erl_error:format_exception(PdtClass, PdtReason, PdtStack)
      catch _:_ -> io_lib:format("~p:~p~n~p", [PdtClass, PdtReason, PdtStack]) end"""


def guarded_expr(builder: str, expr: str) -> str:
    """The Erlang expression (ending in '.') that evaluates the user's `expr` and reports its
    value or its exception in the PDT marker; mix: Elixir, otherwise Erlang."""
    source = expr.strip()
    if builder != "mix" and not source.endswith("."):
        source += "\n."  # a `% comment` on the last line must not swallow the dot
    run, error = (_ELIXIR_RUN, _ELIXIR_ERROR) if builder == "mix" else (_ERLANG_RUN, _ERLANG_ERROR)
    b64 = base64.b64encode(source.encode()).decode()
    return _GUARDED.replace("@RUN@", run).replace("@ERROR@", error).replace("@SRC@", b64).strip()


def parse_result(output: str) -> tuple[bool, str] | None:
    """(True, the value) or (False, the exception and its stack trace) from the output of
    guarded_expr; None when no answer came (the node or the VM did not run it)."""
    found = parse_marker(output)
    if not found or "migrated" not in found:
        return None
    try:
        text = base64.b64decode(found.get("out", "")).decode("utf-8", "replace")
    except ValueError:
        return None
    return found["migrated"] == "true", text.strip()
