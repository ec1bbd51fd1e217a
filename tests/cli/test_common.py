"""Text laid out in terminal columns (bot/cli/common.py), which the segment and broadcast
commands share: wide (CJK) characters take two columns."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.cli.common import clip, pad, width

TEXT = st.text(st.sampled_from("ab1 =>金卡会员瑜伽，！…"), max_size=30)


def test_width_counts_wide_characters_twice():
    assert width("tier=金卡会员") == 13
    assert width("９折！") == 6  # fullwidth forms too
    assert width("…") == 1


@given(TEXT, st.integers(0, 40))
def test_clip_keeps_the_longest_start_that_fits(text, columns):
    clipped = clip(text, columns)
    assert text.startswith(clipped) and width(clipped) <= columns
    if clipped != text:
        assert width(text[:len(clipped) + 1]) > columns


@given(TEXT, st.integers(0, 40))
def test_pad_fills_to_the_columns_and_leaves_a_longer_text_whole(text, columns):
    padded = pad(text, columns)
    assert width(padded) == max(columns, width(text))
    assert padded.startswith(text) and padded[len(text):].strip(" ") == ""
    assert width(pad(clip(text, columns), columns)) == columns
