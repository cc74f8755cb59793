"""
CTCP requests the client sessions answer by themselves (twistchat.client.ctcp): a table.
"""

from __future__ import annotations

import pytest

from twistchat.client import ctcp

# (text, parsed)
PARSE = [
    ("\x01VERSION\x01", ("VERSION", "")),
    ("\x01ping 123\x01", ("PING", "123")),
    ("\x01ACTION waves hello\x01", ("ACTION", "waves hello")),
    ("\x01TIME", ("TIME", "")),  # the closing \x01 may be missing
    ("hello \x01VERSION\x01", None),  # a CTCP starts the text
    ("", None),
]


@pytest.mark.parametrize("text,parsed", PARSE)
def test_parse(text, parsed):
    """Each row: a PRIVMSG/NOTICE text as (VERB, arg), or None when no CTCP."""
    assert ctcp.parse(text) == parsed


# (verb, arg, reply at 1_700_000_000 s)
REPLIES = [
    ("VERSION", "", "\x01VERSION twistchat\x01"),
    ("PING", "1234 5678", "\x01PING 1234 5678\x01"),
    ("PING", "", "\x01PING\x01"),
    ("TIME", "", "\x01TIME 2023-11-14T22:13:20Z\x01"),
    ("CLIENTINFO", "", "\x01CLIENTINFO ACTION CLIENTINFO PING TIME VERSION\x01"),
    ("FINGER", "", None),
    ("DCC", "SEND x 1 2 3", None),
    ("ACTION", "waves", None),
]


@pytest.mark.parametrize("verb,arg,answer", REPLIES)
def test_reply(verb, arg, answer):
    """Each row: the NOTICE text answering a request, or None for one we do not answer."""
    assert ctcp.reply(verb, arg, 1_700_000_000) == answer
