"""The printable poster: every character of its texts is in the bundled font (no .notdef boxes),
the texts are really drawn, the code is big enough to scan from two metres, and the PNG says
300 dpi and carries the QR payload for the sandbox chat."""

from __future__ import annotations

import io
import logging

from PIL import Image

from bot.notifications import poster
from bot.notifications.poster import (
    DPI,
    FONT,
    QR_PAYLOAD_KEY,
    build_poster,
    covered,
    font_for,
    render_poster,
)

URL = "http://weixin.qq.com/q/02abcdEFGHijklMNOPqrst"
TEXTS = {"title": "阿福咖啡", "perks": "入会即送 100 积分 + 新会员20元券",
         "caption": "示例门店·总店 扫码加入会员", "subcaption": "30 天内有效"}


def _poster():
    return build_poster(URL, TEXTS["caption"], TEXTS["subcaption"], title=TEXTS["title"],
                        perks=TEXTS["perks"])


def test_the_bundled_font_is_small_and_has_every_character_of_the_poster_texts():
    assert FONT.is_file() and FONT.stat().st_size < 1_400_000
    cmap = covered(FONT)
    for text in TEXTS.values():
        assert {c for c in text if ord(c) not in cmap and not c.isspace()} == set(), text
    # and the common characters of names people type, not only our own words
    assert all(ord(c) in cmap for c in "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐")


def test_every_line_is_set_in_the_bundled_font_and_really_drawn():
    made = _poster()
    assert set(made.lines) == set(TEXTS)
    grey = made.image.convert("L")
    for name, line in made.lines.items():
        assert line.text == TEXTS[name] and line.font == FONT
        left, top, right, bottom = line.box
        region = grey.crop(line.box)
        # glyphs, not empty space: a good share of the line's box is ink (white on the band)
        histogram = region.histogram()
        inked = sum(histogram[201:]) if name == "perks" else sum(histogram[:128])
        share = inked / ((right - left) * (bottom - top))
        assert 0.08 < share < 0.7, (name, share)


def test_a_notdef_box_would_be_caught():
    """The check above can fail: Pillow's own font has no CJK and draws hollow boxes, which
    the cmap of our font tells apart from real glyphs."""
    assert ord("咖") in covered(FONT)
    assert ord("\U0002a6a5") not in covered(FONT)  # a CJK Extension B character


def test_a_character_no_font_has_is_left_out_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(poster, "_system_fonts", lambda: ())
    rare = "\U0002a6a5"
    with caplog.at_level(logging.WARNING, logger="memberbot.poster"):
        path, text = font_for(f"王{rare}邀请您加入")
    assert (path, text) == (FONT, "王邀请您加入")
    assert rare in caplog.text


def test_the_code_is_large_enough_to_scan_from_two_metres():
    made = _poster()
    left, top, right, bottom = made.qr_box
    side_cm = (right - left) / DPI * 2.54
    assert right - left == bottom - top >= 1000 and side_cm >= 8
    assert made.module_px >= 25  # 2 mm modules at 300 dpi: one per ~1 m of scanning distance
    grey = made.image.convert("L")
    # the three finder patterns sit in the corners of qr_box: dark at their centres
    m = made.module_px
    for x, y in ((left, top), (right - 7 * m, top), (left, bottom - 7 * m)):
        assert grey.getpixel((x + 3 * m + m // 2, y + 3 * m + m // 2)) < 128
        assert grey.getpixel((x + m + m // 2, y + m + m // 2)) > 128  # the white ring


def test_the_png_says_300_dpi_and_carries_the_payload():
    png = render_poster(URL, "扫码加入会员")
    with Image.open(io.BytesIO(png)) as image:
        assert [round(d) for d in image.info["dpi"]] == [DPI, DPI]
        assert image.text[QR_PAYLOAD_KEY] == URL


def test_a_coupon_image_without_title_or_perks_starts_with_the_code():
    made = build_poster("CP7K2M9QX4", "新会员20元券  CP7K2M9QX4", "请出示给店员扫码核销")
    assert set(made.lines) == {"caption", "subcaption"}
    assert made.qr_box[1] == 4 * made.module_px  # only the quiet zone above it
