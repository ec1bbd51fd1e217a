"""Segments: the text names which members an operation is for (`coupon issue --segment`)."""

from __future__ import annotations

import pytest

from bot.models import Member
from bot.runtime import open_bot
from bot.services import members, segments
from tests.support import make_config


def test_all_and_a_tier_are_segments():
    assert segments.parse("all") == segments.Segment()
    assert segments.parse("tier:金卡会员") == segments.Segment(tier="金卡会员")


@pytest.mark.parametrize("text", ["", "ALL", "everyone", "tier", "金卡会员", " all"])
def test_anything_else_is_no_segment(text):
    with pytest.raises(segments.UnknownSegment):
        segments.parse(text)


async def test_a_segment_selects_its_members(db_url, stand_ins):
    async with open_bot(make_config(db_url, stand_ins)) as bot:
        ids = []
        for n in range(3):
            registration = await members.register(bot, f"o_seg_{n}", f"137{n:08d}", f"会员{n}",
                                                  None, bot.now())
            ids.append(registration.member.id)
        await Member.filter(id=ids[1]).update(tier="金卡会员")

        async def chosen(text: str) -> list[int]:
            query = segments.members(segments.parse(text))
            return sorted(await query.values_list("id", flat=True))

        assert await chosen("all") == ids
        assert await chosen("tier:金卡会员") == [ids[1]]
        assert await chosen("tier:钻石会员") == []


async def test_a_segment_leaves_out_erased_and_opted_out_members(db_url, stand_ins):
    """`coupon issue --segment all` once used stock for an erased (注销) member: a campaign's
    audience is only members who may receive one."""
    async with open_bot(make_config(db_url, stand_ins)) as bot:
        ids = []
        for n in range(3):
            registration = await members.register(bot, f"o_seg_x{n}", f"136{n:08d}", f"会员{n}",
                                                  None, bot.now())
            ids.append(registration.member.id)
        await Member.filter(id=ids[0]).update(erased_at=bot.now(), marketing_opt_out_at=bot.now())
        await Member.filter(id=ids[1]).update(marketing_opt_out_at=bot.now())
        await Member.filter(id=ids[2]).update(tier="金卡会员")
        for text in ("all", "tier:金卡会员"):
            query = segments.members(segments.parse(text))
            assert await query.values_list("id", flat=True) == [ids[2]]
