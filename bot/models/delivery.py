"""Outbound: every send is a row with a status, and the shared WeChat access token."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class DeliveryStatus(StrEnum):
    """pending → sent | failed | skipped: a send made at once (the row is claimed by its key,
    then the channels are tried in order). A notice whose SMS falls outside the sending window
    waits instead: pending → queued (not_before) → sending (claimed by one worker's tick, a
    conditional update) → sent | failed. A row still `sending` after its lease (the worker died
    between Aliyun's answer and our update) becomes unknown and is never resent: SendSms has no
    idempotency key, so a resend could reach the member twice."""

    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # not sent on purpose: error says why (opted_out, erased)
    UNKNOWN = "unknown"


class Delivery(Model):
    id = fields.BigIntField(primary_key=True)
    # Idempotency key: the same key never sends twice.
    key = fields.CharField(max_length=160, unique=True)
    # The channel that sent it, or the last one tried: wechat_cs | wechat_tpl | sms
    channel = fields.CharField(max_length=16)
    purpose = fields.CharField(max_length=24)
    member_id = fields.IntField(null=True)  # notices: whom it is for (a queued SMS re-reads them)
    openid = fields.CharField(max_length=64, null=True)
    phone_hash = fields.CharField(max_length=64, null=True)
    payload = fields.JSONField()
    status = fields.CharField(max_length=8, default=DeliveryStatus.PENDING, db_index=True)
    error = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    # A queued SMS goes out at or after this (the sending window opens); claimed_at is when a
    # worker took it for sending (its lease starts).
    not_before = fields.DatetimeField(null=True)
    claimed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "delivery"
        indexes = (("status", "not_before"),)


class AccessToken(Model):
    """The stable_token shared by every worker; lease_until marks a refresh in progress."""

    id = fields.IntField(primary_key=True)
    app_id = fields.CharField(max_length=64, unique=True)
    token = fields.CharField(max_length=512, default="")
    expires_at = fields.DatetimeField(null=True)
    lease_until = fields.DatetimeField(null=True)

    class Meta:
        table = "access_token"
