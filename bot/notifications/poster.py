"""A printable poster: the shop's name, what members get, a QR code big enough to scan from two
metres, and a caption; also the coupon and invitation images the bot sends.

Text is set in the bundled subset of Noto Sans CJK SC Bold (fonts/, SIL OFL 1.1; rebuilt by
fonts/build_subset.py), so a poster never depends on the fonts of the machine that prints it.
A line with a character outside the subset is set in the first system CJK font that has all
of it; if none has, that character is left out and a warning is logged, never drawn as a box.

The QR payload is also written into the PNG (an iTXt chunk, QR_PAYLOAD_KEY), so the sandbox
chat can draw the code in a terminal without a QR decoder. CPU-only and quick (tens of
milliseconds); async callers should still run it in a thread.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import qrcode
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from qrcode.constants import ERROR_CORRECT_Q

log = logging.getLogger("memberbot.poster")

FONT = Path(__file__).resolve().parent / "fonts" / "NotoSansSC-Bold-subset.woff2"
SYSTEM_FONTS = (  # only for characters the subset lacks (rare names)
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
QR_PAYLOAD_KEY = "QR-Payload"
DPI = 300
WIDTH = 1240  # 10.5 cm at 300 dpi
QR_MIN_PX = 1000  # the code itself, quiet zone aside: 8.5 cm at 300 dpi, scannable from 2 m
MARGIN = 90
INK, GREY, ACCENT = (20, 20, 20), (90, 90, 90), (196, 40, 40)


@dataclass(frozen=True)
class Line:
    text: str  # as drawn (characters no font has are left out)
    font: Path
    box: tuple[int, int, int, int]  # left, top, right, bottom in the poster


@dataclass(frozen=True)
class Poster:
    image: Image.Image
    payload: str
    modules: int  # QR modules per side, quiet zone aside
    module_px: int
    qr_box: tuple[int, int, int, int]  # the code itself, quiet zone aside
    lines: dict[str, Line]  # "title", "perks", "caption", "subcaption": those given

    def png(self) -> bytes:
        info = PngInfo()
        info.add_itxt(QR_PAYLOAD_KEY, self.payload)
        buf = io.BytesIO()
        self.image.save(buf, format="PNG", optimize=True, dpi=(DPI, DPI), pnginfo=info)
        return buf.getvalue()


@cache
def covered(path: Path) -> frozenset[int]:
    """The code points a font file maps to a glyph (its cmap; face 0 of a collection)."""
    with TTFont(str(path), fontNumber=0, lazy=True) as font:
        return frozenset(font.getBestCmap())


@cache
def _system_fonts() -> tuple[Path, ...]:
    return tuple(Path(p) for p in SYSTEM_FONTS if Path(p).is_file())


def font_for(text: str) -> tuple[Path, str]:
    """The font to set text in, and the text it can set (all of it, unless no font can)."""
    needed = {ord(c) for c in text if not c.isspace()}
    for path in (FONT, *_system_fonts()):
        if needed <= covered(path):
            return path, text
    missing = "".join(sorted({c for c in text if ord(c) not in covered(FONT)}))
    log.warning("poster: no font has %r; left out of %r", missing, text)
    return FONT, "".join(c for c in text if c not in missing)


def _fitted(draw: ImageDraw.ImageDraw, text: str, path: Path, size: int, max_width: int):
    """The font at size, shrunk until text fits in max_width (width scales with the size, so
    one guess nearly always fits; each load of the WOFF2 costs ~20 ms)."""
    font = ImageFont.truetype(str(path), size)
    while size > 16 and (width := draw.textlength(text, font=font)) > max_width:
        size = max(16, min(size - 2, int(size * max_width / width)))
        font = ImageFont.truetype(str(path), size)
    return font


def _qr(payload: str) -> tuple[Image.Image, int, int]:
    """The code with a 4-module quiet zone; its module count and module size in pixels."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_Q, border=4)
    code.add_data(payload)
    code.make(fit=True)
    code.box_size = math.ceil(QR_MIN_PX / code.modules_count)
    image = code.make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    return image, code.modules_count, code.box_size


def build_poster(payload: str, caption: str, subcaption: str = "", *, title: str = "",
                 perks: str = "") -> Poster:
    """Top to bottom: title (the shop), perks (what members get, on a red band), the QR code
    for payload, caption, subcaption. Empty lines are left out."""
    code, modules, module_px = _qr(payload)
    width = max(WIDTH, code.width)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # name, text, size, colour, gap after
    specs = [("title", title, 104, INK, 28), ("perks", perks, 56, "white", 0),
             ("caption", caption, 72, INK, 24), ("subcaption", subcaption, 44, GREY, 0)]
    laid = {}
    for name, text, size, colour, gap in specs:
        if not text.strip():
            continue
        path, drawn = font_for(text)
        font = _fitted(probe, drawn, path, size, width - 2 * MARGIN - 60)
        laid[name] = (drawn, path, font, probe.textbbox((0, 0), drawn, font=font), colour, gap)

    def height(name: str) -> int:
        return laid[name][3][3] - laid[name][3][1] if name in laid else 0

    band_pad = 26
    above = MARGIN if "title" in laid or "perks" in laid else 0
    above += height("title") + (laid["title"][5] if "title" in laid else 0)
    above += height("perks") + 2 * band_pad if "perks" in laid else 0
    below = sum(height(n) + laid[n][5] for n in ("caption", "subcaption") if n in laid)
    below += MARGIN if below else 0
    poster = Image.new("RGB", (width, above + code.height + below), "white")
    draw = ImageDraw.Draw(poster)
    lines: dict[str, Line] = {}

    def put(name: str, y: int) -> int:
        drawn, path, font, (left, top, right, bottom), colour, gap = laid[name]
        x = (width - (right - left)) // 2 - left
        draw.text((x, y - top), drawn, font=font, fill=colour)
        lines[name] = Line(drawn, path, (x + left, y, x + right, y + bottom - top))
        return y + bottom - top + gap

    y = MARGIN if above else 0
    if "title" in laid:
        y = put("title", y)
    if "perks" in laid:
        draw.rounded_rectangle((MARGIN // 2, y, width - MARGIN // 2, y + height("perks")
                                + 2 * band_pad), radius=24, fill=ACCENT)
        y = put("perks", y + band_pad) + band_pad
    qr_top = above
    poster.paste(code, ((width - code.width) // 2, qr_top))
    y = qr_top + code.height
    for name in ("caption", "subcaption"):
        if name in laid:
            y = put(name, y)
    quiet = 4 * module_px
    left = (width - code.width) // 2 + quiet
    side = modules * module_px
    qr_box = (left, qr_top + quiet, left + side, qr_top + quiet + side)
    return Poster(poster, payload, modules, module_px, qr_box, lines)


def render_poster(payload: str, caption: str, subcaption: str = "", *, title: str = "",
                  perks: str = "") -> bytes:
    """PNG bytes (300 dpi) of build_poster; the QR payload is kept in the file's metadata."""
    return build_poster(payload, caption, subcaption, title=title, perks=perks).png()
