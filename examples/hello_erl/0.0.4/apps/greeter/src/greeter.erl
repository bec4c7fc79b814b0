%% @doc A library application of hello_erl (in this repository): the page's greeting word.
-module(greeter).

-export([word/0]).

%% @doc The greeting word (greeter 1.0.1).
-spec word() -> string().
word() ->
    "Hiya".
