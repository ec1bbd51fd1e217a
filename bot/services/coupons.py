"""Coupons: templates, issuing, exchange for points, expiry (redemption is services/redemption).

Stock and per-member limits hold under concurrency: stock is a conditional update on the
template's counter (issued < stock), and the per-member count is taken with the member's row
locked. Redemption is a conditional update (status = 'issued'), so a coupon is redeemed at most
once whatever the concurrency; a redemption with an amount records the purchase (and its points)
in the same transaction.
"""

from __future__ import annotations

import datetime as dt

from tortoise.expressions import F, Q

from bot.clock import local_midnight
from bot.config import Config, CouponTemplateConfig
from bot.infra import idempotent
from bot.infra.paging import batches
from bot.models import Coupon, CouponStatus, CouponTemplate, Member, PointsKind
from bot.notifications import notices
from bot.rules import coupons as coupon_rules
from bot.services import Refused, loyalty
from bot.services.staff import Actor, audit


class CouponRefused(Refused):
    """A rule refused; `reason` names the template that explains it."""


# --- templates ---

def _template_fields(c: CouponTemplateConfig) -> dict:
    return {
        "name": c.name, "kind": c.kind, "amount_off": round(c.amount * 100),
        "threshold": round(c.threshold * 100), "discount_percent": c.discount,
        "cap": round(c.cap * 100), "gift": c.gift, "points_cost": c.points_cost,
        "valid_days": c.valid_days or None,
        "valid_from": dt.date.fromisoformat(c.valid_from) if c.valid_from else None,
        "valid_until": dt.date.fromisoformat(c.valid_until) if c.valid_until else None,
        "stock": c.stock or None, "per_member": c.per_member, "stores": list(c.stores),
        "exclusive": c.exclusive,
    }


async def sync_templates(config: Config) -> None:
    """Templates defined in config.toml are created or updated by code at start-up (their
    issued counters are kept); templates added with the CLI are left alone."""
    wanted = {t.code: _template_fields(t) for t in config.coupons}
    if not wanted:
        return
    columns = next(iter(wanted.values())).keys()
    stored = {row.pop("code"): row for row in await CouponTemplate.filter(
        code__in=list(wanted)).values("code", *columns)}
    # Written only when config.toml changed: every command opens the bot, and a write at each
    # start would make a read-only command wait on (or fail at) a database another is writing.
    for code, fields in wanted.items():
        if stored.get(code) != fields:
            await CouponTemplate.update_or_create(defaults=fields, code=code)


async def add_template(c: CouponTemplateConfig) -> CouponTemplate:
    return await CouponTemplate.create(code=c.code, **_template_fields(c))


def rule_of(t: CouponTemplate) -> coupon_rules.Rule:
    return coupon_rules.Rule(kind=coupon_rules.CouponKind(t.kind), amount_off=t.amount_off,
                             threshold=t.threshold, discount_percent=t.discount_percent,
                             cap=t.cap, gift=t.gift)


def _validity(t: CouponTemplate, now: dt.datetime, tz) -> tuple[dt.datetime, dt.datetime]:
    """From when to when (UTC) a coupon issued now is valid: to the end of its last local day."""
    if t.valid_days:
        last = now.astimezone(tz).date() + dt.timedelta(days=t.valid_days)
        return now, local_midnight(last + dt.timedelta(days=1), tz)
    return (local_midnight(t.valid_from, tz),
            local_midnight(t.valid_until + dt.timedelta(days=1), tz))


# --- issuing ---

async def issue(bot, member: Member, template: CouponTemplate, *, source: str, key: str,
                actor: Actor | None = None) -> Coupon:
    """One coupon for the member, in its own transaction. The same key returns the same coupon."""
    return await idempotent.once(
        lambda: Coupon.get_or_none(issue_key=key),
        lambda: issue_in_transaction(bot, member, template, source=source, key=key,
                                     actor=actor))


async def issue_in_transaction(bot, member: Member, template: CouponTemplate, *, source: str,
                               key: str, actor: Actor | None = None) -> Coupon:
    now = bot.now()
    if not template.active:
        raise CouponRefused("coupon_inactive.j2", template=template)
    valid_from, expires_at = _validity(template, now, bot.config.shop.tz)
    if expires_at <= now:
        raise CouponRefused("coupon_template_over.j2", template=template)
    if template.per_member:
        # Lock the member's row so two grabs by one member count each other.
        await Member.filter(id=member.id).update(points=F("points"))
        held = await Coupon.filter(member_id=member.id, template_id=template.id).count()
        if held >= template.per_member:
            raise CouponRefused("coupon_limit.j2", template=template)
    taken = await CouponTemplate.filter(
        Q(stock__isnull=True) | Q(issued__lt=F("stock")), id=template.id, active=True
    ).update(issued=F("issued") + 1)
    if not taken:
        raise CouponRefused("coupon_out_of_stock.j2", template=template)
    coupon = await Coupon.create(template_id=template.id, member_id=member.id,
                                 code=coupon_rules.new_code(), source=source, issue_key=key,
                                 valid_from=valid_from, expires_at=expires_at)
    if actor:
        await audit(actor, "coupon_issue", member=member,
                    after={"coupon": coupon.code, "template": template.code})
    return coupon


async def issue_reward(bot, member: Member, template_code: str, *, source: str, key: str) -> (
        Coupon | None):
    """A configured reward (welcome, referral); a template that ran out just gives nothing."""
    if not template_code:
        return None
    template = await CouponTemplate.get_or_none(code=template_code)
    if template is None:
        return None
    try:
        return await issue(bot, member, template, source=source, key=key)
    except CouponRefused:
        return None


async def exchangeable(member: Member, today: dt.date) -> list[CouponTemplate]:
    """Templates on offer for points: active, not sold out, and not past their last day."""
    return await (CouponTemplate.filter(Q(stock__isnull=True) | Q(issued__lt=F("stock")),
                                        Q(valid_until__isnull=True) | Q(valid_until__gte=today),
                                        active=True, points_cost__gt=0)
                  .order_by("points_cost", "id"))


async def exchange(bot, member: Member, template: CouponTemplate, *, key: str) -> Coupon:
    """Points off and the coupon on, in one transaction: both happen or neither."""
    async def act() -> Coupon:
        await loyalty.append_points(member.id, -template.points_cost, kind=PointsKind.REDEEM,
                                    reason=f"兑换 {template.name}", key=f"{key}:points")
        return await issue_in_transaction(bot, member, template, source="exchange", key=key)

    try:
        return await idempotent.once(lambda: Coupon.get_or_none(issue_key=key), act)
    except loyalty.InsufficientPoints:
        raise CouponRefused("exchange_not_enough.j2", template=template,
                            points=await loyalty.spendable(member.id)) from None


# --- the wallet ---

async def wallet(member_id: int, now: dt.datetime) -> list[Coupon]:
    return await (Coupon.filter(member_id=member_id, status="issued", expires_at__gt=now)
                  .order_by("expires_at", "id").select_related("template"))


async def history(member_id: int, now: dt.datetime, limit: int = 20) -> list[Coupon]:
    return await (Coupon.filter(Q(status__not="issued") | Q(expires_at__lte=now),
                                member_id=member_id)
                  .order_by("-id").limit(limit).select_related("template", "redeemed_store"))


# --- the daily job ---

async def expire_and_remind(bot, now: dt.datetime) -> dict[str, int]:
    """Mark lapsed coupons expired; remind members 3 days before a coupon expires (once)."""
    expired = await Coupon.filter(status="issued", expires_at__lte=now).update(
        status=CouponStatus.EXPIRED)
    reminded = 0
    async for due in batches(Coupon.filter(status="issued", reminded_at=None, expires_at__gt=now,
                                           expires_at__lte=now + dt.timedelta(days=3))
                             .select_related("template"), size=500):
        for coupon in due:
            outcome = await notices.coupon_expiring(bot, coupon)
            await Coupon.filter(id=coupon.id).update(reminded_at=now)
            reminded += outcome.ok
    return {"expired": expired, "reminded": reminded}
