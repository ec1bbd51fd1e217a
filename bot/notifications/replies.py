"""What a handler answers. Channels render these; the dispatcher stores them for retries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Text:
    content: str
    kind: str = "text"


@dataclass(frozen=True)
class Image:
    media_id: str
    kind: str = "image"


@dataclass(frozen=True)
class News:
    """One link card (图文, WeChat's `news`): since 2018 a passive reply or a customer-service
    message carries a single article. WeChat cannot send a location to a member, so a place is
    a card whose link opens a map."""

    title: str
    description: str
    url: str
    pic_url: str = ""
    kind: str = "news"


@dataclass(frozen=True)
class Transfer:
    """Hand the message to WeChat's customer-service workbench: a passive reply only (MsgType
    transfer_customer_service); it cannot go out as a customer-service message."""

    kind: str = "transfer_customer_service"


Reply = Text | Image | News | Transfer


def to_json(reply: Reply | None) -> dict[str, Any] | None:
    return asdict(reply) if reply else None


def from_json(data: dict[str, Any] | None) -> Reply | None:
    if not data:
        return None
    if data["kind"] == "image":
        return Image(data["media_id"])
    if data["kind"] == Transfer.kind:
        return Transfer()
    if data["kind"] == "news":
        return News(data["title"], data["description"], data["url"], data.get("pic_url", ""))
    return Text(data["content"])
