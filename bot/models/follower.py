"""A WeChat account that follows (or followed) the Official Account."""

from tortoise import fields
from tortoise.models import Model


class Follower(Model):
    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    following = fields.BooleanField(default=True)
    member = fields.OneToOneField(
        "models.Member", related_name="follower", null=True, on_delete=fields.SET_NULL
    )
    # The last QR scene this account arrived through (store:S001, staff:7, ref:8800000018).
    scene = fields.CharField(max_length=64, null=True)
    subscribed_at = fields.DatetimeField(null=True)
    unsubscribed_at = fields.DatetimeField(null=True)
    # Customer-service message windows (see services/cs_quota.py).
    message_window_at = fields.DatetimeField(null=True)
    message_window_used = fields.IntField(default=0)
    event_window_at = fields.DatetimeField(null=True)
    event_window_used = fields.IntField(default=0)

    class Meta:
        table = "follower"
