"""Tortoise models, one module per aggregate. Tortoise discovers them through this package."""

from bot.models.campaign import (
    Campaign,
    CampaignBatch,
    CampaignDelivery,
    CampaignStatus,
    DeliveryState,
    MassJob,
    MassQuota,
)
from bot.models.conversation import Conversation, InboundMessage
from bot.models.coupons import Coupon, CouponStatus, CouponTemplate
from bot.models.delivery import AccessToken, Delivery, DeliveryStatus
from bot.models.follower import Follower
from bot.models.jobs import JobRun
from bot.models.ledger import CheckIn, PointsEntry, PointsKind, PointsUse, Purchase, TierChange
from bot.models.member import CardSerial, CardTransfer, Member, Store
from bot.models.staff import AppendOnlyError, AuditEntry, Role, Staff, StaffInvite
from bot.models.verification import RateEvent, RateKey, SmsCode
from bot.models.wallet import PunchCard, PunchUse, StoredValueEntry, StoredValueKind

__all__ = [
    "AccessToken",
    "AppendOnlyError",
    "AuditEntry",
    "Campaign",
    "CampaignBatch",
    "CampaignDelivery",
    "CampaignStatus",
    "CardSerial",
    "CardTransfer",
    "CheckIn",
    "Conversation",
    "Coupon",
    "CouponStatus",
    "CouponTemplate",
    "Delivery",
    "DeliveryState",
    "DeliveryStatus",
    "Follower",
    "InboundMessage",
    "JobRun",
    "MassJob",
    "MassQuota",
    "Member",
    "PointsEntry",
    "PointsKind",
    "PointsUse",
    "PunchCard",
    "PunchUse",
    "Purchase",
    "RateEvent",
    "RateKey",
    "Role",
    "SmsCode",
    "Staff",
    "StaffInvite",
    "Store",
    "StoredValueEntry",
    "StoredValueKind",
    "TierChange",
]
