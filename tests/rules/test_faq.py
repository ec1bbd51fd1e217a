"""Which shop question a message asks: folded comparison, longest keyword first, never a guess."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.config import FaqConfig, fold
from bot.rules.faq import marker_url, match, words

HOURS = FaqConfig("营业时间", ["营业时间", "几点开门", "开门"], "10:00-21:00")
PLACE = FaqConfig("地址", ["地址", "在哪", "怎么走"], address="南京东路 299 号",
                  latitude=31.2375, longitude=121.4802)
PARKING = FaqConfig("停车", ["停车", "停车场", "车位"], "B2 层")
WIFI = FaqConfig("无线网络", ["WiFi", "Wi-Fi 密码"], "密码 12345678")
ENTRIES = [HOURS, PLACE, PARKING, WIFI]


def test_a_message_containing_a_keyword_asks_that_question():
    assert match("请问你们几点开门呀？", ENTRIES) is HOURS
    assert match("怎么走", ENTRIES) is PLACE


def test_the_topic_itself_asks_the_question():
    # 帮助 tells members to type the topic, so it must work even when no keyword is the topic.
    assert match("无线网络", ENTRIES) is WIFI


def test_case_width_and_spaces_do_not_matter():
    assert match("ｗｉｆｉ是多少", ENTRIES) is WIFI
    assert match("wi-fi密码", ENTRIES) is WIFI
    assert match("几 点 开 门", ENTRIES) is HOURS


def test_the_longest_keyword_found_wins():
    # 停车场 (3) beats 在哪 (2), though 地址 is written first.
    assert match("停车场在哪", ENTRIES) is PARKING


def test_between_keywords_as_long_the_entry_written_first_wins():
    assert match("停车在哪", ENTRIES) is PLACE
    assert match("停车在哪", [PARKING, PLACE]) is PARKING


def test_nothing_is_guessed():
    assert match("你们有什么优惠", ENTRIES) is None
    assert match("", ENTRIES) is None
    assert match("   ", ENTRIES) is None
    assert match("开门", []) is None


def test_words_are_the_topic_and_keywords_folded_once_each():
    entry = FaqConfig("Wi Fi", ["wifi", "WIFI", "密码", " "], "x")
    assert words(entry) == ("wifi", "密码")


def test_the_marker_url_fills_the_template_and_quotes_the_name():
    url = marker_url("https://uri.amap.com/marker?position={lng},{lat}&name={name}",
                     31.2375, 121.4802, "示例门店 & 二店")
    assert url == ("https://uri.amap.com/marker?position=121.4802,31.2375"
                   "&name=%E7%A4%BA%E4%BE%8B%E9%97%A8%E5%BA%97%20%26%20%E4%BA%8C%E5%BA%97")


entries_strategy = st.lists(
    st.builds(FaqConfig, topic=st.text(max_size=6),
              keywords=st.lists(st.text(max_size=6), max_size=4), answer=st.just("a")),
    max_size=5)


@given(st.text(), entries_strategy)
def test_matching_never_raises_and_answers_only_when_a_word_is_in_the_text(text, entries):
    found = match(text, entries)
    contained = [entry for entry in entries if any(w in fold(text) for w in words(entry))]
    if found is None:
        assert contained == []
    else:
        assert found in contained
        longest = max(len(w) for w in words(found) if w in fold(text))
        assert all(len(w) <= longest for e in contained for w in words(e) if w in fold(text))


plain = st.text(alphabet="营业时间地址停车场在哪几点开门abcxyz0123。？ ", max_size=12)


@given(plain, st.sampled_from([kw for entry in ENTRIES for kw in entry.keywords]), plain)
def test_a_keyword_anywhere_in_a_message_is_found(before, keyword, after):
    found = match(before + keyword + after, ENTRIES)
    assert found is not None
    assert any(w in fold(before + keyword + after) for w in words(found))
