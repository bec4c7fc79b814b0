#!/usr/bin/env escript
%% -*- erlang -*-
%% Run by pydeliver_tasks on the build host, inside an assembled release dir that holds two
%% versions (the new build plus the old release extracted next to it).
%%
%%   facts RELDIR NAME VSN...        print what Python needs to plan the upgrade, one fact a line:
%%     rel  VSN ERTS
%%     app  VSN APP APPVSN DEPS(comma list or -) HAS_APPUP(0|1)
%%     mod  VSN APP MODULE MD5 BEHAVIOURS(comma list or -) CODE_CHANGE(0|1) INIT_HASH(or -)
%%          START_HASH(or -)
%%     cons VSN MODULE MD5              (mix's consolidated protocols)
%%   appup RELDIR APP APPVSN FILE    check FILE's first term is an appup, copy it into the ebin
%%                                   (FILE.appup.src: evaluated first, as rebar3 does)
%%   depappups RELDIR NAME VSN SRC PROFILE OWN
%%                                   for each application of release VSN that is not one of OWN
%%                                   (comma list) and has no ebin/APP.appup: find the appup it
%%                                   ships in the build tree (src/ or ebin/ of _build, deps,
%%                                   _checkouts, apps, vendor), install it like `appup`, say:
%%     appup APP APPVSN found PATH  |  appup APP APPVSN none DIR,DIR...
%%   relup RELDIR NAME OLD NEW       systools:make_relup into releases/NEW/relup
%%
%% Facts, not decisions: which upgrade is safe and what the appup says is decided in Python,
%% where it is unit-tested.

main(["facts", RelDir, Name | Vsns]) ->
    add_lib_paths(RelDir),
    lists:foreach(fun(V) -> facts(RelDir, Name, V) end, Vsns),
    halt(0);
main(["appup", RelDir, App, AppVsn, File]) ->
    case install_appup(RelDir, App, AppVsn, File) of
        ok -> halt(0);
        {error, Why} -> fail("~s", [Why])
    end;
main(["depappups", RelDir, Name, Vsn, Src, Profile, Own]) ->
    RelFile = filename:join([RelDir, "releases", Vsn, Name ++ ".rel"]),
    {ok, [{release, _, _, Apps}]} = file:consult(RelFile),
    Mine = string:tokens(Own, ","),
    lists:foreach(fun(A) -> dep_appup(RelDir, Src, Profile, Mine, A) end, Apps),
    halt(0);
main(["relup", RelDir, Name, Old, New]) ->
    Rel = fun(V) -> filename:join([RelDir, "releases", V, Name]) end,
    Path = filelib:wildcard(filename:join([RelDir, "lib", "*", "ebin"])),
    Opts = [{path, Path}, {outdir, filename:join([RelDir, "releases", New])}, silent, no_warn_sasl],
    case systools:make_relup(Rel(New), [Rel(Old)], [Rel(Old)], Opts) of
        {ok, _Relup, _Mod, Warnings} ->
            [io:format("warning: ~p~n", [W]) || W <- Warnings],
            halt(0);
        {error, Mod, Reason} ->
            fail("make_relup: ~s", [Mod:format_error(Reason)])
    end;
main(_) ->
    fail("usage: facts RELDIR NAME VSN... | appup RELDIR APP APPVSN FILE | "
         "depappups RELDIR NAME VSN SRC PROFILE OWN | relup RELDIR NAME OLD NEW", []).

%% OTP reads an appup's first term: check it has the shape, write it into the release's ebin.
install_appup(RelDir, App, AppVsn, File) ->
    Read = case lists:suffix(".src", File) of
               true -> case file:script(File) of
                           {ok, T} -> {ok, [T]};
                           Error -> Error
                       end;
               false -> file:consult(File)
           end,
    case Read of
        {ok, [{_, Up, Down} = Term | _]} when is_list(Up), is_list(Down) ->
            Dest = filename:join([RelDir, "lib", App ++ "-" ++ AppVsn, "ebin", App ++ ".appup"]),
            ok = file:write_file(Dest, io_lib:format("~p.~n", [Term]));
        {ok, Other} ->
            {error, io_lib:format("~s: expected a {Vsn, UpFrom, DownTo} term first, got ~P",
                                  [File, Other, 8])};
        {error, Reason} ->  % a posix atom, or {Line, Module, Description} from the parser
            {error, io_lib:format("~s: ~s", [File, file:format_error(Reason)])}
    end.

dep_appup(RelDir, Src, Profile, Own, AppSpec) ->
    App = atom_to_list(element(1, AppSpec)),
    AppVsn = element(2, AppSpec),
    Ebin = filename:join([RelDir, "lib", App ++ "-" ++ AppVsn, "ebin"]),
    Shipped = filelib:is_regular(filename:join(Ebin, App ++ ".appup")),
    case lists:member(App, Own) orelse Shipped orelse not filelib:is_dir(Ebin) of
        true -> ok;
        false ->
            Dirs = [filename:join([Src | Parts]) ||
                       Parts <- [["_build", Profile, "lib", App, "src"],
                                 ["_build", Profile, "lib", App, "ebin"],
                                 ["_build", "default", "lib", App, "src"],  % rebar3's deps
                                 ["deps", App, "src"], ["deps", App, "ebin"],  % mix's deps
                                 ["_checkouts", App, "src"], ["apps", App, "src"],
                                 ["vendor", App, "src"]]],  % a vendored path dependency
            Files = [F || D <- Dirs, Ext <- [".appup", ".appup.src"],
                          F <- [filename:join(D, App ++ Ext)], filelib:is_regular(F)],
            case Files of
                [File | _] ->
                    case install_appup(RelDir, App, AppVsn, File) of
                        ok -> out("appup ~s ~s found ~s", [App, AppVsn, File]);
                        {error, Why} -> fail("~s", [Why])
                    end;
                [] ->
                    Shown = [string:prefix(D, Src ++ "/") || D <- Dirs, filelib:is_dir(D)],
                    out("appup ~s ~s none ~s", [App, AppVsn, case Shown of
                                                                  [] -> "-";
                                                                  _ -> lists:join(",", Shown)
                                                              end])
            end
    end.

fail(Fmt, Args) ->
    io:format(standard_error, Fmt ++ "~n", Args),
    halt(1).

%% Elixir's debug_info backend (elixir_erl) must be loadable to read Elixir beams' init/1.
add_lib_paths(RelDir) ->
    code:add_pathsz(filelib:wildcard(filename:join([RelDir, "lib", "*", "ebin"]))).

facts(RelDir, Name, Vsn) ->
    RelFile = filename:join([RelDir, "releases", Vsn, Name ++ ".rel"]),
    {ok, [{release, _, {erts, Erts}, Apps}]} = file:consult(RelFile),
    out("rel ~s ~s", [Vsn, Erts]),
    lists:foreach(fun(A) -> app_facts(RelDir, Vsn, element(1, A), element(2, A)) end, Apps),
    Cons = filelib:wildcard(filename:join([RelDir, "releases", Vsn, "consolidated", "*.beam"])),
    lists:foreach(fun(F) -> {ok, {M, Md5}} = beam_lib:md5(F),
                            out("cons ~s ~s ~s", [Vsn, M, hex(Md5)]) end, Cons).

app_facts(RelDir, Vsn, App, AppVsn) ->
    Ebin = filename:join([RelDir, "lib", atom_to_list(App) ++ "-" ++ AppVsn, "ebin"]),
    Deps = case file:consult(filename:join(Ebin, atom_to_list(App) ++ ".app")) of
               {ok, [{application, _, Props}]} ->
                   proplists:get_value(applications, Props, []) ++
                       proplists:get_value(included_applications, Props, []);
               _ -> []
           end,
    HasAppup = filelib:is_regular(filename:join(Ebin, atom_to_list(App) ++ ".appup")),
    out("app ~s ~s ~s ~s ~w", [Vsn, App, AppVsn, list(Deps), bool(HasAppup)]),
    lists:foreach(fun(F) -> mod_facts(Vsn, App, F) end,
                  lists:sort(filelib:wildcard(filename:join(Ebin, "*.beam")))).

mod_facts(Vsn, App, File) ->
    {ok, {M, Md5}} = beam_lib:md5(File),
    {Behaviours, CodeChange} =
        case beam_lib:chunks(File, [attributes, exports]) of
            {ok, {_, [{attributes, Attrs}, {exports, Exports}]}} ->
                {lists:append([V || {K, V} <- Attrs, K =:= behaviour orelse K =:= behavior]),
                 lists:member({code_change, 3}, Exports) orelse
                     lists:member({code_change, 4}, Exports)};
            _ -> {[], false}
        end,
    Has = fun(Names) -> lists:any(fun(B) -> lists:member(B, Behaviours) end, Names) end,
    Init = case Has([supervisor, 'Elixir.Supervisor']) of
               true -> code_hash(File, [{init, 1}]);
               false -> "-"
           end,
    Start = case Has([application, 'Elixir.Application']) of
                true -> code_hash(File, [{start, 2}, {stop, 1}, {prep_stop, 1}]);
                false -> "-"
            end,
    out("mod ~s ~s ~s ~s ~s ~w ~s ~s",
        [Vsn, App, M, hex(Md5), list(Behaviours), bool(CodeChange), Init, Start]).

%% A hash of the given functions' code and of every local function they reach, without line
%% numbers: equal hashes mean equal child specs (init/1) or equal boot work (start/2).
code_hash(File, Roots) ->
    try
        {ok, {M, [{debug_info, {debug_info_v1, Backend, Data}}]}} =
            beam_lib:chunks(File, [debug_info]),
        {ok, Forms} = Backend:debug_info(erlang_v1, M, Data, []),
        Funs = maps:from_list([{{N, A}, erl_parse:map_anno(fun(_) -> 0 end, F)}
                               || {function, _, N, A, _} = F <- Forms]),
        Reached = reach(Roots, Funs, #{}),
        [_ | _] = maps:keys(Reached),
        integer_to_list(erlang:phash2(lists:sort(maps:to_list(Reached))))
    catch _:_ -> "-"
    end.

reach([], _Funs, Seen) -> Seen;
reach([Key | Rest], Funs, Seen) ->
    case {maps:is_key(Key, Seen), maps:find(Key, Funs)} of
        {false, {ok, Form}} -> reach(locals(Form) ++ Rest, Funs, Seen#{Key => Form});
        _ -> reach(Rest, Funs, Seen)
    end.

%% Local calls and local fun references in a form (the functions it reaches in its module).
locals({call, _, {atom, _, F}, Args} = T) -> [{F, length(Args)} | deeper(T)];
locals({'fun', _, {function, F, A}}) when is_atom(F) -> [{F, A}];
locals(T) -> deeper(T).

deeper(T) when is_tuple(T) -> lists:append([locals(E) || E <- tuple_to_list(T)]);
deeper(L) when is_list(L) -> lists:append([locals(E) || E <- L]);
deeper(_) -> [].

list([]) -> "-";
list(Atoms) -> lists:join(",", [atom_to_list(A) || A <- Atoms]).

bool(true) -> 1;
bool(false) -> 0.

hex(Bin) -> string:lowercase(binary_to_list(binary:encode_hex(Bin))).

out(Fmt, Args) -> io:format(Fmt ++ "~n", Args).
