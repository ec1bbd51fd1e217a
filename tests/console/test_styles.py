"""The console's stylesheet as the browser gets it: pages' sections appended one after another
must not leave a button's text the colour of its background. The campaigns section made
button.danger white with red text, the bookings section later gave it a red background and
no colour: 取消群发 and 确认取消 were red on red, unreadable (caught by the browser tests'
screenshots; tests/browser/test_campaigns.py and test_bookings.py check it in Chromium)."""

from __future__ import annotations

import re

RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")


def rules(css: str) -> list[tuple[list[str], dict[str, str]]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    found = []
    for selectors, body in RULE.findall(css):
        declarations = dict(
            (name.strip(), value.strip()) for name, _, value in
            (part.partition(":") for part in body.split(";") if ":" in part))
        found.append(([s.strip() for s in selectors.split(",")], declarations))
    return found


def effective(css: str, selector: str) -> dict[str, str]:
    """What a `button.danger` in `selector`'s place gets: the plain rules in file order, then
    the scoped ones (more specific: they win whatever their order)."""
    result: dict[str, str] = {}
    for scoped in (False, True):
        for selectors, declarations in rules(css):
            for s in selectors:
                if s == (selector if scoped else "button.danger"):
                    result |= declarations
    if "background" in result:
        result.setdefault("background-color", result["background"])
    return result


async def test_danger_buttons_text_differs_from_their_background(browser):
    sheet = await browser.get("/console/static/console.css")
    assert sheet.status == 200
    css = sheet.text
    # The danger buttons of the pages: 取消群发 (campaign moves) and 确认取消 (a booking's panel).
    scopes = {"button.danger"} | {s for selectors, _ in rules(css) for s in selectors
                                  if s.endswith(" button.danger")}
    for scope in scopes:
        style = effective(css, scope)
        color, background = style.get("color"), style.get("background-color")
        assert color and background and color != background, (scope, style)
