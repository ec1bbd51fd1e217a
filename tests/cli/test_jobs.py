"""`memberbot jobs list|run`, in-process through bot.cli.main with the repo's config.toml on the
test database and the WeChat stand-in (tests/cli/test_staff.py's fixtures), and on the
sandbox's database with `--sandbox`."""

from __future__ import annotations

import datetime as dt

from bot.models import BirthdayGift, Follower, JobRun, Member, PointsEntry
from bot.services import birthdays, members
from tests.cli import test_needs, test_staff
from tests.cli.test_staff import output, shop_db

cli_config, run_cli = test_staff.cli_config, test_staff.run_cli  # fixtures
shop = test_needs.shop  # fixture: a folder with the repo's config and only the data key

DATE = "2025-05-20"  # a day that has passed: a job never runs for a day to come


async def seed_birthdays(db_url: str) -> dict[str, Member]:
    """A 金卡 and a 普通 member born on 20 May, a 银卡 member born on the 21st; all following,
    with a chat window open, and members since long before DATE."""
    found = {}
    async with shop_db(db_url) as bot:
        for n, (tier, day) in enumerate((("金卡会员", 20), ("普通会员", 20), ("银卡会员", 21))):
            phone = f"1380013{n:04d}"
            member = (await members.register(bot, f"o_jobs_{n}", phone, f"会员{n}", None,
                                             bot.now())).member
            await Member.filter(id=member.id).update(
                tier=tier, tier_floor=tier, birth_month=5, birth_day=day,
                registered_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            await Follower.filter(member_id=member.id).update(message_window_at=bot.now())
            found[tier] = member
    return found


async def test_run_birthday_for_a_date_gives_once_and_says_so_when_run_again(
        run_cli, capsys, db_url, stand_ins):
    seeded = await seed_birthdays(db_url)
    assert await run_cli("jobs", "run", "birthday", "--date", DATE) == 0
    out, _ = output(capsys)
    assert f"birthday for {DATE}: done" in out
    # The 普通 tier gives no points nor coupon: a greeting alone, not counted as a gift.
    for line in ("  members: 2", "  given: 1", "  greeting_only: 1", "  points: 300",
                 "  coupons: 1", "  greeted: 2"):
        assert line in out.splitlines(), out
    greeted = sorted(m.openid for m in stand_ins.wechat.messages if "生日快乐" in m.content)
    assert greeted == ["o_jobs_0", "o_jobs_1"]

    assert await run_cli("jobs", "run", "birthday", "--date", DATE) == 0
    out, _ = output(capsys)
    assert f"birthday for {DATE} was done already" in out
    assert "running it again: every item is keyed, so nobody gets anything twice" in out
    for line in ("  given: 0", "  greeting_only: 0", "  already_given: 2",
                 '  not_greeted: {"duplicate": 2}'):
        assert line in out.splitlines(), out
    assert len([m for m in stand_ins.wechat.messages if "生日快乐" in m.content]) == 2
    async with shop_db(db_url):
        gold = seeded["金卡会员"]
        assert await PointsEntry.filter(member_id=gold.id, idempotency_key__startswith="birthday"
                                        ).values_list("delta", flat=True) == [300]
        assert sorted(await BirthdayGift.all().values_list("member_id", flat=True)) == sorted(
            [gold.id, seeded["普通会员"].id])
        row = await JobRun.get(job="birthday", period=DATE)
        assert row.status == "done" and row.worker.startswith("cli:")


async def test_list_shows_each_job_its_local_time_and_its_last_run(run_cli, capsys, db_url,
                                                                  monkeypatch):
    monkeypatch.setenv("MEMBERBOT_SCHEDULER_BIRTHDAY_AT", "07:45")
    assert await run_cli("jobs", "list") == 0
    lines = output(capsys)[0].splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["points_expiry", "00:10"], ["coupon_expiry", "00:20"], ["daily_figures", "00:40"],
        ["tier_evaluation", "03:00"], ["purge", "04:30"], ["console_cleanup", "04:40"],
        ["birthday", "07:45"]]
    assert all(line.endswith("never run") for line in lines)

    await seed_birthdays(db_url)
    assert await run_cli("jobs", "run", "birthday", "--date", DATE) == 0
    output(capsys)
    assert await run_cli("jobs", "list") == 0
    [line] = [x for x in output(capsys)[0].splitlines() if x.startswith("birthday")]
    assert line.split()[:4] == ["birthday", "07:45", DATE, "done"]
    assert '"given": 1' in line and '"greeted": 2' in line

    # A run whose worker stopped beating shows as stopped, with when it was last heard of.
    async with shop_db(db_url) as bot:
        long_ago = bot.now() - dt.timedelta(hours=1)
        await JobRun.create(job="purge", period="2031-05-21", worker="host:7",
                            started_at=long_ago, heartbeat_at=long_ago)
    assert await run_cli("jobs", "list") == 0
    [line] = [x for x in output(capsys)[0].splitlines() if x.startswith("purge")]
    assert line.startswith("purge            04:30  2031-05-21 stopped (host:7, no heartbeat")


async def test_run_without_a_date_runs_for_the_shops_today(run_cli, capsys, db_url):
    assert await run_cli("jobs", "run", "purge") == 0
    out, _ = output(capsys)
    async with shop_db(db_url) as bot:
        today = bot.today().isoformat()
        assert (await JobRun.get(job="purge")).period == today
    assert f"purge for {today}: done" in out and "  inbound: 0" in out


async def test_an_unknown_job_or_date_is_a_usage_error(run_cli, capsys):
    assert await run_cli("jobs", "run", "birthdays") == 2
    assert "no job 'birthdays'; the jobs are: points_expiry, coupon_expiry" in output(capsys)[1]
    assert await run_cli("jobs", "run", "birthday", "--date", "2031-02-30") == 2
    assert "--date takes a date like 2026-05-01" in output(capsys)[1]


async def test_a_date_after_the_shops_today_is_refused_for_every_job(run_cli, capsys, db_url):
    seeded = await seed_birthdays(db_url)
    async with shop_db(db_url) as bot:
        today = bot.today()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    for job in ("points_expiry", "coupon_expiry", "tier_evaluation", "purge", "birthday"):
        assert await run_cli("jobs", "run", job, "--date", tomorrow) == 2
        assert (f"memberbot: --date {tomorrow} is after the shop's today ({today}): a job runs "
                "for today or a day that has passed") in output(capsys)[1]
    # Next year's birthday is no gift today, and no run is recorded for a day to come.
    assert await run_cli("jobs", "run", "birthday", "--date",
                         f"{today.year + 1}-05-20") == 2
    async with shop_db(db_url):
        assert await JobRun.all().count() == 0
        assert await BirthdayGift.filter(member_id=seeded["金卡会员"].id).count() == 0
        assert not await PointsEntry.filter(member_id=seeded["金卡会员"].id,
                                            idempotency_key__startswith="birthday").exists()
    assert await run_cli("jobs", "list") == 0
    assert all(line.endswith("never run") for line in output(capsys)[0].splitlines())


async def test_a_run_in_progress_elsewhere_is_left_alone_and_a_dead_one_taken_over(
        run_cli, capsys, db_url):
    seeded = await seed_birthdays(db_url)
    async with shop_db(db_url) as bot:
        now = bot.now()
        await JobRun.create(job="birthday", period=DATE, worker="host:42", started_at=now,
                            heartbeat_at=now)
    assert await run_cli("jobs", "run", "birthday", "--date", DATE) == 1
    err = output(capsys)[1]
    assert f"birthday for {DATE} is running on host:42 right now" in err
    async with shop_db(db_url):
        assert await BirthdayGift.all().count() == 0
        await JobRun.filter(job="birthday").update(heartbeat_at=now - dt.timedelta(minutes=6))
    assert await run_cli("jobs", "run", "birthday", "--date", DATE) == 0
    out = output(capsys)[0]
    assert f"birthday for {DATE} was left unfinished by host:42: taking it over." in out
    assert "  given: 1" in out.splitlines()
    async with shop_db(db_url):
        assert await BirthdayGift.filter(member_id=seeded["金卡会员"].id).count() == 1


async def test_a_failed_run_can_be_run_again_at_once(run_cli, capsys, db_url, monkeypatch):
    await seed_birthdays(db_url)
    real = birthdays.celebrate

    async def fails(bot, day, **kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(birthdays, "celebrate", fails)
    assert await run_cli("jobs", "run", "birthday", "--date", DATE) == 1
    assert f"birthday for {DATE} failed (the log above says why)" in output(capsys)[1]
    monkeypatch.setattr(birthdays, "celebrate", real)
    assert await run_cli("jobs", "run", "birthday", "--date", DATE) == 0
    out = output(capsys)[0]
    assert "taking it over" in out and "  given: 1" in out.splitlines()


async def test_jobs_work_on_the_sandbox(shop, capsys):
    await test_needs.start_sandbox_database(shop)
    assert await test_needs.run("--sandbox", "jobs", "run", "birthday", "--date", DATE) == 0
    assert "  members: 0" in capsys.readouterr().out.splitlines()
    assert await test_needs.run("--sandbox", "jobs", "list") == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("birthday")]
    assert line.split()[:4] == ["birthday", "09:00", DATE, "done"]
    # The shop's own database was not touched.
    assert not (shop / "shop.db").exists()
