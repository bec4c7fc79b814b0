%% @doc hello_erl application callback: starts the top supervisor.
-module(hello_erl_app).
-behaviour(application).

-export([start/2, stop/1]).

%% BOOT_DELAY_MS (default 0) makes the start slow on purpose, like an app that warms
%% caches: the deploy tool must wait for it, not report the node down.
start(_Type, _Args) ->
    timer:sleep(list_to_integer(os:getenv("BOOT_DELAY_MS", "0"))),
    hello_erl_sup:start_link().

stop(_State) ->
    ok.
