%% @doc The "/" page: a small template with {{name}} placeholders.
%%
%% The greeting word comes from the greeter application, and the page names the
%% running greeter version (read at run time, so a hot upgrade of greeter shows).
-module(hello_erl_page).

-export([render/1, slowly/2]).

-define(TEMPLATE,
"<!DOCTYPE html>
<html>
<head><title>hello_erl</title></head>
<body>
<h1>{{word}} from hello_erl {{version}} (visits: {{visits}}) greeter {{greeter}}</h1>
</body>
</html>
").

%% @doc Renders the page for the given visit count.
-spec render(non_neg_integer()) -> binary().
render(Visits) ->
    {ok, Vsn} = application:get_key(hello_erl, vsn),
    {ok, GreeterVsn} = application:get_key(greeter, vsn),
    fill(?TEMPLATE, [{"word", greeter:word()},
                     {"version", Vsn},
                     {"visits", integer_to_list(Visits)},
                     {"greeter", GreeterVsn}]).

%% @doc The page after Ms milliseconds spent in this module (GET /slow?ms=N): a long request
%% that runs this module's code, like a slow page of a real product.
-spec slowly(non_neg_integer(), non_neg_integer()) -> binary().
slowly(Ms, Visits) ->
    timer:sleep(Ms),
    render(Visits).

fill(Template, Vars) ->
    Filled = lists:foldl(
               fun({Key, Value}, Acc) ->
                       string:replace(Acc, "{{" ++ Key ++ "}}", Value, all)
               end, Template, Vars),
    unicode:characters_to_binary(Filled).
