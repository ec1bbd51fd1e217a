"""Campaigns (群发) in the console: the list with each one's progress, a form that makes one
from a segment with a live count, its preview, the moves (start, pause, resume, cancel, let a
missed one go) and the detail page that follows the sending and compares with the holdout.

Everything goes through the campaigns service the chat's 群发 and `memberbot broadcast` use;
every move is one conditional UPDATE there, audited under the employee's name. For managers and
owners. A manager sees and moves only their store's campaigns (those its staff made; another's
id answers 404) and writes to their store's members only: `store=<their store>` is added to
the segment they type."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from aiohttp import web

from bot.console import query
from bot.console.pages import render, require, store_scope
from bot.console.session import bot_of
from bot.models import Campaign, CampaignStatus
from bot.models.staff import Role
from bot.rules import segments as language
from bot.services import campaigns, segments
from bot.services.console_auth import ConsoleUser

routes = web.RouteTableDef()

PAGE_SIZE = 30
SEGMENT_MAX = 500  # Campaign.segment's column
TEXT_MAX = 600  # characters: a promotion, not a letter (an SMS splits past 70)
STATE_NAMES = {"draft": "草稿", "scheduled": "已排期", "running": "发送中", "paused": "已暂停",
               "stale": "错过排期，待确认", "done": "已发完", "cancelled": "已取消"}
DELIVERY_NAMES = {"queued": "排队中", "sending": "发送中", "sent": "已送达", "failed": "失败",
                  "skipped": "跳过", "unknown": "结果未知"}
CHANNEL_NAMES = {"wechat": "公众号群发", "wechat_cs": "客服消息", "sms": "短信",
                 "none": "无法送达"}
SKIP_REASONS = {"holdout": "对照组", "opted_out": "已退订", "erased": "已注销",
                "cancelled": "群发已取消", "mass_cap": "本月群发已满", "not_following": "未关注",
                "no_phone": "没有手机号", "single_openid": "只有一位粉丝无法群发",
                "no_coupon": "优惠券已发完", "no_sms_template": "未配置营销短信模板"}
FINISHED = ("sent", "failed", "skipped", "unknown")


@dataclass(frozen=True)
class Move:
    label: str
    operation: object  # the service function
    lands_in: tuple[str, ...]  # the states it moves to: found there already, it was done
    danger: bool = False


MOVES = {
    "start": Move("开始发送", campaigns.start, ("running", "scheduled")),
    "pause": Move("暂停", campaigns.pause, ("paused",)),
    "resume": Move("继续发送", campaigns.resume, ("running",)),
    "confirm": Move("现在发出", campaigns.confirm_stale, ("running",)),
    "cancel": Move("取消群发", campaigns.cancel, ("cancelled",), danger=True),
}
# The moves each state offers (the service refuses the others anyway).
OFFERED = {"draft": ("start", "cancel"), "scheduled": ("cancel",),
           "running": ("pause", "cancel"), "paused": ("resume", "cancel"),
           "stale": ("confirm", "cancel")}


# --- scope --------------------------------------------------------------------------------------

async def _campaign(request: web.Request, user: ConsoleUser) -> Campaign:
    """The campaign in the URL, if the user's store may see it; else 404 (nothing revealed)."""
    number = query.id_in_path(request, "id")
    try:
        return await campaigns.get(number, store_scope(user))
    except campaigns.CampaignError:
        raise web.HTTPNotFound(text="no such campaign") from None


class OutOfStore(Exception):
    """A manager's segment names another store."""


def audience(user: ConsoleUser, text: str) -> str:
    """The segment a campaign from this user is for: a manager's is kept to their store's
    members (store=<code> added unless the text says it already); SegmentSyntaxError for a
    text that is no segment (positions in the text as typed), OutOfStore for another store."""
    text = text.strip()
    expression = language.parse(text)  # the syntax; names are checked with the config later
    code = user.store.code
    if store_scope(user) is None:
        return text
    stores = expression.of("store")
    if any(c.op != "=" or c.value != code for c in stores):
        raise OutOfStore(code)
    if stores:
        return text
    return f"store={code}" if not expression.conditions else f"store={code} {text}"


@dataclass(frozen=True)
class Counted:
    segment: str  # as it will be stored (a manager's with their store)
    count: int | None = None
    error: segments.SegmentSyntaxError | None = None
    out_of_store: str = ""  # the manager's store code, when the text named another


async def count(request: web.Request, user: ConsoleUser, text: str) -> Counted:
    """How many members a typed segment reaches now, or why it is no segment."""
    bot = bot_of(request)
    try:
        scoped = audience(user, text)
    except segments.SegmentSyntaxError as exc:
        return Counted(text, error=exc)
    except OutOfStore as exc:
        return Counted(text, out_of_store=str(exc))
    try:
        # Checked against the shop's tiers, stores and tags, on the text as typed (so that an
        # error's position points into it), then counted with the store added.
        await segments.parse_checked(text.strip(), bot.config)
        segment = await segments.parse_checked(scoped, bot.config)
    except segments.SegmentSyntaxError as exc:
        return Counted(text, error=exc)
    return Counted(scoped, await segments.count(segment, today=bot.today()))


# --- the list -----------------------------------------------------------------------------------

@routes.get("/campaigns", name="campaigns")
async def listing(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    before = _int(request.query.get("before"))
    found = await campaigns.list_campaigns(bot, PAGE_SIZE + 1, store_id=store_scope(user),
                                           before=before)
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    progress = await campaigns.progress([c.id for c in found])
    rows = [{"campaign": c, "finished": sum(progress[c.id].get(s, 0) for s in FINISHED),
             "total": sum(progress[c.id].values()),
             "sent": progress[c.id].get("sent", 0)} for c in found]
    return render(request, "campaigns.j2", {
        "rows": rows, "states": STATE_NAMES, "tz": bot.config.shop.tz,
        "older": found[-1].id if more else None})


def _int(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


# --- the form -----------------------------------------------------------------------------------

def _form(user: ConsoleUser, values: dict[str, str] | None = None) -> dict:
    values = dict(values or {})
    values.setdefault("nonce", secrets.token_urlsafe(18))
    return {"values": values, "store_code": user.store.code,
            "scoped": store_scope(user) is not None, "most": campaigns.lifecycle.MAX_HOLDOUT,
            "text_max": TEXT_MAX}


@routes.get("/campaigns/new", name="campaign_new")
async def new(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    segment = request.query.get("segment", "")[:SEGMENT_MAX]
    counted = await count(request, user, segment) if segment.strip() else None
    return render(request, "campaign_new.j2",
                  _form(user, {"segment": segment}) | {"counted": counted})


@routes.get("/campaigns/count", name="campaign_count")
async def live_count(request: web.Request) -> web.StreamResponse:
    """The form's live count (htmx, as the segment is typed)."""
    user = require(request, Role.MANAGER)
    text = request.query.get("segment", "")[:SEGMENT_MAX]
    counted = await count(request, user, text) if text.strip() else None
    return render(request, "_campaign_count.j2", {"counted": counted,
                                                  "store_code": user.store.code})


@routes.post("/campaigns/new", name="campaign_create")
async def create(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    form = await request.post()
    values = {name: str(form.get(name, "")) for name in
              ("segment", "text", "at", "holdout", "nonce")}

    def refuse(message: str, counted: Counted | None = None) -> web.Response:
        return render(request, "campaign_new.j2", _form(user, values) | {
            "error": message, "counted": counted}, status=400)

    nonce = values["nonce"]
    if not (16 <= len(nonce) <= 40) or not nonce.replace("-", "").replace("_", "").isalnum():
        return refuse("表单已过期，请重新提交。")
    counted = await count(request, user, values["segment"][:SEGMENT_MAX])
    if counted.error is not None or counted.out_of_store:
        return refuse("分群写法有误，请看下方的提示。", counted)
    if len(counted.segment) > SEGMENT_MAX:
        return refuse(f"分群太长了（最多 {SEGMENT_MAX} 个字符）。", counted)
    text = values["text"].strip()
    if not text:
        return refuse("请写上要群发的内容。", counted)
    if len(text) > TEXT_MAX:
        return refuse(f"内容太长了（最多 {TEXT_MAX} 字）。", counted)
    holdout = _int(values["holdout"].strip() or "0")
    if holdout is None:
        return refuse("对照组比例要写 0 到 50 的整数。", counted)
    at = None
    if values["at"].strip():
        try:
            at = dt.datetime.fromisoformat(values["at"].strip())
        except ValueError:
            return refuse("定时发送的时间看不懂，请重新选择。", counted)
        if at.tzinfo is not None or at.year not in query.YEARS:  # year 1 cannot become UTC
            return refuse("定时发送的时间看不懂，请重新选择。", counted)
    try:
        campaign = await campaigns.create(
            bot, segment=counted.segment, text=text, at=at, holdout=holdout,
            staff_id=user.staff.id, key=f"console:{nonce}")
    except campaigns.CampaignError as exc:
        return refuse(_refusal(exc), counted)
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign.id}")


def _refusal(exc: campaigns.CampaignError) -> str:
    v = exc.values
    match exc.reason:
        case "bad_holdout":
            return f"对照组比例要在 0 到 {v.get('most', 50)}% 之间。"
        case "past_time":
            return f"{v['at']:%Y-%m-%d %H:%M} 已经过去了，请换一个时间。"
        case "bad_segment":
            return "分群写法有误。"
        case "no_message":
            return "请写上要群发的内容。"
        case "bad_state":
            now = STATE_NAMES.get(v.get("status"), v.get("status"))
            return f"这次群发现在是「{now}」，不能这样操作。"
    return "没有成功，请稍后再试。"


# --- one campaign -------------------------------------------------------------------------------

async def _detail(request: web.Request, campaign: Campaign) -> dict:
    bot = bot_of(request)
    status = await campaigns.status(bot, campaign.id)
    finished = sum(status.counts.get(s, 0) for s in FINISHED)
    results = status.results
    return {
        "c": status.campaign, "status": status, "finished": finished,
        "by_channel": await campaigns.by_channel(campaign.id),
        "moves": [(name, MOVES[name]) for name in OFFERED.get(status.campaign.status, ())],
        "live": status.campaign.status in (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED),
        "states": STATE_NAMES, "deliveries": DELIVERY_NAMES, "channels": CHANNEL_NAMES,
        "reasons": SKIP_REASONS, "tz": bot.config.shop.tz,
        "rates": {"sent": _rates(results.sent), "holdout": _rates(results.holdout)},
    }


def _rates(group: campaigns.Group) -> dict[str, float | None]:
    if not group.members:
        return {"purchased": None, "redeemed": None}
    return {"purchased": group.purchased / group.members,
            "redeemed": group.redeemed / group.members}


@routes.get(r"/campaigns/{id:\d+}", name="campaign")
async def detail(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    campaign = await _campaign(request, user)
    return render(request, "campaign.j2", await _detail(request, campaign))


@routes.get(r"/campaigns/{id:\d+}/progress", name="campaign_progress")
async def progress(request: web.Request) -> web.StreamResponse:
    """The detail's live part alone, which htmx polls while the campaign is sending."""
    user = require(request, Role.MANAGER)
    campaign = await _campaign(request, user)
    return render(request, "_campaign_detail.j2", await _detail(request, campaign))


@routes.get(r"/campaigns/{id:\d+}/preview", name="campaign_preview")
async def preview(request: web.Request) -> web.StreamResponse:
    """What a member receives and how many it reaches by which channel (loaded after the
    page: it walks the whole segment)."""
    user = require(request, Role.MANAGER)
    campaign = await _campaign(request, user)
    bot = bot_of(request)
    shown = await campaigns.preview(bot, campaign.id)
    return render(request, "_campaign_preview.j2", {
        "preview": shown, "channels": CHANNEL_NAMES,
        "cap": bot.config.broadcast.mass_monthly_cap})


@routes.post(r"/campaigns/{id:\d+}/{move:[a-z]+}", name="campaign_move")
async def move(request: web.Request) -> web.StreamResponse:
    """A move on a campaign. The service moves it by one conditional UPDATE from the state it
    starts from, so a double click (or two managers) moves it once: the second finds it moved
    already, which is what was asked, and is shown the page as it is now."""
    user = require(request, Role.MANAGER)
    campaign = await _campaign(request, user)
    chosen = MOVES.get(request.match_info["move"])
    if chosen is None:
        raise web.HTTPNotFound(text="no such move")
    bot = bot_of(request)
    error = ""
    try:
        campaign = await chosen.operation(bot, campaign.id, staff_id=user.staff.id)
    except campaigns.CampaignError as exc:
        campaign = await campaigns.get(campaign.id)
        if campaign.status not in chosen.lands_in:
            error = _refusal(exc)
    if request.headers.get("HX-Request"):
        context = await _detail(request, campaign)
        # htmx swaps only a 2xx answer: the refusal is shown inside the fragment.
        return render(request, "_campaign_detail.j2", context | {"error": error})
    if error:
        return render(request, "campaign.j2",
                      await _detail(request, campaign) | {"error": error}, status=409)
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign.id}")
