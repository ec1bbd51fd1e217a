"""`memberbot broadcast …`: run in-process through bot.cli.main with the repository's config
(the fixtures of test_staff.py), the engine run by the test between commands as `memberbot
serve` would, and `status --watch` as its own process beside a running engine."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli.common import width
from bot.config import SecurityConfig
from bot.infra.vault import mask_card
from bot.models import AuditEntry, Campaign, CampaignDelivery, MassJob, Member
from bot.runtime import Bot, open_bot
from bot.services import campaigns, members
from tests.cli import test_staff
from tests.cli.test_staff import DATA_KEY, output
from tests.support import StandIns, make_config

# The shell and its config file, as test_staff.py sets them up.
cli_config, run_cli = test_staff.cli_config, test_staff.run_cli

ROOT = Path(__file__).resolve().parents[2]
GOLD = "金卡会员"
PROMOTION = "本周末会员日全场9折"
BAR = re.compile(r"\[([#.]{30})\]\s+(\d+)% (\d+)/(\d+)")


@contextlib.asynccontextmanager
async def shop_db(db_url: str, stand_ins: StandIns) -> AsyncIterator[Bot]:
    """The database, and a bot whose engine talks to the stand-ins, between CLI runs."""
    config = make_config(db_url, stand_ins, security=SecurityConfig(DATA_KEY))
    async with open_bot(config, scheduler=False) as bot:
        yield bot


async def seed_gold(bot: Bot, count: int = 3) -> list[Member]:
    """Gold members who follow, and one silver member who is in no gold campaign."""
    found = []
    for n in range(count + 1):
        registration = await members.register(bot, f"o_cli_{n}", f"1370000200{n}", f"会员{n}",
                                              None, bot.now())
        found.append(registration.member)
    await Member.filter(id__in=[m.id for m in found[:count]]).update(tier=GOLD)
    return found[:count]


async def run_engine(bot: Bot, campaign_id: int, ticks: int = 20) -> None:
    for _ in range(ticks):
        await campaigns.tick(bot)
        if (await campaigns.status(bot, campaign_id)).done:
            return
    raise AssertionError(f"campaign {campaign_id} not done after {ticks} ticks")


async def created(run_cli, capsys, *argv: str) -> int:
    assert await run_cli("broadcast", "create", *argv) == 0
    out, err = output(capsys)
    assert re.fullmatch(r"\d+\n", out), out  # the id alone, for scripts: ID=$(memberbot …)
    assert f"memberbot broadcast preview {out.strip()}" in err
    assert f"with: memberbot broadcast start {out.strip()}" in err
    return int(out)


async def _status_line(run_cli, capsys, campaign_id: int) -> str:
    assert await run_cli("broadcast", "status", str(campaign_id)) == 0
    return output(capsys)[0]


async def test_create_preview_start_steer_and_status(run_cli, capsys, db_url,
                                                     stand_ins):
    async with shop_db(db_url, stand_ins) as bot:
        gold = await seed_gold(bot)
    campaign_id = await created(run_cli, capsys, "--segment", f"tier:{GOLD}", "--text",
                                PROMOTION, "--channel", "wechat")

    assert await run_cli("broadcast", "preview", str(campaign_id)) == 0
    out = output(capsys)[0]
    assert f"Campaign {campaign_id}: 3 members in the segment" in out
    assert f"  | {PROMOTION}" in out and "wechat   3" in out and "sms      0" in out
    assert "3 can still receive a WeChat mass message this month (4 a month each" in out
    sample = re.search(r"As member (\S+) would read it", out)[1]
    assert sample in {mask_card(m.card_no) for m in gold}

    for action, state in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        assert await run_cli("broadcast", action, str(campaign_id)) == 0
        assert output(capsys)[0] == f"Campaign {campaign_id}: {state}.\n"

    async with shop_db(db_url, stand_ins) as bot:
        await run_engine(bot, campaign_id)
    assert "no report from WeChat yet" in await _status_line(run_cli, capsys, campaign_id)
    async with shop_db(db_url, stand_ins) as bot:
        [job] = await MassJob.all()
        # WeChat's MASSSENDJOBFINISH: one of the three was filtered out (its monthly cap).
        await campaigns.record_mass_job_finish(bot, job.msg_id, status="send success",
                                               total=3, filtered=1, sent=2, errors=0)
        # One member's send had an unknown outcome (a crash while WeChat answered).
        await CampaignDelivery.filter(campaign_id=campaign_id, member_id=gold[0].id).update(
            state="unknown")
    assert await run_cli("broadcast", "status", str(campaign_id)) == 0
    out = output(capsys)[0]
    assert out.startswith(f"Campaign {campaign_id}: done, segment 'tier:{GOLD}'")
    bar = BAR.search(out)
    assert bar and bar.groups()[1:] == ("100", "3", "3"), out
    assert re.search(r"^  sent +2$", out, re.M) and re.search(r"^  unknown +1$", out, re.M)
    assert re.search(r"^  members +3 +0$", out, re.M) and re.search(r"^  delivered +2 +0$",
                                                                        out, re.M)
    assert "  WeChat mass sends: 1; WeChat reported 2 sent, 1 filtered out, 0 failed\n" in out
    assert "1 with an unknown outcome" in out and mask_card(gold[0].card_no) in out
    assert gold[0].card_no not in out
    mass = [m.openid for m in stand_ins.wechat.messages if m.via == "mass"]
    assert sorted(mass) == ["o_cli_0", "o_cli_1", "o_cli_2"]  # each once; not the silver one

    assert await run_cli("broadcast", "list") == 0
    [line] = output(capsys)[0].splitlines()
    assert line.split()[:2] == [str(campaign_id), "done"] and PROMOTION in line

    async with shop_db(db_url, stand_ins):
        actions = await AuditEntry.filter(action__startswith="campaign_").order_by("id") \
            .values_list("action", "actor")
    assert actions == [(f"campaign_{a}", "cli")
                       for a in ("create", "start", "pause", "resume")]


async def test_at_is_the_shops_local_time(run_cli, capsys, db_url):
    assert await run_cli("broadcast", "create", "--segment", "all", "--text", PROMOTION,
                         "--at", "2031-12-24 10:00", "--holdout", "10") == 0
    out, err = output(capsys)
    campaign_id = int(out)
    assert f"schedule it for 2031-12-24 10:00 shop time with: memberbot broadcast start " \
           f"{campaign_id}" in err
    async with shop_db(db_url, None):
        campaign = await Campaign.get(id=campaign_id)
    assert campaign.scheduled_at == dt.datetime(2031, 12, 24, 2, 0, tzinfo=dt.UTC)
    assert campaign.holdout == 10
    assert await run_cli("broadcast", "start", str(campaign_id)) == 0
    assert output(capsys)[0] == f"Campaign {campaign_id}: scheduled.\n"
    assert await run_cli("broadcast", "list") == 0
    assert "2031-12-24 10:00" in output(capsys)[0]
    assert await run_cli("broadcast", "status", str(campaign_id)) == 0
    assert "scheduled for 2031-12-24 10:00 shop time" in output(capsys)[0]


@pytest.mark.parametrize(("argv", "message"), [
    (("--segment", "colour=red", "--text", "hi"), "at column 1"),
    (("--segment", "all", "--template", "no_such_promo"), "no template"),
    (("--segment", "all", "--text", "hi", "--coupon", "NOPE"), "no active coupon template"),
    (("--segment", "all", "--text", "hi", "--channel", "fax"), "--channel is wechat, sms"),
    (("--segment", "all", "--text", "hi", "--channel", "sms,sms"), "--channel is wechat, sms"),
    (("--segment", "all", "--text", "hi", "--at", "24/12/2031 10:00"), "YYYY-MM-DD HH:MM"),
    (("--segment", "all", "--text", "hi", "--at", "2020-01-01 10:00"), "has passed"),
    (("--segment", "all", "--text", "hi", "--holdout", "90"), "holdout"),
])
async def test_a_mistake_in_create_exits_2_and_creates_nothing(run_cli, capsys, db_url,
                                                               argv, message):
    assert await run_cli("broadcast", "create", *argv) == 2
    out, err = output(capsys)
    assert not out and err.startswith("memberbot: ") and message in err, err
    async with shop_db(db_url, None):
        assert await Campaign.all().count() == 0


async def test_a_segment_mistake_in_create_is_pointed_at_as_segment_count_does(run_cli,
                                                                              capsys):
    text = "tier=金卡会员 last_visit>30"
    assert await run_cli("segment", "count", text) == 2
    counted = output(capsys)[1]
    assert await run_cli("broadcast", "create", "--segment", text, "--text", "x") == 2
    err = output(capsys)[1]
    assert err == counted
    assert err.splitlines()[1:] == [f"  {text}", "  " + " " * 25 + "^"]  # 金卡会员: 8 columns


async def test_list_lines_up_its_columns_with_chinese_text(run_cli, capsys):
    for segment, text in (("all", "hello"), (f"tier={GOLD} last_visit>30d", PROMOTION),
                          (f"tier!=普通会员 tier!={GOLD} tier!=钻石会员 visits_12m>=3", "长" * 40)):
        await created(run_cli, capsys, "--segment", segment, "--text", text)
    assert await run_cli("broadcast", "list") == 0
    lines = output(capsys)[0].splitlines()
    assert len(lines) == 3
    starts = set()
    for line, message in zip(lines, ("长" * 15, PROMOTION, "hello"), strict=True):
        assert line.endswith(message), line  # the message clipped to 30 columns
        starts.add(width(line) - width(message))
    assert len(starts) == 1, lines  # every message starts in the same column


async def test_a_move_the_campaign_cannot_make_exits_1(run_cli, capsys):
    campaign_id = await created(run_cli, capsys, "--segment", "all", "--text", PROMOTION)
    assert await run_cli("broadcast", "confirm", str(campaign_id)) == 1
    assert f"campaign {campaign_id} is draft; cannot confirm it" in output(capsys)[1]
    assert await run_cli("broadcast", "status", "999") == 1
    assert "no campaign 999" in output(capsys)[1]
    assert await run_cli("broadcast", "cancel", str(campaign_id)) == 0
    assert await run_cli("broadcast", "start", str(campaign_id)) == 1
    assert "cancelled" in output(capsys)[1]


async def test_status_watch_draws_a_bar_until_the_engine_is_done(cli_config, capsys,
                                                                 run_cli, db_url, stand_ins):
    """The engine runs here, as in `memberbot serve`; the watcher is its own process."""
    async with shop_db(db_url, stand_ins) as bot:
        await seed_gold(bot)
    campaign_id = await created(run_cli, capsys, "--segment", f"tier:{GOLD}", "--text",
                                PROMOTION, "--channel", "wechat")
    assert await run_cli("broadcast", "start", str(campaign_id)) == 0
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--config", str(cli_config), "broadcast", "status",
        str(campaign_id), "--watch", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        # No engine has read the segment yet: the watcher says what it waits for.
        first = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert first.startswith("running   waiting for a worker to read the segment"), first
        async with shop_db(db_url, stand_ins) as bot:
            await run_engine(bot, campaign_id)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    last_bar = next(line for line in reversed(lines) if line.startswith("done"))
    assert BAR.search(last_bar).groups()[1:] == ("100", "3", "3"), lines
    assert f"Campaign {campaign_id}: done" in out.decode()
