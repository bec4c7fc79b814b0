%% @doc Top supervisor: the visit counter and a stand-alone inets httpd.
%%
%% The HTTP server listens on $HTTP_IP (default 127.0.0.1) and $HTTP_PORT
%% (default 4000), read at start. If the port cannot be bound, init fails,
%% so the application (and the release) fails to boot.
-module(hello_erl_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    Counter = #{id => hello_erl_counter,
                start => {hello_erl_counter, start_link, []}},
    Httpd = #{id => hello_erl_httpd,
              start => {inets, start, [httpd, httpd_config(), stand_alone]},
              type => supervisor},
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, [Counter, Httpd]}}.

httpd_config() ->
    {ok, Ip} = inet:parse_address(os:getenv("HTTP_IP", "127.0.0.1")),
    Port = list_to_integer(os:getenv("HTTP_PORT", "4000")),
    Root = code:lib_dir(hello_erl),
    [{port, Port},
     {bind_address, Ip},
     {server_name, "hello_erl"},
     {server_root, Root},
     {document_root, Root},
     {modules, [hello_erl_web]}].
