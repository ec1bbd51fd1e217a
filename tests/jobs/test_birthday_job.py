"""The daily birthday job in the scheduler: at `[scheduler] birthday_at` in the shop's time zone,
claimed like every job, so two workers at the same moment run it once, a run again gives nobody
anything twice, and a run that died mid-way is finished by the worker that takes it over.

Members and the bot come from tests/services/test_birthdays.py (DAY is 2031-05-20, members are
born on 20 May unless told otherwise).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

from bot.config import SchedulerConfig
from bot.jobs.scheduler import JOBS, STALE, Scheduler
from bot.models import BirthdayGift, JobRun
from bot.notifications import outbox as outbox_module
from bot.runtime import open_bot
from tests.services import test_birthdays as gifts
from tests.services.test_birthdays import DAY, at_local, gifts_of, greetings, new_member
from tests.support import make_config

clock, bot = gifts.clock, gifts.bot  # the fixtures: the clock at 09:00 on DAY, and the bot

[BIRTHDAY] = [job for job in JOBS if job.name == "birthday"]
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


async def _runs() -> dict[str, str]:
    return dict(await JobRun.filter(period=DAY.isoformat()).values_list("job", "status"))


async def test_the_job_runs_at_birthday_at_in_the_shops_time_zone(db_url, stand_ins, clock):
    config = make_config(db_url, stand_ins,
                         scheduler=SchedulerConfig(enabled=False, birthday_at="10:30"))
    assert BIRTHDAY.time(config) == dt.time(10, 30)
    assert BIRTHDAY.time(make_config(db_url, stand_ins)) == dt.time(9)  # the default
    async with open_bot(config, clock, scheduler=False) as bot:
        # A floor, or the tier evaluation (03:00, caught up too) takes them down to 普通会员.
        member = await new_member(bot, tier="银卡会员", tier_floor="银卡会员")
        at_local(clock, DAY, 10, 29)
        await Scheduler(bot, worker="w1").catch_up()
        runs = await _runs()
        assert "birthday" not in runs and runs["tier_evaluation"] == "done"
        assert await BirthdayGift.all().count() == 0

        at_local(clock, DAY, 10, 30)
        await Scheduler(bot, worker="w2").catch_up()
        assert (await _runs())["birthday"] == "done"
        assert await gifts_of(member) == ([100], 0, [f"birthday-notice:{member.id}:2031"])

        # The daily trigger the worker sets up is 10:30 local too.
        scheduler = Scheduler(bot, worker="w3")
        scheduler.start()
        try:
            trigger = scheduler._aps.get_job("birthday").next_run_time.astimezone(SHANGHAI)
            assert trigger.time() == dt.time(10, 30)
        finally:
            await scheduler.stop()
            await bot.drain()


async def test_two_workers_at_once_run_it_once_and_a_rerun_gives_nobody_anything_twice(
        any_db, bot, stand_ins):
    members = [await new_member(bot, tier=tier) for tier in ("普通会员", "银卡会员", "金卡会员")]
    ran = await asyncio.gather(Scheduler(bot, worker="w1").run(BIRTHDAY, DAY),
                               Scheduler(bot, worker="w2").run(BIRTHDAY, DAY))
    assert sorted(ran) == [False, True]
    row = await JobRun.get(job="birthday", period=DAY.isoformat())
    assert row.status == "done" and row.worker == ("w1" if ran[0] else "w2")
    assert row.result["given"] == 2 and row.result["greeting_only"] == 1  # 普通会员: nothing
    assert row.result["greeted"] == 3

    assert await Scheduler(bot, worker="w3").run(BIRTHDAY, DAY) is False  # done: not again
    # An explicit rerun (`memberbot jobs run`) runs, and finds everything given.
    assert await Scheduler(bot, worker="w3").run(BIRTHDAY, DAY, again=True) is True
    row = await JobRun.get(job="birthday", period=DAY.isoformat())
    assert (row.status, row.worker) == ("done", "w3")
    assert row.result == {"members": 3, "given": 0, "greeting_only": 0, "already_given": 3,
                          "points": 0,
                          "coupons": 0, "coupon_refused": {}, "greeted": 0,
                          "not_greeted": {"duplicate": 3}}
    expected = {"普通会员": [], "银卡会员": [100], "金卡会员": [300]}
    for member in members:
        points, held, keys = await gifts_of(member)
        assert points == expected[member.tier] and held == (member.tier == "金卡会员")
        assert len(keys) == 1 and len(greetings(stand_ins, member)) == 1


async def test_a_run_that_died_mid_way_is_taken_over_and_nobody_gets_anything_twice(
        any_db, bot, stand_ins, monkeypatch):
    """The worker dies on the third member's greeting: their gift has committed, the fourth
    member has nothing yet. The takeover gives the fourth, greets the third, and repeats
    nothing for the first two."""
    members = [await new_member(bot, tier="金卡会员") for _ in range(4)]
    real_notify = outbox_module.Outbox.notify
    calls = []

    async def dies_on_the_third(self, member_id, *args, **kwargs):
        calls.append(member_id)
        if len(calls) == 3:
            raise ConnectionError("worker lost its database connection")
        return await real_notify(self, member_id, *args, **kwargs)

    monkeypatch.setattr(outbox_module.Outbox, "notify", dies_on_the_third)
    assert await Scheduler(bot, worker="w1").run(BIRTHDAY, DAY) is False
    assert await BirthdayGift.all().count() == 3
    assert [len(greetings(stand_ins, m)) for m in members] == [1, 1, 0, 0]

    assert await Scheduler(bot, worker="w2").run(BIRTHDAY, DAY) is False  # still beating
    bot.clock.advance(seconds=STALE.total_seconds() + 60)
    assert await Scheduler(bot, worker="w2").run(BIRTHDAY, DAY) is True
    row = await JobRun.get(job="birthday", period=DAY.isoformat())
    assert (row.status, row.worker) == ("done", "w2")
    assert (row.result["given"], row.result["already_given"]) == (1, 3)
    assert (row.result["greeted"], row.result["not_greeted"]) == (2, {"duplicate": 2})
    for member in members:
        assert await gifts_of(member) == ([300], 1, [f"birthday-notice:{member.id}:2031"])
        assert len(greetings(stand_ins, member)) == 1
