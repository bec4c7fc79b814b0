"""equal.survey's decision from the node's answers: a holder seen twice refuses the hot path, a
holder gone at the second look does not, and a second look that got no answer refuses — no
answer is not "nobody holds old code"."""

from __future__ import annotations

import base64

import pytest

from pydeliver_tasks.model import Replacing
from pydeliver_tasks.steps import equal
from pydeliver_tasks.steps.equal import HoldsOldCode, NotHotSafe

HOLDER = "<0.99.0>\thttpd\tinets\tits stack\thello_erl_page\n"
TREE = "hello_erl/hello_erl_sup\t<0.90.0>\tsupervisor\tpermanent\n"
REPLACING = Replacing(modules=("hello_erl_page",))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def answering(monkeypatch: pytest.MonkeyPatch, *answers: dict[str, str]) -> list[int]:
    asked = []
    queue = list(answers)

    def ask(hc: object, builder: str, *exprs: str) -> dict[str, str]:
        asked.append(len(exprs))
        return queue.pop(0)
    monkeypatch.setattr(equal, "ask", ask)
    monkeypatch.setattr(equal.time, "sleep", lambda s: None)
    return asked


def test_a_holder_seen_twice_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, {"holders": b64(HOLDER), "tree": b64(TREE)}, {"holders": b64(HOLDER)})
    with pytest.raises(HoldsOldCode, match=r"httpd \(<0\.99\.0>, application inets\) holds "
                                           r"hello_erl_page in its stack"):
        equal.survey(None, "rebar3", REPLACING)  # type: ignore[arg-type]


def test_a_holder_gone_at_the_second_look_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = answering(monkeypatch, {"holders": b64(HOLDER), "tree": b64(TREE)}, {"holders": ""})
    said, tree = equal.survey(None, "rebar3", REPLACING)  # type: ignore[arg-type]
    assert said == "no process holds code or funs of the replaced modules"
    assert list(tree.children) == ["hello_erl/hello_erl_sup"] and asked == [2, 1]


@pytest.mark.parametrize("second", [{"no_answer": "erl_call: failed to connect"},
                                    {"holders": b64(HOLDER), "not_inspected": "3"}])
def test_a_second_look_without_an_answer_refuses(monkeypatch: pytest.MonkeyPatch,
                                                  second: dict[str, str]) -> None:
    answering(monkeypatch, {"holders": b64(HOLDER), "tree": b64(TREE)}, second)
    with pytest.raises(NotHotSafe) as caught:
        equal.survey(None, "rebar3", REPLACING)  # type: ignore[arg-type]
    assert not isinstance(caught.value, HoldsOldCode)
    assert "could not" in caught.value.message


def test_a_first_look_without_the_tree_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, {"holders": ""})
    with pytest.raises(NotHotSafe, match="could not read the supervision trees"):
        equal.survey(None, "rebar3", REPLACING)  # type: ignore[arg-type]
