"""What members (and staff for them) changed in their details: 修改资料, 改资料, 改生日.

One row per change, the member's own history (我的数据 lists it). Phones appear only masked
(138****8000), never in clear. `key` is the idempotency key of the message that made the change,
so a retried message finds its row instead of changing the member again.
"""

from tortoise import fields
from tortoise.models import Model

PROFILE_FIELDS = ("name", "phone", "birthday")


class ProfileChange(Model):
    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="profile_changes")
    field = fields.CharField(max_length=8)  # name | phone | birthday
    before = fields.CharField(max_length=32, null=True)  # None: not given before
    after = fields.CharField(max_length=32)
    # Who: "member:<id>" for the member themself, "staff:<id> <name>" for staff.
    by = fields.CharField(max_length=64)
    staff = fields.ForeignKeyField("models.Staff", related_name="profile_changes", null=True,
                                   on_delete=fields.SET_NULL)
    key = fields.CharField(max_length=96, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "profile_change"
        indexes = (("member_id", "id"),)
