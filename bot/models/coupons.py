"""Coupon templates (kinds of coupon) and the coupons issued to members."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class CouponStatus(StrEnum):
    """issued → redeemed | expired | revoked   (an undone redemption goes back to issued)"""

    ISSUED = "issued"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    REVOKED = "revoked"  # its member erased their data


class CouponTemplate(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=32)
    kind = fields.CharField(max_length=12)  # amount_off | threshold | discount | gift
    amount_off = fields.IntField(default=0)  # fen
    threshold = fields.IntField(default=0)  # fen
    discount_percent = fields.IntField(default=100)
    cap = fields.IntField(default=0)  # fen
    gift = fields.CharField(max_length=64, default="")
    points_cost = fields.IntField(default=0)  # > 0: members can buy it with points (兑换)
    valid_days = fields.IntField(null=True)  # N days after issue ...
    valid_from = fields.DateField(null=True)  # ... or fixed dates
    valid_until = fields.DateField(null=True)
    stock = fields.IntField(null=True)  # total that may ever be issued; None = unlimited
    issued = fields.IntField(default=0)
    per_member = fields.IntField(default=0)  # 0 = no limit
    stores = fields.JSONField(default=list)  # store codes; empty = every store
    exclusive = fields.BooleanField(default=True)  # at most one exclusive coupon per purchase
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "coupon_template"


class Coupon(Model):
    id = fields.BigIntField(primary_key=True)
    template = fields.ForeignKeyField("models.CouponTemplate", related_name="coupons")
    member = fields.ForeignKeyField("models.Member", related_name="coupons")
    code = fields.CharField(max_length=16, unique=True)
    status = fields.CharField(max_length=8, default=CouponStatus.ISSUED)
    source = fields.CharField(max_length=16)  # welcome | referral | manual | exchange | birthday …
    issue_key = fields.CharField(max_length=160, unique=True)
    valid_from = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    issued_at = fields.DatetimeField(auto_now_add=True)
    redeemed_at = fields.DatetimeField(null=True)
    redeemed_by = fields.ForeignKeyField("models.Staff", related_name="redemptions", null=True)
    redeemed_store = fields.ForeignKeyField("models.Store", related_name="redemptions",
                                            null=True)
    purchase = fields.ForeignKeyField("models.Purchase", related_name="coupons", null=True)
    reminded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "coupon"
        indexes = (("member_id", "status"), ("status", "expires_at"))
