"""Our own async WeChat client (bot/notifications/wechat_api.py) against the WeChat stand-in.

Tokens: stable_token in normal mode, cached until shortly before expiry, one refresh at a time
inside a process (asyncio lock) and across workers (a lease row in the database); a token error
means one refresh and one retry, never more. Other errors surface with their errcode and are not
retried. The Outbox on top: one send per idempotency key, a Delivery row for every attempt.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.config import WeChatConfig
from bot.infra.db import close_database, open_database
from bot.models import AccessToken, Delivery, Follower
from bot.notifications import cs_quota
from bot.notifications import wechat_api as wechat_api_module
from bot.notifications.outbox import Outbox
from bot.notifications.replies import Image, Text
from bot.notifications.sms import SmsSender
from bot.notifications.wechat_api import WeChatAPI, WeChatAPIError
from bot.sandbox.wechat_server import WECHAT_STATE, WeChatState, create_wechat_app
from tests.support import AES_KEY, APP_ID, APP_SECRET, TOKEN, Clock, make_config

SEND = "/cgi-bin/message/custom/send"
STABLE = "/cgi-bin/stable_token"
# The smallest valid PNG header is enough for the stand-in's magic-byte check.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass
class Recorded:
    """The WeChat stand-in plus the raw bytes of every JSON request it received."""

    state: WeChatState
    url: str
    bodies: list[tuple[str, bytes]] = field(default_factory=list)

    def bodies_for(self, path: str) -> list[bytes]:
        return [body for p, body in self.bodies if p == path]


@pytest.fixture
async def wx() -> AsyncIterator[Recorded]:
    app = create_wechat_app(APP_ID, APP_SECRET)
    recorded = Recorded(app[WECHAT_STATE], "")

    @web.middleware
    async def record(request: web.Request, handler):
        # Multipart bodies are a stream the handler still has to read; JSON ones are cached.
        if not request.content_type.startswith("multipart/"):
            recorded.bodies.append((request.path, await request.read()))
        return await handler(request)

    app.middlewares.append(record)
    server = TestServer(app)
    await server.start_server()
    recorded.url = str(server.make_url("")).rstrip("/")
    try:
        yield recorded
    finally:
        await server.close()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[str]:
    await open_database(db_url)
    try:
        yield db_url
    finally:
        await close_database()


@pytest.fixture
async def sessions() -> AsyncIterator[list[aiohttp.ClientSession]]:
    """Sessions opened by a test (one per "worker"), closed at the end."""
    opened: list[aiohttp.ClientSession] = []
    try:
        yield opened
    finally:
        for session in opened:
            await session.close()


@pytest.fixture
def make_api(wx: Recorded, db: str, sessions: list[aiohttp.ClientSession]):
    """A WeChatAPI with its own session and TokenManager: one per simulated worker."""

    def build(clock: Clock | None = None, base_url: str | None = None,
              timeout: float = 10) -> WeChatAPI:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        sessions.append(session)
        config = WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                              encoding_aes_key=AES_KEY, api_base_url=base_url or wx.url)
        return WeChatAPI(session, config, clock or Clock())

    return build


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- tokens ---


async def test_token_comes_from_stable_token_in_normal_mode(wx, make_api):
    api = make_api()
    await api.send_text("o_user", "你好")
    assert wx.state.calls[STABLE] == 1 and wx.state.tokens_minted == 1
    (raw,) = wx.bodies_for(STABLE)
    body = json.loads(raw)
    assert body == {"grant_type": "client_credential", "appid": APP_ID, "secret": APP_SECRET,
                    "force_refresh": False}
    # The token is shared through the database, with WeChat's expiry.
    row = await AccessToken.get(app_id=APP_ID)
    assert row.token == wx.state.current_token and row.lease_until is None
    remaining = (row.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 7100 < remaining <= 7200
    assert [m.content for m in wx.state.messages] == ["你好"]


async def test_token_is_cached_until_shortly_before_expiry(wx, make_api):
    clock = Clock()
    api = make_api(clock)
    await api.send_text("o_user", "一")
    clock.advance(seconds=6000)
    await api.send_text("o_user", "二")
    assert wx.state.calls[STABLE] == 1
    clock.advance(seconds=1000)  # 7000 s: inside the 5-minute margin before expiry
    await api.send_text("o_user", "三")
    assert wx.state.calls[STABLE] == 2
    await api.send_text("o_user", "四")
    assert wx.state.calls[STABLE] == 2
    assert api.tokens.fetches == 2
    assert wx.state.calls[SEND] == 4


async def test_hundred_concurrent_sends_on_a_cold_cache_fetch_one_token(wx, make_api):
    wx.state.set_delay(STABLE, 0.2)
    api = make_api()
    await asyncio.gather(*(api.send_text("o_user", f"第{i}条") for i in range(100)))
    assert wx.state.calls[STABLE] == 1
    assert api.tokens.fetches == 1
    assert wx.state.calls[SEND] == 100 and len(wx.state.messages) == 100


async def test_second_worker_adopts_the_token_from_the_database(wx, make_api):
    first, second = make_api(), make_api()
    await first.send_text("o_user", "一")
    await second.send_text("o_user", "二")
    assert wx.state.calls[STABLE] == 1
    assert (first.tokens.fetches, second.tokens.fetches) == (1, 0)
    assert wx.state.calls[SEND] == 2


async def test_two_cold_workers_at_the_same_moment_fetch_once(wx, make_api, any_db):
    wx.state.set_delay(STABLE, 0.2)
    first, second = make_api(), make_api()
    await asyncio.gather(first.send_text("o_user", "一"), second.send_text("o_user", "二"))
    assert wx.state.calls[STABLE] == 1
    assert first.tokens.fetches + second.tokens.fetches == 1
    assert len(wx.state.messages) == 2


async def test_waiting_worker_never_fetches_between_lease_release_and_token_write(
    wx, make_api, monkeypatch, any_db
):
    """A worker waiting on another's lease polls the row. If the lease were released before
    the fresh token is written, a poll landing in between would claim the free lease and fetch
    a second time. The waiter here polls as fast as it can, so it would land there."""

    class FastPoll:
        @staticmethod
        async def sleep(_seconds: float) -> None:
            await asyncio.sleep(0)

        Lock = asyncio.Lock

    monkeypatch.setattr(wechat_api_module, "asyncio", FastPoll)
    wx.state.set_delay(STABLE, 0.05)
    for attempt in range(5):
        first, second = make_api(), make_api()
        before = wx.state.calls[STABLE]
        await asyncio.gather(first.send_text("o_user", "一"), second.send_text("o_user", "二"))
        assert wx.state.calls[STABLE] - before == 1, f"attempt {attempt}"
        # Start cold again: the next pair has to fetch.
        await AccessToken.filter(app_id=APP_ID).update(token="", expires_at=None)


async def test_a_dead_workers_lease_is_taken_over_when_it_lapses(wx, make_api):
    clock = Clock()
    api = make_api(clock)
    # A worker claimed the refresh and died: its lease stays until it lapses.
    await AccessToken.create(app_id=APP_ID, lease_until=clock() + wechat_api_module.LEASE)
    sending = asyncio.create_task(api.send_text("o_user", "你好"))
    await asyncio.sleep(0.2)
    assert not sending.done() and wx.state.calls[STABLE] == 0
    clock.advance(seconds=wechat_api_module.LEASE.total_seconds() + 1)
    await asyncio.wait_for(sending, 2)
    assert wx.state.calls[STABLE] == 1 and len(wx.state.messages) == 1
    assert (await AccessToken.get(app_id=APP_ID)).lease_until is None


async def test_a_failed_token_fetch_surfaces_and_frees_the_lease(wx, make_api):
    api = make_api()
    wx.state.fail_next(STABLE, -1)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o_user", "一")
    assert caught.value.errcode == -1 and wx.state.calls[SEND] == 0
    assert (await AccessToken.get(app_id=APP_ID)).lease_until is None
    await api.send_text("o_user", "二")  # the next call is not stuck behind a lease
    assert wx.state.calls[STABLE] == 2 and [m.content for m in wx.state.messages] == ["二"]


# --- token errors: one refresh, one retry ---


async def test_token_error_once_refreshes_and_retries_once(wx, make_api):
    api = make_api()
    wx.state.fail_next(SEND, 40001)
    await api.send_text("o_user", "你好")
    assert wx.state.calls[SEND] == 2
    assert wx.state.calls[STABLE] == 2  # the cold fetch and one refresh
    assert [m.content for m in wx.state.messages] == ["你好"]


async def test_revoked_token_is_replaced_and_shared(wx, make_api):
    api = make_api()
    await api.send_text("o_user", "一")
    old = wx.state.current_token
    wx.state.revoke_token()
    await api.send_text("o_user", "二")
    assert wx.state.tokens_minted == 2
    new = wx.state.current_token
    assert new and new != old
    assert (await AccessToken.get(app_id=APP_ID)).token == new
    assert wx.state.calls[SEND] == 3
    # Another worker adopts the new token from the database without asking WeChat.
    other = make_api()
    await other.send_text("o_user", "三")
    assert other.tokens.fetches == 0 and wx.state.calls[STABLE] == 2


async def test_token_error_refresh_adopts_what_another_worker_fetched(wx, make_api):
    first, second = make_api(), make_api()
    await first.send_text("o_user", "一")
    await second.send_text("o_user", "二")
    wx.state.revoke_token()
    await first.send_text("o_user", "三")  # 40001, fetches the new token, retries
    await second.send_text("o_user", "四")  # 40001 on its cached token, adopts first's
    assert (first.tokens.fetches, second.tokens.fetches) == (2, 0)
    assert wx.state.calls[STABLE] == 2 and wx.state.tokens_minted == 2
    assert [m.content for m in wx.state.messages] == ["一", "二", "三", "四"]


@pytest.mark.parametrize("errcode", [40001, 42001, 40014])
async def test_persistent_token_error_gives_up_after_one_retry(wx, make_api, errcode):
    api = make_api()
    wx.state.fail_next(SEND, errcode, times=5)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o_user", "你好")
    assert caught.value.errcode == errcode
    assert wx.state.calls[SEND] == 2
    assert wx.state.calls[STABLE] <= 2
    assert wx.state.messages == []


async def test_expired_token_is_refreshed(wx, make_api):
    api = make_api()
    await api.send_text("o_user", "一")
    wx.state.expire_token()
    await api.send_text("o_user", "二")
    assert wx.state.tokens_minted == 2
    assert wx.state.calls[SEND] == 3  # 一, 二 refused with 42001, 二 again
    assert [m.content for m in wx.state.messages] == ["一", "二"]


# --- other errors: surfaced, not retried ---


@pytest.mark.parametrize("errcode", [45047, 45015, 43004, 40003, -1])
async def test_other_errors_surface_without_retry(wx, make_api, errcode):
    api = make_api()
    wx.state.fail_next(SEND, errcode)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o_user", "你好")
    assert caught.value.errcode == errcode
    assert wx.state.calls[SEND] == 1 and wx.state.calls[STABLE] == 1


async def test_real_window_and_follow_errors(wx, make_api):
    api = make_api()
    wx.state.enforce_windows = True
    with pytest.raises(WeChatAPIError) as outside:
        await api.send_text("o_quiet", "你好")
    assert outside.value.errcode == 45015
    wx.state.enforce_windows = False
    wx.state.set_not_following("o_gone")
    with pytest.raises(WeChatAPIError) as gone:
        await api.send_text("o_gone", "你好")
    assert gone.value.errcode == 43004
    assert wx.state.calls[SEND] == 2 and wx.state.messages == []


async def test_bad_menu_is_40016_and_not_retried(wx, make_api):
    api = make_api()
    with pytest.raises(WeChatAPIError) as caught:
        await api.create_menu({"button": []})
    assert caught.value.errcode == 40016
    assert wx.state.calls["/cgi-bin/menu/create"] == 1
    assert wx.state.menu is None


async def test_transport_failure_is_errcode_minus_one(make_api):
    api = make_api(base_url=closed_port_url())
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o_user", "你好")
    assert caught.value.errcode == -1
    assert "transport" in caught.value.errmsg
    # A failed fetch releases the lease: the next attempt is not stuck behind it.
    row = await AccessToken.get(app_id=APP_ID)
    assert row.lease_until is None and row.token == ""


async def test_timeout_is_errcode_minus_one_and_not_retried(wx, make_api):
    api = make_api(timeout=0.3)
    await api.send_text("o_user", "一")
    wx.state.set_delay(SEND, 1)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o_user", "二")
    assert caught.value.errcode == -1 and "TimeoutError" in caught.value.errmsg
    assert wx.state.calls[SEND] == 2


# --- the endpoints ---


async def test_permanent_qrcode_keeps_its_scene(wx, make_api):
    api = make_api()
    result = await api.create_qrcode("store:S001")
    record = wx.state.qrcodes[result["ticket"]]
    assert record.action_name == "QR_LIMIT_STR_SCENE" and record.permanent
    assert record.scene == "store:S001" and record.scene_lost is False
    assert record.expire_seconds is None and "expire_seconds" not in record.raw
    assert record.raw["action_info"] == {"scene": {"scene_str": "store:S001"}}
    assert wx.state.lost_scenes == 0


async def test_temporary_qrcode_has_its_expiry(wx, make_api):
    api = make_api()
    result = await api.create_qrcode("staff:7", temporary=True, expire_seconds=600)
    record = wx.state.qrcodes[result["ticket"]]
    assert record.action_name == "QR_STR_SCENE" and not record.permanent
    assert record.scene == "staff:7" and record.scene_lost is False
    assert record.expire_seconds == 600 and result["expire_seconds"] == 600


async def test_upload_image_then_send_it(wx, make_api):
    api = make_api()
    media_id = await api.upload_image("card.png", PNG)
    media = wx.state.media[media_id]
    assert (media.type, media.filename, media.data) == ("image", "card.png", PNG)
    await api.send_image("o_user", media_id)
    (message,) = wx.state.messages
    assert (message.openid, message.msgtype, message.media_id) == ("o_user", "image", media_id)


async def test_upload_retries_with_a_fresh_form_after_a_token_error(wx, make_api):
    api = make_api()
    wx.state.fail_next("/cgi-bin/media/upload", 40001)
    media_id = await api.upload_image("card.png", PNG)
    assert wx.state.media[media_id].data == PNG
    assert wx.state.calls["/cgi-bin/media/upload"] == 2


async def test_menu_is_sent_as_unescaped_utf8(wx, make_api):
    api = make_api()
    menu = {"button": [
        {"type": "click", "name": "会员卡", "key": "MY_CARD"},
        {"name": "更多", "sub_button": [{"type": "view", "name": "门店地址",
                                          "url": "https://example.com/stores"}]},
    ]}
    await api.create_menu(menu)
    (raw,) = wx.bodies_for("/cgi-bin/menu/create")
    assert "会员卡".encode() in raw and "门店地址".encode() in raw
    assert b"\\u" not in raw
    assert wx.state.menu == menu


# --- the outbox ---


@pytest.fixture
async def outbox(make_api, stand_ins, db) -> Outbox:
    sms = SmsSender(make_config(db, stand_ins).sms)
    return Outbox(make_api(), sms, lambda: dt.datetime.now(dt.UTC))


async def _follower_with_message_window(openid: str) -> None:
    await Follower.create(openid=openid)
    await cs_quota.note_inbound(openid, "text", dt.datetime.now(dt.UTC))


async def test_outbox_same_key_never_sends_twice(wx, outbox):
    await _follower_with_message_window("o_user")
    first = await outbox.wechat("o_user", Text("您的积分已到账"), key="points:1", purpose="notice")
    again = await outbox.wechat("o_user", Text("您的积分已到账"), key="points:1", purpose="notice")
    assert first.ok and not first.duplicate
    assert not again.ok and again.duplicate and again.code == "duplicate"
    assert [m.content for m in wx.state.messages] == ["您的积分已到账"]
    (row,) = await Delivery.filter(key="points:1")
    assert (row.status, row.error, row.channel, row.openid) == ("sent", None, "wechat_cs",
                                                                "o_user")
    assert row.sent_at is not None
    # One send spent one unit of the follower's quota, not two.
    assert (await Follower.get(openid="o_user")).message_window_used == 1


async def test_outbox_concurrent_same_key_sends_once(wx, outbox):
    await _follower_with_message_window("o_user")
    outcomes = await asyncio.gather(*(
        outbox.wechat("o_user", Text("生日快乐"), key="birthday:2024", purpose="notice")
        for _ in range(5)))
    assert sum(o.ok for o in outcomes) == 1 and sum(o.duplicate for o in outcomes) == 4
    assert len(wx.state.messages) == 1
    assert await Delivery.filter(key="birthday:2024").count() == 1


@pytest.mark.parametrize("errcode", [45047, 45015, 43004, 40001])
async def test_outbox_records_wechat_failures(wx, outbox, errcode):
    await _follower_with_message_window("o_user")
    wx.state.fail_next(SEND, errcode, times=2)
    outcome = await outbox.wechat("o_user", Text("你好"), key="k:fail", purpose="notice")
    assert not outcome.ok and outcome.code == str(errcode)
    row = await Delivery.get(key="k:fail")
    assert (row.status, row.error, row.sent_at) == ("failed", str(errcode), None)
    assert wx.state.messages == []


async def test_outbox_without_quota_fails_as_no_quota_and_sends_nothing(wx, outbox):
    await Follower.create(openid="o_quiet")  # never wrote to us: no window
    outcome = await outbox.wechat("o_quiet", Text("你好"), key="k:quiet", purpose="notice")
    assert not outcome.ok and outcome.code == "no_quota"
    row = await Delivery.get(key="k:quiet")
    assert (row.status, row.error) == ("failed", "no_quota")
    assert wx.state.calls[SEND] == 0


async def test_outbox_transport_failure_is_recorded(stand_ins, make_api, db):
    sms = SmsSender(make_config(db, stand_ins).sms)
    box = Outbox(make_api(base_url=closed_port_url()), sms, lambda: dt.datetime.now(dt.UTC))
    await _follower_with_message_window("o_user")
    outcome = await box.wechat("o_user", Text("你好"), key="k:down", purpose="notice")
    assert not outcome.ok and outcome.code == "-1"
    row = await Delivery.get(key="k:down")
    assert (row.status, row.error) == ("failed", "-1")


async def test_outbox_sends_images(wx, make_api, outbox):
    await _follower_with_message_window("o_user")
    media_id = await make_api().upload_image("card.png", PNG)
    outcome = await outbox.wechat("o_user", Image(media_id), key="k:img", purpose="card")
    assert outcome.ok
    (message,) = wx.state.messages
    assert (message.msgtype, message.media_id) == ("image", media_id)


async def test_outbox_sms_rows_sent_and_failed(stand_ins, outbox):
    ok = await outbox.sms("13800138000", "h1", "SMS_WELCOME", {"name": "王"}, key="sms:1",
                          purpose="welcome")
    again = await outbox.sms("13800138000", "h1", "SMS_WELCOME", {"name": "王"}, key="sms:1",
                             purpose="welcome")
    stand_ins.sms.fail_next(code="isv.BUSINESS_LIMIT_CONTROL")
    limited = await outbox.sms("13800138001", "h2", "SMS_WELCOME", {"name": "李"}, key="sms:2",
                               purpose="welcome")
    assert ok.ok and again.duplicate and not limited.ok
    assert [m["phone"] for m in stand_ins.sms.messages] == ["13800138000"]
    sent, failed = await Delivery.get(key="sms:1"), await Delivery.get(key="sms:2")
    assert (sent.status, sent.error, sent.channel) == ("sent", None, "sms")
    assert (failed.status, failed.error) == ("failed", "isv.BUSINESS_LIMIT_CONTROL")
    # The Delivery id travels as OutId, so a delivery receipt finds its row.
    assert stand_ins.sms.messages[0]["out_id"] == str(sent.id)
