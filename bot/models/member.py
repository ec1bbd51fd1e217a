"""Stores and members. A member is a registered customer; a follower (see follower.py) is a
WeChat account, which may or may not be linked to a member."""

from tortoise import fields
from tortoise.models import Model


class Store(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=64)

    class Meta:
        table = "store"


class CardSerial(Model):
    """One row per card number ever issued; its id is the serial, so numbers are never reused.
    A restore from an older backup carries the replaced database's highest serial over
    (bot/services/ops/backup.py), so numbers issued after the backup are not handed out again."""

    id = fields.IntField(primary_key=True)
    issued_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "card_serial"


class Member(Model):
    id = fields.IntField(primary_key=True)
    card_no = fields.CharField(max_length=16, unique=True)
    # The phone number is stored encrypted (AES-GCM); phone_hash (HMAC) is what lookups use.
    phone_hash = fields.CharField(max_length=64, unique=True)
    phone_enc = fields.TextField()
    name = fields.CharField(max_length=32, default="")
    birth_year = fields.SmallIntField(null=True)
    birth_month = fields.SmallIntField(null=True)
    birth_day = fields.SmallIntField(null=True)
    # Attribution: which store, employee or member brought them in (from the QR scene).
    store: fields.ForeignKeyNullableRelation[Store] = fields.ForeignKeyField(
        "models.Store", related_name="members", null=True, on_delete=fields.SET_NULL
    )
    staff_ref = fields.CharField(max_length=32, null=True)
    referrer: fields.ForeignKeyNullableRelation["Member"] = fields.ForeignKeyField(
        "models.Member", related_name="referrals", null=True, on_delete=fields.SET_NULL
    )
    tier = fields.CharField(max_length=16)
    # A tier a manager set by hand: a floor the periodic evaluation never goes below.
    tier_floor = fields.CharField(max_length=16, null=True)
    # Cached sums of their ledgers, changed only in the transaction that appends an entry.
    points = fields.IntField(default=0)
    stored_value = fields.IntField(default=0)  # fen
    privacy_consent_at = fields.DatetimeField(null=True)
    # 退订: no marketing from then on (service notices the member is owed still go out).
    marketing_opt_out_at = fields.DatetimeField(null=True)
    # 订阅 after a 退订: marketing consent given back (the opt-out it ended is in the audit log).
    marketing_opt_in_at = fields.DatetimeField(null=True)
    # 注销: personal data erased; the row stays so ledgers keep adding up.
    erased_at = fields.DatetimeField(null=True)
    registered_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "member"
        indexes = (("birth_month", "birth_day"),)


class CardTransfer(Model):
    """换绑: moving a card to another WeChat account. The new account proves the phone's SMS code
    (pending, for a while); a manager's 换绑 carries it out (done). Neither alone moves a card."""

    id = fields.IntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="transfers")
    openid = fields.CharField(max_length=64)  # the new account, which proved the code
    requested_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    # pending → done | void (expired, or replaced by a newer request for the same card)
    status = fields.CharField(max_length=8, default="pending")
    # Set when done: the 换绑 message's idempotency key, who did it, the account unbound.
    key = fields.CharField(max_length=96, unique=True, null=True)
    done_at = fields.DatetimeField(null=True)
    from_openid = fields.CharField(max_length=64, null=True)
    staff = fields.ForeignKeyField("models.Staff", related_name="card_transfers", null=True,
                                   on_delete=fields.SET_NULL)

    class Meta:
        table = "card_transfer"
        indexes = (("member_id", "status"),)
