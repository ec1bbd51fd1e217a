"""Sending one claimed batch: every queued member re-checked (erased, 退订) just before their
send, then reached by WeChat mass send or SMS by WeChat's rules, each delivery moving
queued → sending → sent | failed | skipped | unknown by conditional UPDATEs.

- WeChat: the batch's following members who have a mass message left this month, grouped by
  their text (a mass send carries one text); one message/mass/send per group with a clientmsgid
  from campaign, batch and text. A group of one cannot be mass-sent (WeChat takes 2 to 10,000
  openids): that member goes by SMS. A refused call (43004, 43101, 48002) sends the group by
  SMS; a transient one (-1, 45009, …) is repeated later with the same clientmsgid, so WeChat
  refuses a repeat of one that went out (45065: marked sent).
- SMS: the marketing template, only inside the sending window (later ones wait for the
  morning), paced to [broadcast] sms_per_second across workers, `concurrency` at a time.
  Flow control retries with backoff; a lost answer is `unknown`, never resent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from bot.infra.ratelimit import Limit
from bot.models import (
    Campaign,
    CampaignBatch,
    CampaignDelivery,
    CampaignStatus,
    CouponTemplate,
    DeliveryState,
    Follower,
    MassJob,
    Member,
)
from bot.notifications import campaigns as texts
from bot.notifications.wechat_api import WeChatAPIError
from bot.rules import campaigns as rules
from bot.rules import quiet_hours
from bot.services import coupons
from bot.services.campaigns import quota
from bot.services.campaigns.audience import reach
from bot.services.campaigns.results import coupon_key_prefix

log = logging.getLogger("memberbot.campaigns")

D = DeliveryState
MASS_PACE_KEY = "campaign:mass_send"
SMS_PACE_KEY = "campaign:sms"


@dataclass
class Run:
    """One batch being sent by this worker."""

    bot: object
    campaign: Campaign
    batch: CampaignBatch
    coupon: CouponTemplate | None
    month: str
    sms: list[tuple[CampaignDelivery, Member]] = field(default_factory=list)

    @property
    def config(self):
        return self.bot.config.broadcast

    def now(self) -> dt.datetime:
        return self.bot.now()

    async def running(self) -> bool:
        """Still running? Looked up before every send group: a pause or cancel stops the batch
        at the next member."""
        status = await Campaign.filter(id=self.campaign.id).first().values_list("status",
                                                                                 flat=True)
        return status == CampaignStatus.RUNNING


async def _set(row_ids: Sequence[int], from_: tuple[D, ...], now: dt.datetime,
               **changes) -> int:
    if not row_ids:
        return 0
    return await CampaignDelivery.filter(id__in=list(row_ids), state__in=list(from_)).update(
        updated_at=now, **changes)


async def pace(bot, key: str, limit: Limit) -> None:
    """Wait for room under a rate shared by every worker (bot.limiter)."""
    while True:
        wait = await bot.limiter.hit({key: [limit]}, bot.now())
        if wait is None:
            return
        await asyncio.sleep(min(wait, 0.25))


def _skip_reason(member: Member | None) -> str | None:
    if member is None or member.erased_at is not None:
        return "erased"
    if member.marketing_opt_out_at is not None:
        return "opted_out"
    return None


async def _fresh_refusals(ids: list[int]) -> dict[int, str]:
    """Members among these who were erased or said 退订 since the batch was loaded."""
    rows = await Member.filter(Q(erased_at__not_isnull=True)
                               | Q(marketing_opt_out_at__not_isnull=True),
                               id__in=ids).values_list("id", "erased_at")
    return {member_id: "erased" if erased else "opted_out" for member_id, erased in rows}


async def _with_coupon(run: Run, row: CampaignDelivery, member: Member) -> bool:
    """The campaign's coupon for this member (once, keyed per campaign and member); False when
    it could not be issued (out of stock, ended): the promotion would promise nothing."""
    if run.coupon is None:
        return True
    try:
        await coupons.issue(run.bot, member, run.coupon, source="campaign",
                            key=f"{coupon_key_prefix(run.campaign.id)}{member.id}")
    except coupons.CouponRefused:
        await _set([row.id], (D.QUEUED,), run.now(), state=D.SKIPPED, reason="no_coupon")
        return False
    return True


# --- the batch ---

async def send_batch(run: Run) -> None:
    await recover(run)
    now = run.now()
    rows = await CampaignDelivery.filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now), batch_id=run.batch.id,
        state=D.QUEUED).order_by("member_id")
    if not rows or not await run.running():
        return
    ids = [row.member_id for row in rows]
    members = {m.id: m for m in await Member.filter(id__in=ids)}
    reachable = await reach(run.bot, ids)
    openids = dict(await Follower.filter(member_id__in=ids, following=True)
                   .values_list("member_id", "openid"))
    channels = run.campaign.channel_list
    wechat: list[tuple[CampaignDelivery, Member]] = []
    for row in rows:
        member = members.get(row.member_id)
        if reason := _skip_reason(member):
            await _set([row.id], (D.QUEUED,), now, state=D.SKIPPED, reason=reason)
            continue
        following, used, has_phone = reachable[row.member_id]
        following = following and row.member_id in openids and row.channel != "sms"
        channel = rules.pick_channel(channels, following=following, mass_used=used,
                                     mass_cap=run.config.mass_monthly_cap, has_phone=has_phone)
        if channel == "wechat":
            wechat.append((row, member))
        elif channel == "sms":
            run.sms.append((row, member))
        else:
            reason = ("mass_cap" if "wechat" in channels and following
                      else "not_following" if "wechat" in channels else "no_phone")
            await _set([row.id], (D.QUEUED,), now, state=D.SKIPPED, reason=reason)
    await _send_wechat(run, wechat, openids)
    await _send_sms_all(run)


async def recover(run: Run) -> None:
    """Deliveries a crashed worker left `sending`. A mass send is repeated with its clientmsgid
    (WeChat refuses it if it went out: 45065), within the day WeChat remembers the id; an SMS
    or an older mass send may or may not have gone out, so it becomes `unknown`, listed for the
    manager and never resent."""
    now = run.now()
    for job in await MassJob.filter(batch_id=run.batch.id, state="sending"):
        if job.retry_at is not None and job.retry_at > now:
            continue
        rows = await CampaignDelivery.filter(mass_job_id=job.id, state=D.SENDING)
        if not rows:  # nothing left to send under it
            continue
        if now - job.first_attempt_at > rules.CLIENT_MSG_ID_MEMORY:
            await _set([r.id for r in rows], (D.SENDING,), now, state=D.UNKNOWN,
                       error="mass send unconfirmed")
            await MassJob.filter(id=job.id).update(state="failed", error="unconfirmed")
            continue
        await _call_mass(run, job, rows)
    lost = await CampaignDelivery.filter(batch_id=run.batch.id, state=D.SENDING,
                                         mass_job_id=None).values_list("id", flat=True)
    if lost:
        log.warning("campaign %s batch %s: %s sends interrupted by a crash: unknown",
                    run.campaign.id, run.batch.seq, len(lost))
        await _set(lost, (D.SENDING,), now, state=D.UNKNOWN, error="interrupted")


# --- WeChat ---

async def _send_wechat(run: Run, candidates: list[tuple[CampaignDelivery, Member]],
                       openids: dict[int, str]) -> None:
    groups: dict[str, list[tuple[CampaignDelivery, Member]]] = {}
    for row, member in candidates:
        text = texts.message_for(run.bot, run.campaign, member, run.coupon)
        groups.setdefault(text, []).append((row, member))
    for text, group in groups.items():
        if not await run.running():
            return
        refused = await _fresh_refusals([m.id for _, m in group])
        for row, member in group:
            if member.id in refused:
                await _set([row.id], (D.QUEUED,), run.now(), state=D.SKIPPED,
                           reason=refused[member.id])
        group = [(r, m) for r, m in group if m.id not in refused]
        group = [(r, m) for r, m in group if await _with_coupon(run, r, m)]
        job, rows = await _claim_mass(run, text, group)
        if job is not None:
            await _call_mass(run, job, rows)


class _Moved(Exception):
    """Some deliveries left `queued` while a mass send was being prepared."""


async def _claim_mass(run: Run, text: str, group: list[tuple[CampaignDelivery, Member]]
                      ) -> tuple[MassJob | None, list[CampaignDelivery]]:
    """Take the group's mass messages for the month and mark its deliveries `sending` under a
    new MassJob, in one transaction. Members without a message left, or a group left with one
    member, go to the SMS list."""
    now = run.now()
    by_member = {m.id: (r, m) for r, m in group}
    try:
        async with in_transaction():
            had_room = await quota.take(list(by_member), run.month,
                                        run.config.mass_monthly_cap)
            taken = had_room
            if len(taken) < rules.MASS_MIN:
                await quota.give_back(list(taken), run.month)
                taken = set()
            if taken:
                job = await MassJob.create(
                    batch_id=run.batch.id, text=text, openids=len(taken), first_attempt_at=now,
                    client_msg_id=rules.client_msg_id(run.campaign.id, run.batch.seq, text))
                rows = [by_member[member_id][0] for member_id in sorted(taken)]
                marked = await _set([r.id for r in rows], (D.QUEUED,), now, state=D.SENDING,
                                    channel="wechat", mass_job_id=job.id, quota_month=run.month,
                                    attempts=F("attempts") + 1)
                if marked != len(rows):
                    raise _Moved  # a cancel got to some of them first: undo it all
    except _Moved:
        return None, []
    for member_id, (row, member) in by_member.items():
        if member_id in taken:
            continue
        if "sms" in run.campaign.channel_list:
            run.sms.append((row, member))
        else:
            reason = "single_openid" if member_id in had_room else "mass_cap"
            await _set([row.id], (D.QUEUED,), now, state=D.SKIPPED, reason=reason)
    return (job, rows) if taken else (None, [])


async def _call_mass(run: Run, job: MassJob, rows: list[CampaignDelivery]) -> None:
    now = run.now()
    ids = [r.id for r in rows]
    member_ids = [r.member_id for r in rows]
    openids = list(await Follower.filter(member_id__in=member_ids)
                   .order_by("member_id").values_list("openid", flat=True))
    await pace(run.bot, MASS_PACE_KEY, Limit(run.config.mass_per_minute, 60))
    await MassJob.filter(id=job.id).update(attempts=F("attempts") + 1)
    try:
        answer = await run.bot.wechat.mass_send(openids, job.text, client_msg_id=job.client_msg_id)
    except WeChatAPIError as exc:
        await _mass_failed(run, job, rows, exc)
        return
    async with in_transaction():
        await MassJob.filter(id=job.id).update(state="sent", msg_id=answer.msg_id,
                                               msg_data_id=answer.msg_data_id, retry_at=None)
        await _set(ids, (D.SENDING, D.UNKNOWN), now, state=D.SENT, sent_at=now, error=None)
    if answer.duplicate:
        log.info("campaign %s batch %s: mass send %s had gone out already (45065)",
                 run.campaign.id, run.batch.seq, job.client_msg_id)


async def _mass_failed(run: Run, job: MassJob, rows: list[CampaignDelivery],
                       exc: WeChatAPIError) -> None:
    now = run.now()
    ids = [r.id for r in rows]
    kind = rules.wechat_error(exc.errcode)
    attempts = job.attempts + 1
    log.warning("campaign %s batch %s: mass send %s failed (%s, %s, attempt %s)",
                run.campaign.id, run.batch.seq, job.client_msg_id, exc.errcode, kind, attempts)
    if kind == rules.ErrorKind.TRANSIENT and attempts < run.config.max_attempts:
        # Left `sending` under its job: the batch is claimed again after the backoff and the
        # same call, same clientmsgid, is repeated (recover()).
        await MassJob.filter(id=job.id).update(retry_at=now + rules.backoff(attempts),
                                               error=str(exc)[:255])
        return
    if exc.errcode == rules.WECHAT_LOST:
        # Every attempt ended without an answer: any of them may have gone out (a repeat
        # would then have been refused, but that answer was lost too). Not resent, not given
        # back: listed for the manager.
        async with in_transaction():
            await MassJob.filter(id=job.id).update(state="failed", error=str(exc)[:255])
            await _set(ids, (D.SENDING,), now, state=D.UNKNOWN, error=str(exc)[:255])
        return
    async with in_transaction():
        await quota.give_back([r.member_id for r in rows], job_month(rows, run.month))
        await MassJob.filter(id=job.id).update(state="failed", error=str(exc)[:255])
        if kind == rules.ErrorKind.REFUSED and "sms" in run.campaign.channel_list:
            # WeChat will not deliver to them: SMS instead (channel "sms" keeps them off WeChat).
            await _set(ids, (D.SENDING,), now, state=D.QUEUED, channel="sms", mass_job_id=None,
                       quota_month=None, error=str(exc.errcode))
        else:
            await _set(ids, (D.SENDING,), now, state=D.FAILED, quota_month=None,
                       error=str(exc)[:255])
    if kind == rules.ErrorKind.REFUSED and "sms" in run.campaign.channel_list:
        refreshed = await CampaignDelivery.filter(id__in=ids, state=D.QUEUED)
        members = {m.id: m for m in await Member.filter(id__in=[r.member_id for r in rows])}
        run.sms.extend((r, members[r.member_id]) for r in refreshed)


def job_month(rows: list[CampaignDelivery], default: str) -> str:
    return next((r.quota_month for r in rows if r.quota_month), default)


# --- SMS ---

async def _send_sms_all(run: Run) -> None:
    pending, run.sms = run.sms, []
    if not pending:
        return
    if not run.bot.config.sms.template_marketing:
        await _set([r.id for r, _ in pending], (D.QUEUED,), run.now(), state=D.SKIPPED,
                   reason="no_sms_template")
        return
    gate = asyncio.Semaphore(max(1, run.config.concurrency))

    async def one(row: CampaignDelivery, member: Member) -> None:
        async with gate:
            await _send_sms(run, row, member)

    for start in range(0, len(pending), 50):
        if not await run.running():
            return
        await asyncio.gather(*(one(r, m) for r, m in pending[start:start + 50]))


async def _send_sms(run: Run, row: CampaignDelivery, member: Member) -> None:
    bot = run.bot
    now = bot.now()
    window = bot.config.sms.window
    opens = quiet_hours.next_allowed(now, bot.config.shop.tz, window)
    if opens != now:
        # Outside the sending window: this one waits for the morning.
        await _set([row.id], (D.QUEUED,), now, not_before=opens)
        return
    await pace(bot, SMS_PACE_KEY, Limit(run.config.sms_per_second, 1))
    if refused := await _fresh_refusals([member.id]):
        # An uplink TD, a 退订 or an erasure since the batch began: at once.
        await _set([row.id], (D.QUEUED,), bot.now(), state=D.SKIPPED, reason=refused[member.id])
        return
    if not await _with_coupon(run, row, member):
        return
    text = texts.message_for(bot, run.campaign, member, run.coupon)
    attempt = row.attempts + 1
    if not await _set([row.id], (D.QUEUED,), bot.now(), state=D.SENDING, channel="sms",
                      attempts=attempt):
        return  # cancelled, or another worker's
    outcome = await bot.outbox.sms(
        bot.vault.decrypt(member.phone_enc), member.phone_hash,
        bot.config.sms.template_marketing, texts.sms_params(text),
        key=f"campaign:{run.campaign.id}:{member.id}:{attempt}", purpose="campaign")
    now = bot.now()
    if outcome.ok:
        await _set([row.id], (D.SENDING, D.UNKNOWN), now, state=D.SENT, sent_at=now, error=None)
        return
    kind = (rules.ErrorKind.UNKNOWN if outcome.duplicate else rules.sms_error(outcome.code))
    if kind == rules.ErrorKind.TRANSIENT and attempt < run.config.max_attempts:
        await _set([row.id], (D.SENDING,), now, state=D.QUEUED, error=outcome.code,
                   not_before=now + rules.backoff(attempt))
    elif kind == rules.ErrorKind.UNKNOWN:
        await _set([row.id], (D.SENDING,), now, state=D.UNKNOWN, error=outcome.code)
    else:
        await _set([row.id], (D.SENDING,), now, state=D.FAILED, error=outcome.code)
