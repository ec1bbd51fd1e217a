"""A local stand-in for the WeChat Official Account HTTP API (api.weixin.qq.com).

It speaks WeChat's wire format (JSON bodies, ``errcode``/``errmsg`` with HTTP 200, the
``access_token`` query parameter) so that our real client code is what gets exercised.

Usage::

    app = create_wechat_app("wx-app-id", "app-secret")
    state = app[WECHAT_STATE]          # a WeChatState: recorder + test hooks
    # point WeChatConfig.api_base_url at the server's root URL

Endpoints: ``POST /cgi-bin/stable_token``, ``POST /cgi-bin/message/custom/send``,
``POST /cgi-bin/message/template/send``, ``POST /cgi-bin/menu/create``,
``POST /cgi-bin/message/mass/send``, ``POST /cgi-bin/qrcode/create``,
``GET /cgi-bin/showqrcode?ticket=`` (PNG, no token, like
mp.weixin.qq.com), ``POST /cgi-bin/media/upload?type=`` (multipart field ``media``),
``GET /cgi-bin/media/get?media_id=`` (the bytes of temporary media) and the sandbox-only
``GET /sandbox/messages?openid=&after=``, ``GET /sandbox/templates?openid=&after=`` and
``GET /sandbox/media?media_id=`` (media/get without a token, for `memberbot chat`). Anything
else answers 40066 invalid url; a known path with the wrong method answers 43001/43002.

``WeChatState`` (``app[WECHAT_STATE]``):

* records: ``messages`` (CustomMessage, ``seq`` from 1), ``templates`` (TemplateMessage),
  ``menu`` (last accepted ``{"button": [...]}``, or None), ``qrcodes`` (ticket -> QRCodeRecord),
  ``media`` (media_id -> MediaRecord), ``calls`` (Counter of request paths, failures included),
  ``tokens_minted``.
* time: ``clock`` (default time.time), ``now()``, ``advance(seconds)``; every rule uses now().
* token: ``current_token``, ``token_expires_at``, ``expire_token()`` (use -> 42001; the next
  normal stable_token mints a new one), ``revoke_token()`` (use -> 40001, as after someone
  else's force_refresh). A replaced token answers 42001 if it had run out, else 40001.
* customer-service window: ``enforce_windows`` (default False), ``note_user_message(openid)``
  (5 sends within 48 h), ``note_event(openid)`` (3 sends within 1 min, separate from the 48 h
  window), ``set_not_following(openid)`` / ``set_following(openid)``. 43004 for a user marked
  not following is enforced even when ``enforce_windows`` is False.
* faults: ``fail_next(path, errcode, errmsg=None, times=1)``, ``set_delay(path, seconds)``.
* ``register_template(template_id, keys)``: once any template is registered, unknown ids answer
  40037 and missing data keys 47003; with none registered every template id is accepted.
* mass send (``message/mass/send``, text to an openid list): answers ``msg_id`` and
  ``msg_data_id``; a ``clientmsgid`` seen before answers 45065 with that send's msg_id (the
  real API forgets them after 24 h; this one never does); 2 to 10,000 openids (else 40130 /
  40131 guessed as "invalid openid list size"). Each follower receives at most ``mass_cap`` (4)
  a month (UTC+8 months) and never while marked not following: those are filtered out
  (FilterCount). If every openid is refused that way the call answers 43004 (a guess: WeChat
  documents only the counts). What each follower received is in ``messages`` too (msgtype
  text, ``via`` "mass"), so the sandbox chat shows it; ``mass`` lists the sends (MassRecord).
  With ``set_webhook(url, config)`` the stand-in then posts a signed, AES-encrypted
  ``MASSSENDJOBFINISH`` event (MsgID, Status, TotalCount, FilterCount, SentCount,
  ErrorCount) to the bot, as WeChat does; ``await state.drain()`` waits for those posts.
* messages_for(openid, after) -> list of dicts (what /sandbox/messages returns, beside
  ``instance``, which changes when the stand-in restarts and its numbering starts over).

Other errors: empty body 44002, malformed JSON 47001; custom/template send without touser
40003, unknown msgtype 40008 (text, image, voice, video, news are accepted), empty text 44004,
news without articles 44003, with more than one 45008.

Rules that are guesses rather than documented behaviour:

* stable_token: the same token until it expires (WeChat actually starts handing out a new token
  5 minutes before expiry and keeps both valid for those 5 minutes; not simulated).
  force_refresh is limited to 20 per (clock) day -> 45009.
* qrcode/create: ``action_info`` without the ``scene`` wrapper (or without the scene_id /
  scene_str key the action_name needs) still succeeds, as WeChat effectively does, but the code
  carries scene "0"; the record has ``scene_lost=True`` and ``state.lost_scenes`` counts it.
  Invalid arguments (unknown action_name, scene_str not 1..64 chars, scene_id not an int /
  out of range, expire_seconds not in 1..2592000) answer 40097 "invalid args".
* menu/create: WeChat's table distinguishes top-level and sub-button errors (40017/40024 type,
  40018/40025 name, 40019/40026 key, 40020/40027 url size, 40055/40054 url); we use that split.
  Missing media_id/article_id -> 40007; miniprogram without appid/pagepath -> 40013 / 40097.
* media/upload: image must be PNG/JPEG/GIF/BMP by magic bytes (else 40005); oversize -> 40009
  image, 40010 voice, 40011 video, 40012 thumb; empty file -> 40006. Temporary media expire
  after 3 days; sending an unknown or expired media_id answers 40007.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from bot.config import WeChatConfig
from bot.sandbox import wechat_client as wire

log = logging.getLogger("memberbot.sandbox")

TOKEN_TTL = 7200
MEDIA_TTL = 3 * 24 * 3600
QR_MAX_EXPIRE = 2592000
QR_DEFAULT_EXPIRE = 60
MESSAGE_WINDOW, MESSAGE_QUOTA = 48 * 3600, 5
EVENT_WINDOW, EVENT_QUOTA = 60, 3
FORCE_REFRESH_PER_DAY = 20
MASS_CAP = 4  # mass messages a follower receives a month
MASS_MIN, MASS_MAX = 2, 10_000
MASS_ASSISTANT = "o_mass_send_assistant"  # the FromUserName of MASSSENDJOBFINISH
BEIJING = 8 * 3600

ERRMSG: dict[int, str] = {
    -1: "system error",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40005: "invalid file type",
    40006: "invalid meida size",  # sic, WeChat's spelling
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40010: "invalid voice size",
    40011: "invalid video size",
    40012: "invalid thumb size",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40037: "invalid template_id",
    40054: "invalid sub button url domain",
    40055: "invalid button url domain",
    40066: "invalid url",
    40097: "invalid args",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    42001: "access_token expired",
    43001: "require GET method",
    43002: "require POST method",
    43004: "require subscribe",
    44002: "empty post data",
    44003: "empty news data",
    44004: "empty content",
    45008: "article size out of limit",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45065: "clientmsgid exist",
    40130: "invalid openid list size, at least two openid",
    40131: "invalid openid list size, at most 10000 openid",
    47001: "data format error",
    47003: "argument invalid!",
}

MENU_TYPES = {
    "click",
    "view",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
    "media_id",
    "article_id",
    "article_view_limited",
    "miniprogram",
}
KEY_TYPES = {
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
}
MEDIA_LIMITS = {
    "image": (10 << 20, 40009),
    "voice": (2 << 20, 40010),
    "video": (10 << 20, 40011),
    "thumb": (64 << 10, 40012),
}
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


class WeChatError(Exception):
    def __init__(self, errcode: int, errmsg: str | None = None):
        super().__init__(errcode)
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")


@dataclass
class CustomMessage:
    seq: int
    openid: str
    msgtype: str
    content: str | None
    media_id: str | None
    time: float
    raw: dict[str, Any]
    via: str = "custom"  # custom | mass

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "openid": self.openid,
            "msgtype": self.msgtype,
            "content": self.content,
            "media_id": self.media_id,
            "time": self.time,
            "via": self.via,
        }


@dataclass
class MassRecord:
    msg_id: int
    msg_data_id: int
    client_msg_id: str | None
    openids: list[str]  # the ones it reached
    filtered: list[str]  # refused: not following, or already at the month's cap
    content: str
    time: float


@dataclass
class TemplateMessage:
    msgid: int
    openid: str
    template_id: str
    url: str | None
    data: dict[str, Any]
    time: float
    raw: dict[str, Any]


@dataclass
class QRCodeRecord:
    ticket: str
    url: str
    action_name: str
    scene: str
    permanent: bool
    expire_seconds: int | None
    created_at: float
    scene_lost: bool
    raw: dict[str, Any]


@dataclass
class MediaRecord:
    media_id: str
    type: str
    filename: str
    size: int
    content_type: str
    data: bytes
    created_at: float


@dataclass
class _Window:
    message_until: float = 0.0
    message_left: int = 0
    event_until: float = 0.0
    event_left: int = 0


@dataclass
class WeChatState:
    app_id: str
    app_secret: str
    enforce_windows: bool = False
    # told to pollers of /sandbox/*: a restarted stand-in numbers its records from 1 again
    instance: str = field(default_factory=lambda: secrets.token_hex(8))
    clock: Callable[[], float] = time.time
    messages: list[CustomMessage] = field(default_factory=list)
    templates: list[TemplateMessage] = field(default_factory=list)
    menu: dict[str, Any] | None = None
    qrcodes: dict[str, QRCodeRecord] = field(default_factory=dict)
    media: dict[str, MediaRecord] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    tokens_minted: int = 0
    lost_scenes: int = 0
    current_token: str | None = None
    token_expires_at: float = 0.0
    _offset: float = 0.0
    _retired: dict[str, bool] = field(default_factory=dict)  # token -> ran out naturally
    _windows: dict[str, _Window] = field(default_factory=dict)
    _not_following: set[str] = field(default_factory=set)
    _failures: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    _delays: dict[str, float] = field(default_factory=dict)
    _force_refreshes: Counter[int] = field(default_factory=Counter)
    _templates_known: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _next_msgid: int = 1000
    mass: list[MassRecord] = field(default_factory=list)
    mass_cap: int = MASS_CAP
    webhook: tuple[str, WeChatConfig] | None = None
    _client_msg_ids: dict[str, MassRecord] = field(default_factory=dict)
    _mass_received: Counter[tuple[str, str]] = field(default_factory=Counter)
    _posts: set[asyncio.Task] = field(default_factory=set)

    # --- time ---
    def now(self) -> float:
        return self.clock() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    # --- token hooks ---
    def expire_token(self) -> None:
        self.token_expires_at = self.now() - 1

    def revoke_token(self) -> None:
        self._retire()
        self.current_token = None

    def _retire(self) -> None:
        if self.current_token:
            self._retired[self.current_token] = self.now() >= self.token_expires_at

    def _mint_token(self) -> str:
        self._retire()
        self.current_token = secrets.token_urlsafe(96)
        self.token_expires_at = self.now() + TOKEN_TTL
        self.tokens_minted += 1
        return self.current_token

    def _check_token(self, token: str | None) -> None:
        if not token:
            raise WeChatError(41001)
        if token != self.current_token:
            # An old token that simply ran out reads as expired; a replaced one as invalid.
            raise WeChatError(42001 if self._retired.get(token) else 40001)
        if self.now() >= self.token_expires_at:
            raise WeChatError(42001)

    # --- customer-service window hooks ---
    def note_user_message(self, openid: str) -> None:
        w = self._windows.setdefault(openid, _Window())
        w.message_until, w.message_left = self.now() + MESSAGE_WINDOW, MESSAGE_QUOTA

    def note_event(self, openid: str) -> None:
        w = self._windows.setdefault(openid, _Window())
        w.event_until, w.event_left = self.now() + EVENT_WINDOW, EVENT_QUOTA

    def set_not_following(self, openid: str) -> None:
        self._not_following.add(openid)

    def set_following(self, openid: str) -> None:
        self._not_following.discard(openid)

    def _consume_window(self, openid: str) -> None:
        w = self._windows.get(openid)
        now = self.now()
        event_open = w is not None and w.event_until > now
        message_open = w is not None and w.message_until > now
        if w is None or not (event_open or message_open):
            raise WeChatError(45015)
        if event_open and w.event_left > 0:
            w.event_left -= 1
        elif message_open and w.message_left > 0:
            w.message_left -= 1
        else:
            raise WeChatError(45047)

    # --- fault hooks ---
    def fail_next(self, path: str, errcode: int, errmsg: str | None = None, times: int = 1) -> None:
        self._failures.setdefault(path, []).extend([(errcode, errmsg)] * times)

    def set_delay(self, path: str, seconds: float) -> None:
        self._delays[path] = seconds

    def register_template(self, template_id: str, keys: tuple[str, ...] | list[str] = ()) -> None:
        self._templates_known[template_id] = tuple(keys)

    # --- mass send ---
    def set_webhook(self, url: str, config: WeChatConfig) -> None:
        """Where MASSSENDJOBFINISH events go, signed and encrypted with the account's config."""
        self.webhook = (url, config)

    def mass_received(self, openid: str) -> int:
        """Mass messages this follower received this month."""
        return self._mass_received[(openid, self._month())]

    def _month(self) -> str:
        return time.strftime("%Y-%m", time.gmtime(self.now() + BEIJING))

    async def drain(self) -> None:
        """Wait for the MASSSENDJOBFINISH posts under way."""
        while self._posts:
            await asyncio.gather(*self._posts, return_exceptions=True)

    def messages_for(self, openid: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        return [
            m.as_json()
            for m in self.messages
            if m.seq > after and (openid is None or m.openid == openid)
        ]


WECHAT_STATE = web.AppKey("wechat_state", WeChatState)


def _ok(**extra: Any) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", **extra}


def _utf8_len(value: Any) -> int:
    return len(str(value).encode())


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise WeChatError(44002)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WeChatError(47001) from None
    if not isinstance(body, dict):
        raise WeChatError(47001)
    return body


# --- handlers (each returns a JSON-able dict or a web.Response; raises WeChatError) ---


async def _stable_token(state: WeChatState, request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    if body.get("grant_type") != "client_credential":
        raise WeChatError(40002)
    if not body.get("appid"):
        raise WeChatError(41002)
    if body["appid"] != state.app_id:
        raise WeChatError(40013)
    if not body.get("secret"):
        raise WeChatError(41004)
    if body["secret"] != state.app_secret:
        raise WeChatError(40125)
    now = state.now()
    if body.get("force_refresh") is True:
        day = int(now // 86400)
        if state._force_refreshes[day] >= FORCE_REFRESH_PER_DAY:
            raise WeChatError(45009)
        state._force_refreshes[day] += 1
        state._mint_token()
    elif state.current_token is None or now >= state.token_expires_at:
        state._mint_token()
    return {
        "access_token": state.current_token,
        "expires_in": max(1, math.ceil(state.token_expires_at - state.now())),
    }


def _require_openid(body: dict[str, Any]) -> str:
    openid = body.get("touser")
    if not isinstance(openid, str) or not openid:
        raise WeChatError(40003)
    return openid


def _require_media(state: WeChatState, media_id: Any) -> str:
    record = state.media.get(media_id) if isinstance(media_id, str) else None
    if record is None or state.now() - record.created_at > MEDIA_TTL:
        raise WeChatError(40007)
    return media_id


async def _custom_send(state: WeChatState, request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    openid = _require_openid(body)
    msgtype = body.get("msgtype")
    content = media_id = None
    if msgtype == "text":
        content = (body.get("text") or {}).get("content")
        if not isinstance(content, str) or not content:
            raise WeChatError(44004)
    elif msgtype in ("image", "voice", "video"):
        media_id = _require_media(state, (body.get(msgtype) or {}).get("media_id"))
    elif msgtype == "news":
        # One article since 2018 (45008 beyond); shown by its title.
        articles = (body.get("news") or {}).get("articles")
        if not isinstance(articles, list) or not articles:
            raise WeChatError(44003)
        if len(articles) > 1:
            raise WeChatError(45008)
        content = str((articles[0] or {}).get("title") or "")
    else:
        raise WeChatError(40008)
    if openid in state._not_following:
        raise WeChatError(43004)
    if state.enforce_windows:
        state._consume_window(openid)
    seq = len(state.messages) + 1
    state.messages.append(CustomMessage(seq, openid, msgtype, content, media_id, state.now(), body))
    return _ok()


async def _template_send(state: WeChatState, request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    openid = _require_openid(body)
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not template_id:
        raise WeChatError(40037)
    data = body.get("data", {})
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("value"), str | int | float) for v in data.values()
    ):
        raise WeChatError(47003, "argument invalid! data format invalid")
    if state._templates_known:
        if template_id not in state._templates_known:
            raise WeChatError(40037)
        missing = [k for k in state._templates_known[template_id] if k not in data]
        if missing:
            raise WeChatError(47003, f"argument invalid! data.{missing[0]}.value invalid")
    if openid in state._not_following:
        raise WeChatError(43004)
    state._next_msgid += 1
    msgid = state._next_msgid
    state.templates.append(
        TemplateMessage(msgid, openid, template_id, body.get("url"), data, state.now(), body)
    )
    return _ok(msgid=msgid)


async def _mass_send(state: WeChatState, request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    openids = body.get("touser")
    if not isinstance(openids, list) or not all(isinstance(o, str) and o for o in openids):
        raise WeChatError(40003)
    client_msg_id = body.get("clientmsgid")
    if client_msg_id is not None and client_msg_id in state._client_msg_ids:
        first = state._client_msg_ids[client_msg_id]
        return {"errcode": 45065, "errmsg": ERRMSG[45065], "msg_id": first.msg_id}
    if len(openids) < MASS_MIN:
        raise WeChatError(40130)
    if len(openids) > MASS_MAX:
        raise WeChatError(40131)
    if body.get("msgtype") != "text":
        raise WeChatError(40008)  # the stand-in sends text only
    content = (body.get("text") or {}).get("content")
    if not isinstance(content, str) or not content:
        raise WeChatError(44004)
    month = state._month()
    reached, filtered = [], []
    for openid in dict.fromkeys(openids):
        over = state._mass_received[(openid, month)] >= state.mass_cap
        (filtered if over or openid in state._not_following else reached).append(openid)
    if not reached and all(o in state._not_following for o in filtered):
        raise WeChatError(43004)
    state._next_msgid += 1
    record = MassRecord(state._next_msgid, 2_247_000_000 + state._next_msgid, client_msg_id,
                        reached, filtered, content, state.now())
    state.mass.append(record)
    if client_msg_id is not None:
        state._client_msg_ids[client_msg_id] = record
    for openid in reached:
        state._mass_received[(openid, month)] += 1
        state.messages.append(CustomMessage(len(state.messages) + 1, openid, "text", content,
                                            None, state.now(), body, via="mass"))
    if state.webhook is not None:
        task = asyncio.create_task(_post_mass_finish(state, record))
        state._posts.add(task)
        task.add_done_callback(state._posts.discard)
    return _ok(errmsg="send job submission success", msg_id=record.msg_id,
               msg_data_id=record.msg_data_id)


def mass_finish_xml(record: MassRecord, account: str = wire.ACCOUNT,
                    create_time: int | None = None) -> str:
    """The MASSSENDJOBFINISH event WeChat posts once a mass send is done."""
    return wire.message_xml(MASS_ASSISTANT, "event", {
        "Event": "MASSSENDJOBFINISH", "MsgID": record.msg_id, "Status": "send success",
        "TotalCount": len(record.openids) + len(record.filtered),
        "FilterCount": len(record.filtered), "SentCount": len(record.openids),
        "ErrorCount": 0}, account=account, create_time=create_time)


async def _post_mass_finish(state: WeChatState, record: MassRecord) -> None:
    assert state.webhook is not None
    url, config = state.webhook
    simulator = wire.WeChatSimulator(config, "aes", clock=state.now)
    await asyncio.sleep(0.01)  # WeChat tells us after the call has been answered
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await simulator.post(session, url,
                                 mass_finish_xml(record, create_time=int(state.now())))
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        log.warning("MASSSENDJOBFINISH not delivered: %s", exc)


def _check_button(button: Any, sub: bool) -> None:
    if not isinstance(button, dict):
        raise WeChatError(47001)
    name_limit, name_err = (60, 40025) if sub else (16, 40018)
    name = button.get("name")
    if not isinstance(name, str) or not name or _utf8_len(name) > name_limit:
        raise WeChatError(name_err)
    children = button.get("sub_button")
    if not sub and children:
        if not isinstance(children, list) or len(children) > 5:
            raise WeChatError(40023)
        for child in children:
            _check_button(child, sub=True)
        return
    kind = button.get("type")
    if kind not in MENU_TYPES:
        raise WeChatError(40024 if sub else 40017)
    if kind in KEY_TYPES:
        key = button.get("key")
        if not isinstance(key, str) or not key or _utf8_len(key) > 128:
            raise WeChatError(40026 if sub else 40019)
    if kind in ("view", "miniprogram"):
        url = button.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise WeChatError(40054 if sub else 40055)
        if _utf8_len(url) > 1024:
            raise WeChatError(40027 if sub else 40020)
    if kind == "miniprogram":
        if not button.get("appid"):
            raise WeChatError(40013)
        if not button.get("pagepath"):
            raise WeChatError(40097)
    if kind == "media_id" and not button.get("media_id"):
        raise WeChatError(40007)
    if kind in ("article_id", "article_view_limited") and not button.get("article_id"):
        raise WeChatError(40007)


async def _menu_create(state: WeChatState, request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise WeChatError(40016)
    for button in buttons:
        _check_button(button, sub=False)
    state.menu = body
    return _ok()


def _valid_scene_id(value: Any, permanent: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    if permanent:
        return 1 <= value <= 100000
    return value != 0 and -(2**31) <= value < 2**31  # "32-bit non-zero integer"


async def _qrcode_create(state: WeChatState, request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    action = body.get("action_name")
    if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"):
        raise WeChatError(40097, "invalid args: action_name")
    permanent = action.startswith("QR_LIMIT")
    wants_str = action.endswith("STR_SCENE")
    info = body.get("action_info")
    scene_obj = info.get("scene") if isinstance(info, dict) else None
    key = "scene_str" if wants_str else "scene_id"
    if not isinstance(scene_obj, dict) or key not in scene_obj:
        scene, lost = "0", True
    else:
        value, lost = scene_obj[key], False
        if wants_str:
            if not isinstance(value, str) or not 1 <= len(value) <= 64:
                raise WeChatError(40097, "invalid args: scene_str")
        elif not _valid_scene_id(value, permanent):
            raise WeChatError(40097, "invalid args: scene_id")
        scene = str(value)
    expire: int | None = None
    if not permanent:
        expire = body.get("expire_seconds", QR_DEFAULT_EXPIRE)
        if isinstance(expire, bool) or not isinstance(expire, int):
            raise WeChatError(40097, "invalid args: expire_seconds")
        if not 1 <= expire <= QR_MAX_EXPIRE:
            raise WeChatError(40097, "invalid args: expire_seconds")
    ticket = base64.b64encode(b"\x81\x01" + secrets.token_bytes(52)).decode()
    url = "http://weixin.qq.com/q/" + secrets.token_urlsafe(16)
    state.lost_scenes += lost
    state.qrcodes[ticket] = QRCodeRecord(
        ticket, url, action, scene, permanent, expire, state.now(), lost, body
    )
    reply: dict[str, Any] = {"ticket": ticket, "url": url}
    if expire is not None:
        reply["expire_seconds"] = expire
    return reply


async def _showqrcode(state: WeChatState, request: web.Request) -> web.Response:
    record = state.qrcodes.get(request.query.get("ticket", ""))
    if record is None:
        return web.Response(status=404, text="invalid ticket")
    import qrcode  # local: only this optional endpoint needs it

    buf = io.BytesIO()
    qrcode.make(record.url).save(buf, format="PNG")
    return web.Response(body=buf.getvalue(), content_type="image/png")


async def _media_upload(state: WeChatState, request: web.Request) -> dict[str, Any]:
    media_type = request.query.get("type", "")
    if media_type not in MEDIA_LIMITS:
        raise WeChatError(40004)
    if not request.content_type.startswith("multipart/"):
        raise WeChatError(41005)
    filename, content_type, data = "", "", None
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name == "media":
            filename = part.filename or ""
            content_type = part.headers.get("Content-Type", "")
            data = bytes(await part.read())
    if data is None:
        raise WeChatError(41005)
    if not data:
        raise WeChatError(40006)
    limit, size_err = MEDIA_LIMITS[media_type]
    if len(data) > limit:
        raise WeChatError(size_err)
    if media_type == "image" and not data.startswith(IMAGE_MAGIC):
        raise WeChatError(40005)
    media_id = secrets.token_urlsafe(48)
    created = int(state.now())
    state.media[media_id] = MediaRecord(
        media_id, media_type, filename, len(data), content_type, data, created
    )
    return {"type": media_type, "media_id": media_id, "created_at": created}


async def _media_get(state: WeChatState, request: web.Request) -> web.Response:
    """WeChat's temporary-media download: the file itself, or the usual errcode JSON. The
    sandbox's /sandbox/media is the same without a token, for the chat client."""
    media_id = request.query.get("media_id", "")
    record = state.media[_require_media(state, media_id)]
    return web.Response(body=record.data, headers={
        "Content-Type": record.content_type or "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{media_id}"'})


def _after(request: web.Request) -> int:
    try:
        return int(request.query.get("after", "0"))
    except ValueError:
        return 0


async def _sandbox_messages(state: WeChatState, request: web.Request) -> dict[str, Any]:
    return {"instance": state.instance,
            "messages": state.messages_for(request.query.get("openid") or None,
                                           _after(request))}


async def _sandbox_templates(state: WeChatState, request: web.Request) -> dict[str, Any]:
    """Template messages (service notices) sent to an openid, numbered from 1 in `seq`."""
    openid, after = request.query.get("openid") or None, _after(request)
    return {"instance": state.instance, "messages": [
        {"seq": seq, "openid": t.openid, "template_id": t.template_id,
         "data": {key: value.get("value") for key, value in t.data.items()}}
        for seq, t in enumerate(state.templates, start=1)
        if seq > after and (openid is None or t.openid == openid)
    ]}


Handler = Callable[[WeChatState, web.Request], Awaitable[Any]]
# path -> (method, handler, needs access_token)
ROUTES: dict[str, tuple[str, Handler, bool]] = {
    "/cgi-bin/stable_token": ("POST", _stable_token, False),
    "/cgi-bin/message/custom/send": ("POST", _custom_send, True),
    "/cgi-bin/message/template/send": ("POST", _template_send, True),
    "/cgi-bin/message/mass/send": ("POST", _mass_send, True),
    "/cgi-bin/menu/create": ("POST", _menu_create, True),
    "/cgi-bin/qrcode/create": ("POST", _qrcode_create, True),
    "/cgi-bin/showqrcode": ("GET", _showqrcode, False),
    "/cgi-bin/media/upload": ("POST", _media_upload, True),
    "/cgi-bin/media/get": ("GET", _media_get, True),
    "/sandbox/messages": ("GET", _sandbox_messages, False),
    "/sandbox/templates": ("GET", _sandbox_templates, False),
    "/sandbox/media": ("GET", _media_get, False),
}


async def _dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[WECHAT_STATE]
    path = request.path
    state.calls[path] += 1
    try:
        route = ROUTES.get(path)
        if route is None:
            raise WeChatError(40066)
        method, handler, needs_token = route
        if request.method != method:
            raise WeChatError(43001 if method == "GET" else 43002)
        if delay := state._delays.get(path):
            await asyncio.sleep(delay)
        if failures := state._failures.get(path):
            raise WeChatError(*failures.pop(0))
        if needs_token:
            state._check_token(request.query.get("access_token"))
        result = await handler(state, request)
    except WeChatError as exc:
        result = {"errcode": exc.errcode, "errmsg": exc.errmsg}
    if isinstance(result, web.StreamResponse):
        return result
    return web.json_response(result, dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


def create_wechat_app(app_id: str, app_secret: str) -> web.Application:
    """The stand-in app; its recorder and test hooks are ``app[WECHAT_STATE]``."""
    app = web.Application(client_max_size=64 << 20)
    state = app[WECHAT_STATE] = WeChatState(app_id=app_id, app_secret=app_secret)
    app.router.add_route("*", "/{tail:.*}", _dispatch)

    async def finish_posts(app: web.Application) -> None:
        for task in list(state._posts):
            task.cancel()
        await asyncio.gather(*state._posts, return_exceptions=True)

    app.on_cleanup.append(finish_posts)
    return app
