"""Inbound dedup records and dialog state: both kept outside the process so that any worker can
take the next message, and a restart forgets nothing."""

from tortoise import fields
from tortoise.models import Model


class InboundMessage(Model):
    id = fields.BigIntField(primary_key=True)
    # "msg:<MsgId>" for messages, "evt:<FromUserName>:<CreateTime>:<Event>" for events.
    dedup_key = fields.CharField(max_length=160, unique=True)
    user = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=32)
    # processing → replied | deferred (answered later by customer-service message) | failed
    status = fields.CharField(max_length=12, default="processing")
    reply = fields.JSONField(null=True)
    # While processing: the worker whose copy is acting, and until when its claim holds. That
    # worker keeps moving lease_until on; once it has passed, the worker is gone (killed) and a
    # retry takes the claim over. Null in rows from before leases: taken over like a lapsed one.
    owner = fields.CharField(max_length=64, null=True)
    lease_until = fields.DatetimeField(null=True)
    received_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "inbound_message"


class Conversation(Model):
    id = fields.IntField(primary_key=True)
    user = fields.CharField(max_length=80, unique=True)
    state = fields.CharField(max_length=48, null=True)
    data = fields.JSONField(default=dict)
    # Set by DialogStore from the bot's clock, which is what "idle for how long?" compares with.
    updated_at = fields.DatetimeField()

    class Meta:
        table = "conversation"
