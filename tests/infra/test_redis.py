"""With [redis] url: dedup records, dialog state, rate limits and the token lock live in Redis,
and everything still acts exactly once. Skips with a reason when Redis is not running."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import secrets
import warnings

import aiohttp
import pytest

from bot.chat.inbound import Inbound
from bot.config import RedisConfig, WeChatConfig
from bot.infra.ratelimit import Limit, RedisLimiter
from bot.infra.redis import RedisLock
from bot.models import InboundMessage, Member, SmsCode
from bot.notifications.wechat_api import WeChatAPI
from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from tests.support import APP_ID, APP_SECRET, REDIS_UP, make_config

pytestmark = pytest.mark.skipif(not REDIS_UP, reason="Redis is not running on 127.0.0.1:6379 "
                                                     "(CI runs these)")
URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis():
    from redis.asyncio import BlockingConnectionPool, Redis

    prefix = f"memberbot-test-{secrets.token_hex(4)}"
    client = Redis(connection_pool=BlockingConnectionPool.from_url(URL, max_connections=32))
    yield client, prefix
    keys = [key async for key in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose(close_connection_pool=True)


@pytest.fixture
async def redis_harness(harness_factory, redis):
    _, prefix = redis
    return await harness_factory(redis=RedisConfig(url=URL, prefix=prefix))


async def test_three_concurrent_copies_act_once_and_leave_no_database_record(redis_harness):
    h = redis_harness
    await h.post(wire.event("o_r1", "subscribe", "qrscene_store:S001"))
    await h.say("o_r1", "同意")
    signed = h.simulator.sign(wire.text("o_r1", "13800138031"))
    answers = await asyncio.gather(*(h.raw(signed.params, signed.body) for _ in range(3)))
    assert {status for status, _ in answers} == {200}
    replies = [h.simulator.read_reply(body, signed.params)["Content"] for _, body in answers]
    assert len(set(replies)) == 1 and "验证码已发送" in replies[0]  # the same reply to each copy
    assert len(h.sms_codes("13800138031")) == 1
    assert await InboundMessage.all().count() == 0  # the claims are in Redis


async def test_dialog_state_lives_in_redis_and_survives_a_restart(harness_factory, redis):
    client, prefix = redis
    first = await harness_factory(redis=RedisConfig(url=URL, prefix=prefix))
    await first.post(wire.event("o_r2", "subscribe", "qrscene_store:S001"))
    await first.say("o_r2", "同意")
    assert await client.exists(f"{prefix}:dialog:wechat:o_r2")
    await first.server.close()
    second = await harness_factory(redis=RedisConfig(url=URL, prefix=prefix))
    assert "验证码已发送" in await second.say("o_r2", "13800138032")


async def test_registration_end_to_end_on_redis(redis_harness):
    final = await redis_harness.register("o_r3", "13800138033", name="郑女士")
    assert "注册成功" in final
    assert (await Member.get(name="郑女士")).points == redis_harness.config.shop.welcome_points


async def test_sms_limits_hold_under_a_burst_of_1000_requests_for_one_phone(redis):
    client, prefix = redis
    limiter = RedisLimiter(client, prefix)
    rules = {"sms:phone:x": [Limit(1, 60), Limit(5, 3600), Limit(10, 86400)]}
    now = dt.datetime.now(dt.UTC)
    results = await asyncio.gather(*(limiter.hit(rules, now) for _ in range(1000)))
    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, int) and 0 < r <= 61 for r in results if r is not None)
    # Over a day, at most 5 an hour and 10 in all.
    allowed = 1
    for minute in range(1, 24 * 60):
        at = now + dt.timedelta(minutes=minute)
        allowed += sum(r is None for r in await asyncio.gather(
            *(limiter.hit(rules, at) for _ in range(3))))
    assert allowed == 10


async def test_release_gives_the_attempt_back(redis):
    client, prefix = redis
    limiter = RedisLimiter(client, prefix)
    rules = {"k": [Limit(1, 60)]}
    now = dt.datetime.now(dt.UTC)
    assert await limiter.hit(rules, now) is None
    assert await limiter.blocked(rules, now)
    await limiter.release(rules, now)
    assert await limiter.blocked(rules, now) is None
    assert await limiter.hit(rules, now) is None


async def test_the_bot_on_redis_refuses_the_sixth_code_of_the_hour(redis_harness):
    h = redis_harness
    phone = "13800138034"
    await h.post(wire.event("o_r5", "subscribe", "qrscene_store:S001"))
    await h.say("o_r5", "同意")
    await h.say("o_r5", phone)
    for _ in range(5):
        h.clock.advance(seconds=61)
        await h.say("o_r5", "重发")
    assert len(h.sms_codes(phone)) == 5
    assert await SmsCode.filter(user="o_r5").count() == 5


async def test_two_workers_cold_fetch_one_token_through_the_redis_lock(db_url, stand_ins, redis):
    from bot.infra.db import close_database, open_database

    client, prefix = redis
    stand_ins.wechat.set_delay("/cgi-bin/stable_token", 0.2)
    config = WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token="t" * 8,
                          encoding_aes_key="k" * 43, api_base_url=stand_ins.wechat_url)
    await open_database(db_url)
    try:
        async with aiohttp.ClientSession() as s1, aiohttp.ClientSession() as s2:
            workers = [WeChatAPI(s, config, shared_lock=RedisLock(client, prefix))
                       for s in (s1, s2)]
            tokens = await asyncio.gather(*(w.tokens.get() for w in workers for _ in range(20)))
        assert len(set(tokens)) == 1
        assert stand_ins.wechat.calls["/cgi-bin/stable_token"] == 1
        assert not await client.exists(f"{prefix}:lock:token:{APP_ID}")  # released
    finally:
        await close_database()


async def test_an_unreachable_redis_stops_start_up_with_one_clear_line(harness_factory):
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match=r"redis.url: cannot reach"):
        await harness_factory(redis=RedisConfig(url="redis://127.0.0.1:9/0", prefix="x"))


async def test_closing_the_bot_closes_its_redis_connections(db_url, stand_ins):
    # Redis() leaves a pool it was handed open on aclose(): every connection used to leak.
    config = make_config(db_url, stand_ins)
    config = config.replace(redis=dataclasses.replace(config.redis, url=URL,
                                                      prefix=f"memberbot-test-{secrets.token_hex(4)}"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with open_bot(config, scheduler=False) as bot:
            claims = await asyncio.gather(*(bot.dedup.claim(Inbound(
                channel="wechat", user="o_close", kind="text", text="积分",
                dedup_key=f"msg:close{i}", account="gh")) for i in range(8)))
            assert all(claims)
        del bot  # the last reference to the client and its pool
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
