"""Member tags: staff add and remove words on a member (标签), which segments select by (tag=…).

A tag is a set member: adding one the member has, or removing one they lack, changes nothing
and writes nothing. The unique (member, tag) pair makes that so under any concurrency (INSERT …
ON CONFLICT DO NOTHING), and each message's changes are one transaction with one audit entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from bot.infra import sql
from bot.models import Member, MemberTag
from bot.services.staff import Actor, audit


@dataclass(frozen=True)
class TagChange:
    tags: list[str]  # the member's tags afterwards, sorted
    added: list[str]
    removed: list[str]


async def tags_of(member_id: int) -> list[str]:
    return list(await MemberTag.filter(member_id=member_id).order_by("tag")
                .values_list("tag", flat=True))


async def change(member: Member, *, add: Sequence[str] = (), remove: Sequence[str] = (),
                 actor: Actor, now: dt.datetime) -> TagChange:
    """Add and remove tags (already normalised: bot/rules/tags.py) in one transaction."""
    async with in_transaction():
        before = await tags_of(member.id)
        added = []
        for tag in dict.fromkeys(add):
            rows = await sql.fetch(
                "INSERT INTO member_tag (member_id, tag, created_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (member_id, tag) DO NOTHING RETURNING id",
                member.id, tag, now)
            if rows:
                added.append(tag)
        removed = [tag for tag in dict.fromkeys(remove)
                   if await MemberTag.filter(member_id=member.id, tag=tag).delete()]
        after = await tags_of(member.id)
        if added or removed:
            await audit(actor, "tag_member", member=member, before={"tags": before},
                        after={"tags": after},
                        detail=" ".join([f"+{t}" for t in added] + [f"-{t}" for t in removed]))
    return TagChange(after, added, removed)
