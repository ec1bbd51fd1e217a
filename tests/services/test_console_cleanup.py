"""The console's housekeeping job: nonces past use are deleted, sessions idle past
[console] idle_minutes end (as at their next request), ended sessions go after a week; open
sessions in use and nonces still valid stay."""

from __future__ import annotations

import datetime as dt

from bot.jobs.scheduler import JOBS, Scheduler
from bot.models import ConsoleSession, LoginNonce, Store
from bot.runtime import open_bot
from bot.services import console_cleanup
from tests.support import add_staff, make_config

NOW = dt.datetime(2031, 3, 12, 4, 0, tzinfo=dt.UTC)
IDLE = dt.timedelta(minutes=30)


async def session(staff, name: str, last_seen: dt.datetime, ended: dt.datetime | None = None):
    return await ConsoleSession.create(
        token_hash=name, csrf_token="c", staff=staff, role=staff.role,
        store=await Store.get(code="S001"), created_at=last_seen, last_seen_at=last_seen,
        ended_at=ended, end_reason="logout" if ended else "")


async def nonce(name: str, expires: dt.datetime) -> None:
    await LoginNonce.create(nonce_hash=name, kind="qr", expires_at=expires)


async def test_cleanup_ends_idle_sessions_and_deletes_what_has_served(db_url):
    async with open_bot(make_config(db_url), scheduler=False):
        staff = await add_staff("o_clean", "manager")
        await session(staff, "in_use", NOW - dt.timedelta(minutes=5))
        await session(staff, "idle", NOW - dt.timedelta(hours=2))
        await session(staff, "ended_lately", NOW - dt.timedelta(days=2),
                      ended=NOW - dt.timedelta(days=2))
        await session(staff, "ended_long_ago", NOW - dt.timedelta(days=9),
                      ended=NOW - dt.timedelta(days=8))
        await nonce("valid", NOW + dt.timedelta(minutes=1))
        await nonce("just_expired", NOW - dt.timedelta(minutes=1))
        await nonce("expired_long_ago", NOW - dt.timedelta(days=2))

        result = await console_cleanup.clean(NOW, IDLE)
        assert result == {"sessions_ended": 1, "sessions_deleted": 1, "nonces_deleted": 1}
        left = {s.token_hash: s for s in await ConsoleSession.all()}
        assert set(left) == {"in_use", "idle", "ended_lately"}
        assert left["in_use"].ended_at is None
        assert (left["idle"].ended_at, left["idle"].end_reason) == (NOW, "idle")
        assert set(await LoginNonce.all().values_list("nonce_hash", flat=True)) == {
            "valid", "just_expired"}
        # Again: nothing more to do.
        assert await console_cleanup.clean(NOW, IDLE) == {
            "sessions_ended": 0, "sessions_deleted": 0, "nonces_deleted": 0}


async def test_cleanup_is_a_scheduled_job_with_the_configured_idle_time(db_url):
    async with open_bot(make_config(db_url), lambda: NOW, scheduler=False) as bot:
        staff = await add_staff("o_clean", "manager")
        idle = dt.timedelta(minutes=bot.config.console.idle_minutes)
        await session(staff, "inside", NOW - idle + dt.timedelta(minutes=1))
        await session(staff, "past", NOW - idle - dt.timedelta(minutes=1))
        job = {job.name: job for job in JOBS}["console_cleanup"]
        assert await Scheduler(bot, jobs=(job,), worker="w").run(job)
        ended = dict(await ConsoleSession.all().values_list("token_hash", "end_reason"))
        assert ended == {"inside": "", "past": "idle"}
