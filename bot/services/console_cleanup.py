"""Housekeeping for the console's logins (a daily job): login nonces (QR codes and links)
that can no longer be used, and sessions that ended.

A session idle past [console] idle_minutes ends at its next request (console_auth.authenticate);
one whose browser never came back is ended here with the same reason, so open sessions mean
browsers in use. Ended sessions are kept SESSION_KEEP for "why was I logged out" (end_reason),
then deleted; the audit log keeps every login and logout for good.
"""

from __future__ import annotations

import datetime as dt

from bot.models import ConsoleSession, LoginNonce

NONCE_KEEP = dt.timedelta(days=1)  # past its expiry: a nonce is worth nothing by then
SESSION_KEEP = dt.timedelta(days=7)  # after it ended


async def clean(now: dt.datetime, idle: dt.timedelta) -> dict[str, int]:
    ended = await ConsoleSession.filter(ended_at=None, last_seen_at__lte=now - idle).update(
        ended_at=now, end_reason="idle")
    return {
        "sessions_ended": ended,
        "sessions_deleted": await ConsoleSession.filter(
            ended_at__lt=now - SESSION_KEEP).delete(),
        "nonces_deleted": await LoginNonce.filter(expires_at__lt=now - NONCE_KEEP).delete(),
    }
