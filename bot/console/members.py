"""The Members page: search by phone, card number or name (bot/services/member_search.py), a
member's card with their ledgers, coupons, bookings, ratings, tier history and audit trail,
and a manager's actions on it: 调积分, 设等级, 发券.

Scope: an owner sees every member; a manager and a clerk the members who signed up at their
store or bought there; anyone else's member answers 404, as an unknown id does. A clerk looks
members up and reads the card, coupons and bookings; the ledgers, the audit trail and the
actions are a manager's (staff.REQUIRED_ROLE, as in chat).

The actions call the services the chat commands call (loyalty.adjust, tiering.set_tier,
coupons.issue), which write the audit log, and tell the member through the same notices.
Each form carries a nonce: the action's idempotency key is made of it, so a double submit or
a retried request acts once. A points adjustment larger than what a purchase of [points]
confirm_above yuan earns is asked back first, as 消费 asks above that amount.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.console import query
from bot.console.pages import at_least, render, require, store_scope
from bot.console.query import ID_MAX
from bot.console.session import bot_of
from bot.models import (
    AuditEntry,
    Booking,
    Coupon,
    CouponTemplate,
    Member,
    PointsEntry,
    Purchase,
    Rating,
    Store,
    StoredValueEntry,
    TierChange,
)
from bot.models.staff import Role
from bot.notifications import notices
from bot.rules.parsing import normalize_text
from bot.services import coupons, loyalty, member_search, tiering
from bot.services.console_auth import ConsoleUser
from bot.services.coupons import CouponRefused
from bot.services.staff import REQUIRED_ROLE, allowed, audit

routes = web.RouteTableDef()

LEDGER_ROWS = 10  # the latest entries a ledger shows; "更多" fetches the next ones
LIST_ROWS = 20  # coupons, bookings, ratings, tier changes: the latest ones
MAX_POINTS = 1_000_000  # as 调积分 in chat
REASON_MAX = 120  # PointsEntry.reason
_NONCE = re.compile(r"[A-Za-z0-9_\-]{16,64}")
ACTIONS = ("adjust_points", "set_tier", "issue_coupon")
AUDIT_NAMES = {  # what the audit trail calls the actions it lists (others by their code)
    "lookup": "查询", "adjust_points": "调积分", "set_tier": "设等级", "coupon_issue": "发券",
    "coupon_redeem": "核销", "coupon_undo": "撤销核销", "purchase": "消费",
    "void_purchase": "撤销消费", "stored_value_topup": "充值", "stored_value_pay": "储值消费",
    "stored_value_refund": "储值退款", "punch_sell": "开次卡", "punch_use": "核次",
    "tag_member": "标签", "card_transfer": "换绑", "profile_name": "改称呼",
    "profile_phone": "改手机", "profile_birthday": "改生日", "booking": "代约",
    "booking_move": "改约", "booking_cancel": "取消预约", "booking_arrived": "到店",
    "booking_no_show": "爽约", "erase": "注销", "marketing_opt_in": "重新订阅",
    "import_member": "导入",
}


def nonce() -> str:
    return secrets.token_urlsafe(16)


def confirm_points_above(config) -> int:
    """The adjustment (in points) that is asked back first: what a purchase of [points]
    confirm_above yuan earns at the base rate. 0: never ask (confirm_above = 0)."""
    return round(config.points.confirm_above * config.points.per_yuan)


async def _member(request: web.Request, user: ConsoleUser) -> Member:
    """The member in the URL, if this user may see them; 404 otherwise (another store's
    member looks exactly like no member)."""
    member_id = query.id_in_path(request, "member_id")
    member = await member_search.visible(member_id, store_scope(user))
    if member is None:
        raise web.HTTPNotFound(text="no such member")
    return member


def _int(text: str | None, default: int = 0) -> int:
    try:
        value = int(text) if text else default
    except ValueError:
        return default
    return value if abs(value) <= ID_MAX else default


# --- search ---

@routes.get("/members", name="members")
async def search_page(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.CLERK)
    bot = bot_of(request)
    query = request.query.get("q", "")
    results = await member_search.search(bot, query, store_scope(user),
                                         offset=_int(request.query.get("offset")))
    return render(request, "members.j2", {"results": results, "q": query})


# --- the member's page ---

@dataclass(frozen=True)
class Forms:
    """What the action forms need: fresh nonces, the tiers and templates to choose from."""

    adjust: str | None  # the form's nonce, None when the role may not
    tier: str | None
    coupon: str | None
    tiers: list[str]
    templates: list[CouponTemplate]


async def _forms(request: web.Request, user: ConsoleUser, member: Member) -> Forms:
    bot = bot_of(request)
    may = {action: allowed(user.role, action) and member.erased_at is None
           for action in ACTIONS}
    templates = (await CouponTemplate.filter(active=True).order_by("code")
                 if may["issue_coupon"] else [])
    return Forms(adjust=nonce() if may["adjust_points"] else None,
                 tier=nonce() if may["set_tier"] else None,
                 coupon=nonce() if may["issue_coupon"] else None,
                 tiers=[t.name for t in bot.config.tiers], templates=list(templates))


async def _card(request: web.Request, member: Member) -> dict[str, Any]:
    bot = bot_of(request)
    store = await Store.get_or_none(id=member.store_id) if member.store_id else None
    return {"member": member, "card": await loyalty.card_summary(bot, member),
            "phone": member_search.masked_phone(bot, member.phone_enc),
            "store_name": store.name if store else "", "tz": bot.config.shop.tz}


async def _page_context(request: web.Request, user: ConsoleUser, member: Member
                        ) -> dict[str, Any]:
    bot = bot_of(request)
    manager = at_least(user.role, Role.MANAGER)  # the ledgers and the trail
    context = await _card(request, member)
    context |= {
        "forms": await _forms(request, user, member),
        "manager": manager,
        "confirm_above": confirm_points_above(bot.config),
        "coupons": await Coupon.filter(member_id=member.id).order_by("-id").limit(LIST_ROWS)
        .select_related("template"),
        "bookings": await Booking.filter(member_id=member.id).order_by("-starts_at", "-id")
        .limit(LIST_ROWS).select_related("service", "resource", "store"),
        "ratings": await Rating.filter(member_id=member.id).order_by("-id").limit(LIST_ROWS)
        .select_related("store"),
        "tier_changes": await TierChange.filter(member_id=member.id).order_by("-id")
        .limit(LIST_ROWS),
        "now": bot.now(),
        "one_second": dt.timedelta(seconds=1),
        "audit_names": AUDIT_NAMES,
    }
    if manager:
        context |= {"purchases": await Purchase.filter(member_id=member.id).order_by("-id")
                    .limit(LIST_ROWS).select_related("store"),
                    "points": await _points(member.id, None),
                    "stored_value": await _stored_value(member.id, None),
                    "audit": await _audit(member.id, None)}
    return context


@routes.get(r"/members/{member_id:\d+}", name="member")
async def member_page(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.CLERK)
    member = await _member(request, user)
    # Reading a member's personal data is logged, as 查询 in chat is.
    await audit(user.actor, "lookup", member=member, detail="console")
    return render(request, "members_card.j2", await _page_context(request, user, member))


# --- the ledgers and the audit trail, a page at a time (htmx "更多") ---

@dataclass(frozen=True)
class Rows:
    rows: list
    before: int | None  # the id to continue below, None when there is nothing more


async def _rows(query, before: int | None) -> Rows:
    if before is not None:
        query = query.filter(id__lt=before)
    rows = list(await query.order_by("-id").limit(LEDGER_ROWS + 1))
    more = len(rows) > LEDGER_ROWS
    rows = rows[:LEDGER_ROWS]
    return Rows(rows, rows[-1].id if more else None)


async def _points(member_id: int, before: int | None) -> Rows:
    return await _rows(PointsEntry.filter(member_id=member_id), before)


async def _stored_value(member_id: int, before: int | None) -> Rows:
    return await _rows(StoredValueEntry.filter(member_id=member_id).select_related("store"),
                       before)


async def _audit(member_id: int, before: int | None) -> Rows:
    return await _rows(AuditEntry.filter(member_id=member_id), before)


LEDGERS = {"points": _points, "stored-value": _stored_value, "audit": _audit}


@routes.get(r"/members/{member_id:\d+}/{ledger:points|stored-value|audit}",
            name="member_ledger")
async def ledger_rows(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    member = await _member(request, user)
    ledger = request.match_info["ledger"]
    before = _int(request.query.get("before"), 0) or None
    rows = await LEDGERS[ledger](member.id, before)
    return render(request, "_member_rows.j2", {
        "ledger": ledger, "rows": rows, "member": member, "tz": bot_of(request).config.shop.tz,
        "audit_names": AUDIT_NAMES})


# --- actions ---

@dataclass
class Outcome:
    ok: bool
    message: str
    repeated: bool = False


async def _form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _key(action: str, member: Member, form: dict[str, str]) -> str | None:
    """The action's idempotency key, from the form's nonce (None: no usable nonce)."""
    value = form.get("nonce", "")
    return f"console:{action}:{member.id}:{value}" if _NONCE.fullmatch(value) else None


async def _answer(request: web.Request, user: ConsoleUser, member: Member, outcome: Outcome,
                  *, confirm: dict[str, Any] | None = None) -> web.StreamResponse:
    """htmx: the outcome and, when something was done, the card, fresh forms and the lists
    swapped in out of band. A plain form post (no script): the whole page with the outcome."""
    member = await Member.get(id=member.id)
    answer = {"outcome": outcome, "confirm": confirm}
    if not request.headers.get("HX-Request"):
        return render(request, "members_card.j2",
                      await _page_context(request, user, member) | answer)
    context = (await _page_context(request, user, member) if outcome.ok
               else {"member": member})
    return render(request, "_member_outcome.j2", context | answer)


@dataclass(frozen=True)
class _Action:
    """A manager's action on a member, as its form arrived: who, on whom, and its key."""

    user: ConsoleUser
    member: Member
    form: dict[str, str]
    key: str | None


async def _begin(request: web.Request, action: str, name: str
                 ) -> tuple[_Action, Outcome | None]:
    """The action's role checked, its member in the user's sight (else 404), and why it cannot
    go on, if it cannot: an erased member, or a form without a usable nonce."""
    user = require(request, REQUIRED_ROLE[action])
    member = await _member(request, user)
    form = await _form(request)
    act = _Action(user, member, form, _key(name, member, form))
    if member.erased_at is not None:
        return act, Outcome(False, "该会员已注销。")
    if act.key is None:
        return act, Outcome(False, "表单已失效，请刷新页面。")
    return act, None


@routes.post(r"/members/{member_id:\d+}/points", name="member_adjust")
async def adjust_points(request: web.Request) -> web.StreamResponse:
    act, refused = await _begin(request, "adjust_points", "adjust")
    user, member, form, key = act.user, act.member, act.form, act.key
    if refused:
        return await _answer(request, user, member, refused)
    bot = bot_of(request)
    text = normalize_text(form.get("delta", "")).replace(" ", "")  # ５０ from a Chinese IME
    sign = -1 if text.startswith("-") else 1
    digits = text[1:] if text[:1] in ("+", "-") else text
    reason = " ".join(form.get("reason", "").split())
    if not digits.isascii() or not digits.isdigit() or not 0 < int(digits) <= MAX_POINTS:
        return await _answer(request, user, member, Outcome(
            False, f"积分请填 +/- 1 到 {MAX_POINTS} 之间的整数，如 +50 或 -30。"))
    if not reason or len(reason) > REASON_MAX:
        return await _answer(request, user, member, Outcome(
            False, f"请填写原因（{REASON_MAX} 字以内），会员会在通知里看到。"))
    delta = sign * int(digits)
    limit = confirm_points_above(bot.config)
    repeated = await PointsEntry.exists(idempotency_key=key)
    if limit and abs(delta) > limit and form.get("confirmed") != "1" and not repeated:
        # A typo here (50000 for 500) is a member's windfall: ask first, as 消费 does above
        # its limit. Nothing is done yet; 确认 sends the same nonce.
        return await _answer(request, user, member, Outcome(False, ""), confirm={
            "delta": delta, "reason": reason, "nonce": form["nonce"], "limit": limit})
    try:
        entry = await loyalty.adjust(bot, member, delta, reason=reason, actor=user.actor,
                                     key=key)
    except loyalty.InsufficientPoints:
        return await _answer(request, user, member, Outcome(False, bot.templates.render(
            "adjust_insufficient.j2", points=member.points, delta=delta)))
    # Repeats too, as in chat: the notice's key is the entry's, so the outbox sends it once.
    bot.spawn(notices.points_adjusted(bot, entry, bot.now()), f"notice:adjust:{entry.id}")
    return await _answer(request, user, member, Outcome(
        True, f"已调整积分 {entry.delta:+d}（{entry.reason}），当前积分 {entry.balance_after}。",
        repeated))


@routes.post(r"/members/{member_id:\d+}/tier", name="member_tier")
async def set_tier(request: web.Request) -> web.StreamResponse:
    act, refused = await _begin(request, "set_tier", "tier")
    user, member, form, key = act.user, act.member, act.form, act.key
    if refused:
        return await _answer(request, user, member, refused)
    bot = bot_of(request)
    tier = form.get("tier", "")
    names = [t.name for t in bot.config.tiers]
    if tier not in names:
        return await _answer(request, user, member, Outcome(
            False, f"没有这个等级，可选：{'、'.join(names)}。"))
    done = await tiering.set_tier(bot, member, tier, actor=user.actor, key=key)
    after = done.member
    floor = "（保底等级：消费更多仍可升级，定期评估不会低于此等级）" if after.tier_floor else ""
    return await _answer(request, user, member, Outcome(True, f"已设为{after.tier}{floor}。",
                                                        done.repeated))


@routes.post(r"/members/{member_id:\d+}/coupon", name="member_coupon")
async def issue_coupon(request: web.Request) -> web.StreamResponse:
    act, refused = await _begin(request, "issue_coupon", "coupon")
    user, member, form, key = act.user, act.member, act.form, act.key
    if refused:
        return await _answer(request, user, member, refused)
    bot = bot_of(request)
    template = await CouponTemplate.get_or_none(code=form.get("template", ""))
    if template is None:
        return await _answer(request, user, member, Outcome(False, "请选择要发的券。"))
    repeated = await Coupon.exists(issue_key=key)
    try:
        coupon = await coupons.issue(bot, member, template, source="manual", key=key,
                                     actor=user.actor)
    except CouponRefused as refused:
        return await _answer(request, user, member, Outcome(
            False, bot.templates.render(refused.reason, **refused.values)))
    bot.spawn(notices.coupon_issued(bot, coupon, template), f"notice:coupon-issued:{coupon.id}")
    return await _answer(request, user, member, Outcome(
        True, f"已发放「{template.name}」，券码 {coupon.code}。", repeated))
