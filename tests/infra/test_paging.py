"""The batch iterator (bot/infra/paging.py): every row once, in key order, never more than a
batch in memory, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bot.infra.paging import batches, value_batches
from bot.models import Member, PointsEntry
from bot.runtime import open_bot
from bot.services import loyalty
from tests.services.test_ledger import new_member
from tests.support import Clock, make_config


async def test_batches_walk_every_row_once_in_id_order(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        made = [await new_member(bot) for _ in range(7)]
        await Member.filter(id=made[3].id).update(tier="金卡会员")
        seen = [[m.id for m in batch] async for batch in batches(Member.all(), size=3)]
        assert seen == [[m.id for m in made[:3]], [m.id for m in made[3:6]], [made[6].id]]
        wanted = [m.id async for batch in batches(Member.filter(tier="金卡会员"), size=3)
                  for m in batch]
        assert wanted == [made[3].id]
        assert [b async for b in batches(Member.filter(tier="无此等级"))] == []


async def test_a_row_changed_by_the_loop_is_not_fetched_again_and_a_new_one_is(db_url, any_db):
    """Keyset paging: what the loop does to the rows it has seen does not shift the pages
    (OFFSET paging would skip rows that leave the filter)."""
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        made = [await new_member(bot) for _ in range(5)]
        seen = []
        async for batch in batches(Member.filter(tier=bot.config.tiers[0].name), size=2):
            for member in batch:
                seen.append(member.id)
                await Member.filter(id=member.id).update(tier="金卡会员")  # leaves the filter
            if len(seen) == 2:
                made.append(await new_member(bot))
        assert seen == [m.id for m in made]


async def test_value_batches_page_on_the_first_field(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        made = [await new_member(bot, 10 * (i + 1)) for i in range(5)]
        rows = [row async for batch in value_batches(Member.all(), "id", "points", size=2)
                for row in batch]
        assert rows == [(m.id, m.points) for m in made]
        ids = [batch async for batch in value_batches(Member.all(), "id", size=4, flat=True)]
        assert ids == [[m.id for m in made[:4]], [made[4].id]]
        # Paging on a foreign key: each member once, however many lots they hold.
        for member in made[:3]:
            await loyalty.post_points(member.id, 5, kind="adjust", reason="测试",
                                      key=f"t:{member.id}")
        owners = [batch async for batch in value_batches(
            PointsEntry.filter(delta__gt=0).distinct(), "member_id", size=2, flat=True)]
        assert owners == [[made[0].id, made[1].id], [made[2].id, made[3].id], [made[4].id]]


async def test_value_batches_need_their_fields(db_url):
    async with open_bot(make_config(db_url), Clock(), scheduler=False):
        with pytest.raises(ValueError, match="fields"):
            value_batches(Member.all())
        with pytest.raises(ValueError, match="one field"):
            value_batches(Member.all(), "id", "points", flat=True)
