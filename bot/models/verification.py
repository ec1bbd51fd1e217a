"""SMS verification codes and the sliding-window rate limiter behind them."""

from tortoise import fields
from tortoise.models import Model


class SmsCode(Model):
    id = fields.IntField(primary_key=True)
    phone_hash = fields.CharField(max_length=64, db_index=True)
    user = fields.CharField(max_length=64)
    purpose = fields.CharField(max_length=16)
    code_hash = fields.CharField(max_length=64)  # HMAC, never the code itself
    expires_at = fields.DatetimeField(db_index=True)
    attempts = fields.IntField(default=0)
    # active → used | void (too many wrong tries, or replaced by a newer code)
    status = fields.CharField(max_length=8, default="active")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "sms_code"


class RateKey(Model):
    """One row per limited key; locked while its events are counted, so checks don't race."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=96, unique=True)

    class Meta:
        table = "rate_key"


class RateEvent(Model):
    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=96)
    at = fields.DatetimeField()

    class Meta:
        table = "rate_event"
        indexes = (("key", "at"),)
