"""Birthday gifts: what each member was given for their birthday, one row per member and year."""

from tortoise import fields
from tortoise.models import Model


class BirthdayGift(Model):
    """The year's gift, written in the transaction that gives it, so its unique (member, year)
    is the guard: a second run, a retry or another worker finds the row instead of giving again.
    The greeting is a Delivery of its own (key `birthday-notice:<member>:<year>`)."""

    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="birthday_gifts")
    year = fields.SmallIntField()
    celebrated_on = fields.DateField()
    tier = fields.CharField(max_length=16)  # the tier whose gift it was
    points = fields.IntField(default=0)
    coupon = fields.ForeignKeyField("models.Coupon", related_name="birthday_gift", null=True,
                                    on_delete=fields.SET_NULL)
    # Why the tier's coupon was not given: out_of_stock, limit, inactive, template_over, unknown.
    coupon_refused = fields.CharField(max_length=24, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "birthday_gift"
        unique_together = (("member", "year"),)
