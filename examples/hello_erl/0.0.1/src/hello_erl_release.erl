%% @doc The release's migrations, as `inv migrate` / `inv migrations` run them
%% (`hello_erl_release:migrate()`, `rollback(To)`, `pending()`).
%%
%% The "database" is a DETS file under the release root, data/hello.dets, made on
%% first use. A migration is a file priv/migrations/NNN_name.term of
%% `{set, Key, Value}.` terms: applying it sets those keys and records
%% `{{migration, NNN}, Name, Undo}`, where Undo puts back what each key held.
%% A version adds migrations by adding files to priv/, so this module stays the
%% same in every version. The file is opened and closed by every call: a fresh VM
%% can migrate while the node runs.
-module(hello_erl_release).

-export([migrate/0, rollback/1, pending/0, applied/0]).

-define(TABLE, hello_erl_migrations).

%% The migrations not applied yet, oldest first: ["001_greetings", ...].
pending() ->
    with_table(fun(T) -> [Name || {_, Name, _} <- todo(T)] end).

%% Apply the pending migrations in order; returns the names applied.
migrate() ->
    with_table(fun(T) -> [up(T, M) || M <- todo(T)] end).

%% Undo the applied migrations numbered above To, newest first; returns their names.
rollback(To) when is_integer(To), To >= 0 ->
    with_table(fun(T) ->
        [down(T, M) || {N, _, _} = M <- lists:reverse(done(T)), N > To]
    end).

%% The numbers of the applied migrations.
applied() ->
    with_table(fun(T) -> [N || {N, _, _} <- done(T)] end).

done(T) ->
    lists:sort([{N, Name, Undo}
                || {{migration, N}, Name, Undo} <- dets:match_object(T, {{migration, '_'}, '_', '_'})]).

todo(T) ->
    Dir = filename:join(code:priv_dir(hello_erl), "migrations"),
    Files = lists:sort(filelib:wildcard("*.term", Dir)),
    [{N, filename:rootname(F), filename:join(Dir, F)}
     || F <- Files,
        N <- [list_to_integer(hd(string:split(F, "_")))],
        dets:lookup(T, {migration, N}) =:= []].

up(T, {N, Name, Path}) ->
    {ok, Changes} = file:consult(Path),
    Undo = [set(T, K, V) || {set, K, V} <- Changes],
    ok = dets:insert(T, {{migration, N}, Name, lists:reverse(Undo)}),
    Name.

set(T, K, V) ->
    Before = case dets:lookup(T, K) of
                 [{K, Old}] -> {K, {was, Old}};
                 [] -> {K, none}
             end,
    ok = dets:insert(T, {K, V}),
    Before.

down(T, {N, Name, Undo}) ->
    lists:foreach(fun({K, none}) -> ok = dets:delete(T, K);
                     ({K, {was, Old}}) -> ok = dets:insert(T, {K, Old})
                  end, Undo),
    ok = dets:delete(T, {migration, N}),
    Name.

with_table(Fun) ->
    File = filename:join([code:root_dir(), "data", "hello.dets"]),
    ok = filelib:ensure_dir(File),
    {ok, T} = dets:open_file(?TABLE, [{file, File}, {type, set}]),
    try Fun(T) after ok = dets:close(T) end.
