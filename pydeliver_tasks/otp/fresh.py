"""Erlang expressions that make and check "equal to a fresh boot" during a hot upgrade.

- FRESH_ENV writes `releases/<vsn>/pdt_fresh.config`: the application env a boot of <vsn> on this
  host would have (mix: computed in a fresh `bin/<app> eval` VM of <vsn>, where the release's
  config providers such as runtime.exs have run with the host's env; relx: `.app` env merged with
  sys.config, or sys.config.src rendered with the host's env as relx's start script does; the
  core applications keep what their boot set, under the new sys.config's values).
  The install swaps it in for sys.config while release_handler installs, so the new env is applied
  once with config_change/3 called, and puts the release's own sys.config back.
- ENV_CHECK compares the node's env of the applications it computed with that file; TREE
  snapshots the supervision trees; HOLDERS finds processes that hold funs of, or run, code that
  the upgrade replaces.

Multi-line results travel base64-encoded inside the PDT{...} marker (see otp.parse_marker). No
backslash may appear in these expressions: relx's `eval` passes them through `echo`, which eats
escapes (tabs are [9], a `$` in a regex is [$]).
"""

from __future__ import annotations

import base64

from . import _expr
from .appup import atom

# Applications whose env belongs to the VM and the boot, not to the release's config: kept as
# the release's sys.config has them, never compared.
CORE_APPS = ("kernel", "stdlib", "sasl", "compiler", "elixir")

_CORE = "[" + ", ".join(CORE_APPS) + "]"

FRESH_ENV = """
begin
  {text},
  PdtDir = filename:join([code:root_dir(), "releases", "{vsn}"]),
  PdtRelApps = case file:consult(filename:join(PdtDir, "{app}.rel")) of
    {{ok, [{{release, _, _, PdtRA}}]}} -> PdtRA;
    _ ->  % release_handler removes the .rel of releases it unpacked: RELEASES lists their apps
      {{ok, [PdtKnown]}} = file:consult(filename:join([code:root_dir(), "releases", "RELEASES"])),
      hd([[{{A, AV}} || {{A, AV, _}} <- Libs] || {{release, _, "{vsn}", _, Libs, _}} <- PdtKnown])
  end,
  PdtCore = {core},
  PdtApps = [{{element(1, A), element(2, A)}} || A <- PdtRelApps],
  PdtParse = fun(Bin) ->
    {{ok, Toks, _}} = erl_scan:string(unicode:characters_to_list(Bin)),
    {{ok, T}} = erl_parse:parse_term(Toks), T end,
  PdtOverrides = {overrides},
  PdtGetenv = fun(K) -> case lists:keyfind(K, 1, PdtOverrides) of
    {{_, V}} -> V; false -> os:getenv(K, "") end end,
  PdtRender = fun(Src) ->
    Found = case re:run(Src, "[$][{{]([A-Za-z_][A-Za-z0-9_]*)(:-[^}}]*)?[}}]",
                        [global, {{capture, [0, 1, 2], binary}}]) of
      {{match, M}} -> M; nomatch -> [] end,
    lists:foldl(fun([Whole, K, Default], B) ->
                  V = case {{PdtGetenv(binary_to_list(K)), Default}} of
                    {{"", <<":-", D/binary>>}} -> D;
                    {{Val, _}} -> unicode:characters_to_binary(Val)
                  end,
                  binary:replace(B, Whole, V, [global])
                end, Src, lists:usort(Found)) end,
  PdtSysText = case file:read_file(filename:join(PdtDir, "sys.config.src")) of
    {{ok, PdtSrc}} -> PdtRender(PdtSrc);
    _ -> case file:read_file(filename:join(PdtDir, "sys.config")) of
           {{ok, PdtB}} -> PdtB; _ -> <<"[].">> end
  end,
  PdtSys = PdtParse(PdtSysText),
  PdtEnv = case {mode} of
    booted ->
      [application:load(A) || {{A, _}} <- PdtApps],
      [{{A, lists:sort(application:get_all_env(A))}} || {{A, _}} <- PdtApps];
    files ->
      [begin
         PdtConf = case lists:keyfind(A, 1, PdtSys) of {{_, C}} -> C; false -> [] end,
         PdtBase = case lists:member(A, PdtCore) of
           true -> application:get_all_env(A);  % the boot set some of it (kernel's logger...)
           false ->
             PdtAppFile = filename:join([code:root_dir(), "lib", atom_to_list(A) ++ "-" ++ AV,
                                         "ebin", atom_to_list(A) ++ ".app"]),
             {{ok, [{{application, _, PdtProps}}]}} = file:consult(PdtAppFile),
             proplists:get_value(env, PdtProps, [])
         end,
         {{A, lists:ukeymerge(1, lists:ukeysort(1, PdtConf), lists:ukeysort(1, PdtBase))}}
       end || {{A, AV}} <- PdtApps]
  end,
  PdtNames = [A || {{A, _}} <- PdtApps],
  PdtConfig = PdtEnv ++ [E || {{A, _}} = E <- PdtSys, not lists:member(A, PdtNames)],
  PdtOut = unicode:characters_to_binary(io_lib:format(
    "%% pydeliver_tasks: the env a boot of {vsn} on this host has~n~tp.~n", [PdtConfig])),
  PdtBack = (catch PdtParse(PdtOut)),
  case PdtBack =:= PdtConfig of
    true ->
      ok = file:write_file(filename:join(PdtDir, "pdt_fresh.config"), PdtOut),
      lists:flatten(io_lib:format("PDT{{ok=true;apps=~s}}",
                                  [string:join([atom_to_list(A) || A <- PdtNames], ",")]));
    false ->
      "PDT{{ok=false;result=the computed application env holds values a config file cannot hold}}"
  end
end.
"""

ENV_CHECK = """
begin
  {text},
  PdtFile = filename:join([code:root_dir(), "releases", "{vsn}", "pdt_fresh.config"]),
  {{ok, [PdtConfig]}} = file:consult(PdtFile),
  PdtCompared = [{apps}],
  PdtLoaded = [A || {{A, _, _}} <- application:loaded_applications()],
  PdtDiff = lists:append([
    begin
      PdtHave = lists:sort(application:get_all_env(A)),
      PdtWant = lists:sort(W),
      PdtKeys = lists:usort([K || {{K, _}} <- PdtHave ++ PdtWant]),
      [atom_to_list(A) ++ "." ++ PdtText(K) || K <- PdtKeys,
       lists:keyfind(K, 1, PdtHave) =/= lists:keyfind(K, 1, PdtWant)]
    end || {{A, W}} <- PdtConfig, lists:member(A, PdtLoaded), lists:member(A, PdtCompared)]),
  lists:flatten(io_lib:format("PDT{{pid=~s;apps=~b;differ=~s}}",
    [os:getpid(), length(PdtCompared), string:join(lists:sublist(PdtDiff, 12), ",")]))
end.
"""

# Every supervised process of the release's own (non-core) applications, one line each:
# path (app/child id/...), pid or `undefined`, worker|supervisor, restart type (or -).
TREE = """
begin
  {text},
  PdtCore = {core},
  PdtWalk = fun W(Path, Sup, Depth) ->
    case catch gen_server:call(Sup, which_children, 3000) of
      L when is_list(L), Depth < 12 ->
        lists:append([begin
          P = Path ++ "/" ++ PdtText(Id),
          Restart = case catch supervisor:get_childspec(Sup, Id) of
            {{ok, #{{restart := R}}}} -> atom_to_list(R); _ -> "-" end,
          Line = string:join([P, PdtText(Pid), PdtText(Type), Restart], [9]),
          case {{Type, is_pid(Pid)}} of
            {{supervisor, true}} -> [Line | W(P, Pid, Depth + 1)];
            _ -> [Line]
          end
        end || {{Id, Pid, Type, _}} <- L]);
      _ -> []
    end
  end,
  PdtTop = fun(A) ->
    case catch application_master:get_child(application_controller:get_master(A)) of
      {{Pid, _}} when is_pid(Pid) -> [string:join([atom_to_list(A), PdtText(Pid), "supervisor", "-"], [9])
                                     | PdtWalk(atom_to_list(A), Pid, 0)];
      _ -> []
    end
  end,
  PdtLines = lists:append([PdtTop(A) || {{A, _, _}} <- application:which_applications(),
                           not lists:member(A, PdtCore)]),
  lists:flatten(io_lib:format("PDT{{pid=~s;tree=~s}}",
    [os:getpid(), base64:encode_to_string(unicode:characters_to_binary(
                                            string:join(PdtLines, [10])))]))
end.
"""

# Processes that would not survive replacing the given modules, found before anything changes:
# a local fun created by a replaced module held in gen_* state, the process dictionary or an ETS
# table (check_process_code does not see those: the fun fails with badfun after the purge), or a
# process whose stack runs a replaced module's code (it is killed by the purge) — unless the
# process is one that the relup suspends and upgrades itself (its module is in `suspended`).
HOLDERS = """
begin
  {text},
  PdtReplaced = [{replaced}],
  PdtDeadline = erlang:monotonic_time(millisecond) + 15000,
  PdtSuspended = [{suspended}],
  PdtCore = {core},
  PdtList = fun L(_, [], N) -> {{[], N}};
                L(Wk, [H | R], N) -> {{A, N1}} = Wk(H, N), {{B, N2}} = L(Wk, R, N1), {{A ++ B, N2}};
                L(Wk, Improper, N) -> Wk(Improper, N)
            end,
  PdtWalk = fun W(_, N) when N > 20000 -> {{[], N}};
                W(T, N) when is_function(T) ->
                  case {{erlang:fun_info(T, type), erlang:fun_info(T, module)}} of
                    {{{{type, local}}, {{module, M}}}} -> {{[M || lists:member(M, PdtReplaced)], N + 1}};
                    _ -> {{[], N + 1}}
                  end;
                W(T, N) when is_list(T) -> PdtList(W, T, N);
                W(T, N) when is_tuple(T) -> PdtList(W, tuple_to_list(T), N);
                W(T, N) when is_map(T) -> PdtList(W, maps:to_list(T), N);
                W(_, N) -> {{[], N + 1}}
            end,
  PdtFound = fun(T) -> lists:usort(element(1, PdtWalk(T, 0))) end,
  PdtMod = fun(P) -> case proc_lib:initial_call(P) of
    {{M, _, _}} -> M; false -> case erlang:process_info(P, initial_call) of
      {{initial_call, {{M, _, _}}}} -> M; _ -> undefined end end end,
  PdtApp = fun(P) -> case application:get_application(P) of {{ok, A}} -> A; _ -> none end end,
  PdtName = fun(P) -> case erlang:process_info(P, registered_name) of
    {{registered_name, N}} when is_atom(N) -> atom_to_list(N);
    _ -> "initial call " ++ PdtText(PdtMod(P)) end end,
  PdtOne = fun(P) ->
    App = PdtApp(P),
    Mod = PdtMod(P),
    Skip = lists:member(App, PdtCore) orelse lists:member(Mod, PdtSuspended) orelse P =:= self(),
    Late = erlang:monotonic_time(millisecond) > PdtDeadline,
    case {{Skip, Late}} of
      {{true, _}} -> [];
      {{false, true}} -> [late];
      {{false, false}} ->
        Dict = case erlang:process_info(P, dictionary) of {{dictionary, D}} -> D; _ -> [] end,
        State = case lists:keyfind('$initial_call', 1, Dict) of
          {{_, {{_, init, 1}}}} -> (catch sys:get_state(P, 500));  % gen_server, gen_statem...
          _ -> none
        end,
        Stack = case erlang:process_info(P, current_stacktrace) of
          {{current_stacktrace, S}} -> [M || {{M, _, _, _}} <- S, lists:member(M, PdtReplaced)];
          _ -> [] end,
        [{{P, App, Where, M}} || {{Where, Ms}} <- [{{"its state", PdtFound(State)}},
                                                 {{"its process dictionary", PdtFound(Dict)}},
                                                 {{"its running code", lists:usort(Stack)}}],
                                M <- Ms]
    end
  end,
  PdtEts = lists:append([
    case {{ets:info(T, owner), ets:info(T, size), ets:info(T, protection)}} of
      {{O, Size, Prot}} when is_pid(O), is_integer(Size), Size < 5000, Prot =/= private ->
        case lists:member(PdtApp(O), PdtCore) of
          true -> [];
          false -> [{{O, PdtApp(O), "ETS table " ++ PdtText(T), M}}
                    || M <- PdtFound(catch ets:tab2list(T))]
        end;
      _ -> []
    end || T <- ets:all()]),
  PdtSeen = lists:append([PdtOne(P) || P <- erlang:processes()]),
  PdtAll = [H || H <- PdtSeen, H =/= late] ++ PdtEts,
  PdtLines = [string:join([PdtText(P), PdtName(P), PdtText(A), W, PdtText(M)], [9])
              || {{P, A, W, M}} <- PdtAll],
  lists:flatten(io_lib:format("PDT{{pid=~s;holders=~s;not_inspected=~b}}",
    [os:getpid(), base64:encode_to_string(unicode:characters_to_binary(
                                            string:join(PdtLines, [10]))),
     length([late || late <- PdtSeen])]))
end.
"""


# Error reports (crashes, supervisor reports, Logger.error) logged while the upgrade installs and
# is verified: a logger handler writing them to ROOT/tmp/pdt_upgrade_errors.log, added before the
# install and read and removed after the checks.
def _atoms(names: list[str]) -> str:
    return ", ".join(atom(n) for n in names)


# the stage env as terms, written by the tool on the host (commands.ENV_TERMS): read from a file
# on the node so that no secret value stands on the command line of the eval
_ENV_TERMS = ('case file:consult(filename:join([code:root_dir(), ".deliver", "env.eterm"])) of '
              '{ok, PdtEnvTerms} -> PdtEnvTerms; _ -> [] end')


def fresh_env_expr(app: str, vsn: str, booted: bool) -> str:
    """Write releases/<vsn>/pdt_fresh.config. booted: this runs in a fresh VM of <vsn> whose
    config providers ran (mix eval, with the stage env sourced); otherwise from the release's
    files (relx), rendering sys.config.src with the stage env (the host's env terms file) over
    the node's OS env."""
    # a fresh VM knows every application's env (kernel's too: the boot sets some of it); from
    # the files, the core applications (same version in both releases: a change is unsafe) keep
    # what their boot set on the running node, under the new sys.config's values
    return _expr(FRESH_ENV, app=app, vsn=vsn, core=_CORE,
                 mode="booted" if booted else "files",
                 overrides="[]" if booted else _ENV_TERMS)


def env_check_expr(vsn: str, apps: list[str]) -> str:
    """Compare the node's env of `apps` (those FRESH_ENV computed) with pdt_fresh.config."""
    return _expr(ENV_CHECK, vsn=vsn, apps=_atoms(apps))


def tree_expr() -> str:
    return _expr(TREE, core=_CORE)


def holders_expr(replaced: list[str], suspended: list[str]) -> str:
    return _expr(HOLDERS, replaced=_atoms(replaced), suspended=_atoms(suspended), core=_CORE)


def decode_lines(value: str) -> list[list[str]]:
    """Tab-separated lines from a base64 marker value."""
    text = base64.b64decode(value or "").decode(errors="replace")
    return [line.split("\t") for line in text.splitlines() if line]
