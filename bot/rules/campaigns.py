"""Pure decisions of a campaign: who is held out, what an error means, how long to wait before
a retry, which month a mass send counts against, the clientmsgid of a mass send."""

from __future__ import annotations

import datetime as dt
import hashlib
from enum import StrEnum

CHANNELS = ("wechat", "sms")
# WeChat's message/mass/send takes 2 to 10,000 openids.
MASS_MIN, MASS_MAX = 2, 10_000
# WeChat refuses a repeated clientmsgid for 24 hours; after that a resend would go out again.
CLIENT_MSG_ID_MEMORY = dt.timedelta(hours=23)


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # try again later, with backoff
    REFUSED = "refused"  # WeChat will not deliver to this member: try SMS instead
    DUPLICATE = "duplicate"  # 45065: this mass send already went out
    UNKNOWN = "unknown"  # the message may have gone out: never resend blindly
    PERMANENT = "permanent"  # give up


# WeChat: -1 system busy, 45009 daily quota, 45011 minute quota, 45066 a retry within a minute.
WECHAT_TRANSIENT = frozenset({-1, 45009, 45011, 45066})
# Not following, refused messages, blocked the account's messages.
WECHAT_REFUSED = frozenset({43004, 43101, 48002})
WECHAT_DUPLICATE = 45065
# What our client reports when no answer came back (a timeout, a dropped connection).
WECHAT_LOST = -1

# Aliyun's flow control and throttling; a network error may have sent the SMS (no idempotency).
SMS_TRANSIENT = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User",
                           "Throttling.Api", "ServiceUnavailable", "http_429", "http_503"})
SMS_UNKNOWN = frozenset({"network_error"})


def wechat_error(errcode: int) -> ErrorKind:
    """What a mass send's errcode means. A -1 is retried because the clientmsgid makes a
    repeat harmless: had the first call gone out, WeChat answers 45065."""
    if errcode == WECHAT_DUPLICATE:
        return ErrorKind.DUPLICATE
    if errcode in WECHAT_TRANSIENT:
        return ErrorKind.TRANSIENT
    if errcode in WECHAT_REFUSED:
        return ErrorKind.REFUSED
    return ErrorKind.PERMANENT


def sms_error(code: str) -> ErrorKind:
    if code in SMS_TRANSIENT:
        return ErrorKind.TRANSIENT
    if code in SMS_UNKNOWN or code.startswith("http_5"):
        return ErrorKind.UNKNOWN
    return ErrorKind.PERMANENT


def is_holdout(campaign_id: int, member_id: int, percent: int) -> bool:
    """A deterministic random `percent` share of members, seeded by the campaign: the same
    member is held out whichever worker asks and however often, and each campaign holds out
    different members."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"holdout:{campaign_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def backoff(attempt: int) -> dt.timedelta:
    """The wait before attempt number `attempt + 1` (attempt counts from 1): 5 s, 10 s, 20 s …
    up to 10 minutes."""
    return dt.timedelta(seconds=min(600, 5 * 2 ** max(attempt - 1, 0)))


def month_of(now: dt.datetime, tz: dt.tzinfo) -> str:
    """The month (shop time) a mass send counts against, e.g. "2026-12"."""
    return now.astimezone(tz).strftime("%Y-%m")


def client_msg_id(campaign_id: int, batch_seq: int, text: str) -> str:
    """The clientmsgid of one mass send (≤ 64 bytes): campaign, batch and the text sent, so
    the same call repeated after a crash or a timeout is refused by WeChat as a duplicate."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"mb-c{campaign_id}-b{batch_seq}-{digest}"


def parse_channels(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...] | None:
    """The channels in our order ("sms,wechat" → ("wechat", "sms")), or None if any is
    unknown or none is given."""
    names = [c.strip() for c in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names or any(n not in CHANNELS for n in names):
        return None
    return tuple(c for c in CHANNELS if c in names)


def pick_channel(channels: tuple[str, ...], *, following: bool, mass_used: int, mass_cap: int,
                 has_phone: bool) -> str | None:
    """How a member is reached: WeChat's mass send while they follow and have mass messages
    left this month, else SMS; None when the campaign's channels reach them by neither."""
    if "wechat" in channels and following and mass_used < mass_cap:
        return "wechat"
    if "sms" in channels and has_phone:
        return "sms"
    return None
