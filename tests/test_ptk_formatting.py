"""
IRC formatting codes read into styled runs (clients/ptk/formatting.py): a table, as
parser-tests' msg-split.yaml is one, then how render.py shows them.
"""

from __future__ import annotations

import pytest

from clients.ptk.formatting import PALETTE, Format, parse, style_of
from clients.ptk.render import Line, formatted, render_line
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent

B = Format(bold=True)
RED = "#ff0000"  # colour 4
BLUE = "#00007f"  # colour 2

# (name, text, runs)
CASES = [
    ("plain", "hello", [(Format(), "hello")]),
    ("empty", "", []),
    ("bold toggles", "a\x02b\x02c", [(Format(), "a"), (B, "b"), (Format(), "c")]),
    ("bold to the end", "\x02bold", [(B, "bold")]),
    ("italics", "\x1dit", [(Format(italic=True), "it")]),
    ("underline", "\x1fu", [(Format(underline=True), "u")]),
    ("strikethrough", "\x1es", [(Format(strike=True), "s")]),
    ("reverse", "\x16r", [(Format(reverse=True), "r")]),
    ("attributes combine", "\x02\x1fbu", [(Format(bold=True, underline=True), "bu")]),
    ("reset ends all", "\x02\x1d\x0304x\x0fy",
     [(Format(True, True, fg=RED), "x"), (Format(), "y")]),
    ("one-digit colour", "\x034red", [(Format(fg=RED), "red")]),
    ("two-digit colour", "\x0304red", [(Format(fg=RED), "red")]),
    ("foreground and background", "\x034,2x", [(Format(fg=RED, bg=BLUE), "x")]),
    ("two digits at most", "\x030412", [(Format(fg=RED), "12")]),
    ("background two digits at most", "\x034,021", [(Format(fg=RED, bg=BLUE), "1")]),
    ("a comma without a digit is text", "\x034,x", [(Format(fg=RED), ",x")]),
    ("a comma alone is not a colour", "\x03,4x", [(Format(), ",4x")]),
    ("bare code resets colours", "\x034a\x03b", [(Format(fg=RED), "a"), (Format(), "b")]),
    ("bare code keeps bold", "\x02\x034a\x03b", [(Format(bold=True, fg=RED), "a"), (B, "b")]),
    ("new foreground keeps background", "\x034,2a\x0312b",
     [(Format(fg=RED, bg=BLUE), "a"), (Format(fg=PALETTE[12], bg=BLUE), "b")]),
    ("extended colour", "\x0352x", [(Format(fg="#ff0000"), "x")]),
    ("highest colour", "\x0398x", [(Format(fg="#ffffff"), "x")]),
    ("99 is the default", "\x0399,99x", [(Format(), "x")]),
    ("hex colour", "\x04FF8800x", [(Format(fg="#ff8800"), "x")]),
    ("hex both", "\x04ff8800,000000x", [(Format(fg="#ff8800", bg="#000000"), "x")]),
    ("bare hex code resets", "\x04ff8800a\x04b", [(Format(fg="#ff8800"), "a"), (Format(), "b")]),
    ("short hex is not a colour", "\x04fff x", [(Format(), "fff x")]),
    ("unicode digits are text", "\x03\u0664x", [(Format(), "\u0664x")]),
    ("other controls stay", "a\x07b\x11c\x1bd", [(Format(), "a\x07b\x11c\x1bd")]),
    ("codes alone give nothing", "\x02\x02\x0f", []),
]


@pytest.mark.parametrize("name,text,runs", CASES, ids=[c[0] for c in CASES])
def test_parse(name, text, runs):
    """Each row: the text's runs of (format, text), codes taken out."""
    assert parse(text) == runs


def test_palette_has_colours_0_to_98():
    """99 colours (0-98), each #rrggbb."""
    assert len(PALETTE) == 99
    assert all(len(c) == 7 and c.startswith("#") for c in PALETTE)


def test_style_strings():
    """A format becomes a prompt_toolkit style string."""
    assert style_of(Format()) == ""
    assert style_of(Format(True, True, True, True, True, RED, BLUE)) == (
        "bold italic underline reverse strike fg:#ff0000 bg:#00007f"
    )


def test_messages_render_formatting_as_styles_and_escape_the_rest():
    """<bob> \\x02bold\\x02 \\x0304red\\x03: styles, not backslashes; an ESC still escaped."""
    text = "\x02bold\x02 \x0304red\x03 \x1b"
    fragments = render_line(Line(ChatEvent(I.MESSAGE, "#a", "bob", text, 1)))
    text = "".join(t for _, t in fragments)
    assert text.endswith("<bob> bold red \\x1b")
    assert ("bold", "bold") in fragments and ("fg:#ff0000", "red") in fragments
    assert [s for s, t in fragments if t == "\\x1b"] == ["class:escape"]


def test_formatting_keeps_the_mention_style_underneath():
    """A coloured word in a line naming us: the mention's style, then the colour."""
    assert formatted("\x034hi", "class:mention") == [("class:mention fg:#ff0000", "hi")]


def test_actions_notices_and_topics_are_formatted():
    """/me, NOTICE and TOPIC text render formatting too."""
    for kind in (I.ACTION, I.NOTICE, I.TOPIC):
        fragments = render_line(Line(ChatEvent(kind, "#a", "bob", "\x02loud", 1)))
        assert any("bold" in s.split() and t == "loud" for s, t in fragments), kind
