"""The router's index: a message tries only the routes that could match it, and the first of
those in declaration order still wins, exactly as trying every route in order would."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

from bot.chat.routing import (
    ANY_STATE,
    NO_DIALOG,
    Router,
    _state_matches,
    command_word,
    compact,
)
from bot.chat.states import Registration, all_states, find, groups
from bot.handlers import build_router
from bot.notifications.replies import Text


def _ctx(kind: str = "text", text: str = "", state: str | None = None, channel: str = "wechat"):
    return SimpleNamespace(inbound=SimpleNamespace(kind=kind, text=text, channel=channel),
                           dialog=SimpleNamespace(state=state, data={}), text=text)


def _answer(label: str):
    async def handler(ctx) -> Text:
        return Text(label)

    return handler


def _could_match(route, ctx) -> bool:
    """A route's kind, keyword, command and menu-key filters, checked the slow way: what the
    index must agree with (state filters and predicates run after it, on what it found)."""
    kind, text = ctx.inbound.kind, ctx.text
    if route.words and not (kind == "text" and compact(text) in route.words):
        keyed = False
    elif route.words:
        keyed = True
    else:
        keyed = None
    if route.commands:
        keyed = bool(keyed) or (kind == "text" and command_word(text) in route.commands)
    if route.clicks:
        keyed = bool(keyed) or (kind == "click" and ctx.inbound.text in route.clicks)
    if keyed is False:
        return False
    return not (keyed is None and route.kinds is not None and kind not in route.kinds)


async def test_a_keyword_route_declared_after_a_state_route_still_loses_to_it():
    router = Router("t")
    router.message(state="form.name")(_answer("state"))
    router.text("积分")(_answer("keyword"))
    router.command("消费", state=NO_DIALOG)(_answer("command"))
    assert await router.dispatch(_ctx(text="积分", state="form.name")) == Text("state")
    assert await router.dispatch(_ctx(text="积分")) == Text("keyword")
    assert await router.dispatch(_ctx(text="消费 1 2")) == Text("command")
    assert await router.dispatch(_ctx(text="消费 1 2", state="form.name")) == Text("state")


async def test_keyword_routes_keep_their_order_whatever_the_index_key():
    router = Router("t")
    router.when(lambda ctx: "积" in ctx.text, kinds=("text",))(_answer("predicate"))
    router.text("积分")(_answer("keyword"))
    router.event("subscribe")(_answer("event"))
    router.click("MY_CARD")(_answer("click"))
    router.fallback()(_answer("fallback"))
    assert await router.dispatch(_ctx(text="积分")) == Text("predicate")
    assert await router.dispatch(_ctx(text="余额")) == Text("fallback")
    assert await router.dispatch(_ctx(kind="subscribe")) == Text("event")
    assert await router.dispatch(_ctx(kind="click", text="MY_CARD")) == Text("click")
    assert await router.dispatch(_ctx(kind="click", text="OTHER")) == Text("fallback")


def test_a_card_message_tries_only_the_routes_that_could_match_it():
    root = build_router()
    every = list(root.routes())
    tried = root.candidates(_ctx(text="积分"))
    # The card (by keyword and by hint), the SMS 退订 by T, the shop's questions ([[faq]]: by
    # a word they contain, and as a whole in a dialog) and the fallback: not ~60 routes.
    assert [route.handler.__name__ for route in tried] == [
        "opt_out", "show_card", "show_card", "answer_faq", "answer_in_dialog",
        "not_understood"], tried
    assert len(every) > 60
    in_dialog = root.candidates(_ctx(text="积分", state="reg.phone"))
    assert {route.handler.__name__ for route in in_dialog} == {
        "phone_given", "offer_resume", "not_a_phone", "opt_out", "show_card", "answer_in_dialog",
        "not_understood"}


def test_the_index_agrees_with_trying_every_route_in_order():
    root = build_router()
    every = list(root.routes())
    texts = ["积分", "同 意", "消费 13800138000 10", "券 1", "绑定 ABC", "帮助", "取消",
             "13800138000", "123456", "王小明", "我的积分还有多少", "T", "", "员工帮助"]
    states = [None, *(state.name for state in all_states())]
    contexts = [_ctx(text=text, state=state) for text, state in itertools.product(texts, states)]
    contexts += [_ctx(kind=kind, text=key, state=state)
                 for kind, key in (("click", "MY_CARD"), ("click", "JOIN"), ("subscribe", ""),
                                   ("scan", ""), ("image", ""), ("voice", "积分"))
                 for state in states]
    contexts += [_ctx(text="T", channel="sms")]
    for ctx in contexts:
        slow = [route for route in every
                 if _could_match(route, ctx) and _state_matches(route.states, ctx.dialog.state)]
        found = root.candidates(ctx)
        assert [route for route in every if route in found] == list(found)  # declaration order
        fast = [route for route in found if _could_match(route, ctx)]
        assert fast == slow, (ctx.inbound.kind, ctx.text, ctx.dialog.state)


def test_states_are_enumerable_and_stored_by_their_old_names():
    names = {state.name for state in all_states()}
    assert {"reg.consent", "reg.phone", "reg.code", "reg.name", "reg.birthday", "reg.resume",
            "exchange.choose", "exchange.confirm", "erase.confirm", "erase.code"} <= names
    for group in groups():
        assert group.title and group.cancelled and group.states
        for state in group.states:
            assert find(state.name) is state and state.question, state
    assert find("reg.nosuchstep") is None and find(None) is None
    assert Registration.holds("reg.code") and not Registration.holds("erase.code")
    assert ANY_STATE == "*"
