"""Claims on a lease (bot/chat/dedup.py): a claim whose worker died is taken over once its lease
runs out, by one copy only; a claim that its worker keeps renewing, or that has an outcome, never
is. In the database (SQLite, PostgreSQL) and in Redis; then through the dispatcher.

The real crash (a worker process killed with SIGKILL) is tests/chat/test_crash_recovery.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from bot.chat.dedup import LEASE, DatabaseDedup, Dedup, RedisDedup
from bot.chat.inbound import Inbound
from bot.config import RedisConfig
from bot.infra import sql
from bot.infra.db import close_database, open_database
from bot.models import Delivery, InboundMessage, Purchase, Staff, Store
from bot.sandbox import wechat_client as wire
from tests.chat.test_dedup_and_deferral import (
    code_sent_text,
    count_processing,
    resigned,
    send,
    slow_sms,
    visible,
)
from tests.services.test_ledger import new_member
from tests.support import PG_URL, POSTGRES_UP, REDIS_UP, SUITE_DB, reset_postgres

REDIS_URL = "redis://127.0.0.1:6379/0"
SHORT = 0.3  # seconds: a lease the tests can watch run out


def inbound(key: str) -> Inbound:
    return Inbound(channel="wechat", user="o_lease", kind="text", text="积分", dedup_key=key,
                   account="gh")


async def _redis_client():
    from redis.asyncio import Redis

    return Redis.from_url(REDIS_URL)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def workers(request, tmp_path) -> AsyncIterator[Callable[[], Dedup]]:
    """Makes the dedup of one more worker (its own owner id) on a SHORT lease, all sharing one
    store."""
    if SUITE_DB == "postgres":
        pytest.skip("runs in the SQLite pass, on both databases and Redis")
    if request.param == "redis":
        if not REDIS_UP:
            pytest.skip("Redis is not running on 127.0.0.1:6379 (CI runs these)")
        client, prefix = await _redis_client(), f"memberbot-test-{secrets.token_hex(4)}"
        try:
            yield lambda: RedisDedup(client, prefix, lease=SHORT)
        finally:
            keys = [key async for key in client.scan_iter(f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        return
    if request.param == "postgres":
        if not POSTGRES_UP:
            pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (CI runs these)")
        await reset_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite://{tmp_path}/memberbot.db"
    await open_database(url)
    try:
        yield lambda: DatabaseDedup(lease=SHORT)
    finally:
        await close_database()


async def lapse() -> None:
    await asyncio.sleep(SHORT * 1.5)


async def test_a_lapsed_claim_is_taken_over_by_exactly_one_copy(workers):
    dead, *retries = workers(), workers(), workers(), workers()
    assert await dead.claim(inbound("msg:1"))
    assert not any([await r.claim(inbound("msg:1")) for r in retries])  # the lease holds
    await lapse()
    taken = await asyncio.gather(*(r.claim(inbound("msg:1")) for r in retries),
                                 *(r.take_over("msg:1") for r in retries))
    assert sum(taken) == 1
    assert await dead.renew("msg:1") is False  # it lost the claim
    # The new holder holds it like a first copy: renewals keep the others out.
    holder = (retries + retries)[taken.index(True)]
    assert await holder.renew("msg:1")
    assert not any([await r.take_over("msg:1") for r in retries if r is not holder])
    assert await holder.outcome("msg:1") == ("processing", None)


async def test_a_renewed_claim_is_never_taken_over(workers):
    live, other = workers(), workers()
    assert await live.claim(inbound("msg:2"))
    for _ in range(6):  # twice the lease, renewed every third of it
        await asyncio.sleep(SHORT / 3)
        assert await live.renew("msg:2")
        assert not await other.claim(inbound("msg:2"))
        assert not await other.take_over("msg:2")


@pytest.mark.parametrize("status", ["replied", "deferred", "failed"])
async def test_a_claim_with_an_outcome_is_never_taken_over(workers, status):
    first, later = workers(), workers()
    assert await first.claim(inbound("msg:3"))
    reply = {"kind": "text", "content": "好"} if status != "deferred" else None
    await first.finish("msg:3", status, reply)
    await lapse()
    assert not await later.claim(inbound("msg:3"))
    assert not await later.take_over("msg:3")
    assert not await first.renew("msg:3")
    assert await later.outcome("msg:3") == (status, reply)


async def test_nobody_takes_over_what_nobody_claimed(workers):
    assert not await workers().take_over("msg:never")
    assert await workers().outcome("msg:never") is None


async def test_the_claim_statements_write_what_the_orm_reads(db_url, any_db):
    # Hand-written statements (bot/infra/sql.py style): the columns as the model sees them.
    await open_database(db_url)
    try:
        dead, retry = DatabaseDedup(lease=SHORT), DatabaseDedup()
        before = dt.datetime.now(dt.UTC)
        assert await dead.claim(inbound("msg:4"))
        row = await InboundMessage.get(dedup_key="msg:4")
        assert (row.status, row.owner, row.user, row.kind) == (
            "processing", dead.owner, "o_lease", "text")
        assert before + dt.timedelta(seconds=SHORT) <= row.lease_until <= before + dt.timedelta(
            seconds=SHORT + 1)
        await lapse()
        assert await retry.claim(inbound("msg:4"))
        row = await InboundMessage.get(dedup_key="msg:4")
        assert row.owner == retry.owner
        assert row.lease_until > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=LEASE - 1)
        # A claim from before leases (no owner, no lease) is a lapsed one.
        await sql.execute('INSERT INTO inbound_message (dedup_key, "user", kind, status, '
                          "received_at) VALUES ($1, $2, $3, 'processing', $4)",
                          "msg:5", "o_old", "text", dt.datetime.now(dt.UTC))
        assert await retry.take_over("msg:5")
        assert (await InboundMessage.get(dedup_key="msg:5")).owner == retry.owner
    finally:
        await close_database()


# --- through the dispatcher ---


@pytest.fixture(params=["database", "redis"])
async def lease_harness(request, harness_factory, monkeypatch):
    """The bot with a SHORT lease; database or Redis claims."""
    if request.param == "redis":
        if not REDIS_UP:
            pytest.skip("Redis is not running on 127.0.0.1:6379 (CI runs these)")
        h = await harness_factory(redis=RedisConfig(
            url=REDIS_URL, prefix=f"memberbot-test-{secrets.token_hex(4)}"))
    else:
        h = await harness_factory()
    monkeypatch.setattr(h.bot.dedup, "lease", SHORT)
    return h


async def to_phone_step(h, openid: str) -> None:
    # The dialog lives in Redis or the database: the reply says where it stands.
    await h.post(wire.event(openid, "subscribe", "qrscene_store:S001"))
    assert "手机号" in (await h.say(openid, "同意") or "")


def dead_worker(h) -> Dedup:
    """The dedup of a worker that claims and then is gone: it never renews nor finishes."""
    if isinstance(h.bot.dedup, RedisDedup):
        return RedisDedup(h.bot.dedup._redis, h.config.redis.prefix, lease=SHORT)
    return DatabaseDedup(lease=SHORT)


async def died_before_finishing(h, key: str) -> None:
    """Put a finished claim back as its copy would have left it, killed before it wrote its
    outcome: still processing, with a lapsed lease."""
    if isinstance(h.bot.dedup, RedisDedup):
        await h.bot.dedup._redis.set(f"{h.config.redis.prefix}:inbound:{key}",
                                     '{"status": "processing", "reply": null}', keepttl=True)
        await h.bot.dedup._redis.delete(f"{h.config.redis.prefix}:inbound-lease:{key}")
    else:
        await InboundMessage.filter(dedup_key=key).update(status="processing", reply=None,
                                                          lease_until=None)


async def test_a_retry_acts_in_place_of_a_first_copy_that_died(lease_harness, monkeypatch):
    h, openid, phone, msg_id = lease_harness, "o_lease_dead", "13800138051", 7_000_000_100_001
    await to_phone_step(h, openid)
    processed = count_processing(h, monkeypatch)
    xml = wire.text(openid, phone, msg_id=msg_id)
    # The first copy claimed the message, and its worker was killed before it did anything.
    assert await dead_worker(h).claim(inbound(f"msg:{msg_id}"))

    first_retry, second_retry = resigned(h, xml, copies=2)
    reply = await send(h, first_retry)  # waits out the lease, then acts

    assert processed == [f"msg:{msg_id}"]
    assert visible(reply) == (openid, wire.ACCOUNT, "text", code_sent_text(h, phone))
    assert len(h.sms_codes(phone)) == 1
    assert visible(await send(h, second_retry)) == visible(reply)  # the stored reply now
    assert processed == [f"msg:{msg_id}"]


async def test_a_live_slow_first_copy_keeps_its_claim(lease_harness, monkeypatch):
    # The SMS takes several leases' time: only the first copy's renewals keep the retries out.
    h, openid, phone, msg_id = lease_harness, "o_lease_slow", "13800138052", 7_000_000_100_002
    await to_phone_step(h, openid)
    slow_sms(h, monkeypatch, seconds=SHORT * 4)
    processed = count_processing(h, monkeypatch)
    copies = resigned(h, wire.text(openid, phone, msg_id=msg_id))

    async def later(signed, delay: float):
        await asyncio.sleep(delay)
        return await send(h, signed)

    replies = await asyncio.gather(*(later(s, i * SHORT) for i, s in enumerate(copies)))

    assert processed == [f"msg:{msg_id}"]
    assert len(h.sms_codes(phone)) == 1 and len(h.stand_ins.sms.messages) == 1
    assert {visible(r) for r in replies} == {(openid, wire.ACCOUNT, "text",
                                              code_sent_text(h, phone))}


async def test_a_purchase_committed_by_a_copy_that_died_is_not_recorded_twice(lease_harness):
    # The first copy recorded the purchase and was killed before it wrote its outcome: the
    # retry takes the claim over and runs 消费 again, which finds the purchase by its key.
    h, msg_id = lease_harness, 7_000_000_100_003
    await Staff.create(openid="o_lease_clerk", role="clerk", store=await Store.get(code="S001"))
    member = await new_member(h.bot)
    first, retry = resigned(h, wire.text("o_lease_clerk", f"消费 {member.card_no} 88",
                                         msg_id=msg_id), copies=2)
    assert "已记录消费" in (await send(h, first))["Content"]
    key = f"msg:{msg_id}"
    await died_before_finishing(h, key)

    reply = (await send(h, retry))["Content"]

    (purchase,) = await Purchase.filter(member_id=member.id)
    assert f"已记录消费 #{purchase.id}（重复提交，未重复记账）" in reply
    assert purchase.idempotency_key == f"chat:{key}" and purchase.amount == 8800
    assert await h.bot.dedup.outcome(key) == ("replied", {"kind": "text", "content": reply})


async def test_a_purchase_whose_notice_died_with_its_copy_is_told_on_the_retry(lease_harness):
    # The first copy committed the purchase and was killed before the member's notice was
    # queued: the copy that takes over finds the purchase (a repeat) and still tells the member,
    # once.
    h, msg_id = lease_harness, 7_000_000_100_004
    await Staff.create(openid="o_lease_clerk2", role="clerk", store=await Store.get(code="S001"))
    member = await new_member(h.bot)
    first, retry, again = resigned(h, wire.text("o_lease_clerk2", f"消费 {member.card_no} 66",
                                                msg_id=msg_id), copies=3)
    await send(h, first)
    await h.bot.drain()
    (purchase,) = await Purchase.filter(member_id=member.id)
    notice = f"notice:purchase:{purchase.id}"
    assert await Delivery.filter(key=notice).count() == 1
    await Delivery.filter(key=notice).delete()  # as if the worker died before queueing it
    key = f"msg:{msg_id}"
    await died_before_finishing(h, key)

    assert "重复提交" in (await send(h, retry))["Content"]
    await h.bot.drain()
    assert await Delivery.filter(key=notice, purpose="purchase").count() == 1
    await send(h, again)  # the stored reply: nothing runs, nothing is sent again
    await h.bot.drain()
    assert await Delivery.filter(key=notice).count() == 1
    assert await Purchase.filter(member_id=member.id).count() == 1
