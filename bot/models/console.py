"""The owner's console: one-time login nonces and server-side sessions.

Only hashes of the secrets are stored (the nonce in a QR scene or a login link, the session
cookie, the browser's claim on a pending QR login), so a copy of the database logs nobody in.
"""

from __future__ import annotations

import datetime as dt

from tortoise import fields
from tortoise.models import Model


class LoginNonce(Model):
    """A login waiting for its proof: a QR code a bound employee scans (kind "qr"), or a link
    `memberbot console link` printed for one employee (kind "link"). Used at most once."""

    id = fields.IntField(primary_key=True)
    nonce_hash = fields.CharField(max_length=64, unique=True)
    kind = fields.CharField(max_length=8)  # qr | link
    # The browser that asked for the QR code: only it may collect the session the scan makes.
    browser_hash = fields.CharField(max_length=64, null=True, unique=True)
    user_agent = fields.CharField(max_length=255, default="")
    # For a link: who it logs in. For a QR code: who scanned it (set when the scan is accepted).
    staff = fields.ForeignKeyField("models.Staff", related_name="login_nonces", null=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)  # the scan (or the link) was accepted
    claimed_at = fields.DatetimeField(null=True)  # the browser turned it into a session
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "console_login_nonce"


class ConsoleSession(Model):
    """A logged-in browser. The role and store it was opened with are kept: when the employee's
    role or store changes, or they are revoked, the session no longer matches and ends."""

    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    csrf_token = fields.CharField(max_length=64)
    staff = fields.ForeignKeyField("models.Staff", related_name="console_sessions")
    role = fields.CharField(max_length=8)
    store = fields.ForeignKeyField("models.Store", related_name="console_sessions")
    user_agent = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    end_reason = fields.CharField(max_length=16, default="")  # logout | revoked | idle | ...

    class Meta:
        table = "console_session"
        indexes = (("staff_id", "ended_at"),)

    @classmethod
    async def end_all(cls, staff_id: int, now: dt.datetime, reason: str) -> int:
        """End every open session of an employee; how many there were."""
        return await cls.filter(staff_id=staff_id, ended_at=None).update(ended_at=now,
                                                                         end_reason=reason)
