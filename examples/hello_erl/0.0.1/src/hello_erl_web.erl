%% @doc inets httpd callback module: GET / renders hello_erl_page with a fresh
%% visit count, GET /slow?ms=N the same after N ms (at most 30 s), GET /health
%% returns "ok", anything else is a 404.
-module(hello_erl_web).

-export([do/1]).

-include_lib("inets/include/httpd.hrl").

do(#mod{method = Method, request_uri = Uri}) ->
    [Path | Query] = string:split(Uri, "?"),
    route(Method, Path, Query).

route("GET", "/", _) ->
    reply(200, "text/html; charset=utf-8", hello_erl_page:render(hello_erl_counter:hit()));
route("GET", "/slow", Query) ->
    Page = hello_erl_page:slowly(slow_ms(Query), hello_erl_counter:hit()),
    reply(200, "text/html; charset=utf-8", Page);
route("GET", "/health", _) ->
    reply(200, "text/plain", <<"ok">>);
route(_Method, _Path, _) ->
    reply(404, "text/plain", <<"not found">>).

slow_ms(["ms=" ++ Digits]) ->
    case string:to_integer(Digits) of
        {N, ""} when N >= 0 -> min(N, 30000);
        _ -> 0
    end;
slow_ms(_) ->
    0.

reply(Code, Type, Body) ->
    Head = [{code, Code},
            {content_type, Type},
            {content_length, integer_to_list(byte_size(Body))}],
    {proceed, [{response, {response, Head, [Body]}}]}.
