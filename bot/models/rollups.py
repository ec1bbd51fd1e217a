"""Daily rollups of the owner's figures (bot/services/rollups.py keeps them, a nightly job).

A closed local day is summed once a store into DailyFigures, and the members who were active or
paid that day are kept as sets (DailyMember), since a distinct count over a period is not the
sum of its days'; PeriodCount holds those counts for the windows of closed days the page
needs on a given day. RollupDay says which days are rolled up: a day without a row there is read
from the ledgers' own rows. `store_key` is the store's id, 0 for rows without a store (a member
who joined through no store's code), so (day, store_key) can be unique on both databases.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class DailyFigures(Model):
    id = fields.BigIntField(primary_key=True)
    day = fields.DateField()  # the shop's local date
    store_key = fields.IntField()  # the store's id; 0: no store
    new_members = fields.IntField(default=0)
    sales = fields.BigIntField(default=0)  # fen, voided purchases left out
    points_issued = fields.BigIntField(default=0)
    points_redeemed = fields.BigIntField(default=0)
    points_expired = fields.BigIntField(default=0)
    bookings = fields.IntField(default=0)
    no_shows = fields.IntField(default=0)
    ratings = fields.IntField(default=0)
    stars = fields.IntField(default=0)
    coupons_issued = fields.IntField(default=0)
    coupons_redeemed = fields.IntField(default=0)
    tier_ups = fields.IntField(default=0)
    tier_downs = fields.IntField(default=0)

    class Meta:
        table = "daily_figures"
        unique_together = (("day", "store_key"),)
        indexes = (("store_key", "day"),)


class MemberSet(StrEnum):
    ACTIVE = "active"  # earned or spent points that day (home store)
    PAYING = "paying"  # bought something that day, not voided (the purchase's store)


class DailyMember(Model):
    """One member in one day's set of a kind, for a store."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=8)  # a MemberSet
    day = fields.DateField()
    store_key = fields.IntField()
    member_id = fields.IntField()

    class Meta:
        table = "daily_member"
        unique_together = (("kind", "day", "store_key", "member_id"),)
        indexes = (("kind", "store_key", "day", "member_id"), ("kind", "member_id", "day"))


class PeriodCount(Model):
    """How many distinct members of a kind a window of closed days holds, for the day the
    page reads it on (`as_of`): the nightly job counts the windows that day's page needs.
    store_key -1: the whole shop (a member of two stores counted once)."""

    id = fields.BigIntField(primary_key=True)
    as_of = fields.DateField()
    kind = fields.CharField(max_length=8)
    store_key = fields.IntField()
    first_day = fields.DateField()
    last_day = fields.DateField()
    members = fields.IntField()

    class Meta:
        table = "period_count"
        unique_together = (("as_of", "kind", "store_key", "first_day", "last_day"),)


class RollupDay(Model):
    """A day whose rollups are written (and when: a later run replaces them)."""

    id = fields.IntField(primary_key=True)
    day = fields.DateField(unique=True)
    rolled_at = fields.DatetimeField()

    class Meta:
        table = "rollup_day"
