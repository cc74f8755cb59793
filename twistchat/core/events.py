"""
Room events and what the core hands back to front-ends.

test-case-name: tests.test_registry

A room event is one numbered line of a room's transcript (or of a private
conversation): a frozen value, numbered by the room log
(:mod:`twistchat.core.roomlog`).  Its wire bytes are formatted at most once per
*tag view* and the same bytes object is written to every member that shares
that view: fan-out is the server's hot path (issue #3).  The cache of those
bytes sits beside the values, in a field that takes no part in equality.

A tag view is a small bit mask saying which server tags a receiver wants:
plain RFC 1459 clients want none; IRCv3 clients pick ``server-time``,
``msgid`` ... by capability; UDP sessions want ``seq`` and ``time`` always.

The core's whole answer to a command is a list of :class:`Delivery`: "send this
payload to these users".  A payload is an :class:`Event`, a plain
:class:`~twistchat.wire.Message` (a reply, a relayed line), a :class:`Gated`
line (for some capability's holders only), or a :class:`Disconnect` (the
rules say this connection ends, e.g. QUIT or a wrong server password).  Each
user's ``conn`` is the front-end object serving it and provides
``deliver(payload)``; the core never looks further into it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from twistchat.core.multiline import BATCH_TYPE, CONCAT_TAG, pieces
from twistchat.wire import Message, encode, format_server_time, parse_server_time

__all__ = [
    "NO_CLIENT_TAGS", "NO_TAGS", "TAG_ACCOUNT", "TAG_CLIENT", "TAG_EXTENDED", "TAG_MSGID",
    "TAG_MULTILINE", "TAG_SEQ", "TAG_TIME", "Delivery", "Disconnect", "Gated",
    "Event", "Payload", "deliver", "format_server_time", "is_multiline",
    "multiline_bytes", "parse_server_time",
]

# Tag views (bit mask).  Which tags a receiver is shown.
TAG_TIME = 1  # IRCv3 server-time: "time=2011-10-19T16:40:51.620Z"
TAG_MSGID = 2  # IRCv3 msgid
TAG_SEQ = 4  # twistchat's per-room sequence number (UDP wire contract)
TAG_CLIENT = 8  # client-only tags ("+typing"), relayed with message-tags
# Not a tag: the event's extended form where it has one (IRCv3 extended-join:
# ``JOIN #room account :realname``).  A view bit all the same, so the bytes stay
# cached per view: one dict lookup per delivery.
TAG_EXTENDED = 16
TAG_MULTILINE = 32  # IRCv3 draft/multiline (with batch): a multi-line text as one batch
# IRCv3 account-tag: "account=<name>" on lines a logged-in user causes (issue #14).  A
# server tag of its own, not a client one: shown with account-tag, not with message-tags.
TAG_ACCOUNT = 64
NO_TAGS = 0

# The empty client tags of most events: one shared, read-only map.
NO_CLIENT_TAGS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """
    One numbered line of a room's (or a private conversation's) transcript.

    ``target`` is the casefolded room name, or a conversation key for private
    messages (:mod:`twistchat.core.targets`); ``seq`` rises by one per event of
    that target; ``msgid`` is unique across restarts.  ``message`` holds no
    server tags: they are added per tag view by :meth:`line`.  ``extended``
    is the longer form of the same line shown to views with
    :data:`TAG_EXTENDED` (extended-join); UDP sessions, the store and history
    keep ``message``.  ``account`` is the account its sender was logged in
    as (None: not logged in, or a server's line), shown as IRCv3
    ``account=<name>`` to views with :data:`TAG_ACCOUNT`.
    """

    target: str
    seq: int
    time_ms: int
    msgid: str
    message: Message
    client_tags: Mapping[str, str] = field(default_factory=lambda: NO_CLIENT_TAGS)
    extended: Message | None = None
    account: str | None = None
    # view -> wire bytes, filled on first use; not part of the value.
    _lines: dict[int, bytes] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def __post_init__(self) -> None:
        if self.client_tags is None:
            object.__setattr__(self, "client_tags", NO_CLIENT_TAGS)

    @property
    def is_room_event(self) -> bool:
        """True for an event of a room, False for a private conversation."""
        return self.target[:1] in "#&"

    def tags_for(self, view: int) -> dict[str, str]:
        """The tags this event carries for receivers with tag ``view``."""
        tags: dict[str, str] = {}
        if view & TAG_CLIENT and self.client_tags:
            tags.update(self.client_tags)
        if view & TAG_ACCOUNT and self.account is not None:
            tags["account"] = self.account
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
        if view & TAG_EXTENDED:
            if self.extended is None:
                # No extended form: the same bytes as the view without the bit.
                data = self._lines[view] = self.line(view & ~TAG_EXTENDED)
                return data
            message = self.extended
        if is_multiline(message):
            data = self._lines[view] = multiline_bytes(
                message, self.tags_for(view), self.msgid, bool(view & TAG_MULTILINE))
            return data
        if view:
            tags = self.tags_for(view)
            if tags:
                message = Message(message.command, message.params, message.source, tags)
        data = self._lines[view] = encode(message)
        return data


def is_multiline(message: Message) -> bool:
    """True for a PRIVMSG or NOTICE whose text has a line feed (a draft/multiline message)."""
    params = message.params
    return (message.command in ("PRIVMSG", "NOTICE") and len(params) == 2
            and "\n" in params[1])


def multiline_bytes(message: Message, tags: dict[str, str], ref: str, capable: bool) -> bytes:
    """
    The wire lines of a multi-line message, with the tags ``tags`` of one event.

    ``capable`` (the receiver negotiated draft/multiline and batch): one
    ``BATCH +ref draft/multiline <target>`` carrying ``tags`` (msgid, time,
    client tags and, in a replay, the enclosing ``batch``), the PRIVMSG lines
    tagged ``batch=ref`` (``draft/multiline-concat`` on a continued line), then
    ``BATCH -ref``.  Otherwise (the spec's fallback) the non-blank lines as
    plain PRIVMSGs in order: the first carries every tag, the others every
    tag but the msgid ("Servers MUST only include a message ID on the first
    message", multiline spec), so a UDP session gets ``seq`` on each line.
    """
    command, (target, text) = message.command, message.params
    source = message.source
    parts = pieces(text)
    if capable:
        out = [encode(Message("BATCH", ("+" + ref, BATCH_TYPE, target), source, tags))]
        for part, concat in parts:
            inner = {"batch": ref, CONCAT_TAG: ""} if concat else {"batch": ref}
            out.append(encode(Message(command, (target, part), source, inner)))
        out.append(encode(Message("BATCH", ("-" + ref,), source)))
        return b"".join(out)
    rest = {k: v for k, v in tags.items() if k != "msgid"}
    lines: list[bytes] = []
    for part, _ in parts:
        if part:  # "Servers MUST NOT send blank lines" to clients without the capability
            lines.append(encode(Message(command, (target, part), source,
                                        rest if lines else tags)))
    return b"".join(lines)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """
    "End this connection": the rules ended it (QUIT, a wrong server password).

    ``why`` goes in the ``ERROR :Closing link`` line; ``quit_reason`` (default:
    ``why``) is what the user's peers see in its QUIT.
    """

    why: str
    quit_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Gated:
    """
    A line only connections that negotiated IRCv3 capability ``cap`` are shown.

    For notifications whose command others see too in another role (invite-notify:
    the invited user always gets its INVITE, the room's members only with the
    capability).  Front-ends without capabilities (UDP) show none.
    """

    cap: str
    message: Message


Payload = Message | Event | Disconnect | Gated


class Connection(Protocol):
    """What the core needs of a user's front-end object: somewhere to deliver."""

    def deliver(self, payload: Any) -> None:
        """Send one payload to this user, in this front-end's format."""


@dataclass(slots=True)
class Delivery:
    """
    "Send ``payload`` to each of ``to``, except ``skip``."

    The core's whole answer to a command is a list of these; the front-end
    that received the command walks the list (see :func:`deliver`).
    """

    to: Iterable[Any]
    payload: Payload
    skip: object = None


def deliver(deliveries: Iterable[Delivery]) -> None:
    """
    Hand every payload to every recipient's connection.

    Recipients are core users; ``user.conn`` is whatever front-end object
    serves that user (a TCP protocol, a UDP session): it provides
    ``deliver(payload)``.  This loop is the fan-out hot path.
    """
    for delivery in deliveries:
        payload = delivery.payload
        skip = delivery.skip
        for user in delivery.to:
            if user is not skip:
                user.conn.deliver(payload)
