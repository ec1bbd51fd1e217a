"""The stand-in's message/mass/send: msg_id and msg_data_id, 45065 for a clientmsgid it has
seen, 2 to 10,000 openids, 4 a month per follower (the rest filtered), what each follower
received, and the signed, encrypted MASSSENDJOBFINISH it posts to the bot afterwards."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.channels.wechat import WeChatChannel
from bot.config import WeChatConfig
from bot.sandbox.wechat_server import WECHAT_STATE, WeChatState, create_wechat_app

APP_ID, SECRET = "wx0123456789abcdef", "s3cret"
ACCOUNT = WeChatConfig(app_id=APP_ID, app_secret=SECRET, token="tok123",
                       encoding_aes_key="kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ")
MASS = "/cgi-bin/message/mass/send"


@pytest.fixture
async def client():
    async with TestClient(TestServer(create_wechat_app(APP_ID, SECRET))) as c:
        yield c


def state_of(client: TestClient) -> WeChatState:
    return client.server.app[WECHAT_STATE]


async def mass(client: TestClient, openids: list[str], content: str = "周末双倍积分",
               client_msg_id: str | None = None) -> dict:
    resp = await client.post("/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": APP_ID, "secret": SECRET})
    token = (await resp.json())["access_token"]
    body = {"touser": openids, "msgtype": "text", "text": {"content": content}}
    if client_msg_id:
        body["clientmsgid"] = client_msg_id
    resp = await client.post(MASS, json=body, params={"access_token": token})
    return await resp.json()


async def test_a_mass_send_answers_its_ids_and_each_follower_receives_it(client):
    answer = await mass(client, ["o_a", "o_b"], client_msg_id="c1")
    assert answer["errcode"] == 0 and answer["msg_id"] and answer["msg_data_id"]
    state = state_of(client)
    assert [(m.openid, m.content, m.via) for m in state.messages] == [
        ("o_a", "周末双倍积分", "mass"), ("o_b", "周末双倍积分", "mass")]
    assert state.messages_for("o_a")[0]["via"] == "mass"  # what the sandbox chat shows


async def test_a_repeated_clientmsgid_is_refused_with_the_first_msg_id(client):
    first = await mass(client, ["o_a", "o_b"], client_msg_id="c1")
    again = await mass(client, ["o_a", "o_b"], client_msg_id="c1")
    assert again["errcode"] == 45065 and again["msg_id"] == first["msg_id"]
    assert len(state_of(client).messages) == 2 and len(state_of(client).mass) == 1
    other = await mass(client, ["o_a", "o_b"], client_msg_id="c2")
    assert other["errcode"] == 0 and other["msg_id"] != first["msg_id"]


@pytest.mark.parametrize(("openids", "errcode"), [([], 40130), (["o_a"], 40130),
                                                  ([f"o_{n}" for n in range(10_001)], 40131)])
async def test_a_mass_send_takes_2_to_10000_openids(client, openids, errcode):
    assert (await mass(client, openids))["errcode"] == errcode
    assert not state_of(client).messages


async def test_a_follower_receives_four_a_month_and_the_rest_is_filtered(client):
    state = state_of(client)
    for n in range(5):
        assert (await mass(client, ["o_a", "o_b"], content=f"第{n + 1}次"))["errcode"] == 0
    assert state.mass_received("o_a") == 4
    assert [m.content for m in state.messages if m.openid == "o_a"][-1] == "第4次"
    assert state.mass[-1].filtered == ["o_a", "o_b"] and state.mass[-1].openids == []
    state.advance(32 * 86400)  # next month
    await mass(client, ["o_a", "o_b"], content="下个月")
    assert state.mass_received("o_a") == 1


async def test_openids_that_do_not_follow_are_filtered_and_all_of_them_is_43004(client):
    state = state_of(client)
    state.set_not_following("o_gone")
    answer = await mass(client, ["o_a", "o_gone"])
    assert answer["errcode"] == 0 and state.mass[-1].filtered == ["o_gone"]
    state.set_not_following("o_a")
    assert (await mass(client, ["o_a", "o_gone"]))["errcode"] == 43004


async def test_masssendjobfinish_is_posted_signed_and_encrypted_to_the_webhook():
    received: list = []
    channel = WeChatChannel(ACCOUNT, max_clock_skew=300)

    async def webhook(request: web.Request) -> web.Response:
        inbound, _ = channel.open(request.query, await request.read())
        received.append(inbound)
        return web.Response(text="success")

    bot = web.Application()
    bot.router.add_post("/wechat", webhook)
    async with TestClient(TestServer(bot)) as hook, \
            TestClient(TestServer(create_wechat_app(APP_ID, SECRET))) as client:
        state = state_of(client)
        state.set_webhook(str(hook.make_url("/wechat")), ACCOUNT)
        state.set_not_following("o_gone")
        answer = await mass(client, ["o_a", "o_b", "o_gone"])
        await state.drain()
        await asyncio.sleep(0)
    [event] = received
    assert event.kind == "mass_finish"
    assert event.extra == {"msg_id": str(answer["msg_id"]), "status": "send success",
                           "total": "3", "filtered": "1", "sent": "2", "errors": "0"}
