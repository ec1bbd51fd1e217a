"""Stored value (储值, in fen) and punch cards (次卡)."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class StoredValueKind(StrEnum):
    TOPUP = "topup"
    BONUS = "bonus"  # given with a top-up
    PAY = "pay"
    REFUND = "refund"


class StoredValueEntry(Model):
    """Append-only; Member.stored_value is the cached sum."""

    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="stored_value_entries")
    delta = fields.IntField()
    kind = fields.CharField(max_length=8)  # a StoredValueKind
    reason = fields.CharField(max_length=120)
    idempotency_key = fields.CharField(max_length=160, unique=True)
    balance_after = fields.IntField()
    store = fields.ForeignKeyField("models.Store", related_name="stored_value_entries",
                                   null=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="stored_value_entries",
                                   null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stored_value_entry"
        indexes = (("member_id", "created_at"),)


class PunchCard(Model):
    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="punch_cards")
    product = fields.CharField(max_length=32)
    name = fields.CharField(max_length=32)
    visits = fields.IntField()
    remaining = fields.IntField()
    expires_on = fields.DateField()
    idempotency_key = fields.CharField(max_length=160, unique=True)
    store = fields.ForeignKeyField("models.Store", related_name="punch_cards", null=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="punch_cards_sold", null=True)
    sold_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "punch_card"
        indexes = (("member_id", "remaining"),)


class PunchUse(Model):
    id = fields.BigIntField(primary_key=True)
    card = fields.ForeignKeyField("models.PunchCard", related_name="uses")
    idempotency_key = fields.CharField(max_length=160, unique=True)
    remaining_after = fields.IntField()
    store = fields.ForeignKeyField("models.Store", related_name="punch_uses", null=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="punch_uses", null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "punch_use"
