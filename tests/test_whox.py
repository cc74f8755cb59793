"""
WHOX (WHO's fields, 354) without I/O; and how 354 is written.
"""

from twistchat.frontends.ircv3 import NO_CAPS
from twistchat.wire import Message, encode, parse

# ---------------------------------------------------------------- the wire rule


def test_354_is_a_value_numeric_its_last_field_gets_no_colon():
    """Without the realname, 354 ends with a value: ':' only where the grammar needs it."""
    assert encode(Message("354", ("me", "42", "bob"), "srv")) == b":srv 354 me 42 bob\r\n"


def test_354_ending_with_the_realname_writes_it_after_a_colon():
    """With ``r`` (always last) the realname is free text: ':' even for one word."""
    line = encode(Message("354", ("me", "bob", "Bob"), "srv", trailing=True))
    assert line == b":srv 354 me bob :Bob\r\n"


def test_trailing_is_how_a_line_is_written_not_what_it_means():
    """trailing takes no part in equality or hash; the line parses back to an equal Message."""
    written = Message("354", ("me", "Bob"), "srv", trailing=True)
    assert written == Message("354", ("me", "Bob"), "srv")
    assert hash(written) == hash(Message("354", ("me", "Bob"), "srv"))
    assert parse(encode(written)) == written
    assert parse(encode(written)).trailing is False


def test_a_client_view_that_strips_tags_keeps_trailing():
    """The IRC front-end's View.format rebuilds a tagged Message; the ':' survives."""
    tagged = Message("354", ("me", "Bob"), "srv", {"x": "y"}, trailing=True)
    assert NO_CAPS.format(tagged, 0) == b":srv 354 me :Bob\r\n"
