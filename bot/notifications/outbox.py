"""The one door for outbound messages. Every send is a Delivery row keyed by an idempotency key:
the same key never sends twice, and every attempt ends as sent, failed or skipped with a reason
(or unknown, when a worker died mid-send), so nothing is silently dropped.

Notices (`notify`) try their purpose's channels in order ([notices.<purpose>] channels; by
default a customer-service message, a template message, an SMS). A channel that cannot be used
(no window, not following, no template configured, or WeChat refusing the member: 43004, 43101,
48002, 45015, 45047) passes the notice on to the next one; any other error ends it as failed
with its code, because the message may have gone out and a second channel would tell the
member twice. An SMS notice outside the shop's sending window waits in the row (queued) until
`send_queued`, run by a scheduler tick on every worker, claims and sends it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import NOTICE_CHANNELS, SmsConfig
from bot.infra.db import IntegrityError
from bot.infra.metrics import Metrics
from bot.infra.vault import Vault, mask_phone
from bot.models import Delivery, DeliveryStatus, Follower, Member
from bot.notifications import cs_quota
from bot.notifications.replies import Image, News, Reply, Text, Transfer, to_json
from bot.notifications.sms import SmsResult, SmsSender
from bot.notifications.wechat_api import WeChatAPI, WeChatAPIError
from bot.rules import quiet_hours

log = logging.getLogger("memberbot.outbox")

# WeChat's answers that mean "not this way": the notice tries its next channel.
REFUSALS = frozenset({"43004", "43101", "48002", "45015", "45047"})
# A queued SMS claimed longer ago than this without a recorded answer: its worker died, and
# whether Aliyun sent it is unknown (SendSms has no idempotency key, so it is not resent).
SENDING_LEASE = dt.timedelta(minutes=5)
# Aliyun's per-number flow control (one SMS a minute per number and template): a refusal, so
# nothing went out and a later try is safe. Two notices queued overnight for one member both
# fall due at the window's opening; the second waits a minute instead of failing.
SMS_TRY_LATER = frozenset({"isv.BUSINESS_LIMIT_CONTROL"})
SMS_TRIES = 4


@dataclass(frozen=True)
class Outcome:
    ok: bool
    code: str = ""  # why it failed: a WeChat errcode, an Aliyun Code, "no_quota", "duplicate"
    duplicate: bool = False
    queued: bool = False  # an SMS waiting for the sending window (sent later by the tick)


@dataclass
class _Notice:
    """One notify() call: what to send and how the purpose is configured."""

    delivery: Delivery
    member: Member
    openid: str | None
    text: str
    values: dict[str, str] | None
    marketing: bool
    config: dict[str, Any] = field(default_factory=dict)


class Outbox:
    def __init__(self, wechat: WeChatAPI, sms: SmsSender, clock: Callable[[], dt.datetime],
                 notices: dict[str, Any] | None = None, metrics: Metrics | None = None, *,
                 vault: Vault | None = None, sms_config: SmsConfig | None = None,
                 tz: dt.tzinfo = dt.UTC):
        self._wechat = wechat
        self._sms = sms
        self._clock = clock
        self._notices = notices or {}
        self._metrics = metrics
        # For SMS notices: the members' phones are decrypted at send time, inside the window.
        self._vault = vault
        self._sms_config = sms_config or SmsConfig()
        self._tz = tz

    async def _claim(self, key: str, **fields: Any) -> Delivery | None:
        """The new Delivery row, or None when this key was already used."""
        try:
            return await Delivery.create(key=key, **fields)
        except IntegrityError:
            return None

    async def _finish(self, delivery: Delivery, outcome: Outcome, *, channel: str | None = None,
                      status: DeliveryStatus | None = None) -> Outcome:
        status = status or (DeliveryStatus.SENT if outcome.ok else DeliveryStatus.FAILED)
        delivery.channel = channel or delivery.channel
        await Delivery.filter(id=delivery.id).update(
            status=status, channel=delivery.channel,
            error=None if outcome.ok else outcome.code[:255],
            sent_at=self._clock() if outcome.ok else None,
        )
        if self._metrics:
            self._metrics.deliveries.labels(delivery.channel, str(status)).inc()
        return outcome

    async def wechat(self, openid: str, reply: Reply, *, key: str, purpose: str) -> Outcome:
        """A customer-service message, if the member's quota window allows one."""
        delivery = await self._claim(key, channel="wechat_cs", purpose=purpose, openid=openid,
                                     payload=to_json(reply))
        if delivery is None:
            return Outcome(False, "duplicate", duplicate=True)
        if isinstance(reply, Transfer):  # a handover to WeChat's workbench too late to reply
            return await self._finish(delivery, Outcome(False, "passive_only"))
        if not await cs_quota.take(openid, self._clock()):
            log.warning("no customer-service quota for %s (%s)", openid[-6:], purpose)
            return await self._finish(delivery, Outcome(False, "no_quota"))
        try:
            if isinstance(reply, Image):
                await self._wechat.send_image(openid, reply.media_id)
            elif isinstance(reply, News):
                await self._wechat.send_news(openid, reply.title, reply.description, reply.url,
                                             reply.pic_url)
            elif isinstance(reply, Text):
                await self._wechat.send_text(openid, reply.content)
        except WeChatAPIError as exc:
            log.warning("customer-service send failed for %s: %s", openid[-6:], exc)
            return await self._finish(delivery, Outcome(False, str(exc.errcode)))
        return await self._finish(delivery, Outcome(True))

    async def sms(self, phone: str, phone_hash: str, template_code: str, params: dict[str, str],
                  *, key: str, purpose: str, log_params: bool = True) -> Outcome:
        """One SMS through Aliyun, now: what the member just asked for (a verification code,
        the welcome after registering), so never held back by the sending window. Verification
        codes pass log_params=False: the code must not be stored in the delivery row."""
        payload = {"template": template_code, "params": params if log_params else "(secret)"}
        delivery = await self._claim(key, channel="sms", purpose=purpose,
                                     phone_hash=phone_hash, payload=payload)
        if delivery is None:
            return Outcome(False, "duplicate", duplicate=True)
        result: SmsResult = await self._sms.send(phone, template_code, params, str(delivery.id))
        if not result.ok:
            log.warning("SMS to %s failed: %s %s", mask_phone(phone), result.code, result.message)
        return await self._finish(delivery, Outcome(result.ok, "" if result.ok else result.code))

    # --- notices ---

    def channels_for(self, purpose: str, marketing: bool = False) -> tuple[str, ...]:
        """The purpose's channel order; marketing never takes a template message (WeChat bans
        accounts that advertise by template)."""
        order = tuple((self._notices.get(purpose) or {}).get("channels", NOTICE_CHANNELS))
        return tuple(c for c in order if c != "wechat_tpl") if marketing else order

    async def notify(self, member_id: int, text: str, *, purpose: str, key: str,
                     values: dict[str, str] | None = None, marketing: bool = False) -> Outcome:
        """A notice the member is owed (a purchase, a balance change) through the first of the
        purpose's channels that can reach them; `values` fill the template message's and the
        SMS's fields. marketing=True (a greeting with no gift): skipped with `opted_out` after
        a 退订, never a template message, an SMS only with the marketing template (it carries
        the opt-out wording) and only inside the sending window."""
        order = self.channels_for(purpose, marketing)
        follower = await Follower.get_or_none(member_id=member_id)
        openid = follower.openid if follower and follower.following else None
        payload: dict[str, Any] = {"text": text, "values": values or {}}
        if marketing:
            payload["marketing"] = True
        # A marketing notice whose purpose lists only template messages has no channel left.
        delivery = await self._claim(key, channel=order[0] if order else "none", purpose=purpose,
                                     member_id=member_id, openid=openid, payload=payload)
        if delivery is None:
            return Outcome(False, "duplicate", duplicate=True)
        member = await Member.get_or_none(id=member_id)
        if member is None or member.erased_at is not None:
            return await self._finish(delivery, Outcome(False, "erased"),
                                      status=DeliveryStatus.SKIPPED)
        if marketing and member.marketing_opt_out_at is not None:
            return await self._finish(delivery, Outcome(False, "opted_out"),
                                      status=DeliveryStatus.SKIPPED)
        notice = _Notice(delivery, member, openid, text, values, marketing,
                         self._notices.get(purpose) or {})
        why: list[str] = []
        for channel in order:
            step = await getattr(self, f"_by_{channel}")(notice)
            if isinstance(step, Outcome):
                return step
            log.info("notice %s: %s not possible (%s)", key, channel, step)
            why.append(f"{channel}:{step}")
            delivery.channel = channel  # the last one tried
        # Nobody could be reached: the row says why, channel by channel.
        return await self._finish(delivery, Outcome(False, "; ".join(why) or "no_channel"))

    async def _by_wechat_cs(self, n: _Notice) -> Outcome | str:
        if n.openid is None:
            return "not_following"
        if not await cs_quota.take(n.openid, self._clock()):
            return "no_window"
        try:
            await self._wechat.send_text(n.openid, n.text)
        except WeChatAPIError as exc:
            return self._refused(exc) or await self._finish(
                n.delivery, Outcome(False, str(exc.errcode)), channel="wechat_cs")
        return await self._finish(n.delivery, Outcome(True), channel="wechat_cs")

    async def _by_wechat_tpl(self, n: _Notice) -> Outcome | str:
        if n.openid is None:
            return "not_following"
        if not n.config.get("template_id") or n.values is None:
            return "no_template"
        fields = n.config.get("fields", {})
        if any(not n.values.get(ours) for ours in fields):
            return "missing_values"  # never a template with an empty field
        data = {theirs: n.values[ours] for ours, theirs in fields.items()}
        try:
            await self._wechat.send_template(n.openid, n.config["template_id"], data)
        except WeChatAPIError as exc:
            return self._refused(exc) or await self._finish(
                n.delivery, Outcome(False, str(exc.errcode)), channel="wechat_tpl")
        return await self._finish(n.delivery, Outcome(True), channel="wechat_tpl")

    async def _by_sms(self, n: _Notice) -> Outcome | str:
        if n.marketing:
            template, params = self._sms_config.template_marketing, {"text": n.text}
        else:
            template = n.config.get("sms_template", "")
            params = _sms_params(n.config.get("sms_params"), n.values)
        if not template:
            return "no_template"
        if params is None:
            return "missing_values"
        if not n.member.phone_enc or self._vault is None:
            return "no_phone"
        payload = {**n.delivery.payload, "sms": {"template": template, "params": params}}
        now = self._clock()
        opens = quiet_hours.next_allowed(now, self._tz, self._sms_config.window)
        queued = opens != now
        # Claimed for sending now (an inline send), or left for the tick when the window opens.
        await Delivery.filter(id=n.delivery.id).update(
            channel="sms", phone_hash=n.member.phone_hash, payload=payload,
            status=DeliveryStatus.QUEUED if queued else DeliveryStatus.SENDING,
            not_before=opens if queued else None, claimed_at=None if queued else now)
        n.delivery.channel, n.delivery.payload = "sms", payload
        if queued:
            log.info("notice %s waits for the sending window (%s)", n.delivery.key, opens)
            return Outcome(False, "queued", queued=True)
        return await self._send_sms(n.delivery, n.member, template, params)

    @staticmethod
    def _refused(exc: WeChatAPIError) -> str | None:
        return str(exc.errcode) if str(exc.errcode) in REFUSALS else None

    async def _send_sms(self, delivery: Delivery, member: Member, template: str,
                        params: dict[str, str]) -> Outcome:
        phone = self._vault.decrypt(member.phone_enc)
        result = await self._sms.send(phone, template, params, str(delivery.id))
        tries = delivery.payload["sms"].get("tries", 1)
        if result.code in SMS_TRY_LATER and tries < SMS_TRIES:
            now = self._clock()
            later = quiet_hours.next_allowed(now + dt.timedelta(minutes=tries), self._tz,
                                             self._sms_config.window)
            payload = {**delivery.payload, "sms": {**delivery.payload["sms"], "tries": tries + 1}}
            await Delivery.filter(id=delivery.id).update(
                status=DeliveryStatus.QUEUED, not_before=later, claimed_at=None,
                error=result.code, payload=payload)
            return Outcome(False, result.code, queued=True)
        return await self._finish(delivery, Outcome(result.ok, "" if result.ok else result.code),
                                  channel="sms")

    async def send_queued(self, limit: int = 100) -> int:
        """Send the SMS notices whose time has come (a scheduler tick on every worker). Each row
        is claimed by a conditional update (queued → sending), so of two workers one sends it;
        a row left in sending past the lease is marked unknown, never resent. Returns how many
        went out."""
        now = self._clock()
        lost = await Delivery.filter(status=DeliveryStatus.SENDING, channel="sms",
                                     claimed_at__lt=now - SENDING_LEASE).update(
            status=DeliveryStatus.UNKNOWN, error="no answer recorded: the worker stopped")
        if lost:
            log.warning("%d SMS notices have an unknown outcome (worker stopped mid-send)", lost)
        if not quiet_hours.allowed(now, self._tz, self._sms_config.window):
            return 0  # due rows from a worker that was down all day wait for the morning too
        due = await Delivery.filter(status=DeliveryStatus.QUEUED, not_before__lte=now) \
            .order_by("not_before", "id").limit(limit).values_list("id", flat=True)
        sent = 0
        for delivery_id in due:
            if not await Delivery.filter(id=delivery_id, status=DeliveryStatus.QUEUED).update(
                    status=DeliveryStatus.SENDING, claimed_at=now):
                continue  # another worker took it
            sent += (await self._send_claimed(await Delivery.get(id=delivery_id))).ok
        return sent

    async def _send_claimed(self, delivery: Delivery) -> Outcome:
        # Re-read the member: they may have said 退订 or been erased while the SMS waited.
        member = await Member.get_or_none(id=delivery.member_id) if delivery.member_id else None
        if member is None or member.erased_at is not None or not member.phone_enc:
            return await self._finish(delivery, Outcome(False, "erased"),
                                      status=DeliveryStatus.SKIPPED)
        if delivery.payload.get("marketing") and member.marketing_opt_out_at is not None:
            return await self._finish(delivery, Outcome(False, "opted_out"),
                                      status=DeliveryStatus.SKIPPED)
        sms = delivery.payload["sms"]
        return await self._send_sms(delivery, member, sms["template"], sms["params"])

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


def _sms_params(mapping: dict[str, str] | None, values: dict[str, str] | None) -> (
        dict[str, str] | None):
    """The SMS template's variables from our values ([notices.<purpose>] sms_params maps ours to
    theirs; without it our names are theirs). None when a mapped value is missing: Aliyun would
    send the template with a hole in it."""
    values = values or {}
    if mapping is None:
        return dict(values)
    if any(not values.get(ours) for ours in mapping):
        return None
    return {theirs: values[ours] for ours, theirs in mapping.items()}
