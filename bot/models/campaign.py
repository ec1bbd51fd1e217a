"""Campaigns (broadcasts to a segment): the campaign, one delivery row per member, the batches
workers claim, the WeChat mass sends they make, and each member's monthly mass-send count.

docs/campaigns.md tells the states and how a crash is handled."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class CampaignStatus(StrEnum):
    """draft → scheduled → running ⇄ paused → done; scheduled → stale (missed) → running;
    anything not done → cancelled."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    STALE = "stale"
    DONE = "done"
    CANCELLED = "cancelled"


class DeliveryState(StrEnum):
    """queued → sending → sent | failed | skipped (reason) | unknown"""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"  # the send may or may not have gone out (a crash, a lost answer)


FINAL_STATES = frozenset({DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SKIPPED,
                          DeliveryState.UNKNOWN})


class Campaign(Model):
    id = fields.IntField(primary_key=True)
    segment = fields.CharField(max_length=500)
    template = fields.CharField(max_length=64, null=True)  # templates/messages/campaigns/<name>.j2
    text = fields.TextField(null=True)  # or the literal text
    coupon = fields.CharField(max_length=32, null=True)  # a coupon template code
    channels = fields.CharField(max_length=16, default="wechat,sms")
    scheduled_at = fields.DatetimeField(null=True)
    holdout = fields.SmallIntField(default=0)  # percent of the segment that gets nothing
    status = fields.CharField(max_length=10, default=CampaignStatus.DRAFT, db_index=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="campaigns", null=True,
                                   on_delete=fields.SET_NULL)
    # The audience is written into delivery rows batch by batch: the last member id written,
    # how many so far, and whether the segment has been read to its end.
    audience_after = fields.IntField(null=True)
    audience_total = fields.IntField(default=0)
    audience_done = fields.BooleanField(default=False)
    # One worker at a time writes the audience (a lease, taken by a conditional UPDATE).
    lease_until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "campaign"

    @property
    def channel_list(self) -> tuple[str, ...]:
        return tuple(c for c in self.channels.split(",") if c)


class CampaignRequest(Model):
    """The key of one request to create a campaign (the console form's nonce): a form sent
    twice (a double click, a retry) makes one campaign, the first."""

    key = fields.CharField(max_length=64, primary_key=True)
    campaign = fields.ForeignKeyField("models.Campaign", related_name="requests")

    class Meta:
        table = "campaign_request"


class CampaignBatch(Model):
    """A run of the audience (ascending member ids) that one worker claims and sends. It is done
    only once every delivery in it has a final state: the checkpoint never moves on a fetch."""

    id = fields.BigIntField(primary_key=True)
    campaign = fields.ForeignKeyField("models.Campaign", related_name="batches")
    seq = fields.IntField()
    first_member = fields.IntField()
    last_member = fields.IntField()
    size = fields.IntField()
    state = fields.CharField(max_length=8, default="open")  # open | done
    worker = fields.CharField(max_length=64, null=True)
    lease_until = fields.DatetimeField(null=True)
    # Deliveries waiting (the SMS window, a retry's backoff): not claimable before this.
    not_before = fields.DatetimeField(null=True)
    claims = fields.IntField(default=0)
    done_at = fields.DatetimeField(null=True)

    class Meta:
        table = "campaign_batch"
        unique_together = (("campaign_id", "seq"),)
        indexes = (("campaign_id", "state"),)


class MassJob(Model):
    """One message/mass/send call: the openids of one batch that share a text. Its clientmsgid
    is derived from campaign, batch and text, so a repeated call is refused (45065), never sent
    twice. MASSSENDJOBFINISH fills in WeChat's counts."""

    id = fields.BigIntField(primary_key=True)
    batch = fields.ForeignKeyField("models.CampaignBatch", related_name="mass_jobs")
    client_msg_id = fields.CharField(max_length=64, unique=True)
    text = fields.TextField()
    openids = fields.IntField()
    state = fields.CharField(max_length=8, default="sending")  # sending | sent | failed
    first_attempt_at = fields.DatetimeField()
    attempts = fields.SmallIntField(default=0)
    retry_at = fields.DatetimeField(null=True)  # after a transient error: not before this
    msg_id = fields.BigIntField(null=True, db_index=True)
    msg_data_id = fields.BigIntField(null=True)
    error = fields.CharField(max_length=255, null=True)
    # From MASSSENDJOBFINISH.
    finish_status = fields.CharField(max_length=32, null=True)
    total_count = fields.IntField(null=True)
    filter_count = fields.IntField(null=True)
    sent_count = fields.IntField(null=True)
    error_count = fields.IntField(null=True)

    class Meta:
        table = "campaign_mass_job"


class CampaignDelivery(Model):
    """One per (campaign, member): what the member got, by which channel, or why nothing."""

    id = fields.BigIntField(primary_key=True)
    campaign = fields.ForeignKeyField("models.Campaign", related_name="deliveries")
    member = fields.ForeignKeyField("models.Member", related_name="campaign_deliveries")
    batch = fields.ForeignKeyField("models.CampaignBatch", related_name="deliveries")
    state = fields.CharField(max_length=8, default=DeliveryState.QUEUED)
    reason = fields.CharField(max_length=24, null=True)  # why skipped (holdout, opted_out, …)
    channel = fields.CharField(max_length=12, null=True)  # wechat | wechat_cs | sms
    holdout = fields.BooleanField(default=False)
    attempts = fields.SmallIntField(default=0)
    not_before = fields.DatetimeField(null=True)
    error = fields.CharField(max_length=255, null=True)
    mass_job = fields.ForeignKeyField("models.MassJob", related_name="deliveries", null=True,
                                      on_delete=fields.SET_NULL)
    # The month whose mass-send count this delivery took ("2026-12"), to give it back on failure.
    quota_month = fields.CharField(max_length=7, null=True)
    updated_at = fields.DatetimeField(null=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "campaign_delivery"
        unique_together = (("campaign_id", "member_id"),)
        indexes = (("batch_id", "state"), ("campaign_id", "state"))


class MassQuota(Model):
    """How many WeChat mass messages a member was sent in a month (the shop's month). WeChat
    delivers at most 4; taken by a conditional UPDATE before the call, so two campaigns at once
    cannot both spend the last one."""

    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="mass_quotas")
    month = fields.CharField(max_length=7)
    count = fields.SmallIntField(default=0)

    class Meta:
        table = "mass_quota"
        unique_together = (("member_id", "month"),)
