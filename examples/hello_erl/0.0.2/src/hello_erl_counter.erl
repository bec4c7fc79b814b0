%% @doc Counts page visits. State (0.0.2): #{visits => N, since => UnixSeconds}.
%%
%% 0.0.1 kept a bare integer; code_change/3 converts it on a hot upgrade
%% (and back on a downgrade).
-module(hello_erl_counter).
-behaviour(gen_server).

-export([start_link/0, hit/0, count/0]).
-export([init/1, handle_call/3, handle_cast/2, code_change/3]).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, 0, []).

%% @doc Increments the visit counter and returns the new count.
hit() ->
    gen_server:call(?MODULE, hit).

%% @doc Returns the current count without incrementing it.
count() ->
    gen_server:call(?MODULE, count).

init(Visits) ->
    {ok, new_state(Visits)}.

handle_call(hit, _From, #{visits := N} = State) ->
    {reply, N + 1, State#{visits := N + 1}};
handle_call(count, _From, #{visits := N} = State) ->
    {reply, N, State}.

handle_cast(_Msg, State) ->
    {noreply, State}.

code_change({down, _Vsn}, #{visits := N}, _Extra) ->
    {ok, N};
code_change(_Vsn, Visits, _Extra) when is_integer(Visits) ->
    {ok, new_state(Visits)};
code_change(_Vsn, State, _Extra) ->
    {ok, State}.

new_state(Visits) ->
    #{visits => Visits, since => erlang:system_time(second)}.
