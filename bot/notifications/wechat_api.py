"""Our small async client for the WeChat endpoints we call.

wechatpy's HTTP client is synchronous and its retry on 40001 recurses without bound, so calls go
through aiohttp here. Tokens come from /cgi-bin/stable_token in normal mode: every worker gets the
same token while it is valid, so no worker invalidates another's. The token is cached in memory and
in the database (shared by all workers); one refresh at a time, guarded by an asyncio lock inside a
process and a lease row across processes. A 40001/42001 answer triggers one refresh and one retry,
never more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from tortoise.expressions import Q
from wechatpy.exceptions import WeChatClientException

from bot.config import WeChatConfig
from bot.infra.db import IntegrityError
from bot.models import AccessToken

log = logging.getLogger("memberbot.wechat_api")

# Token answers that mean "fetch a fresh token and try again once".
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# Refresh this long before WeChat says the token expires.
EXPIRY_MARGIN = dt.timedelta(seconds=300)
LEASE = dt.timedelta(seconds=10)


# message/mass/send: "a mass send with this clientmsgid exists" (the answer carries its msg_id).
MASS_DUPLICATE = 45065


@dataclass(frozen=True)
class MassSend:
    msg_id: int
    msg_data_id: int | None
    duplicate: bool  # 45065: this clientmsgid was sent before; msg_id is that send's


class WeChatAPIError(WeChatClientException):
    """An errcode answer (or a transport failure, errcode -1) from the WeChat API."""

    def __init__(self, errcode: int, errmsg: str):
        super().__init__(errcode, errmsg)

    def __str__(self) -> str:
        return f"WeChat API error {self.errcode}: {self.errmsg}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SharedLock(Protocol):
    """A lock every worker sees (Redis): acquire returns False while another holds it."""

    async def acquire(self, name: str, ttl: dt.timedelta) -> bool: ...

    async def release(self, name: str) -> None: ...


class TokenManager:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: WeChatConfig,
        clock: Callable[[], dt.datetime] = _utcnow,
        shared_lock: SharedLock | None = None,
        on_fetch: Callable[[], None] | None = None,
    ):
        self._on_fetch = on_fetch
        self._session = session
        self._config = config
        self._clock = clock
        self._lock = asyncio.Lock()
        # Across workers: a Redis lock when configured, else the lease column of the token row.
        self._shared_lock = shared_lock
        self._token = ""
        self._expires_at = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.fetches = 0  # how many times this process asked WeChat; for metrics and tests

    def _fresh(self, expires_at: dt.datetime | None) -> bool:
        return expires_at is not None and self._clock() < expires_at - EXPIRY_MARGIN

    async def get(self) -> str:
        if self._token and self._fresh(self._expires_at):
            return self._token
        return await self.refresh(stale=self._token)

    async def refresh(self, stale: str) -> str:
        """A token other than `stale`'s generation: adopt one that another task or worker
        already fetched, or fetch one ourselves."""
        async with self._lock:
            if self._token and self._token != stale and self._fresh(self._expires_at):
                return self._token
            row = await self._row()
            if row.token and row.token != stale and self._fresh(row.expires_at):
                return self._adopt(row)
            return await self._fetch_under_lease(stale)

    async def _row(self) -> AccessToken:
        try:
            row, _ = await AccessToken.get_or_create(app_id=self._config.app_id)
        except IntegrityError:  # another worker created it at the same moment
            row = await AccessToken.get(app_id=self._config.app_id)
        return row

    def _adopt(self, row: AccessToken) -> str:
        self._token, self._expires_at = row.token, row.expires_at
        return self._token

    async def _claim_lease(self, now: dt.datetime) -> bool:
        if self._shared_lock:
            return await self._shared_lock.acquire(f"token:{self._config.app_id}", LEASE)
        return bool(await AccessToken.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now), app_id=self._config.app_id
        ).update(lease_until=now + LEASE))

    async def _release_lease(self, **token: Any) -> None:
        """Store the new token (if any) and free the lease. Without Redis both are one write,
        so a waiter never sees a free lease without the token."""
        if self._shared_lock:
            if token:
                await AccessToken.filter(app_id=self._config.app_id).update(**token)
            await self._shared_lock.release(f"token:{self._config.app_id}")
        else:
            await AccessToken.filter(app_id=self._config.app_id).update(lease_until=None, **token)

    async def _fetch_under_lease(self, stale: str) -> str:
        deadline = self._clock() + LEASE * 2
        while True:
            now = self._clock()
            if await self._claim_lease(now):
                break
            # Another worker is fetching: wait for its result.
            await asyncio.sleep(0.05)
            row = await self._row()
            if row.token and row.token != stale and self._fresh(row.expires_at):
                return self._adopt(row)
            if now > deadline:
                raise WeChatAPIError(-1, "timed out waiting for another worker's token refresh")
        try:
            # The holder may have finished between our last look and our claim.
            row = await self._row()
            if row.token and row.token != stale and self._fresh(row.expires_at):
                await self._release_lease()
                return self._adopt(row)
            token, expires_in = await self._fetch()
        except BaseException:
            await self._release_lease()
            raise
        expires_at = self._clock() + dt.timedelta(seconds=expires_in)
        await self._release_lease(token=token, expires_at=expires_at)
        self._token, self._expires_at = token, expires_at
        return token

    async def _fetch(self) -> tuple[str, int]:
        self.fetches += 1
        if self._on_fetch:
            self._on_fetch()
        body = {
            "grant_type": "client_credential",
            "appid": self._config.app_id,
            "secret": self._config.app_secret,
            "force_refresh": False,
        }
        result = await _post_json(self._session, self._url("/cgi-bin/stable_token"), body)
        if result.get("errcode"):
            raise WeChatAPIError(result["errcode"], result.get("errmsg", ""))
        log.info("fetched a stable access token, valid %ss", result.get("expires_in"))
        return result["access_token"], int(result.get("expires_in", 7200))

    def _url(self, path: str) -> str:
        return self._config.api_base_url.rstrip("/") + path


async def _post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Any = None,
    params: dict[str, str] | None = None,
    form: Callable[[], aiohttp.FormData] | None = None,
) -> dict[str, Any]:
    # WeChat wants UTF-8 JSON with Chinese unescaped (escaped menus show up as \uXXXX).
    data: Any = form() if form else json.dumps(body, ensure_ascii=False).encode()
    headers = None if form else {"Content-Type": "application/json; charset=utf-8"}
    try:
        async with session.post(url, data=data, params=params, headers=headers) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise WeChatAPIError(-1, f"transport: {type(exc).__name__}: {exc}") from None
    try:
        result = json.loads(text)
    except ValueError:
        raise WeChatAPIError(-1, f"HTTP {response.status}, not JSON") from None
    if not isinstance(result, dict):
        raise WeChatAPIError(-1, "answer is not a JSON object")
    return result


class WeChatAPI:
    def __init__(self, session: aiohttp.ClientSession, config: WeChatConfig,
                 clock: Callable[[], dt.datetime] = _utcnow,
                 shared_lock: SharedLock | None = None,
                 on_token_fetch: Callable[[], None] | None = None):
        self._session = session
        self._config = config
        self.tokens = TokenManager(session, config, clock, shared_lock, on_token_fetch)

    async def call(self, path: str, body: Any = None, *, params: dict[str, str] | None = None,
                   form: Callable[[], aiohttp.FormData] | None = None,
                   answers: frozenset[int] = frozenset()) -> dict[str, Any]:
        """The answer's JSON; an errcode raises WeChatAPIError unless it is in `answers` (codes
        the caller reads as an answer, such as a mass send's 45065)."""
        url = self._config.api_base_url.rstrip("/") + path
        token = await self.tokens.get()
        result = await _post_json(self._session, url, body, {**(params or {}),
                                  "access_token": token}, form)
        if result.get("errcode") in TOKEN_ERRORS:
            log.warning("token rejected (%s) on %s; refreshing once", result["errcode"], path)
            token = await self.tokens.refresh(stale=token)
            result = await _post_json(self._session, url, body, {**(params or {}),
                                      "access_token": token}, form)
        if result.get("errcode") and result["errcode"] not in answers:
            raise WeChatAPIError(result["errcode"], result.get("errmsg", ""))
        return result

    # --- the endpoints we use ---

    async def send_text(self, openid: str, content: str) -> None:
        await self.call("/cgi-bin/message/custom/send",
                        {"touser": openid, "msgtype": "text", "text": {"content": content}})

    async def send_image(self, openid: str, media_id: str) -> None:
        await self.call("/cgi-bin/message/custom/send",
                        {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}})

    async def send_news(self, openid: str, title: str, description: str, url: str,
                        pic_url: str = "") -> None:
        """A link card (msgtype news): one article, WeChat's limit since 2018 (45008)."""
        article = {"title": title, "description": description, "url": url, "picurl": pic_url}
        await self.call("/cgi-bin/message/custom/send",
                        {"touser": openid, "msgtype": "news", "news": {"articles": [article]}})

    async def send_template(self, openid: str, template_id: str, data: dict[str, str],
                            url: str | None = None) -> int:
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if url:
            body["url"] = url
        return int((await self.call("/cgi-bin/message/template/send", body))["msgid"])

    async def mass_send(self, openids: list[str], content: str, *,
                        client_msg_id: str) -> MassSend:
        """A text mass send to 2–10,000 openids (message/mass/send). A clientmsgid WeChat has
        seen already answers 45065 with that send's msg_id: `duplicate`, it went out before."""
        body = {"touser": openids, "msgtype": "text", "text": {"content": content},
                "send_ignore_reprint": 0, "clientmsgid": client_msg_id}
        result = await self.call("/cgi-bin/message/mass/send", body,
                                 answers=frozenset({MASS_DUPLICATE}))
        return MassSend(msg_id=int(result.get("msg_id") or 0),
                        msg_data_id=int(result.get("msg_data_id") or 0) or None,
                        duplicate=result.get("errcode") == MASS_DUPLICATE)

    async def create_menu(self, menu: dict[str, Any]) -> None:
        await self.call("/cgi-bin/menu/create", menu)

    async def create_qrcode(self, scene: str, *, temporary: bool = False,
                            expire_seconds: int = 2_592_000) -> dict[str, Any]:
        """A parametric QR code with a string scene. The scene must sit inside
        action_info.scene, or every scan arrives with scene 0."""
        body: dict[str, Any] = {
            "action_name": "QR_STR_SCENE" if temporary else "QR_LIMIT_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}},
        }
        if temporary:
            body["expire_seconds"] = expire_seconds
        return await self.call("/cgi-bin/qrcode/create", body)

    async def upload_image(self, filename: str, content: bytes) -> str:
        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("media", content, filename=filename, content_type="image/png")
            return data

        result = await self.call("/cgi-bin/media/upload", params={"type": "image"}, form=form)
        return str(result["media_id"])
