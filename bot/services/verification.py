"""SMS verification codes: 6 digits, valid 5 minutes, stored as an HMAC, 5 wrong tries and the
code is void; sends limited per phone and per WeChat account so the bot cannot bomb a number."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Literal

from tortoise.expressions import F

from bot.infra.ratelimit import Limit
from bot.infra.vault import constant_time_equal
from bot.models import SmsCode
from bot.notifications.sms import member_message_for


@dataclass(frozen=True)
class SendResult:
    sent: bool
    template: str = ""  # the member-facing explanation when not sent
    retry_after: int = 0


CheckStatus = Literal["ok", "wrong", "expired", "locked", "missing"]


@dataclass(frozen=True)
class CheckResult:
    status: CheckStatus
    attempts_left: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _limits(bot, phone_hash: str, user: str) -> dict[str, list[Limit]]:
    cfg = bot.config.sms_limits
    rules = [Limit(cfg.per_minute, 60), Limit(cfg.per_hour, 3600), Limit(cfg.per_day, 86400)]
    return {f"sms:phone:{phone_hash}": rules, f"sms:user:{user}": rules}


async def send_code(bot, phone: str, user: str, purpose: str) -> SendResult:
    now = bot.now()
    phone_hash = bot.vault.lookup_hash(phone)
    limits = _limits(bot, phone_hash, user)
    retry_after = await bot.limiter.hit(limits, now)
    if retry_after:
        bot.metrics.sms_refused.labels("rate_limit").inc()
        return SendResult(False, "sms_rate_limited.j2", retry_after)
    code = f"{secrets.randbelow(10**6):06d}"
    # A new code replaces this account's earlier one (another account cannot cancel it).
    await SmsCode.filter(phone_hash=phone_hash, user=user, purpose=purpose,
                         status="active").update(status="void")
    row = await SmsCode.create(
        phone_hash=phone_hash,
        user=user,
        purpose=purpose,
        code_hash=bot.vault.code_hash(phone_hash, code),
        expires_at=now + dt.timedelta(seconds=bot.config.sms_limits.code_ttl_seconds),
    )
    outcome = await bot.outbox.sms(
        phone, phone_hash, bot.config.sms.template_verify, {"code": code},
        key=f"sms-code:{row.id}", purpose="verify_code", log_params=False,
    )
    if not outcome.ok:
        await SmsCode.filter(id=row.id).update(status="void")
        # Nothing reached the phone, so the attempt does not count against the limits: a
        # member who mistyped a number can correct it at once.
        await bot.limiter.release(limits, now)
        bot.metrics.sms_refused.labels(outcome.code or "failed").inc()
        return SendResult(False, member_message_for(outcome.code))
    return SendResult(True)


async def check_code(bot, phone: str, user: str, purpose: str, code: str) -> CheckResult:
    now = bot.now()
    phone_hash = bot.vault.lookup_hash(phone)
    max_attempts = bot.config.sms_limits.max_attempts
    row = (
        await SmsCode.filter(phone_hash=phone_hash, user=user, purpose=purpose)
        .order_by("-id")
        .first()
    )
    if row is None:
        return CheckResult("missing")
    if row.status != "active":
        return CheckResult("locked" if row.attempts >= max_attempts else "missing")
    if row.expires_at <= now:
        return CheckResult("expired")
    # Count the try before comparing, with a conditional update: parallel guesses cannot
    # get more than max_attempts between them.
    counted = await SmsCode.filter(
        id=row.id, status="active", attempts__lt=max_attempts
    ).update(attempts=F("attempts") + 1)
    if not counted:
        return CheckResult("locked")
    if constant_time_equal(row.code_hash, bot.vault.code_hash(phone_hash, code)):
        used = await SmsCode.filter(id=row.id, status="active").update(status="used")
        return CheckResult("ok") if used else CheckResult("missing")
    left = max_attempts - (row.attempts + 1)
    if left <= 0:
        await SmsCode.filter(id=row.id).update(status="void")
        return CheckResult("locked")
    return CheckResult("wrong", left)

