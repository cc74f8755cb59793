"""
One session API for programs that chat, whichever transport carries it.

test-case-name: tests.test_client_tcp, tests.test_udp_client

A program (the terminal client, a bot, a test) holds an :class:`IChatSession`
and gives it an event handler.  Two providers exist: the TCP (IRC) session
and the UDP session; the zope interface catches swapped wiring (as
magic-wormhole's ``_interfaces.py`` does).  No prompt_toolkit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zope.interface import Attribute, Interface

from twistchat.wire import Message

# ChatEvent.kind values.
MESSAGE = "message"  # PRIVMSG to a room or to us
ACTION = "action"  # CTCP ACTION (/me)
NOTICE = "notice"
JOIN = "join"
PART = "part"
QUIT = "quit"  # room is the room it was recorded in (UDP) or None (TCP: one per peer)
NICK = "nick"  # text is the new nick
TOPIC = "topic"
KICK = "kick"  # text is "kicked-nick reason"
MODE = "mode"
NAMES = "names"  # names: the member list of room (after the server's NAMES reply ends)
INFO = "info"  # server text worth showing (MOTD, WHO/WHOIS lines, replies)
ERROR = "error"  # a server error reply or a local failure, shown in one line
STATE = "state"  # the session's state changed: text is the new state


@dataclass(frozen=True)
class ChatEvent:
    """
    One thing a chat program should show or react to, in the order to show it.

    ``room`` is the room's name as the server spells it, or for a private
    message the other party's nick; None for server-wide lines.  ``nick`` is who
    caused it (as they were called at the time).  ``time_ms`` is server time
    when the server sent it (IRCv3 server-time / UDP ``time`` tag), else local
    receive time.  ``seq`` is the room's sequence number where the transport
    carries it (UDP always; TCP None).  ``own`` marks lines we sent ourselves.
    """

    kind: str
    room: str | None = None
    nick: str | None = None
    text: str = ""
    time_ms: int = 0
    seq: int | None = None
    own: bool = False
    names: tuple = ()
    message: Message | None = field(default=None, compare=False)


# Room names start with one of these (ISUPPORT CHANTYPES; RFC 1459 1.3 names "#" and "&").
# A client has no grammar of its own: it only tells a room from a nick in ChatEvent.room.
ROOM_PREFIXES = "#&"


def is_room(name: str | None, chantypes: str = ROOM_PREFIXES) -> bool:
    """Whether ``name`` (a :attr:`ChatEvent.room`) names a room rather than a nick."""
    return name is not None and name[:1] != "" and name[0] in chantypes


# Session states (ChatEvent(STATE, text=...)).
CONNECTING = "connecting"
REGISTERED = "registered"  # may chat
DISCONNECTED = "disconnected"  # lost; the session reconnects by itself unless closed
CLOSED = "closed"  # quit by us; final


class IChatSession(Interface):
    """A chat session with one server, over some transport."""

    nick = Attribute("Our current nick (str); changes when the server confirms NICK.")
    state = Attribute("One of CONNECTING, REGISTERED, DISCONNECTED, CLOSED.")
    rooms = Attribute("The rooms we are in (list of names, in join order).")
    transport_name = Attribute('"tcp" or "udp".')
    lag = Attribute("Last measured round trip to the server in seconds, or None.")

    def set_handler(handler):
        """Call ``handler(ChatEvent)`` for each event, in order, each once (reactor thread)."""

    def start():
        """
        Connect (and reconnect with backoff until close); returns a Deferred
        fired on first REGISTERED.
        """

    def join(room):
        """Join ``room``; remembered and rejoined after a reconnect."""

    def part(room, reason=""):
        """Leave ``room``."""

    def say(target, text):
        """PRIVMSG ``text`` to a room or a nick."""

    def action(target, text):
        """A /me action (CTCP ACTION) to a room or a nick."""

    def set_nick(nick):
        """Ask for a new nick."""

    def topic(room, text=None):
        """Query or set a room's topic."""

    def names(room):
        """Ask for the member list of ``room`` (answered with a NAMES event)."""

    def who(mask):
        """Ask WHO ``mask`` (answered with INFO events)."""

    def send_line(line):
        """Send one raw IRC line (for commands the session has no method for)."""

    def close(reason="Client Quit"):
        """Send QUIT, stop reconnecting, disconnect; returns a Deferred fired when closed."""
