"""Outbound: every send is a row with a status, and the shared WeChat access token."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class DeliveryStatus(StrEnum):
    """pending → sent | failed"""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Delivery(Model):
    id = fields.BigIntField(primary_key=True)
    # Idempotency key: the same key never sends twice.
    key = fields.CharField(max_length=160, unique=True)
    channel = fields.CharField(max_length=16)  # wechat_cs | sms
    purpose = fields.CharField(max_length=24)
    openid = fields.CharField(max_length=64, null=True)
    phone_hash = fields.CharField(max_length=64, null=True)
    payload = fields.JSONField()
    status = fields.CharField(max_length=8, default=DeliveryStatus.PENDING, db_index=True)
    error = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "delivery"


class AccessToken(Model):
    """The stable_token shared by every worker; lease_until marks a refresh in progress."""

    id = fields.IntField(primary_key=True)
    app_id = fields.CharField(max_length=64, unique=True)
    token = fields.CharField(max_length=512, default="")
    expires_at = fields.DatetimeField(null=True)
    lease_until = fields.DatetimeField(null=True)

    class Meta:
        table = "access_token"
