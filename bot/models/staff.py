"""Employees who run the shop from chat, their invites, and the append-only audit log."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Role(StrEnum):
    """Least to most: each role may do what the ones before it may."""

    CLERK = "clerk"
    MANAGER = "manager"
    OWNER = "owner"


ROLES = tuple(Role)


class Staff(Model):
    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=32, default="")
    # An owner's store is where they were invited; owners act in every store.
    store = fields.ForeignKeyField("models.Store", related_name="staff")
    role = fields.CharField(max_length=8)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # 上班 sets it, 下班 clears it: members asking for a person (人工) reach who is on duty.
    on_duty_since = fields.DatetimeField(null=True)

    class Meta:
        table = "staff"


class StaffInvite(Model):
    id = fields.IntField(primary_key=True)
    code_hash = fields.CharField(max_length=64, unique=True)  # HMAC of the one-time code
    store = fields.ForeignKeyField("models.Store", related_name="invites")
    role = fields.CharField(max_length=8)
    name = fields.CharField(max_length=32, default="")
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="invite", null=True)

    class Meta:
        table = "staff_invite"


class AppendOnlyError(Exception):
    pass


class AuditEntry(Model):
    """Who did what to whom, with values before and after. Rows are never changed or deleted."""

    id = fields.BigIntField(primary_key=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="audit", null=True)
    actor = fields.CharField(max_length=64)  # "staff:3 小王", or "cli" for the owner's shell
    store_code = fields.CharField(max_length=32, null=True)
    action = fields.CharField(max_length=32)
    member = fields.ForeignKeyField("models.Member", related_name="audit", null=True)
    before = fields.JSONField(null=True)
    after = fields.JSONField(null=True)
    detail = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_entry"
        # A member's trail (the console's member page), newest first.
        indexes = (("member_id", "id"),)

    async def save(self, *args, **kwargs) -> None:
        if not self._saved_in_db:
            await super().save(*args, **kwargs)
            return
        raise AppendOnlyError("audit entries cannot be changed")

    async def delete(self, *args, **kwargs) -> None:
        raise AppendOnlyError("audit entries cannot be deleted")
