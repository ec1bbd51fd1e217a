"""Tortoise models, one module per aggregate. Tortoise discovers them through this package."""

from bot.models.birthdays import BirthdayGift
from bot.models.bookings import (
    Booking,
    BookingStatus,
    Closure,
    Resource,
    Seat,
    Service,
    WaitEntry,
    WaitStatus,
)
from bot.models.campaign import (
    Campaign,
    CampaignBatch,
    CampaignDelivery,
    CampaignRequest,
    CampaignStatus,
    DeliveryState,
    MassJob,
    MassQuota,
)
from bot.models.console import ConsoleSession, LoginNonce
from bot.models.conversation import Conversation, InboundMessage
from bot.models.coupons import Coupon, CouponStatus, CouponTemplate
from bot.models.delivery import AccessToken, Delivery, DeliveryStatus
from bot.models.follower import Follower
from bot.models.jobs import JobRun
from bot.models.ledger import CheckIn, PointsEntry, PointsKind, PointsUse, Purchase, TierChange
from bot.models.member import CardSerial, CardTransfer, Member, Store
from bot.models.profile import ProfileChange
from bot.models.rollups import DailyFigures, DailyMember, MemberSet, PeriodCount, RollupDay
from bot.models.staff import AppendOnlyError, AuditEntry, Role, Staff, StaffInvite
from bot.models.support import Rating, SupportMessage, SupportThread, ThreadStatus
from bot.models.tags import MemberTag
from bot.models.verification import RateEvent, RateKey, SmsCode
from bot.models.wallet import PunchCard, PunchUse, StoredValueEntry, StoredValueKind

__all__ = [
    "AccessToken",
    "AppendOnlyError",
    "AuditEntry",
    "BirthdayGift",
    "Booking",
    "BookingStatus",
    "Campaign",
    "CampaignBatch",
    "CampaignDelivery",
    "CampaignRequest",
    "CampaignStatus",
    "CardSerial",
    "CardTransfer",
    "CheckIn",
    "Closure",
    "ConsoleSession",
    "Conversation",
    "Coupon",
    "CouponStatus",
    "CouponTemplate",
    "DailyFigures",
    "DailyMember",
    "Delivery",
    "DeliveryState",
    "DeliveryStatus",
    "Follower",
    "InboundMessage",
    "JobRun",
    "LoginNonce",
    "MassJob",
    "MassQuota",
    "Member",
    "MemberSet",
    "MemberTag",
    "PeriodCount",
    "PointsEntry",
    "PointsKind",
    "PointsUse",
    "ProfileChange",
    "PunchCard",
    "PunchUse",
    "Purchase",
    "RateEvent",
    "RateKey",
    "Rating",
    "Resource",
    "Role",
    "RollupDay",
    "Seat",
    "Service",
    "SmsCode",
    "Staff",
    "StaffInvite",
    "Store",
    "StoredValueEntry",
    "StoredValueKind",
    "SupportMessage",
    "SupportThread",
    "ThreadStatus",
    "TierChange",
    "WaitEntry",
    "WaitStatus",
]
