%% @doc hello_erl application callback: starts the top supervisor.
-module(hello_erl_app).
-behaviour(application).

-export([start/2, stop/1]).

start(_Type, _Args) ->
    hello_erl_sup:start_link().

stop(_State) ->
    ok.
