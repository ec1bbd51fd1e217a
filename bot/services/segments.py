"""Segments: which members an operation is meant for, named in a short text. Today there are two
kinds, `all` (every member) and `tier:<name>` (the members of one tier)."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.queryset import QuerySet

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
    """The segment's members, as a query to page over (by id)."""
    query = Member.all()
    if segment.tier is not None:
        query = query.filter(tier=segment.tier)
    return query
