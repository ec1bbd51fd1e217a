"""Which shop question a message asks ([[faq]] in config.toml), and the map link of a place.
Pure: tested with any text."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from bot.config import FaqConfig, fold


def words(entry: FaqConfig) -> tuple[str, ...]:
    """The words that ask an entry's question, folded: its topic (帮助 tells members to type
    it) and its keywords."""
    return tuple(word for word in dict.fromkeys(fold(w) for w in (entry.topic, *entry.keywords))
                 if word)


def match(text: str, entries: Sequence[FaqConfig]) -> FaqConfig | None:
    """The entry whose topic or keyword the message contains (compared folded: full-width as
    half-width, any case, spaces ignored). The longest word found wins, so 停车场在哪 with 停车场
    and 在哪 is about parking; between words as long, the entry written first."""
    folded = fold(text)
    if not folded:
        return None
    found, longest = None, 0
    for entry in entries:
        for word in words(entry):
            if len(word) > longest and word in folded:
                found, longest = entry, len(word)
    return found


def asked(text: str, entries: Sequence[FaqConfig]) -> FaqConfig | None:
    """The entry a message names as a whole (a topic or keyword and nothing else): the form in
    which a question is answered inside a dialog too, where other text is the dialog's answer."""
    folded = fold(text)
    return next((entry for entry in entries if folded and folded in words(entry)), None)


def marker_url(template: str, latitude: float, longitude: float, name: str) -> str:
    """A map marker link from a template with {lat}, {lng} and {name} (shop.map_url; Amap's
    URI API by default)."""
    return template.format(lat=latitude, lng=longitude, name=quote(name, safe=""))
