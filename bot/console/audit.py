"""日志: the append-only audit log (bot/models/staff.py AuditEntry), newest first, paged by id
(keyset: ?before=<id>). Filters: who (an employee), the action, the member (card number or
id), a date range. A manager sees their store's entries; an owner every entry."""

from __future__ import annotations

from aiohttp import web

from bot.console import query
from bot.console.pages import render, require
from bot.console.session import bot_of
from bot.models import AuditEntry, Member, Staff
from bot.models.staff import Role

PAGE = 50
routes = web.RouteTableDef()
# What the log's actions mean to a shop owner; an action not named here shows as stored.
ACTION_NAMES = {
    "purchase": "消费", "void_purchase": "撤销消费", "lookup": "查询会员",
    "adjust_points": "调积分", "set_tier": "设等级", "tag_member": "标签",
    "coupon_issue": "发券", "coupon_redeem": "核销", "coupon_undo": "撤销券",
    "stored_value_topup": "储值充值", "stored_value_pay": "储值消费",
    "stored_value_refund": "储值退款", "punch_sell": "开卡", "punch_use": "次卡核销",
    "card_transfer": "转卡", "import_member": "导入会员", "profile_name": "改姓名",
    "profile_phone": "改手机", "profile_birthday": "改生日", "erase": "注销",
    "booking": "代约", "booking_move": "改约", "booking_cancel": "取消预约",
    "booking_arrived": "到店", "booking_no_show": "爽约",
    "campaign_create": "创建群发", "campaign_start": "开始群发", "campaign_confirm": "确认群发",
    "campaign_pause": "暂停群发", "campaign_resume": "继续群发", "campaign_cancel": "取消群发",
    "duty_on": "上班", "duty_off": "下班", "support_reply": "回复会员", "support_close": "结束会话",
    "staff_bind": "员工绑定", "staff_invite": "邀请员工", "staff_revoke": "停用员工",
    "staff_role": "改角色", "console_login": "登录后台", "console_logout": "退出后台",
    "console_link": "登录链接", "console_export": "导出",
}


async def _member(text: str) -> int | None:
    """A member by card number, else by id; 0 (matches nothing) when there is none."""
    member_id = None
    if len(text) <= Member._meta.fields_map["card_no"].max_length:  # longer is no card number
        member_id = await Member.filter(card_no=text).first().values_list("id", flat=True)
    if member_id is None and text.isascii() and text.isdigit() and len(text) < 10:
        member_id = int(text)
    return member_id or 0


@routes.get("/audit", name="audit")
async def page(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    tz = bot.config.shop.tz
    dates = query.dates(request)
    store_id, store_code = await query.store_of(request, user)
    staff_id = query.number(request, "staff", most=query.INT_MAX)
    action = request.query.get("action", "").strip()[:32]
    member_text = request.query.get("member", "").strip()[:32]
    before = query.number(request, "before")

    found = AuditEntry.all()
    if store_id is not None:
        found = found.filter(store_code=store_code)
    if staff_id is not None:
        found = found.filter(staff_id=staff_id)
    if action:
        found = found.filter(action=action)
    if member_text:
        found = found.filter(member_id=await _member(member_text))
    if (since := dates.since(tz)) is not None:
        found = found.filter(created_at__gte=since)
    if (until := dates.until(tz)) is not None:
        found = found.filter(created_at__lt=until)
    if before is not None:
        found = found.filter(id__lt=before)
    entries = list(await found.order_by("-id").limit(PAGE + 1).select_related("member"))
    more = len(entries) > PAGE
    entries = entries[:PAGE]

    staff = Staff.all().order_by("id")
    if user.role != Role.OWNER:
        staff = staff.filter(store_id=user.store.id)
    return render(request, "audit.j2", {
        "entries": entries, "tz": tz, "dates": dates, "store": store_code,
        "staff_id": staff_id, "action": action, "member": member_text,
        "staff": await staff, "actions": ACTION_NAMES,
        "stores": await query.stores_for(user),
        "next": query.next_link(request, entries[-1].id) if more else None,
        "first": query.next_link(request) if before else None})
