"""A printable poster: the QR code for a URL with a caption (the store's name) below it.

CPU-only and quick (tens of milliseconds); async callers should still run it in a thread.
Chinese captions need a CJK font: we use the first one found in CJK_FONTS (Debian:
fonts-wqy-microhei, fonts-noto-cjk or fonts-droid-fallback), else Pillow's built-in font,
which has no CJK glyphs.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_Q

CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)


@cache
def cjk_font_path() -> str | None:
    return next((p for p in CJK_FONTS if Path(p).is_file()), None)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = cjk_font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def _fitted(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: int):
    """The font at size, shrunk until text fits in max_width."""
    font = _font(size)
    while size > 12 and draw.textlength(text, font=font) > max_width:
        size -= 2
        font = _font(size)
    return font


def render_poster(url: str, caption: str, subcaption: str = "") -> bytes:
    """PNG bytes: the QR code for url (error correction Q, 6-module quiet zone), then the
    caption and an optional smaller subcaption, centred below it."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_Q, border=6)
    qr.add_data(url)
    qr.make(fit=True)
    qr.box_size = max(6, 720 // (qr.modules_count + 2 * qr.border))  # about 720 px wide
    code = qr.make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    width = code.width
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [(caption, _fitted(probe, caption, 44, width - 64))]
    if subcaption:
        lines.append((subcaption, _fitted(probe, subcaption, 28, width - 64)))
    boxes = [probe.textbbox((0, 0), text, font=font) for text, font in lines]
    gap, margin = 24, 48
    text_height = sum(b[3] - b[1] for b in boxes) + gap * (len(lines) - 1)
    poster = Image.new("RGB", (width, code.height + text_height + 2 * margin), "white")
    poster.paste(code, ((width - code.width) // 2, 0))
    draw = ImageDraw.Draw(poster)
    y = code.height + margin
    for (text, font), (left, top, right, bottom) in zip(lines, boxes, strict=True):
        draw.text(((width - (right - left)) // 2 - left, y - top), text, font=font, fill="black")
        y += bottom - top + gap
    buf = io.BytesIO()
    poster.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
