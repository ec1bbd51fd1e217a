"""The WeChat API stand-in (bot/sandbox/wechat_server.py) follows the rules our client relies on,
and the printable poster is a sane PNG."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.notifications.poster import render_poster
from bot.sandbox.wechat_server import WECHAT_STATE, WeChatState, create_wechat_app

APP_ID, SECRET = "wx0123456789abcdef", "s3cret"
PNG_1PX = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
async def client():
    app = create_wechat_app(APP_ID, SECRET)
    async with TestClient(TestServer(app)) as c:
        yield c


def state_of(client: TestClient) -> WeChatState:
    return client.server.app[WECHAT_STATE]


async def token(client: TestClient, force: bool = False) -> dict:
    body = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}
    resp = await client.post("/cgi-bin/stable_token", json={**body, "force_refresh": force})
    assert resp.status == 200
    return await resp.json()


async def call(client: TestClient, path: str, body: dict, access_token: str | None) -> dict:
    params = {"access_token": access_token} if access_token is not None else {}
    resp = await client.post(path, json=body, params=params)
    assert resp.status == 200
    return await resp.json()


def text(openid: str, content: str = "hi") -> dict:
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


# --- stable_token ---


async def test_stable_token_returns_the_same_token_until_it_expires(client):
    first = await token(client)
    assert first["expires_in"] == 7200
    state_of(client).advance(1000)
    second = await token(client)
    assert second["access_token"] == first["access_token"]
    assert 6190 <= second["expires_in"] <= 6200
    state_of(client).advance(6300)
    third = await token(client)
    assert third["access_token"] != first["access_token"]
    assert state_of(client).tokens_minted == 2
    assert state_of(client).calls["/cgi-bin/stable_token"] == 3


async def test_force_refresh_invalidates_the_old_token(client):
    old = (await token(client))["access_token"]
    new = (await token(client, force=True))["access_token"]
    assert new != old
    assert (await call(client, "/cgi-bin/message/custom/send", text("o1"), old))["errcode"] == 40001
    assert (await call(client, "/cgi-bin/message/custom/send", text("o1"), new))["errcode"] == 0


@pytest.mark.parametrize(
    ("change", "errcode"),
    [
        ({"appid": "wrong"}, 40013),
        ({"secret": "wrong"}, 40125),
        ({"grant_type": "password"}, 40002),
    ],
)
async def test_stable_token_rejects_bad_credentials(client, change, errcode):
    body = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET, **change}
    reply = await call(client, "/cgi-bin/stable_token", body, None)
    assert reply["errcode"] == errcode
    assert "access_token" not in reply


async def test_access_token_missing_invalid_expired(client):
    path = "/cgi-bin/message/custom/send"
    assert (await call(client, path, text("o1"), None)) == {
        "errcode": 41001,
        "errmsg": "access_token missing",
    }
    assert (await call(client, path, text("o1"), "bogus"))["errcode"] == 40001
    good = (await token(client))["access_token"]
    state_of(client).expire_token()
    assert (await call(client, path, text("o1"), good))["errcode"] == 42001
    renewed = (await token(client))["access_token"]
    assert renewed != good
    assert (await call(client, path, text("o1"), renewed))["errcode"] == 0
    assert (await call(client, path, text("o1"), good))["errcode"] == 42001


# --- customer-service messages ---


async def test_window_rules(client):
    state = state_of(client)
    state.enforce_windows = True
    tok = (await token(client))["access_token"]
    path = "/cgi-bin/message/custom/send"

    assert (await call(client, path, text("stranger"), tok))["errcode"] == 45015

    state.note_event("clicker")  # 3 sends within a minute, no 48 h window
    codes = [(await call(client, path, text("clicker"), tok))["errcode"] for _ in range(4)]
    assert codes == [0, 0, 0, 45047]
    state.advance(61)
    assert (await call(client, path, text("clicker"), tok))["errcode"] == 45015

    state.note_user_message("talker")  # 5 sends within 48 h
    codes = [(await call(client, path, text("talker"), tok))["errcode"] for _ in range(6)]
    assert codes == [0, 0, 0, 0, 0, 45047]
    state.note_user_message("talker")
    state.advance(48 * 3600 + 1)
    tok = (await token(client))["access_token"]  # the old one expired meanwhile
    assert (await call(client, path, text("talker"), tok))["errcode"] == 45015

    state.note_user_message("gone")
    state.set_not_following("gone")
    assert (await call(client, path, text("gone"), tok))["errcode"] == 43004

    assert [m.openid for m in state.messages] == ["clicker"] * 3 + ["talker"] * 5


async def test_messages_are_recorded_and_polled(client):
    tok = (await token(client))["access_token"]
    path = "/cgi-bin/message/custom/send"
    await call(client, path, text("o1", "你好"), tok)
    await call(client, path, text("o2", "other"), tok)
    await call(client, path, text("o1", "again"), tok)
    resp = await client.get("/sandbox/messages", params={"openid": "o1", "after": "1"})
    messages = (await resp.json())["messages"]
    assert [(m["seq"], m["msgtype"], m["content"]) for m in messages] == [(3, "text", "again")]


async def test_template_send(client):
    tok = (await token(client))["access_token"]
    body = {"touser": "o1", "template_id": "T1", "data": {"amount": {"value": "12"}}}
    reply = await call(client, "/cgi-bin/message/template/send", body, tok)
    assert reply["errcode"] == 0 and isinstance(reply["msgid"], int)
    assert state_of(client).templates[0].data == {"amount": {"value": "12"}}


# --- menu ---


async def test_menu_validation(client):
    tok = (await token(client))["access_token"]
    path = "/cgi-bin/menu/create"
    menu = {
        "button": [
            {"type": "click", "name": "会员卡", "key": "CARD"},
            {
                "name": "积分",
                "sub_button": [
                    {"type": "click", "name": "查询积分", "key": "POINTS"},
                    {"type": "view", "name": "积分规则", "url": "https://example.com/rules"},
                ],
            },
            {"type": "scancode_push", "name": "扫一扫", "key": "SCAN"},
        ]
    }
    assert await call(client, path, menu, tok) == {"errcode": 0, "errmsg": "ok"}
    assert state_of(client).menu == menu

    four = {"button": [*menu["button"], {"type": "click", "name": "x", "key": "X"}]}
    assert (await call(client, path, four, tok))["errcode"] == 40016
    bad_type = {"button": [{"type": "teleport", "name": "x", "key": "X"}]}
    assert (await call(client, path, bad_type, tok))["errcode"] == 40017
    long_name = {"button": [{"type": "click", "name": "五个汉字长", "key": "X"}]}  # 15 bytes
    assert (await call(client, path, long_name, tok))["errcode"] == 0
    too_long = {"button": [{"type": "click", "name": "六个汉字太长", "key": "X"}]}  # 18 bytes
    assert (await call(client, path, too_long, tok))["errcode"] == 40018
    no_key = {"button": [{"type": "click", "name": "x"}]}
    assert (await call(client, path, no_key, tok))["errcode"] == 40019
    six_subs = {"button": [{"name": "m", "sub_button": [no_key["button"][0]] * 6}]}
    assert (await call(client, path, six_subs, tok))["errcode"] == 40023
    bad_url = {"button": [{"name": "m", "sub_button": [{"type": "view", "name": "v"}]}]}
    assert (await call(client, path, bad_url, tok))["errcode"] == 40054
    assert state_of(client).menu == long_name


# --- QR codes ---


async def test_qrcode_with_scene(client):
    tok = (await token(client))["access_token"]
    body = {
        "expire_seconds": 600,
        "action_name": "QR_STR_SCENE",
        "action_info": {"scene": {"scene_str": "store:1"}},
    }
    reply = await call(client, "/cgi-bin/qrcode/create", body, tok)
    assert reply["expire_seconds"] == 600
    assert reply["url"].startswith("http://weixin.qq.com/q/")
    record = state_of(client).qrcodes[reply["ticket"]]
    assert (record.scene, record.permanent, record.scene_lost) == ("store:1", False, False)

    permanent = {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 7}}}
    reply = await call(client, "/cgi-bin/qrcode/create", permanent, tok)
    assert "expire_seconds" not in reply
    assert state_of(client).qrcodes[reply["ticket"]].permanent

    resp = await client.get("/cgi-bin/showqrcode", params={"ticket": reply["ticket"]})
    assert (await resp.read()).startswith(b"\x89PNG")


async def test_qrcode_without_scene_wrapper_loses_the_scene(client):
    tok = (await token(client))["access_token"]
    body = {"action_name": "QR_STR_SCENE", "action_info": {"scene_str": "store:1"}}
    reply = await call(client, "/cgi-bin/qrcode/create", body, tok)
    assert "ticket" in reply and reply["expire_seconds"] == 60  # looks like success
    record = state_of(client).qrcodes[reply["ticket"]]
    assert record.scene == "0" and record.scene_lost
    assert state_of(client).lost_scenes == 1


@pytest.mark.parametrize(
    "body",
    [
        {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100001}}},
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x" * 65}}},
        {
            "expire_seconds": 2592001,
            "action_name": "QR_SCENE",
            "action_info": {"scene": {"scene_id": 1}},
        },
    ],
)
async def test_qrcode_rejects_bad_arguments(client, body):
    tok = (await token(client))["access_token"]
    assert (await call(client, "/cgi-bin/qrcode/create", body, tok))["errcode"] == 40097


# --- media ---


async def upload(client: TestClient, tok: str, data: bytes, kind: str = "image") -> dict:
    form = aiohttp.FormData()
    form.add_field("media", data, filename="poster.png", content_type="image/png")
    resp = await client.post(
        "/cgi-bin/media/upload", data=form, params={"access_token": tok, "type": kind}
    )
    return await resp.json()


async def test_media_upload_and_image_message(client):
    tok = (await token(client))["access_token"]
    reply = await upload(client, tok, PNG_1PX)
    assert reply["type"] == "image" and reply["media_id"] and reply["created_at"]
    assert state_of(client).media[reply["media_id"]].size == len(PNG_1PX)
    message = {"touser": "o1", "msgtype": "image", "image": {"media_id": reply["media_id"]}}
    assert (await call(client, "/cgi-bin/message/custom/send", message, tok))["errcode"] == 0
    message["image"]["media_id"] = "unknown"
    assert (await call(client, "/cgi-bin/message/custom/send", message, tok))["errcode"] == 40007

    assert (await upload(client, tok, PNG_1PX, kind="pdf"))["errcode"] == 40004
    assert (await upload(client, tok, b"not an image"))["errcode"] == 40005
    assert (await upload(client, tok, PNG_1PX + b"\0" * (10 << 20)))["errcode"] == 40009


async def test_media_can_be_fetched_back_until_it_expires(client):
    """media/get (with a token, as WeChat) and /sandbox/media (without, for the chat client)
    answer the uploaded bytes; an unknown or expired media_id answers 40007."""
    tok = (await token(client))["access_token"]
    media_id = (await upload(client, tok, PNG_1PX))["media_id"]
    for path, params in (("/cgi-bin/media/get", {"access_token": tok, "media_id": media_id}),
                         ("/sandbox/media", {"media_id": media_id})):
        resp = await client.get(path, params=params)
        assert resp.status == 200 and resp.content_type == "image/png"
        assert await resp.read() == PNG_1PX
    resp = await client.get("/cgi-bin/media/get", params={"media_id": media_id})
    assert (await resp.json())["errcode"] == 41001
    resp = await client.get("/sandbox/media", params={"media_id": "unknown"})
    assert (await resp.json())["errcode"] == 40007
    state_of(client).advance(3 * 24 * 3600 + 1)
    resp = await client.get("/sandbox/media", params={"media_id": media_id})
    assert (await resp.json())["errcode"] == 40007


# --- hooks and misc ---


async def test_fail_next(client):
    tok = (await token(client))["access_token"]
    path = "/cgi-bin/message/custom/send"
    state_of(client).fail_next(path, 40001, times=2)
    assert (await call(client, path, text("o1"), tok))["errcode"] == 40001
    assert (await call(client, path, text("o1"), tok))["errcode"] == 40001
    assert (await call(client, path, text("o1"), tok))["errcode"] == 0
    assert state_of(client).calls[path] == 3
    assert len(state_of(client).messages) == 1


async def test_concurrent_token_requests_share_one_token(client):
    state_of(client).set_delay("/cgi-bin/stable_token", 0.01)
    replies = await asyncio.gather(*(token(client) for _ in range(20)))
    assert len({r["access_token"] for r in replies}) == 1
    assert state_of(client).tokens_minted == 1


async def test_unknown_path_and_wrong_method(client):
    resp = await client.get("/cgi-bin/nope")
    assert (resp.status, await resp.json()) == (200, {"errcode": 40066, "errmsg": "invalid url"})
    resp = await client.get("/cgi-bin/message/custom/send")
    assert (await resp.json())["errcode"] == 43002


# --- poster ---


def test_render_poster():
    png = render_poster("http://weixin.qq.com/q/02abcDEF", "示例门店·总店 扫码加入会员", "欢迎光临")
    assert png.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(png))
    image.verify()
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.height > image.width
    # The caption band below the code is not blank.
    caption_band = image.convert("L").crop((0, image.width, image.width, image.height))
    assert caption_band.getextrema()[0] < 128
