"""Rebuild the poster font: a subset of Noto Sans CJK SC Bold (SIL OFL 1.1, OFL.txt here).

    apt-get download fonts-noto-cjk && dpkg -x fonts-noto-cjk_*.deb /tmp/noto
    pip install fonttools brotli
    python -m bot.notifications.fonts.build_subset \
        /tmp/noto/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc

It keeps printable ASCII, GB 2312's symbols and its 3755 level-1 hanzi (the common ones: shop,
store and person names almost always fall inside), and every CJK character that the templates,
config.toml and the code use, so the poster's own texts are always there. A CJK glyph costs about
310 bytes even as WOFF2: this is the smallest set that still covers names people type.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection, TTFont

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUTPUT = HERE / "NotoSansSC-Bold-subset.woff2"
FACE = "Noto Sans CJK SC Bold"
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def gb2312(first_row: int, last_row: int) -> str:
    """The characters of GB 2312 rows first_row..last_row (0xA1..0xF7 in EUC-CN)."""
    chars = []
    for row in range(first_row, last_row + 1):
        for cell in range(0xA1, 0xFF):
            try:
                chars.append(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return "".join(chars)


def project_text() -> str:
    """Every CJK character in what the bot says or prints."""
    found: set[str] = set()
    for pattern in ("templates/**/*.j2", "bot/**/*.py", "config.toml"):
        for path in ROOT.glob(pattern):
            found.update(CJK.findall(path.read_text(encoding="utf-8")))
    return "".join(sorted(found))


def characters() -> str:
    ascii_ = "".join(chr(c) for c in range(0x20, 0x7F))
    return ascii_ + "¥·—…‘’“”" + gb2312(0xA1, 0xA9) + gb2312(0xB0, 0xD7) + project_text()


def build(source: Path, output: Path = OUTPUT) -> int:
    collection = TTCollection(str(source))
    index = next(i for i, face in enumerate(collection.fonts)
                 if face["name"].getDebugName(4) == FACE)
    font = TTFont(str(source), fontNumber=index)
    options = subset.Options()
    options.flavor = "woff2"
    options.hinting = False  # printed at 300 dpi: hints only cost bytes
    options.layout_features = ["*"]
    options.name_IDs = ["*"]  # keeps the copyright and the licence in the font
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters())
    subsetter.subset(font)
    font.flavor = "woff2"
    font.save(str(output))
    return output.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="NotoSansCJK-Bold.ttc (Debian fonts-noto-cjk)")
    args = parser.parse_args()
    size = build(args.source)
    print(f"wrote {OUTPUT} ({size // 1024} KB)")


if __name__ == "__main__":
    main()
