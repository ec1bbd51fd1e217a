"""Segments: which members an operation is meant for, named in a short text. Today there are two
kinds, `all` (every member) and `tier:<name>` (the members of one tier).

A segment is a campaign's audience, so it never holds a member who must not get one: an erased
member (注销: only a row kept for the ledgers) or one who said 退订 (no marketing). Issuing to them
would use up stock for nobody, or market to someone who said no."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tortoise.queryset import QuerySet

from bot.infra.paging import value_batches
from bot.models import Member


class UnknownSegment(ValueError):
    """The text names no segment."""


@dataclass(frozen=True)
class Segment:
    tier: str | None = None  # None: every member


def parse(text: str) -> Segment:
    if text.startswith("tier:"):
        return Segment(tier=text.removeprefix("tier:"))
    if text == "all":
        return Segment()
    raise UnknownSegment(text)


def members(segment: Segment) -> QuerySet[Member]:
    """The segment's members who may receive a campaign, as a query to page over (by id)."""
    query = Member.filter(erased_at=None, marketing_opt_out_at=None)
    if segment.tier is not None:
        query = query.filter(tier=segment.tier)
    return query


async def id_batches(segment: Segment, *, today: dt.date | None = None,
                     size: int = 500) -> AsyncIterator[list[int]]:
    """The segment's member ids in ascending batches: what a campaign streams its audience by.
    `today` (the shop's date) anchors relative conditions such as last_visit>30d."""
    async for batch in value_batches(members(segment), "id", size=size, flat=True):
        yield batch


async def count(segment: Segment, *, today: dt.date | None = None) -> int:
    return await members(segment).count()
