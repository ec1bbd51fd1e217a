"""The points ledger and purchases.

Points move only by appending entries. Every positive entry is a lot with its own expiry and a
`remaining` count; a spend records which lots it consumed (PointsUse). Member.points is the cached
sum of the entries, equal at all times to the sum of the lots' remaining points.
"""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class PointsKind(StrEnum):
    EARN = "earn"  # purchases, check-ins, welcome and referral rewards
    REDEEM = "redeem"  # points exchanged for a coupon
    EXPIRE = "expire"
    ADJUST = "adjust"  # a manager's correction, an import, an erasure
    REVERSE = "reverse"  # a voided purchase taken back


ENTRY_KINDS = tuple(PointsKind)


class PointsEntry(Model):
    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="points_entries")
    delta = fields.IntField()
    kind = fields.CharField(max_length=12)  # a PointsKind
    reason = fields.CharField(max_length=120)  # what the member reads in 明细
    idempotency_key = fields.CharField(max_length=160, unique=True)
    balance_after = fields.IntField()
    # Lots (delta > 0): what is left of them, and the last day they can be spent.
    remaining = fields.IntField(default=0)
    expires_on = fields.DateField(null=True)
    purchase = fields.ForeignKeyField("models.Purchase", related_name="points_entries",
                                      null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "points_entry"
        indexes = (("member_id", "created_at"), ("member_id", "remaining", "expires_on"),
                   ("expires_on", "remaining"))


class PointsUse(Model):
    """How many points a negative entry took from which lot."""

    id = fields.BigIntField(primary_key=True)
    entry = fields.ForeignKeyField("models.PointsEntry", related_name="uses")
    lot = fields.ForeignKeyField("models.PointsEntry", related_name="used_by")
    amount = fields.IntField()

    class Meta:
        table = "points_use"


class Purchase(Model):
    """A purchase recorded by staff; its id is the serial (流水号) shown on receipts."""

    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="purchases")
    store = fields.ForeignKeyField("models.Store", related_name="purchases", null=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="purchases", null=True)
    amount = fields.IntField()  # fen
    points = fields.IntField(default=0)
    note = fields.CharField(max_length=64, default="")
    idempotency_key = fields.CharField(max_length=160, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    voided_at = fields.DatetimeField(null=True)
    # Points of this purchase that were already spent when it was voided and could not be
    # taken back from the member's other points (the balance never goes below zero).
    void_shortfall = fields.IntField(default=0)

    class Meta:
        table = "purchase"
        # (store_id, member_id): a store's customers, for the console's member search.
        indexes = (("member_id", "created_at"), ("store_id", "member_id"))


class TierChange(Model):
    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="tier_changes")
    from_tier = fields.CharField(max_length=16)
    to_tier = fields.CharField(max_length=16)
    reason = fields.CharField(max_length=16)  # purchase | evaluation | manual
    staff = fields.ForeignKeyField("models.Staff", related_name="tier_changes", null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "tier_change"
        indexes = (("member_id", "id"),)  # a member's tier history


class CheckIn(Model):
    """One row per member and local date: the unique key is what makes 签到 once a day."""

    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="checkins")
    local_date = fields.DateField()
    streak = fields.IntField()
    points = fields.IntField()

    class Meta:
        table = "checkin"
        unique_together = (("member_id", "local_date"),)
