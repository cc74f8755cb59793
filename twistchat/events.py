"""
Room events and what the registry hands back to front-ends.

test-case-name: tests.test_registry

A room event is one numbered line of a room's transcript (or of a private
conversation).  It is formatted at most once per *tag view* and the same bytes
are written to every member that shares that view: fan-out is the server's
hot path (issue #3, "a room event is formatted once").

A tag view is a small bit mask saying which server tags a receiver wants:
plain RFC 1459 clients want none; IRCv3 clients pick ``server-time``,
``msgid`` ... by capability; UDP sessions want ``seq`` and ``time`` always.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Union

from twistchat.wire import Message, encode

# Tag views (bit mask).  Which tags a receiver is shown.
TAG_TIME = 1  # IRCv3 server-time: "time=2011-10-19T16:40:51.620Z"
TAG_MSGID = 2  # IRCv3 msgid
TAG_SEQ = 4  # twistchat's per-room sequence number (UDP wire contract)
TAG_CLIENT = 8  # client-only tags ("+typing"), relayed with message-tags
NO_TAGS = 0


def format_server_time(time_ms: int) -> str:
    """
    Format milliseconds since the epoch as IRCv3 server-time.

    https://ircv3.net/specs/extensions/server-time: "YYYY-MM-DDThh:mm:ss.sssZ", UTC.
    """
    seconds, millis = divmod(time_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_server_time(text: str) -> int:
    """
    Parse IRCv3 server-time text into milliseconds since the epoch.

    Raises ValueError on anything else.
    """
    if not text.endswith("Z"):
        raise ValueError(f"not a server-time timestamp: {text!r}")
    stamp = datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S.%f")
    return int(stamp.replace(tzinfo=timezone.utc).timestamp() * 1000 + 0.5)


class Event:
    """
    One numbered line of a room's (or a private conversation's) transcript.

    ``target`` is the casefolded room name, or a conversation key for private
    messages; ``seq`` rises by one per event of that target.  ``message`` holds
    no server tags: they are added per tag view by :meth:`line`.
    """

    __slots__ = ("target", "seq", "time_ms", "msgid", "message", "client_tags", "_lines")

    def __init__(
        self,
        target: str,
        seq: int,
        time_ms: int,
        msgid: str,
        message: Message,
        client_tags: dict | None = None,
    ) -> None:
        self.target = target
        self.seq = seq
        self.time_ms = time_ms
        self.msgid = msgid
        self.message = message
        self.client_tags = client_tags or {}
        self._lines: dict = {}

    @property
    def is_room_event(self) -> bool:
        """True for an event of a room, False for a private conversation."""
        return self.target[:1] in "#&"

    def tags_for(self, view: int) -> dict:
        """The tags this event carries for receivers with tag ``view``."""
        tags = {}
        if view & TAG_CLIENT and self.client_tags:
            tags.update(self.client_tags)
        if view & TAG_MSGID:
            tags["msgid"] = self.msgid
        if view & TAG_SEQ:
            tags["seq"] = str(self.seq)
        if view & TAG_TIME:
            tags["time"] = format_server_time(self.time_ms)
        return tags

    def line(self, view: int = NO_TAGS) -> bytes:
        """
        The wire bytes (with CRLF) of this event for tag ``view``.

        Formatted once per view and cached: every member with the same view
        gets the very same bytes object.
        """
        try:
            return self._lines[view]
        except KeyError:
            pass
        message = self.message
        if view:
            tags = self.tags_for(view)
            if tags:
                message = Message(message.command, message.params, message.source, tags)
        data = self._lines[view] = encode(message)
        return data

    def __repr__(self) -> str:
        return f"<Event {self.target}#{self.seq} {self.message!r}>"


Payload = Union[Message, Event]


@dataclass(slots=True)
class Delivery:
    """
    "Send ``payload`` to each of ``to``, except ``skip``."

    The registry's whole answer to a command is a list of these; the front-end
    that received the command walks the list (see :func:`deliver`).
    """

    to: Iterable
    payload: Payload
    skip: object = None


def deliver(deliveries: Iterable[Delivery]) -> None:
    """
    Hand every payload to every recipient's connection.

    Recipients are registry users; ``user.conn`` is whatever front-end object
    serves that user (a TCP protocol, a UDP session): it provides
    ``deliver(payload)``.  This loop is the fan-out hot path.
    """
    for delivery in deliveries:
        payload = delivery.payload
        skip = delivery.skip
        for user in delivery.to:
            if user is not skip:
                user.conn.deliver(payload)
