"""
CTCP requests a client answers by itself: one rule, one place, for the TCP and UDP sessions.

test-case-name: tests.test_client_ctcp

A CTCP message is a PRIVMSG (request) or NOTICE (reply) whose text is
``\\x01VERB[ arg]\\x01`` (https://modern.ircdocs.horse/ctcp.html; the closing
``\\x01`` may be missing).  Issue #17: VERSION, PING, TIME and CLIENTINFO sent
to us are answered quietly with a NOTICE, and open no window; the others are
shown once, in the server window.  No clock here: the time is an argument.
"""

from __future__ import annotations

import time

__all__ = ["ANSWERED", "VERSION", "parse", "reply"]

VERSION = "twistchat"
# What we answer; CLIENTINFO lists them, and ACTION, which we understand.
ANSWERED = ("CLIENTINFO", "PING", "TIME", "VERSION")


def parse(text: str) -> tuple[str, str] | None:
    """``\\x01VERB arg\\x01`` as (VERB upper-cased, arg); None when ``text`` is no CTCP."""
    if not text.startswith("\x01"):
        return None
    body = text[1:-1] if text.endswith("\x01") and len(text) > 1 else text[1:]
    verb, _, arg = body.partition(" ")
    return verb.upper(), arg


def reply(verb: str, arg: str, now_s: float) -> str | None:
    """
    The NOTICE text answering request ``verb`` (``arg`` its argument) at ``now_s``, or None.

    TIME is UTC (ISO 8601), so a reply does not tell the user's time zone.
    PING echoes its argument, as the spec says.
    """
    if verb == "VERSION":
        body = VERSION
    elif verb == "PING":
        body = arg
    elif verb == "TIME":
        body = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s))
    elif verb == "CLIENTINFO":
        body = " ".join(("ACTION",) + ANSWERED)
    else:
        return None
    return f"\x01{verb} {body}\x01" if body else f"\x01{verb}\x01"
