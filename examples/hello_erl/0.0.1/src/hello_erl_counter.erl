%% @doc Counts page visits. State (0.0.1): an integer.
-module(hello_erl_counter).
-behaviour(gen_server).

-export([start_link/0, hit/0, count/0]).
-export([init/1, handle_call/3, handle_cast/2]).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, 0, []).

%% @doc Increments the visit counter and returns the new count.
hit() ->
    gen_server:call(?MODULE, hit).

%% @doc Returns the current count without incrementing it.
count() ->
    gen_server:call(?MODULE, count).

init(Visits) ->
    {ok, Visits}.

handle_call(hit, _From, Visits) ->
    {reply, Visits + 1, Visits + 1};
handle_call(count, _From, Visits) ->
    {reply, Visits, Visits}.

handle_cast(_Msg, State) ->
    {noreply, State}.
