"""
Multi-line messages on UDP: the datagrams of one ``seq`` put back together.

test-case-name: tests.test_multiline

The server sends a multi-line PRIVMSG or NOTICE (IRCv3 draft/multiline, one
room event) as one datagram per line, each with the event's one ``seq`` and
``part=<i>/<n>`` (docs/udp-protocol.md, "Multi-line messages").  The room
stream orders and repairs events by ``seq``, so it must see one message per
seq: :class:`Parts` holds the parts until all ``n`` are in, then gives one
message whose text has the lines joined by "\\n" (a part tagged
``draft/multiline-concat`` joined directly).  A seq missing a part looks like a
gap to the stream, and its repair sends every part again.
"""

from __future__ import annotations

from collections import OrderedDict

from twistchat.wire import Message

__all__ = ["CONCAT_TAG", "MAX_PENDING", "Parts"]

CONCAT_TAG = "draft/multiline-concat"
# Messages held incomplete at most (the oldest is dropped; its repair brings it back).
MAX_PENDING = 32
# A multi-line message has at most this many parts (the server's limits allow far fewer).
MAX_PARTS = 64


def _part(value: str) -> tuple[int, int] | None:
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit()):
        return None
    i, n = int(index), int(count)
    return (i, n) if 1 <= i <= n <= MAX_PARTS else None


class Parts:
    """The parts of multi-line messages not yet complete, by (source, seq, target)."""

    def __init__(self) -> None:
        self._pending: OrderedDict[tuple, dict[int, Message]] = OrderedDict()

    def add(self, message: Message) -> Message | None:
        """
        ``message`` itself if it has no ``part`` tag; else the whole message once complete.

        None while parts are missing (or for a part that makes no sense).
        """
        value = message.tags.get("part")
        if value is None:
            return message
        part = _part(value)
        if part is None or len(message.params) < 2:
            return None
        i, n = part
        key = (message.tags.get("seq"), message.params[0], message.source, n)
        held = self._pending.get(key)
        if held is None:
            held = self._pending[key] = {}
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
        held[i] = message
        if len(held) < n:
            return None
        del self._pending[key]
        text = ""
        for index in range(1, n + 1):
            piece = held[index]
            if index > 1 and CONCAT_TAG not in piece.tags:
                text += "\n"
            text += piece.params[1]
        tags = {k: v for k, v in held[1].tags.items() if k not in ("part", CONCAT_TAG)}
        return Message(message.command, (message.params[0], text), message.source, tags)
