"""Bookings: services and the resources that serve them (a stylist, a coach, a room), their
closures, the bookings, the seats that hold their places, and the waitlist.

Capacity is the seat table's unique key, not a count checked before an insert: a booking holds
one seat row per slot unit it covers, (resource, unit start, seat number) is unique, and seat
numbers run from 1 to the resource's capacity. Two members racing for the last place both try
to insert the same (resource, unit, seat): the database lets one commit. (resource, unit,
member) is unique too, so nobody holds two places in one class. Cancelling deletes the seats,
so the place (and the member's right to book it again) is free at once.
"""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Service(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=32)
    minutes = fields.IntField()
    price = fields.IntField(default=0)  # fen
    resources = fields.JSONField(default=list)  # resource codes, in the order offered
    punch_card = fields.CharField(max_length=32, default="")  # [[punch_cards]] code covering it
    active = fields.BooleanField(default=True)

    class Meta:
        table = "booking_service"


class Resource(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=32)
    store = fields.ForeignKeyField("models.Store", related_name="resources")
    capacity = fields.IntField(default=1)
    # ISO weekday ("1" = Monday) → "10:00-12:00,13:00-20:00" (config.parse_ranges); none = closed.
    hours = fields.JSONField(default=dict)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "booking_resource"


class Closure(Model):
    """A holiday or leave: the whole day (no times) or part of it, in shop time."""

    id = fields.IntField(primary_key=True)
    resource = fields.ForeignKeyField("models.Resource", related_name="closures")
    day = fields.DateField()
    opens = fields.TimeField(null=True)  # closed from ...
    closes = fields.TimeField(null=True)  # ... until; both None: all day
    reason = fields.CharField(max_length=64, default="")

    class Meta:
        table = "booking_closure"
        unique_together = (("resource", "day", "opens"),)
        indexes = (("day",),)


class BookingStatus(StrEnum):
    """active → arrived | no_show | cancelled | moved (to a new booking);
    offered (a freed place held for the first on the waitlist) → active | lapsed."""

    ACTIVE = "active"
    OFFERED = "offered"
    ARRIVED = "arrived"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    MOVED = "moved"
    LAPSED = "lapsed"


class Booking(Model):
    id = fields.IntField(primary_key=True)
    # The message (or CLI call) that made it: WeChat's retries find this row, never a second.
    key = fields.CharField(max_length=160, unique=True)
    member = fields.ForeignKeyField("models.Member", related_name="bookings")
    service = fields.ForeignKeyField("models.Service", related_name="bookings")
    resource = fields.ForeignKeyField("models.Resource", related_name="bookings")
    store = fields.ForeignKeyField("models.Store", related_name="bookings")
    starts_at = fields.DatetimeField()  # UTC
    ends_at = fields.DatetimeField()
    status = fields.CharField(max_length=10, default=BookingStatus.ACTIVE)
    created_at = fields.DatetimeField(auto_now_add=True)
    by_staff = fields.ForeignKeyField("models.Staff", related_name="bookings", null=True)
    moved_from = fields.ForeignKeyField("models.Booking", related_name="moved_to", null=True)
    offer_expires_at = fields.DatetimeField(null=True)  # an offered place, until then
    ended_at = fields.DatetimeField(null=True)  # cancelled, moved, arrived, no-show, lapsed
    # A reminder is marked sent after the outbox took it (its key stops a second one).
    evening_reminded_at = fields.DatetimeField(null=True)
    soon_reminded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "booking"
        indexes = (("member", "status", "starts_at"), ("status", "starts_at"),
                   ("store", "starts_at"))


class Seat(Model):
    """One slot unit of a booking's place: [unit_start, unit_start + slot_minutes)."""

    id = fields.BigIntField(primary_key=True)
    resource = fields.ForeignKeyField("models.Resource", related_name="seats")
    unit_start = fields.DatetimeField()  # UTC
    seat = fields.SmallIntField()  # 1 .. the resource's capacity
    booking = fields.ForeignKeyField("models.Booking", related_name="seats")
    member = fields.ForeignKeyField("models.Member", related_name="seats")

    class Meta:
        table = "booking_seat"
        unique_together = (("resource", "unit_start", "seat"),
                           ("resource", "unit_start", "member"))
        indexes = (("booking",),)


class WaitStatus(StrEnum):
    """waiting → offered (a place is held for them) → booked | lapsed; or cancelled."""

    WAITING = "waiting"
    OFFERED = "offered"
    BOOKED = "booked"
    LAPSED = "lapsed"
    CANCELLED = "cancelled"


class WaitEntry(Model):
    """A member waiting for a place at a full time. `open_slot` is set while the entry waits or
    holds an offer and cleared after: unique with the member, it stops joining one waitlist
    twice, and NULLs (finished entries) never collide."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=160, unique=True)
    member = fields.ForeignKeyField("models.Member", related_name="waits")
    service = fields.ForeignKeyField("models.Service", related_name="waits")
    resource = fields.ForeignKeyField("models.Resource", related_name="waits", null=True)
    starts_at = fields.DatetimeField()
    status = fields.CharField(max_length=10, default=WaitStatus.WAITING)
    open_slot = fields.CharField(max_length=64, null=True)
    booking = fields.ForeignKeyField("models.Booking", related_name="wait", null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "booking_wait"
        unique_together = (("member", "open_slot"),)
        indexes = (("status", "starts_at"),)
