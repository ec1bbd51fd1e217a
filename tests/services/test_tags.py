"""Member tags under concurrency: the unique pair, not a check, makes a tag added once."""

from __future__ import annotations

import asyncio

from bot.models import AuditEntry, MemberTag
from bot.runtime import open_bot
from bot.services import members, tags
from bot.services.staff import Actor
from tests.support import make_config


async def test_many_adding_and_removing_at_once_change_each_tag_once(any_db, db_url):
    async with open_bot(make_config(db_url), scheduler=False) as bot:
        member = (await members.register(bot, "o_tags", "13800138000", "会员", None,
                                         bot.now())).member
        actor = Actor.cli()
        added = await asyncio.gather(*(tags.change(member, add=["瑜伽", "VIP"], actor=actor,
                                                   now=bot.now()) for _ in range(12)))
        assert sorted(t for change in added for t in change.added) == ["VIP", "瑜伽"]
        assert await tags.tags_of(member.id) == ["VIP", "瑜伽"]
        removed = await asyncio.gather(*(tags.change(member, remove=["VIP"], actor=actor,
                                                     now=bot.now()) for _ in range(12)))
        assert [change.removed for change in removed].count(["VIP"]) == 1
        assert await MemberTag.filter(member_id=member.id).count() == 1
        # One audit entry per change that happened, none for the no-ops.
        changed = sum(bool(change.added) for change in added) + 1
        assert await AuditEntry.filter(action="tag_member").count() == changed
