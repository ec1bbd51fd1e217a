"""The one door for outbound messages. Every send is a Delivery row keyed by an idempotency key:
the same key never sends twice, and every attempt ends as sent or failed with a reason, so
nothing is silently dropped."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.infra.db import IntegrityError
from bot.infra.metrics import Metrics
from bot.infra.vault import mask_phone
from bot.models import Delivery, DeliveryStatus, Follower, Member
from bot.notifications import cs_quota
from bot.notifications.replies import Image, Reply, Text, to_json
from bot.notifications.sms import SmsResult, SmsSender
from bot.notifications.wechat_api import WeChatAPI, WeChatAPIError

log = logging.getLogger("memberbot.outbox")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    code: str = ""  # why it failed: a WeChat errcode, an Aliyun Code, "no_quota", "duplicate"
    duplicate: bool = False


class Outbox:
    def __init__(self, wechat: WeChatAPI, sms: SmsSender, clock: Callable[[], dt.datetime],
                 notices: dict[str, Any] | None = None, metrics: Metrics | None = None):
        self._wechat = wechat
        self._sms = sms
        self._clock = clock
        self._notices = notices or {}
        self._metrics = metrics

    async def _claim(self, key: str, **fields: Any) -> Delivery | None:
        """The new Delivery row, or None when this key was already used."""
        try:
            return await Delivery.create(key=key, **fields)
        except IntegrityError:
            return None

    async def _finish(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        await Delivery.filter(id=delivery.id).update(
            status=DeliveryStatus.SENT if outcome.ok else DeliveryStatus.FAILED,
            error=None if outcome.ok else outcome.code[:255],
            sent_at=self._clock() if outcome.ok else None,
        )
        if self._metrics:
            self._metrics.deliveries.labels(delivery.channel,
                                            "sent" if outcome.ok else "failed").inc()
        return outcome

    async def wechat(self, openid: str, reply: Reply, *, key: str, purpose: str) -> Outcome:
        """A customer-service message, if the member's quota window allows one."""
        delivery = await self._claim(key, channel="wechat_cs", purpose=purpose, openid=openid,
                                     payload=to_json(reply))
        if delivery is None:
            return Outcome(False, "duplicate", duplicate=True)
        if not await cs_quota.take(openid, self._clock()):
            log.warning("no customer-service quota for %s (%s)", openid[-6:], purpose)
            return await self._finish(delivery, Outcome(False, "no_quota"))
        try:
            if isinstance(reply, Image):
                await self._wechat.send_image(openid, reply.media_id)
            elif isinstance(reply, Text):
                await self._wechat.send_text(openid, reply.content)
        except WeChatAPIError as exc:
            log.warning("customer-service send failed for %s: %s", openid[-6:], exc)
            return await self._finish(delivery, Outcome(False, str(exc.errcode)))
        return await self._finish(delivery, Outcome(True))

    async def sms(self, phone: str, phone_hash: str, template_code: str, params: dict[str, str],
                  *, key: str, purpose: str, log_params: bool = True) -> Outcome:
        """One SMS through Aliyun. Verification codes pass log_params=False: the code must not
        be stored in the delivery row."""
        payload = {"template": template_code, "params": params if log_params else "(secret)"}
        delivery = await self._claim(key, channel="sms", purpose=purpose,
                                     phone_hash=phone_hash, payload=payload)
        if delivery is None:
            return Outcome(False, "duplicate", duplicate=True)
        result: SmsResult = await self._sms.send(phone, template_code, params, str(delivery.id))
        if not result.ok:
            log.warning("SMS to %s failed: %s %s", mask_phone(phone), result.code, result.message)
        return await self._finish(delivery, Outcome(result.ok, "" if result.ok else result.code))

    async def notify(self, member_id: int, text: str, *, purpose: str, key: str,
                     values: dict[str, str] | None = None, marketing: bool = False) -> Outcome:
        """A service notice the member is owed (a purchase, a balance change): a customer-service
        message while their window lasts, else the purpose's template message if one is
        configured ([notices.<purpose>]), else the row records that nobody could be reached.
        Template messages carry service notices only, never marketing (WeChat bans for it):
        marketing=True (a greeting with no gift) never falls back to one, and is skipped as
        `opted_out` for a member who said 退订."""
        follower = await Follower.get_or_none(member_id=member_id)
        openid = follower.openid if follower and follower.following else None
        delivery = await self._claim(key, channel="wechat_cs", purpose=purpose, openid=openid,
                                     payload={"text": text, "values": values or {}})
        if delivery is None:
            return Outcome(False, "duplicate", duplicate=True)
        if marketing and await Member.exists(id=member_id,
                                             marketing_opt_out_at__not_isnull=True):
            return await self._finish(delivery, Outcome(False, "opted_out"))
        if openid is None:
            return await self._finish(delivery, Outcome(False, "not_following"))
        if await cs_quota.take(openid, self._clock()):
            try:
                await self._wechat.send_text(openid, text)
                return await self._finish(delivery, Outcome(True))
            except WeChatAPIError as exc:
                log.info("customer-service notice refused (%s); trying a template", exc.errcode)
        notice = self._notices.get(purpose) or {}
        if marketing or not notice.get("template_id") or values is None:
            return await self._finish(delivery, Outcome(False, "no_window"))
        delivery.channel = "wechat_tpl"
        await Delivery.filter(id=delivery.id).update(channel=delivery.channel)
        data = {theirs: values.get(ours, "") for ours, theirs in notice.get("fields", {}).items()}
        try:
            await self._wechat.send_template(openid, notice["template_id"], data)
        except WeChatAPIError as exc:
            return await self._finish(delivery, Outcome(False, str(exc.errcode)))
        return await self._finish(delivery, Outcome(True))

    async def record_sms_report(self, out_id: str, delivered: bool, err_code: str) -> None:
        """Aliyun's delivery receipt for a message we sent (its OutId is our Delivery id)."""
        if not (out_id.isascii() and out_id.isdigit()) or len(out_id) > 18:
            return  # not one of our ids (those are 64-bit integers)
        if delivered:
            await Delivery.filter(id=int(out_id), channel="sms").update(status=DeliveryStatus.SENT)
        else:
            await Delivery.filter(id=int(out_id), channel="sms").update(
                status=DeliveryStatus.FAILED, error=err_code[:255]
            )
