"""The scheduler: one run per job and period across workers, takeover after a crash, catch-up at
start, and the real jobs (points expiry with its notice, tier evaluation, purge).

Most tests work at the service level: `open_bot(config, clock, scheduler=False)` gives a Bot with
the database open, and `Scheduler(bot, jobs=..., worker=...)` is one "worker". Several Scheduler
instances on the same database stand for several processes: the claim is a unique JobRun row, so
sharing one connection pool does not make them any less separate.

Time: the bot's clock is a settable `Clock`; `at_local` pins it to a local (Asia/Shanghai) time.
tortoise's auto_now timestamps follow the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import os
import socket
from collections.abc import AsyncIterator

import pytest
import tortoise.timezone

from bot.cli import serve as serve_cli
from bot.config import SchedulerConfig
from bot.jobs import scheduler as scheduler_module
from bot.jobs.scheduler import JOBS, STALE, Job, Scheduler
from bot.models import (
    Delivery,
    Follower,
    InboundMessage,
    JobRun,
    Member,
    PointsEntry,
    Purchase,
    RateEvent,
    SmsCode,
    TierChange,
)
from bot.runtime import Bot, open_bot
from bot.services import expiry, loyalty
from tests.support import REPO_CONFIG, Clock, at_local, make_config

DAY = dt.date(2031, 3, 12)
_serials = itertools.count(1)

BY_NAME = {job.name: job for job in JOBS}
EXPIRY_JOB, TIER_JOB, PURGE_JOB = (BY_NAME["points_expiry"], BY_NAME["tier_evaluation"],
                                   BY_NAME["purge"])
assert (EXPIRY_JOB.hour, EXPIRY_JOB.minute) == (0, 10)


def due_by(hour: int, minute: int) -> set[str]:
    """The jobs whose daily time has come by hour:minute (local)."""
    return {job.name for job in JOBS if job.time(REPO_CONFIG) <= dt.time(hour, minute)}


class PinnedClock(Clock):
    """A Clock that starts at noon local on DAY (for bots whose clock a test cannot reach
    before they start: the app's and the worker's)."""

    def __init__(self) -> None:
        super().__init__()
        at_local(self, DAY, 12)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    at_local(clock, DAY, 12)
    monkeypatch.setattr(tortoise.timezone, "now", clock)
    return clock


@pytest.fixture
async def bot(db_url, stand_ins, clock) -> AsyncIterator[Bot]:
    async with open_bot(make_config(db_url, stand_ins), clock, scheduler=False) as bot:
        yield bot


async def new_member(bot: Bot, *, tier: str = "普通会员", floor: str | None = None,
                     openid: str | None = None) -> Member:
    n = next(_serials)
    phone = f"137{n:08d}"
    member = await Member.create(card_no=f"88{n:08d}", phone_hash=bot.vault.lookup_hash(phone),
                                 phone_enc=bot.vault.encrypt(phone), name=f"会员{n}", tier=tier,
                                 tier_floor=floor)
    if openid:
        # Following, with a customer-service window open: notices really go out.
        await Follower.create(openid=openid, member=member, message_window_at=bot.now())
    return member


async def lot(member: Member, points: int, expires_on: dt.date) -> PointsEntry:
    return await loyalty.post_points(member.id, points, kind="earn", reason="测试积分",
                                     key=f"test-lot:{next(_serials)}", expires_on=expires_on)


async def purchase(member: Member, yuan: int, days_ago: int, bot: Bot, *,
                   voided: bool = False) -> Purchase:
    row = await Purchase.create(member_id=member.id, amount=yuan * 100,
                                idempotency_key=f"test-purchase:{next(_serials)}")
    await Purchase.filter(id=row.id).update(
        created_at=bot.now() - dt.timedelta(days=days_ago),
        voided_at=bot.now() if voided else None)
    return row


async def expire_entries() -> dict[str, int]:
    rows = await PointsEntry.filter(kind="expire").values_list("idempotency_key", "delta")
    assert len(rows) == len({key for key, _ in rows})
    return dict(rows)


def counting_job(calls: list[dt.date], seconds: float = 0.2) -> Job:
    async def body(bot: Bot, today: dt.date) -> dict:
        calls.append(today)
        await asyncio.sleep(seconds)
        return {"calls": len(calls)}

    return Job("counting", 0, 10, body)


# --- claims: one run per job and period -----------------------------------------------------


@pytest.mark.parametrize("workers", [2, 5])
async def test_workers_at_the_same_moment_run_the_job_once(any_db, bot, workers):
    calls: list[dt.date] = []
    job = counting_job(calls)
    schedulers = [Scheduler(bot, jobs=(job,), worker=f"w{i}") for i in range(1, workers + 1)]
    ran = await asyncio.gather(*(w.run(job, DAY) for w in schedulers))
    assert ran.count(True) == 1 and ran.count(False) == workers - 1
    assert calls == [DAY]
    row = await JobRun.get(job="counting", period="2031-03-12")
    assert (row.status, row.worker, row.result) == ("done", f"w{ran.index(True) + 1}",
                                                    {"calls": 1})
    assert row.finished_at is not None
    assert await JobRun.all().count() == 1


async def test_a_done_run_is_not_repeated_and_the_next_day_runs(bot):
    calls: list[dt.date] = []
    job = counting_job(calls, seconds=0)
    w1 = Scheduler(bot, jobs=(job,), worker="w1")
    w2 = Scheduler(bot, jobs=(job,), worker="w2")
    assert await w1.run(job, DAY) is True
    first = await JobRun.get(job="counting", period=DAY.isoformat())
    assert await w1.run(job, DAY) is False
    assert await w2.run(job, DAY) is False
    bot.clock.advance(hours=12)  # much later, long after STALE: a done run stays done
    assert await w2.run(job, DAY) is False
    assert calls == [DAY]
    again = await JobRun.get(job="counting", period=DAY.isoformat())
    assert (again.worker, again.finished_at, again.status) == ("w1", first.finished_at, "done")

    tomorrow = DAY + dt.timedelta(days=1)
    assert await w2.run(job, tomorrow) is True
    assert calls == [DAY, tomorrow]
    rows = await JobRun.all().order_by("period").values_list("period", "worker", "status")
    assert rows == [("2031-03-12", "w1", "done"), ("2031-03-13", "w2", "done")]


async def test_run_without_a_date_uses_the_local_date(bot, clock):
    calls: list[dt.date] = []
    job = counting_job(calls, seconds=0)
    at_local(clock, DAY, 0, 30)  # 16:30 UTC the day before
    assert await Scheduler(bot, jobs=(job,), worker="w1").run(job) is True
    assert calls == [DAY]
    assert await JobRun.filter(period=DAY.isoformat()).count() == 1


async def test_a_failed_run_is_taken_over_once_its_heartbeat_is_stale(bot):
    calls: list[dt.date] = []

    async def flaky(bot: Bot, today: dt.date) -> dict:
        calls.append(today)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {"ok": True}

    job = Job("flaky", 0, 10, flaky)
    w1 = Scheduler(bot, jobs=(job,), worker="w1")
    w2 = Scheduler(bot, jobs=(job,), worker="w2")
    assert await w1.run(job, DAY) is False
    row = await JobRun.get(job="flaky", period=DAY.isoformat())
    assert (row.status, row.worker) == ("running", "w1")
    assert await w2.run(job, DAY) is False  # its heartbeat is still fresh
    bot.clock.advance(seconds=STALE.total_seconds() + 1)
    assert await w2.run(job, DAY) is True
    row = await JobRun.get(job="flaky", period=DAY.isoformat())
    assert (row.status, row.worker, row.result) == ("done", "w2", {"ok": True})
    assert calls == [DAY, DAY]


# --- crash takeover with the real expiry job --------------------------------------------------


async def _half_done_expiry(bot: Bot, heartbeat_age: dt.timedelta):
    """Two members with five lots past their day; a worker died after expiring two of them."""
    a, b = await new_member(bot), await new_member(bot)
    yesterday = DAY - dt.timedelta(days=1)
    lots = [await lot(a, 10, yesterday), await lot(a, 20, DAY - dt.timedelta(days=30)),
            await lot(b, 30, yesterday), await lot(a, 40, yesterday), await lot(b, 50, yesterday)]
    keep = [await lot(a, 7, DAY), await lot(b, 8, DAY + dt.timedelta(days=100))]
    assert await expiry.expire_lot(lots[0].id) == 10
    assert await expiry.expire_lot(lots[2].id) == 30
    now = bot.now()
    await JobRun.create(job="points_expiry", period=DAY.isoformat(), worker="dead:1",
                        started_at=now - heartbeat_age - dt.timedelta(minutes=1),
                        heartbeat_at=now - heartbeat_age)
    return a, b, lots, keep


async def test_crashed_expiry_run_is_taken_over_and_finishes_without_repeating(any_db, bot):
    a, b, lots, keep = await _half_done_expiry(bot, STALE + dt.timedelta(minutes=5))
    assert await Scheduler(bot, worker="w2").run(EXPIRY_JOB, DAY) is True

    assert await expire_entries() == {f"expire:{x.id}": -x.delta for x in lots}
    assert [x.remaining for x in await PointsEntry.filter(id__in=[x.id for x in lots])] == \
        [0] * 5
    assert [x.remaining for x in await PointsEntry.filter(id__in=[x.id for x in keep])
            .order_by("id")] == [7, 8]
    assert (await Member.get(id=a.id)).points == 7
    assert (await Member.get(id=b.id)).points == 8
    for member in (a, b):
        balance, entries, remaining = await loyalty.check_invariant(member.id)
        assert balance == entries == remaining
    row = await JobRun.get(job="points_expiry", period=DAY.isoformat())
    assert (row.status, row.worker) == ("done", "w2")
    # What the second worker did itself: lots 2, 4 and 5 (20 + 40 + 50).
    assert row.result["expired_points"] == 110


async def test_two_workers_taking_over_the_same_crashed_run_finish_it_once(any_db, bot):
    _, _, lots, _ = await _half_done_expiry(bot, STALE * 3)
    ran = await asyncio.gather(Scheduler(bot, worker="w2").run(EXPIRY_JOB, DAY),
                               Scheduler(bot, worker="w3").run(EXPIRY_JOB, DAY))
    assert sorted(ran) == [False, True]
    assert await expire_entries() == {f"expire:{x.id}": -x.delta for x in lots}
    row = await JobRun.get(job="points_expiry", period=DAY.isoformat())
    assert row.status == "done" and row.worker == ("w2" if ran[0] else "w3")


async def test_a_long_run_keeps_its_heartbeat_so_it_is_not_taken_over(bot, monkeypatch):
    monkeypatch.setattr(scheduler_module, "HEARTBEAT_SECONDS", 0.05)
    calls: list[str] = []
    other = Scheduler(bot, worker="w2")

    async def long_job(bot: Bot, today: dt.date) -> dict:
        calls.append("w1")
        bot.clock.advance(minutes=10)  # the job takes longer than STALE...
        await asyncio.sleep(0.3)  # ...while its heartbeat keeps beating
        row = await JobRun.get(job="long", period=today.isoformat())
        assert bot.now() - row.heartbeat_at < dt.timedelta(seconds=5)
        taken = await other.run(job, today)
        calls.append(f"w2 ran: {taken}")
        return {}

    job = Job("long", 0, 10, long_job)
    assert await Scheduler(bot, worker="w1").run(job, DAY) is True
    assert calls == ["w1", "w2 ran: False"]
    row = await JobRun.get(job="long")
    assert (row.status, row.worker) == ("done", "w1")


async def test_a_running_run_with_a_recent_heartbeat_is_not_taken_over(bot):
    _, _, lots, _ = await _half_done_expiry(bot, dt.timedelta(minutes=1))
    assert await Scheduler(bot, worker="w2").run(EXPIRY_JOB, DAY) is False
    assert set(await expire_entries()) == {f"expire:{lots[0].id}", f"expire:{lots[2].id}"}
    row = await JobRun.get(job="points_expiry", period=DAY.isoformat())
    assert (row.status, row.worker) == ("running", "dead:1")


# --- catch-up ----------------------------------------------------------------------------------


async def _jobs_run() -> dict[str, tuple[str, str]]:
    rows = await JobRun.all().values_list("job", "period", "status")
    assert len(rows) == len({job for job, _, _ in rows})
    return {job: (period, status) for job, period, status in rows}


async def test_catch_up_after_the_scheduled_time_runs_todays_missed_job(bot, clock):
    at_local(clock, DAY, 0, 15)  # 16:15 UTC on the day before: the local date is what counts
    expired = await lot(await new_member(bot), 10, DAY - dt.timedelta(days=1))
    await Scheduler(bot, worker="late").catch_up()
    # Only points_expiry (00:10) was due; tier_evaluation (03:00) and purge (04:30) were not.
    assert due_by(0, 15) == {"points_expiry"}
    assert await _jobs_run() == {"points_expiry": ("2031-03-12", "done")}
    assert await expire_entries() == {f"expire:{expired.id}": -10}

    at_local(clock, DAY, 5)
    await Scheduler(bot, worker="later").catch_up()
    assert {"points_expiry", "tier_evaluation", "purge"} <= due_by(5, 0)
    assert await _jobs_run() == {name: ("2031-03-12", "done") for name in due_by(5, 0)}
    # points_expiry was not run a second time.
    assert (await JobRun.get(job="points_expiry")).worker == "late"


async def test_catch_up_before_the_scheduled_time_runs_nothing(bot, clock):
    at_local(clock, DAY, 0, 5)
    await lot(await new_member(bot), 10, DAY - dt.timedelta(days=1))
    await Scheduler(bot, worker="early").catch_up()
    assert await JobRun.all().count() == 0
    assert await expire_entries() == {}


# --- the real jobs -----------------------------------------------------------------------------


async def test_points_expiry_expires_passed_lots_and_notices_once_per_member_and_date(
        bot, stand_ins):
    one = await new_member(bot, openid="o_sched_1")
    two = await new_member(bot, openid="o_sched_2")
    three = await new_member(bot)  # not following: the notice is recorded as undeliverable
    d = dt.timedelta
    gone = await lot(one, 30, DAY - d(days=1))
    last_day = await lot(one, 15, DAY)  # today is its last day: not expired yet
    await lot(one, 40, DAY + d(days=3))
    await lot(one, 10, DAY + d(days=3))
    await lot(one, 60, DAY + d(days=8))  # outside the 7-day window
    await lot(two, 50, DAY + d(days=7))
    await loyalty.post_points(two.id, -30, kind="redeem", reason="兑换", key="redeem:two")
    spent = await lot(three, 25, DAY + d(days=5))
    await loyalty.post_points(three.id, -25, kind="redeem", reason="兑换", key="redeem:three")
    await lot(three, 5, DAY + d(days=2))

    assert await Scheduler(bot, worker="w1").run(EXPIRY_JOB, DAY) is True
    assert await expire_entries() == {f"expire:{gone.id}": -30}
    assert (await Member.get(id=one.id)).points == 15 + 40 + 10 + 60
    assert (await PointsEntry.get(id=last_day.id)).remaining == 15
    assert (await PointsEntry.get(id=spent.id)).remaining == 0
    entry = await PointsEntry.get(kind="expire")
    assert entry.reason == f"积分到期（{DAY - d(days=1)}）" and entry.member_id == one.id

    notices = {row.key: row for row in await Delivery.filter(key__startswith="expiry-notice:")}
    assert sorted(notices) == sorted([
        f"expiry-notice:{one.id}:{DAY}", f"expiry-notice:{one.id}:{DAY + d(days=3)}",
        f"expiry-notice:{two.id}:{DAY + d(days=7)}", f"expiry-notice:{three.id}:"
        f"{DAY + d(days=2)}"])
    assert "15 积分将于 2031-03-12 到期" in notices[f"expiry-notice:{one.id}:{DAY}"].payload["text"]
    assert "50 积分将于 2031-03-15 到期" in notices[
        f"expiry-notice:{one.id}:{DAY + d(days=3)}"].payload["text"]
    assert "20 积分将于 2031-03-19 到期" in notices[
        f"expiry-notice:{two.id}:{DAY + d(days=7)}"].payload["text"]
    assert {row.purpose for row in notices.values()} == {"points_expiring"}
    assert notices[f"expiry-notice:{three.id}:{DAY + d(days=2)}"].error == (
        "wechat_cs:not_following; wechat_tpl:not_following; sms:no_template")
    sent = [(m.openid, m.content) for m in stand_ins.wechat.messages]
    assert len(sent) == 3 and {openid for openid, _ in sent} == {"o_sched_1", "o_sched_2"}
    row = await JobRun.get(job="points_expiry")
    assert row.result == {"expired_points": 30, "notices": 3}

    # The next day: the lot whose last day was yesterday expires; the 60-point lot enters the
    # window; nobody hears about a date they were already told about.
    tomorrow = DAY + d(days=1)
    bot.clock.advance(days=1)
    assert await Scheduler(bot, worker="w2").run(EXPIRY_JOB, tomorrow) is True
    assert await expire_entries() == {f"expire:{gone.id}": -30, f"expire:{last_day.id}": -15}
    keys = set(await Delivery.filter(key__startswith="expiry-notice:")
               .values_list("key", flat=True))
    assert keys == set(notices) | {f"expiry-notice:{one.id}:{DAY + d(days=8)}"}
    assert len(stand_ins.wechat.messages) == 4
    assert "60 积分将于 2031-03-20 到期" in stand_ins.wechat.messages[-1].content
    assert (await Member.get(id=one.id)).points == 40 + 10 + 60


async def test_tier_evaluation_moves_members_to_what_their_rolling_spend_earns(bot):
    # 银卡 from 1000 yuan, 金卡 from 5000, over the last 12 months.
    down = await new_member(bot, tier="银卡会员", openid="o_tier_down")
    await purchase(down, 1200, days_ago=400, bot=bot)  # outside the 12 months
    await purchase(down, 200, days_ago=100, bot=bot)
    floored = await new_member(bot, tier="金卡会员", floor="银卡会员")
    up = await new_member(bot, tier="普通会员", openid="o_tier_up")
    await purchase(up, 3000, days_ago=300, bot=bot)
    await purchase(up, 2000, days_ago=1, bot=bot)
    voided = await new_member(bot, tier="银卡会员")
    await purchase(voided, 1500, days_ago=3, bot=bot, voided=True)
    same = await new_member(bot, tier="银卡会员")
    await purchase(same, 1500, days_ago=200, bot=bot)
    above_floor = await new_member(bot, tier="银卡会员", floor="银卡会员")
    await purchase(above_floor, 6000, days_ago=10, bot=bot)

    assert await Scheduler(bot, worker="w1").run(TIER_JOB, DAY) is True
    tiers = dict(await Member.all().values_list("id", "tier"))
    assert tiers == {down.id: "普通会员", floored.id: "银卡会员", up.id: "金卡会员",
                     voided.id: "普通会员", same.id: "银卡会员", above_floor.id: "金卡会员"}
    changes = await TierChange.all().order_by("id").values_list(
        "member_id", "from_tier", "to_tier", "reason")
    assert sorted(changes) == sorted([
        (down.id, "银卡会员", "普通会员", "evaluation"),
        (floored.id, "金卡会员", "银卡会员", "evaluation"),
        (up.id, "普通会员", "金卡会员", "evaluation"),
        (voided.id, "银卡会员", "普通会员", "evaluation"),
        (above_floor.id, "银卡会员", "金卡会员", "evaluation")])
    notices = {row.key: row for row in await Delivery.filter(purpose="tier_change")}
    assert sorted(notices) == sorted(f"tier:{m.id}:2031-03-12"
                                     for m in (down, floored, up, voided, above_floor))
    down_text = notices[f"tier:{down.id}:2031-03-12"].payload["text"]
    assert "调整为普通会员（原银卡会员）" in down_text
    assert "升级为金卡会员" in notices[f"tier:{up.id}:2031-03-12"].payload["text"]
    assert (await JobRun.get(job="tier_evaluation")).result["changed"] == 5

    # Evaluated again the next day: nothing moves, nobody is told again.
    bot.clock.advance(days=1)
    assert await Scheduler(bot, worker="w1").run(TIER_JOB, DAY + dt.timedelta(days=1)) is True
    assert await TierChange.all().count() == 5
    assert await Delivery.filter(purpose="tier_change").count() == 5


async def test_a_tier_evaluation_taken_over_after_a_crash_still_sends_the_notice(
        bot, monkeypatch):
    """BUG (bot/jobs/scheduler.py _tier_evaluation): the tier change is committed before its notice
    is claimed, and the next run finds the member already at the new tier (evaluate() returns
    None), so a worker that dies between the two leaves the member downgraded without ever
    being told, although the takeover is meant to "finish the work"."""
    down = await new_member(bot, tier="银卡会员", openid="o_tier_crash")
    real_notify = bot.outbox.notify

    async def dies_once(*args, **kwargs):
        monkeypatch.setattr(bot.outbox, "notify", real_notify)
        raise ConnectionError("worker lost its database connection")

    monkeypatch.setattr(bot.outbox, "notify", dies_once)
    assert await Scheduler(bot, worker="w1").run(TIER_JOB, DAY) is False
    assert (await Member.get(id=down.id)).tier == "普通会员"  # committed before the crash
    bot.clock.advance(seconds=STALE.total_seconds() + 60)
    assert await Scheduler(bot, worker="w2").run(TIER_JOB, DAY) is True
    assert await Delivery.filter(key=f"tier:{down.id}:2031-03-12").count() == 1


async def test_purge_drops_old_records_and_keeps_recent_ones(bot):
    now = bot.now()
    for hours, key in ((37, "old"), (35, "new")):
        row = await InboundMessage.create(dedup_key=f"msg:{key}", user="o_purge", kind="text")
        await InboundMessage.filter(id=row.id).update(received_at=now - dt.timedelta(hours=hours))
    for hours, user in ((25, "old"), (23, "new")):
        await SmsCode.create(phone_hash="h", user=user, purpose="register", code_hash="c",
                             expires_at=now - dt.timedelta(hours=hours))
    for hours in (49, 47):
        await RateEvent.create(key=f"rate:{hours}", at=now - dt.timedelta(hours=hours))

    assert await Scheduler(bot, worker="w1").run(PURGE_JOB, DAY) is True
    assert await InboundMessage.all().values_list("dedup_key", flat=True) == ["msg:new"]
    assert await SmsCode.all().values_list("user", flat=True) == ["new"]
    assert await RateEvent.all().values_list("key", flat=True) == ["rate:47"]
    assert (await JobRun.get(job="purge")).result == {"inbound": 1, "sms_codes": 1,
                                                      "rate_events": 1}


# --- where the scheduler runs: inside the app, or as `memberbot worker` ----------------------


async def _wait_for_runs(count: int, seconds: float = 10) -> list[tuple[str, str, str]]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        with contextlib.suppress(Exception):  # the worker may not have opened the DB yet
            rows = await JobRun.filter(status="done").order_by("job").values_list(
                "job", "period", "worker")
            if len(rows) >= count:
                return rows
        assert asyncio.get_running_loop().time() < deadline, "no catch-up runs appeared"
        await asyncio.sleep(0.05)


THIS_WORKER = f"{socket.gethostname()}:{os.getpid()}"
# Noon: every daily job's time has passed.
ALL_DONE = sorted((name, "2031-03-12", THIS_WORKER) for name in due_by(12, 0))


async def test_the_app_starts_the_scheduler_when_enabled(harness_factory, monkeypatch):
    # The app's clock is made inside the factory: start it at noon local, after every job time.
    monkeypatch.setitem(harness_factory.__globals__, "Clock", PinnedClock)
    harness = await harness_factory(scheduler=SchedulerConfig(enabled=True))
    assert harness.bot.today() == DAY
    assert await _wait_for_runs(len(ALL_DONE)) == ALL_DONE


async def test_the_app_without_the_scheduler_runs_nothing(harness_factory, monkeypatch):
    monkeypatch.setitem(harness_factory.__globals__, "Clock", PinnedClock)
    harness = await harness_factory()
    assert harness.config.scheduler.enabled is False
    await harness.settle()  # a scheduler would have spawned its catch-up: it would be done now
    assert await JobRun.all().count() == 0


async def test_memberbot_worker_runs_the_jobs_without_the_webhook(db_url, stand_ins,
                                                                  monkeypatch):
    config = make_config(db_url, stand_ins)  # [scheduler] enabled = false: worker runs anyway
    monkeypatch.setattr(serve_cli, "open_bot", functools.partial(open_bot, clock=PinnedClock()))
    task = asyncio.create_task(serve_cli.worker(config))
    try:
        assert await _wait_for_runs(len(ALL_DONE)) == ALL_DONE
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
