"""A worker killed with SIGKILL in the middle of a burst loses no message that WeChat retries.

A real `memberbot serve` process (python -m bot.cli, as tests/test_scale_out.py starts them)
gets 20 `消费` from a bound clerk at once, signed and AES-encrypted as WeChat sends them. It is
killed while some are claimed but unanswered, a new worker starts on the same database, and
WeChat's retries of all 20 (same MsgIds) arrive: exactly 20 purchases, none twice, and a second
round of retries changes nothing. On SQLite, and on PostgreSQL with the claims in Redis.

The first copies' claims are left `processing` by the kill; the retries find their leases run
out and take them over (bot/chat/dedup.py). Before leases this recorded 0 of 20.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.config import SecurityConfig, WeChatConfig
from bot.infra import sql
from bot.infra.db import close_database, open_database
from bot.models import InboundMessage, Member, PointsEntry, Purchase
from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from bot.services import staff as staff_service
from tests.services.test_ledger import new_member
from tests.support import (
    AES_KEY,
    APP_ID,
    APP_SECRET,
    PG_URL,
    POSTGRES_UP,
    REDIS_UP,
    SUITE_DB,
    TOKEN,
    free_port,
    make_config,
    reset_postgres,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
PURCHASES = 20
CLERK = "o_crash_clerk"
CONFIRMED = "已记录消费"
KILL_WITH_IN_FLIGHT = 5


@dataclass
class Deployment:
    """One shop's database (and Redis), and how to start workers on it."""

    tmp_path: Path
    db_url: str
    env: dict[str, str]
    redis_prefix: str | None
    started: list[asyncio.subprocess.Process]

    async def start_worker(self, name: str) -> tuple[asyncio.subprocess.Process, str]:
        port = free_port()
        log_path = self.tmp_path / f"{name}.log"
        # A log file, not a pipe: a pipe nobody reads fills up and blocks the worker's logging.
        with log_path.open("w") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "--config", str(self.tmp_path / "config.toml"),
                "serve", env={**self.env, "MEMBERBOT_SERVER_PORT": str(port)},
                cwd=self.tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=log)
        self.started.append(process)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                if process.returncode is not None:
                    pytest.fail(f"{name} exited: {log_path.read_text()[-2000:]}")
                try:
                    async with session.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            return process, url
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        pytest.fail(f"{name} did not start: {log_path.read_text()[-2000:]}")

    async def claim_statuses(self, keys: list[str]) -> dict[str, str]:
        """The dedup claims of these keys as the workers share them: key → status."""
        if self.redis_prefix is None:
            rows = await sql.fetch("SELECT dedup_key, status FROM inbound_message")
            wanted = set(keys)
            return {row["dedup_key"]: row["status"] for row in rows if row["dedup_key"] in wanted}
        from redis.asyncio import Redis

        async with Redis.from_url(REDIS_URL) as client:
            values = await client.mget([f"{self.redis_prefix}:inbound:{key}" for key in keys])
        return {key: json.loads(raw)["status"] for key, raw in zip(keys, values, strict=True)
                if raw is not None}


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def deployment(request, tmp_path, stand_ins):
    if SUITE_DB == "postgres":
        pytest.skip("runs in the SQLite pass, on both databases")
    redis_prefix = None
    if request.param == "sqlite":
        db_url = f"sqlite://{tmp_path}/memberbot.db"
    else:
        if not (POSTGRES_UP and REDIS_UP):
            pytest.skip("needs PostgreSQL and Redis on 127.0.0.1 (CI has both)")
        await reset_postgres(PG_URL)
        db_url, redis_prefix = PG_URL, f"memberbot-crash-{secrets.token_hex(4)}"
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    env = worker_env(db_url, stand_ins, redis_url=REDIS_URL if redis_prefix else "",
                     redis_prefix=redis_prefix or "memberbot")
    here = Deployment(tmp_path, db_url, env, redis_prefix, [])
    try:
        yield here
    finally:
        for process in here.started:
            if process.returncode is None:
                process.terminate()
        for process in here.started:
            await asyncio.wait_for(process.wait(), 10)
        if redis_prefix:
            from redis.asyncio import Redis

            async with Redis.from_url(REDIS_URL) as client:
                keys = [key async for key in client.scan_iter(f"{redis_prefix}:*")]
                if keys:
                    await client.delete(*keys)


async def test_a_sigkill_loses_no_purchase_that_wechat_retries(deployment):
    shop = deployment
    # The member and the clerk's invite, written as the shop's CLI would, with the workers' key.
    config = make_config(shop.db_url, security=SecurityConfig(
        data_key=shop.env["MEMBERBOT_SECURITY_DATA_KEY"]))
    async with open_bot(config, scheduler=False) as bot:
        member = await new_member(bot)
        invite = await staff_service.create_invite("S001", "clerk", "小王", bot.now())

    simulator = wire.WeChatSimulator(
        WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                     encoding_aes_key=AES_KEY), "aes")
    base = 8_000_000_000_000 + secrets.randbelow(10**9) * 100
    amounts = {base + i: 10 + i for i in range(PURCHASES)}  # MsgId → yuan, each different
    messages = {msg_id: wire.text(CLERK, f"消费 {member.card_no} {yuan}", msg_id=msg_id)
                for msg_id, yuan in amounts.items()}
    keys = [f"msg:{msg_id}" for msg_id in messages]

    async def deliver(session, url: str, xml: str) -> str | None:
        """One delivery as WeChat makes it (own timestamp and nonce): the reply's text, or None
        for "success"."""
        signed = simulator.sign(xml)
        async with session.post(f"{url}/wechat", params=signed.params,
                                data=signed.body) as response:
            assert response.status == 200
            reply = simulator.read_reply(await response.read(), signed.params)
            return reply["Content"] if reply else None

    await open_database(shop.db_url, create_schema=False)  # to watch and count
    try:
        first, url = await shop.start_worker("worker-1")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            assert "绑定成功" in await deliver(session, url, wire.text(CLERK, f"绑定 {invite}"))

            burst = [asyncio.ensure_future(deliver(session, url, xml))
                     for xml in messages.values()]
            # Killed with purchases in flight: a few claimed and not answered (or as soon as
            # one is answered, on a worker that takes them one at a time).
            started = time.monotonic()
            while not _mid_burst(list((await shop.claim_statuses(keys)).values())):
                assert time.monotonic() - started < 15, "no purchase was ever claimed"
                await asyncio.sleep(0.002)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            killed_after = time.monotonic() - started
            answered = await asyncio.gather(*burst, return_exceptions=True)

        after_kill = await shop.claim_statuses(keys)
        left_processing = sum(status == "processing" for status in after_kill.values())
        recorded_before = await Purchase.filter(member_id=member.id).count()
        print(f"killed {killed_after * 1000:.0f} ms into the burst: "
              f"{sum(isinstance(a, str) for a in answered)} answered, "
              f"{recorded_before} recorded, {left_processing} claims left processing, "
              f"{PURCHASES - len(after_kill)} never claimed")
        # The crash did catch purchases mid-way: these are what only a takeover can save.
        assert left_processing >= 1 and recorded_before < PURCHASES

        # WeChat's retries, to a new worker on the same database (and Redis).
        _, url = await shop.start_worker("worker-2")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            retried = await asyncio.gather(*(deliver(session, url, xml)
                                             for xml in messages.values()))
            assert await _purchases(member) == amounts
            assert all(reply and CONFIRMED in reply for reply in retried), retried
            statuses = await shop.claim_statuses(keys)
            assert set(statuses.values()) == {"replied"}, statuses

            again = await asyncio.gather(*(deliver(session, url, xml)
                                           for xml in messages.values()))
            assert again == retried  # the stored replies, nothing done again
            assert await _purchases(member) == amounts

        # Points were earned once per purchase too.
        purchases = await Purchase.filter(member_id=member.id)
        earned = await PointsEntry.filter(member_id=member.id, kind="earn")
        assert sorted(e.purchase_id for e in earned) == sorted(p.id for p in purchases)
        assert (await Member.get(id=member.id)).points == sum(p.points for p in purchases)
        if shop.redis_prefix:
            assert not await InboundMessage.filter(dedup_key__in=keys).exists()
    finally:
        await close_database()


def _mid_burst(statuses: list[str]) -> bool:
    in_flight = statuses.count("processing")
    return in_flight >= KILL_WITH_IN_FLIGHT or (in_flight > 0 and len(statuses) > in_flight)


async def _purchases(member: Member) -> dict[int, int]:
    """MsgId → yuan of every purchase recorded for the member; a second record of one message
    would show as a mismatch in the count."""
    rows = await Purchase.filter(member_id=member.id).order_by("id")
    recorded = {int(row.idempotency_key.removeprefix("chat:msg:")): row.amount // 100
                for row in rows}
    assert len(recorded) == len(rows), [row.idempotency_key for row in rows]
    return recorded
