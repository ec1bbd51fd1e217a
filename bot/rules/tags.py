"""What a member tag may be: one word a segment can name (tag=瑜伽), so no spaces, and not
starting with "-" (标签 <手机|卡号> -瑜伽 removes one)."""

from __future__ import annotations

from bot.models.tags import TAG_MAX_LENGTH
from bot.rules.parsing import normalize_text


def normalize_tag(text: str) -> str | None:
    """The tag a staff member typed, or None if it cannot be one."""
    tag = normalize_text(text)
    if not tag or len(tag) > TAG_MAX_LENGTH or tag[0] in "-+" or not tag.isprintable():
        return None
    return tag if not any(ch.isspace() for ch in tag) else None
