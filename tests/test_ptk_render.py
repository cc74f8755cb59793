"""
How transcript lines look (clients/ptk/render.py): pure functions, no terminal.
"""

from __future__ import annotations

import time

import pytest
from prompt_toolkit.utils import get_cwidth

from clients.ptk.render import (
    Line,
    escape,
    format_time,
    is_mention,
    nick_style,
    render_line,
    wrap,
)
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent

T = 1_700_000_000_000


def text_of(fragments) -> str:
    return "".join(text for _, text in fragments)


def styles_of(fragments, needle: str) -> list:
    return [style for style, text in fragments if needle in text]


def test_time_is_local_hours_and_minutes():
    """Server time (ms since the epoch) shows as HH:MM in the local time zone."""
    assert format_time(T) == time.strftime("%H:%M", time.localtime(T / 1000))
    assert text_of(render_line(Line(ChatEvent(I.MESSAGE, "#a", "bob", "hi", T)))).startswith(
        format_time(T) + " "
    )


def test_nick_colour_is_stable_and_case_blind():
    """A nick gets the same colour every time, in any case (rfc1459: [ is {)."""
    assert nick_style("Alice") == nick_style("alice")
    assert nick_style("a[b]") == nick_style("A{B}")
    assert len({nick_style(f"user{i}") for i in range(40)}) > 5


def test_message_action_and_own_lines():
    """<nick> text; * nick text for /me; our own nick in bold."""
    assert text_of(render_line(Line(ChatEvent(I.MESSAGE, "#a", "bob", "hi", T)))).endswith(
        "<bob> hi"
    )
    assert text_of(render_line(Line(ChatEvent(I.ACTION, "#a", "bob", "waves", T)))).endswith(
        "* bob waves"
    )
    own = render_line(Line(ChatEvent(I.MESSAGE, "#a", "me", "x", T, own=True)))
    assert any("class:own" in s for s in styles_of(own, "me"))


def test_joins_parts_and_nick_changes_are_dimmed():
    """JOIN, PART, QUIT, NICK lines are in the dim style."""
    for event, words in (
        (ChatEvent(I.JOIN, "#a", "bob", "", T), "bob joined #a"),
        (ChatEvent(I.PART, "#a", "bob", "later", T), "bob left #a (later)"),
        (ChatEvent(I.QUIT, None, "bob", "Quit: x", T), "bob quit (Quit: x)"),
        (ChatEvent(I.NICK, None, "bob", "robert", T), "bob is now known as robert"),
    ):
        fragments = render_line(Line(event))
        assert words in text_of(fragments)
        assert all("dim" in style for style, _ in fragments[1:])


def test_mention_highlighted_as_a_word():
    """A line naming us (a whole word, any case) gets the mention style; 'alicex' does not count."""
    assert is_mention("hey Alice, look", "alice")
    assert is_mention("alice: hi", "alice")
    assert not is_mention("alicex is here", "alice")
    assert not is_mention("malice", "alice")
    line = render_line(Line(ChatEvent(I.MESSAGE, "#a", "bob", "hi alice", T), mention=True))
    assert styles_of(line, "hi alice") == ["class:mention"]


def test_control_characters_are_shown_escaped_never_raw():
    """ESC, BEL, CR, backspace, C1 and bidi overrides come out as visible escapes."""
    nasty = "a\x1b[2Jb\x07c\rd\x08e\x9bf\u202eg\u200bh"
    fragments = escape(nasty)
    shown = text_of(fragments)
    for raw in ("\x1b", "\x07", "\r", "\x08", "\x9b", "\u202e", "\u200b"):
        assert raw not in shown
    assert shown == "a\\x1b[2Jb\\x07c\\x0dd\\x08e\\x9bf\\u202eg\\u200bh"
    assert [text for style, text in fragments if "class:escape" in style] == [
        "\\x1b",
        "\\x07",
        "\\x0d",
        "\\x08",
        "\\x9b",
        "\\u202e",
        "\\u200b",
    ]
    line = text_of(render_line(Line(ChatEvent(I.MESSAGE, "#a", "ev\x1bil", nasty, T))))
    assert "\x1b" not in line and "ev\\x1bil" in line


def test_plain_text_and_unicode_pass_untouched():
    """Printable text, accents, CJK and emoji are shown as they are."""
    text = "héllo 世界 🎉 tab-free"
    assert escape(text) == [("", text)]


def test_errors_info_and_state_lines():
    """ERROR lines start with !!!, INFO with ---, STATE says what happened."""
    assert text_of(render_line(Line(ChatEvent(I.ERROR, text="No such nick", time_ms=T)))).endswith(
        "!!! No such nick"
    )
    assert text_of(render_line(Line(ChatEvent(I.INFO, text="Welcome", time_ms=T)))).endswith(
        "--- Welcome"
    )
    assert "Disconnected" in text_of(
        render_line(Line(ChatEvent(I.STATE, text=I.DISCONNECTED, time_ms=T)))
    )


def rows_text(rows) -> list:
    return ["".join(text for _, text in row) for row in rows]


# (fragments, width, rows as text)
WRAPS = [
    ([("", "short line")], 20, ["short line"]),
    ([("", "the quick brown fox")], 12, ["the quick", "      brown", "      fox"]),
    ([("", "one two")], 7, ["one two"]),  # exactly the width
    ([("a", "<"), ("b", "bob"), ("a", "> hi there")], 12, ["<bob> hi", "      there"]),
    ([("a", "<"), ("b", "bob"), ("a", "> hello")], 10, ["<bob>", "      hell", "      o"]),
    ([("", "ab " + "x" * 12)], 10, ["ab", "      xxxx", "      xxxx", "      xxxx"]),
    ([("", "a  b")], 20, ["a  b"]),  # spaces inside a row are kept
    ([], 10, [""]),
]


@pytest.mark.parametrize("fragments,width,rows", WRAPS)
def test_wrap_breaks_rows_at_spaces(fragments, width, rows):
    """Each row: a line cut into rows at spaces, a word too wide cut where the row ends (#17)."""
    assert rows_text(wrap(fragments, width)) == rows


def test_wrap_keeps_styles_and_never_exceeds_the_width():
    """Styles survive the cut; no row is wider than asked, wide characters included."""
    fragments = [("class:x", "héllo 世界世界世界 🎉 " * 5)]
    for width in (8, 13, 40):
        for row in wrap(fragments, width):
            assert sum(get_cwidth(t) for _, t in row) <= width
            assert all(style in ("", "class:x") for style, _ in row)
