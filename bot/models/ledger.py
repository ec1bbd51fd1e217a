"""The points ledger: append-only; Member.points is its cached sum."""

from tortoise import fields
from tortoise.models import Model


class PointsEntry(Model):
    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="points_entries")
    delta = fields.IntField()
    kind = fields.CharField(max_length=12)  # earn | redeem | expire | adjust | reverse
    reason = fields.CharField(max_length=120)
    idempotency_key = fields.CharField(max_length=160, unique=True)
    balance_after = fields.IntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "points_entry"
        indexes = (("member_id", "created_at"),)


class Purchase(Model):
    """A purchase recorded by staff; its amount feeds the tier basis (rolling 12-month spend)."""

    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="purchases")
    store = fields.ForeignKeyField("models.Store", related_name="purchases", null=True)
    amount = fields.IntField()  # fen
    points = fields.IntField(default=0)
    note = fields.CharField(max_length=64, default="")
    idempotency_key = fields.CharField(max_length=160, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    voided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "purchase"
        indexes = (("member_id", "created_at"),)
