"""The one shape every channel turns its messages into. Nothing past the channels knows about
XML, signatures, AES or SMS gateways."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Inbound:
    channel: str  # "wechat" | "sms"
    user: str  # openid, or the phone number for SMS
    # text | voice | image | location | media | subscribe | unsubscribe | scan | click | view
    # | scancode | location_report | template_finish | other
    kind: str
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
    {"subscribe", "unsubscribe", "scan", "click", "view", "scancode", "location_report",
     "template_finish", "other_event"}
)
