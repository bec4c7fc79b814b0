%% @doc inets httpd callback module: GET / renders hello_erl_page with a fresh
%% visit count, GET /health returns "ok", anything else is a 404.
-module(hello_erl_web).

-export([do/1]).

-include_lib("inets/include/httpd.hrl").

do(#mod{method = Method, request_uri = Uri}) ->
    [Path | _Query] = string:split(Uri, "?"),
    route(Method, Path).

route("GET", "/") ->
    reply(200, "text/html; charset=utf-8", hello_erl_page:render(hello_erl_counter:hit()));
route("GET", "/health") ->
    reply(200, "text/plain", <<"ok">>);
route(_Method, _Path) ->
    reply(404, "text/plain", <<"not found">>).

reply(Code, Type, Body) ->
    Head = [{code, Code},
            {content_type, Type},
            {content_length, integer_to_list(byte_size(Body))}],
    {proceed, [{response, {response, Head, [Body]}}]}.
