"""`memberbot feedback`: members' ratings of their visits, newest first, phones masked, with the
count and the average; filtered by store, by first day and by at most so many stars."""

from __future__ import annotations

import datetime as dt

from bot.models import Purchase, Rating, Store
from bot.services import members, ratings
from tests.cli import test_staff
from tests.cli.test_staff import OTHER_PHONE, PHONE, output, seed_member, shop_db

cli_config = test_staff.cli_config
run_cli = test_staff.run_cli


async def rated(db_url: str, phone: str, store: str, stars: int, comment: str,
                days_ago: int = 0) -> Rating:
    """A purchase at the store, rated through the service; dated `days_ago` back."""
    async with shop_db(db_url) as bot:
        member = await members.lookup(bot, phone)
        purchase = await Purchase.create(member_id=member.id, store=await Store.get(code=store),
                                         amount=12800, idempotency_key=f"t:{phone}:{store}")
        visit = await ratings.find_visit(bot, f"purchase:{purchase.id}")
        result = await ratings.rate(bot, member, visit, stars, comment, key=f"t:{purchase.id}")
        at = bot.now() - dt.timedelta(days=days_ago)
        await Rating.filter(id=result.rating.id).update(created_at=at)
        return result.rating


async def test_feedback_lists_newest_first_masked_with_count_and_average(run_cli, capsys,
                                                                        db_url):
    await seed_member(db_url, PHONE)
    await seed_member(db_url, OTHER_PHONE, name="李四")
    old = await rated(db_url, PHONE, "S001", 5, "很好", days_ago=10)
    low = await rated(db_url, OTHER_PHONE, "S002", 1, "等太久了", days_ago=1)
    mid = await rated(db_url, OTHER_PHONE, "S001", 3, "")
    assert await run_cli("feedback") == 0
    out, _ = output(capsys)
    lines = out.strip().splitlines()
    assert [line.split()[5] for line in lines[:3]] == [mid.visit, low.visit, old.visit]
    assert "★★★☆☆ 139****9000" in lines[0] and lines[0].endswith(" -")
    assert "S002" in lines[1] and "等太久了" in lines[1] and "(thread " in lines[1]
    assert "★★★★★ 138****8000" in lines[2] and "很好" in lines[2]
    assert PHONE not in out and OTHER_PHONE not in out
    assert lines[-1] == "3 ratings, average 3.00 stars"

    assert await run_cli("feedback", "--store", "S001") == 0
    out, _ = output(capsys)
    assert low.visit not in out and out.strip().endswith("2 ratings, average 4.00 stars")

    assert await run_cli("feedback", "--max-stars", "2") == 0
    out, _ = output(capsys)
    assert "等太久了" in out and "很好" not in out
    assert out.strip().endswith("1 rating, average 1.00 stars")

    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=5)).astimezone(
        dt.timezone(dt.timedelta(hours=8))).date()
    assert await run_cli("feedback", "--since", since.isoformat()) == 0
    out, _ = output(capsys)
    assert old.visit not in out and "2 ratings, average 2.00 stars" in out


async def test_feedback_with_nothing_and_with_mistakes(run_cli, capsys, db_url):
    assert await run_cli("feedback") == 0
    out, _ = output(capsys)
    assert out.strip() == "0 ratings, average - stars"
    assert await run_cli("feedback", "--store", "S999") == 2
    _, err = output(capsys)
    assert "no store 'S999'" in err
    assert await run_cli("feedback", "--since", "2026-13-01") == 2
    _, err = output(capsys)
    assert "--since takes a date" in err
