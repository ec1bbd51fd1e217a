"""Member service: conversations with a person (人工), the messages relayed both ways, and the
ratings members give their visits.

A thread's id is the short number staff answer by (回复 <n> <文字>). `open_member` is the member's
id while the thread is open and NULL once it is closed: unique, so a member has at most one open
thread whatever the concurrency (NULLs never collide)."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class ThreadStatus(StrEnum):
    """waiting (nobody on duty took it yet) → open → closed."""

    WAITING = "waiting"
    OPEN = "open"
    CLOSED = "closed"


class SupportThread(Model):
    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=160, unique=True)  # what opened it: a message, a rating
    member = fields.ForeignKeyField("models.Member", related_name="support_threads")
    store = fields.ForeignKeyField("models.Store", related_name="support_threads", null=True)
    reason = fields.CharField(max_length=16)  # asked (人工) | low_rating
    status = fields.CharField(max_length=8, default=ThreadStatus.WAITING)
    open_member = fields.IntField(null=True, unique=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="support_threads", null=True)
    opened_at = fields.DatetimeField()
    last_activity_at = fields.DatetimeField()
    closed_at = fields.DatetimeField(null=True)
    closed_by = fields.CharField(max_length=16, null=True)  # member | staff | idle

    class Meta:
        table = "support_thread"
        indexes = (("status", "last_activity_at"),)


class SupportMessage(Model):
    """One message of a thread, either way. A member's message that reached nobody (no one on
    duty) waits with delivered_at NULL for the next person who comes on duty."""

    id = fields.BigIntField(primary_key=True)
    thread = fields.ForeignKeyField("models.SupportThread", related_name="messages")
    key = fields.CharField(max_length=160, unique=True)  # the inbound message's key: once
    from_member = fields.BooleanField()
    staff = fields.ForeignKeyField("models.Staff", related_name="support_messages", null=True)
    text = fields.TextField()
    created_at = fields.DatetimeField()
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "support_message"
        indexes = (("thread", "created_at"),)


class Rating(Model):
    """A member's 1–5 stars for one visit (a purchase, or a booking marked arrived): `visit` is
    unique ("purchase:<id>" / "booking:<id>"), so a retry never rates it twice."""

    id = fields.IntField(primary_key=True)
    visit = fields.CharField(max_length=48, unique=True)
    # The message that gave it: a retry of that message is told "thanks" again, another try
    # at the same visit "already rated".
    key = fields.CharField(max_length=160, unique=True)
    member = fields.ForeignKeyField("models.Member", related_name="ratings")
    store = fields.ForeignKeyField("models.Store", related_name="ratings", null=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="ratings", null=True)
    stars = fields.SmallIntField()
    comment = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField()
    thread = fields.ForeignKeyField("models.SupportThread", related_name="ratings", null=True)

    class Meta:
        table = "rating"
        indexes = (("store", "created_at"), ("stars", "created_at"))
