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


Reply = Text | Image


def to_json(reply: Reply | None) -> dict[str, Any] | None:
    return asdict(reply) if reply else None


def from_json(data: dict[str, Any] | None) -> Reply | None:
    if not data:
        return None
    if data["kind"] == "image":
        return Image(data["media_id"])
    return Text(data["content"])
