"""A `memberbot worker` killed with SIGKILL in the middle of a campaign, and a new worker on the
same database: every member got the promotion at most once, the delivery rows add up to the
segment, and every member not reached has a state that says why. On SQLite and PostgreSQL.

listmonk's resume bug (#3022) was a checkpoint that moved when a batch was fetched: after a
restart some members had the campaign five times and a third nothing. Here a batch closes only
when its sends are confirmed; mass sends left `sending` are repeated with their clientmsgid
(WeChat refuses one that went out), SMS left `sending` become `unknown`."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.config import SecurityConfig
from bot.models import CampaignDelivery, Follower, Member
from bot.runtime import open_bot
from bot.services import campaigns
from tests.support import SUITE_DB, make_config, worker_env

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 40
MASS = "/cgi-bin/message/mass/send"


async def _start_worker(tmp_path: Path, env: dict[str, str], name: str):
    log = (tmp_path / f"{name}.log").open("w")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--config", str(ROOT / "config.toml"), "worker",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=log)


async def _counts(campaign_id: int) -> Counter[str]:
    return Counter(await CampaignDelivery.filter(campaign_id=campaign_id)
                   .values_list("state", flat=True))


async def test_a_sigkill_mid_campaign_sends_nobody_twice_and_leaves_nobody_unexplained(
        any_db, db_url, stand_ins, tmp_path):
    if SUITE_DB == "postgres":
        pytest.skip("runs in the SQLite pass, on both databases")
    env = {**worker_env(db_url, stand_ins, scheduler=True),
           "MEMBERBOT_SMS_TEMPLATE_MARKETING": "SMS_PROMO",
           # Any hour of the day the suite runs: the sending window is tested in-process.
           "MEMBERBOT_SMS_SEND_FROM": "00:00", "MEMBERBOT_SMS_SEND_UNTIL": "23:59:59",
           "MEMBERBOT_BROADCAST_BATCH_SIZE": "4", "MEMBERBOT_BROADCAST_LEASE_SECONDS": "3"}
    config = make_config(db_url, stand_ins, security=SecurityConfig(
        data_key=env["MEMBERBOT_SECURITY_DATA_KEY"]))
    stand_ins.wechat.set_delay(MASS, 0.3)
    stand_ins.sms.latency = 0.15
    started = []
    async with open_bot(config, scheduler=False) as bot:
        phones, openids = {}, {}
        for n in range(MEMBERS):
            phone = f"133{n:08d}"
            member = await Member.create(
                card_no=f"88{n:08d}", phone_hash=bot.vault.lookup_hash(phone),
                phone_enc=bot.vault.encrypt(phone), name=f"会员{n}", tier="普通会员")
            phones[member.id] = phone
            await Follower.create(openid=f"o_crash_{n}", member=member, following=n % 2 == 0)
            openids[member.id] = f"o_crash_{n}"
        campaign = await campaigns.create(bot, segment="all", text="周末双倍积分")
        await campaigns.start(bot, campaign.id)
        try:
            first = await _start_worker(tmp_path, env, "worker-1")
            started.append(first)
            deadline = time.monotonic() + 60
            while (await _counts(campaign.id))["sent"] < 12:
                assert first.returncode is None, (tmp_path / "worker-1.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the first worker sent nothing"
                await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            at_kill = await _counts(campaign.id)
            assert at_kill["sent"] < MEMBERS  # killed mid-way

            second = await _start_worker(tmp_path, env, "worker-2")
            started.append(second)
            deadline = time.monotonic() + 90
            while (await campaigns.get(campaign.id)).status != "done":
                assert second.returncode is None, (tmp_path / "worker-2.log").read_text()[-2000:]
                assert time.monotonic() < deadline, f"not done: {await _counts(campaign.id)}"
                await asyncio.sleep(0.1)
        finally:
            for process in started:
                if process.returncode is None:
                    process.terminate()
                    await process.wait()

        print(f"at the kill: {dict(at_kill)}; at the end: {dict(await _counts(campaign.id))}")
        mass = Counter(m.openid for m in stand_ins.wechat.messages if m.via == "mass")
        sms = Counter(m["phone"] for m in stand_ins.sms.messages
                      if m["template_code"] == "SMS_PROMO")
        assert set(mass.values()) <= {1} and set(sms.values()) <= {1}  # nobody twice
        report = await campaigns.status(bot, campaign.id)
        assert report.total == MEMBERS == sum(report.counts.values())
        assert report.counts["queued"] == report.counts["sending"] == 0
        rows = await CampaignDelivery.filter(campaign_id=campaign.id)
        for row in rows:
            received = mass[openids[row.member_id]] + sms[phones[row.member_id]]
            if row.state == "sent":
                assert received == 1 and (mass[openids[row.member_id]] == 1) == (
                    row.channel == "wechat")
            elif row.state == "unknown":
                assert received <= 1 and row.error  # listed for the manager
            else:
                assert received == 0 and (row.reason or row.error)
        assert len(report.unknown) == report.counts["unknown"]
