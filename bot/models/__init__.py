"""Tortoise models, one module per aggregate. Tortoise discovers them through this package."""

from bot.models.conversation import Conversation, InboundMessage
from bot.models.delivery import AccessToken, Delivery
from bot.models.follower import Follower
from bot.models.ledger import PointsEntry, Purchase
from bot.models.member import CardSerial, Member, Store
from bot.models.verification import RateEvent, RateKey, SmsCode

__all__ = [
    "AccessToken",
    "CardSerial",
    "Conversation",
    "Delivery",
    "Follower",
    "InboundMessage",
    "Member",
    "PointsEntry",
    "Purchase",
    "RateEvent",
    "RateKey",
    "SmsCode",
    "Store",
]
