"""The node's control channel: how we ask a running node without booting an Erlang VM per question.

The release's own client (`bin/<app> rpc` for mix, `eval` for relx) resolves the node's name,
cookie and distribution exactly as its scripts do, but mix's boots a VM for every question
(~0.3 CPU-s). So the first answer through it also leaves, on the host, what `erl_call` (the C
client shipped in ERTS since OTP 23; no VM) needs to reach the same node: the node's name, its
name kind, the erl_call path and — in a 0700 directory, 0400 file — its cookie, which never
travels. Later questions go through erl_call. The file is named by a digest of the stage env, so
a changed env (another cookie or node name) goes through the release's client again and gets
its verdict (e.g. a cookie mismatch) instead of using what an older env found.
"""

from __future__ import annotations

import base64
import re

# Where the node writes it, relative to the release root (the node's code:root_dir()).
CONTROL_DIR = ".deliver/control"

# Runs on the node (through the release's own client) and answers "": it never fails or changes
# the answer of the question it rides with (otp.combined):
# any problem (no erl_call, OTP < 23, a read-only root) just leaves no file, and the slow path
# stays in use. The directory is 0700 before the cookie is written into it.
SETUP = """
begin
  PdtCtlDir = filename:join([code:root_dir(), ".deliver", "control"]),
  PdtCtlCalls = [filename:join([code:root_dir(), "erts-" ++ erlang:system_info(version), "bin",
                                "erl_call"]),
                 filename:join([code:root_dir(), "bin", "erl_call"]),
                 os:find_executable("erl_call")],
  PdtCtl = fun() ->
    [PdtCall | _] = [C || C <- PdtCtlCalls, is_list(C), filelib:is_regular(C)],
    true = list_to_integer(erlang:system_info(otp_release)) >= 23,
    true = is_alive(),
    _ = file:make_dir(filename:dirname(PdtCtlDir)),
    _ = file:make_dir(PdtCtlDir),
    ok = file:change_mode(PdtCtlDir, 8#700),
    {{ok, PdtOld}} = file:list_dir(PdtCtlDir),
    [ok = file:delete(filename:join(PdtCtlDir, F)) || F <- PdtOld],
    PdtCookie = filename:join(PdtCtlDir, ".erlang.cookie"),
    ok = file:write_file(PdtCookie, atom_to_list(erlang:get_cookie())),
    ok = file:change_mode(PdtCookie, 8#400),
    PdtKind = case net_kernel:longnames() of true -> "name"; _ -> "sname" end,
    PdtKey = filename:join(PdtCtlDir, "{key}"),
    ok = file:write_file(PdtKey ++ ".tmp", [atom_to_list(node()), " ", PdtKind, " ", PdtCall,
                                          "\\n"]),
    ok = file:rename(PdtKey ++ ".tmp", PdtKey)
  end,
  catch PdtCtl(),
  ""
end.
"""

# What erl_call evaluates: the question travels base64-encoded (erl_call echoes its input when a
# request fails, and a marker in that echo must not read as an answer), and its answer comes back
# base64-encoded (erl_call prints terms: a character above 255 would come back as integers).
_FAST = (
    'PdtSrc = unicode:characters_to_list(base64:decode("{b64}")), '
    "{{ok, PdtToks, _}} = erl_scan:string(PdtSrc), "
    "{{ok, PdtExprs}} = erl_parse:parse_exprs(PdtToks), "
    "{{value, PdtAnswer, _}} = erl_eval:exprs(PdtExprs, []), "
    "case catch unicode:characters_to_binary(PdtAnswer) of "
    'PdtBin when is_binary(PdtBin) -> "PDTB64:" ++ base64:encode_to_string(PdtBin); '
    "_ -> PdtAnswer end.\n"
)

_B64_RE = re.compile(r"PDTB64:([A-Za-z0-9+/=]+)")


def setup_expr(key: str) -> str:
    """key: hex digits only (commands.control_key)."""
    if not re.fullmatch(r"[0-9a-f]+", key):
        raise ValueError(f"control key must be hex digits: {key!r}")
    return SETUP.format(key=key).strip()


def fast_expr(expr: str) -> str:
    """Our expression (ending in '.') as erl_call -e evaluates it; newline-terminated, as
    erl_call requires."""
    source = expr.rstrip()
    source = source if source.endswith(".") else source + "."
    return _FAST.format(b64=base64.b64encode(source.encode()).decode())


def decoded(output: str) -> str:
    """Output with every PDTB64:<base64> answer replaced by its text."""
    def text(m: re.Match[str]) -> str:
        try:
            return base64.b64decode(m.group(1)).decode("utf-8", "replace")
        except ValueError:
            return m.group(0)
    return _B64_RE.sub(text, output or "")
