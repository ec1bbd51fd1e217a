"""Housekeeping: drop records that have served their purpose."""

from __future__ import annotations

import datetime as dt

from bot.models import InboundMessage, RateEvent, SmsCode

# WeChat retries within about 15 s; a day and a half is far beyond any retry.
DEDUP_KEEP = dt.timedelta(hours=36)
CODE_KEEP = dt.timedelta(days=1)
RATE_KEEP = dt.timedelta(days=2)  # longer than the longest rate-limit window (a day)


async def purge(now: dt.datetime) -> dict[str, int]:
    return {
        "inbound": await InboundMessage.filter(received_at__lt=now - DEDUP_KEEP).delete(),
        "sms_codes": await SmsCode.filter(expires_at__lt=now - CODE_KEEP).delete(),
        "rate_events": await RateEvent.filter(at__lt=now - RATE_KEEP).delete(),
    }
