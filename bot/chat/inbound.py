"""The one shape every channel turns its messages into. Nothing past the channels knows about
XML, signatures, AES or SMS gateways."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Channel(StrEnum):
    WECHAT = "wechat"
    SMS = "sms"


class Kind(StrEnum):
    """What arrived. A StrEnum, so `inbound.kind == "text"` still holds."""

    TEXT = "text"  # typed, or a voice message WeChat recognised
    VOICE = "voice"
    IMAGE = "image"
    LOCATION = "location"
    MEDIA = "media"  # any other message: video, link, file …
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    SCAN = "scan"
    CLICK = "click"
    VIEW = "view"
    SCANCODE = "scancode"
    LOCATION_REPORT = "location_report"
    TEMPLATE_FINISH = "template_finish"
    MASS_FINISH = "mass_finish"  # MASSSENDJOBFINISH: a mass send's counts
    OTHER_EVENT = "other_event"


@dataclass(frozen=True)
class Inbound:
    channel: Channel
    user: str  # openid, or the phone number for SMS
    kind: Kind
    dedup_key: str
    created_at: int = 0
    text: str = ""  # what was typed or said, the menu key, or the scanned content
    scene: str | None = None  # QR scene of a subscribe or scan event
    account: str = ""  # our own account id, needed to address a passive reply
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_event(self) -> bool:
        return self.kind in EVENT_KINDS


EVENT_KINDS = frozenset(
    {Kind.SUBSCRIBE, Kind.UNSUBSCRIBE, Kind.SCAN, Kind.CLICK, Kind.VIEW, Kind.SCANCODE,
     Kind.LOCATION_REPORT, Kind.TEMPLATE_FINISH, Kind.MASS_FINISH,
     Kind.OTHER_EVENT}
)
