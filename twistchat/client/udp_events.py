"""
In-order UDP server lines to :class:`~twistchat.client.interfaces.ChatEvent` values.

test-case-name: tests.test_udp_client

One job: what a line means to a chat program, once
:mod:`~twistchat.client.udp_streams` has put it in order.  It keeps the
session's view of its rooms and nick in step with the lines it shows (our
JOIN, PART, KICK, NICK).  One small handler per verb and per numeric, in
tables, instead of one long ``if`` chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from twistchat.client import ctcp
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent, is_room
from twistchat.client.udp_streams import RoomStream, Streams
from twistchat.wire import Message, casefold, format_message, parse_server_time

__all__ = ["UDPEvents"]

# Join refused (no such room, too many rooms, full, invite only, banned, bad key).
_JOIN_REFUSED = frozenset(("403", "405", "471", "473", "474", "475"))
# Numerics nobody needs to see (server version, ISUPPORT, topic setter, creation time).
_SILENT = frozenset(("004", "005", "333", "329"))
# Numerics whose only useful text is the last parameter.
_LAST_PARAM_ONLY = frozenset(("001", "265", "266", "422"))


class _Me(Protocol):
    """What the events need to know of (and keep in step on) their session."""

    nick: str
    wanted_nick: str
    rooms: list[str]


class UDPEvents:
    """
    Shows lines as events through ``emit``; ``now_ms`` stamps lines without a
    ``time`` tag.
    """

    def __init__(self, me: _Me, streams: Streams, emit: Callable[[ChatEvent], None],
                 now_ms: Callable[[], int],
                 send: Callable[..., None] | None = None) -> None:
        self.me = me
        self.send = send  # send(command, *params): a CTCP answer goes out this way
        self.streams = streams
        self.emit = emit
        self.now_ms = now_ms
        self._names: dict[str, list[str]] = {}  # folded room -> names so far (353)

    def is_me(self, nick: str) -> bool:
        """Whether ``nick`` is ours."""
        return bool(nick) and casefold(nick) == casefold(self.me.nick)

    def show(self, message: Message, room: RoomStream | None = None) -> None:
        """Turn one in-order server line into ChatEvents (``room``: its room's stream)."""
        tags = message.tags
        time_ms = _time_ms(tags.get("time")) or self.now_ms()
        nick = _nick(message)
        base = ChatEvent(
            I.INFO, room=room.name if room is not None else None, nick=nick or None,
            time_ms=time_ms, seq=_int(tags["seq"]) if room is not None and "seq" in tags else None,
            own=self.is_me(nick), message=message)
        handler = self._VERBS.get(message.verb)
        if handler is not None and handler(self, message, base):
            return
        if message.command.isdigit():
            self._numeric(message, time_ms)
        else:
            self.emit(ChatEvent(I.INFO, text=format_message(message), time_ms=time_ms,
                                message=message))

    def _left(self, name: str) -> None:
        key = casefold(name)
        self.me.rooms = [r for r in self.me.rooms if casefold(r) != key]
        self.streams.left(name)

    # ------------------------------------------------------------- verbs
    # Each takes the line and an INFO event with its room, nick, time, seq
    # and own set; False: the line is too short, show it as it is.

    def _text(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        if len(p) < 2:
            return False
        text = p[1]
        kind = I.NOTICE if message.verb == "NOTICE" else I.MESSAGE
        request = ctcp.parse(text)
        if request is not None and request[0] == "ACTION" and message.verb == "PRIVMSG":
            kind, text = I.ACTION, request[1]
        elif request is not None:
            self._ctcp(message, base, *request)
            return True
        event = dataclasses.replace(base, kind=kind, text=text)
        if event.room is None:  # private, or from the server itself
            if message.source is None or "!" not in message.source:
                target = None
            else:
                target = p[0] if base.own else _nick(message)
            seq = _int(message.tags["seq"]) if "seq" in message.tags else None
            event = dataclasses.replace(event, room=target, seq=seq)
        self.emit(event)
        return True

    def _ctcp(self, message: Message, base: ChatEvent, verb: str, arg: str) -> None:
        """
        A CTCP other than ACTION: never a conversation window (issue #17).

        As the TCP session does (:meth:`twistchat.client.tcp_events.IRCEvents._ctcp`):
        a request to us that :mod:`~twistchat.client.ctcp` answers is answered
        and shown nowhere; any other is one INFO line for the server window.
        """
        nick = base.nick or ""
        to_me = self.is_me(message.params[0])
        notice = message.verb == "NOTICE"
        if not notice and not base.own and to_me and nick:
            answer = ctcp.reply(verb, arg, self.now_ms() / 1000)
            if answer is not None:
                if self.send is not None:
                    self.send("NOTICE", nick, answer)
                return
        if base.own:
            return
        if notice:
            text = f"CTCP {verb} reply from {nick}" + (f": {arg}" if arg else "")
        else:
            text = f"CTCP {verb} from {nick}" + (f" to {message.params[0]}" if not to_me else "")
        self.emit(dataclasses.replace(base, kind=I.INFO, room=None, seq=None, text=text))

    def _join(self, message: Message, base: ChatEvent) -> bool:
        if not message.params:
            return False
        if base.own and base.room is not None and base.room not in self.me.rooms:
            self.me.rooms.append(base.room)
        self.emit(dataclasses.replace(base, kind=I.JOIN, room=base.room or message.params[0]))
        return True

    def _part(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        if not p:
            return False
        if base.own:
            self._left(p[0])
        self.emit(dataclasses.replace(base, kind=I.PART, room=base.room or p[0],
                                      text=p[1] if len(p) > 1 else ""))
        return True

    def _kick(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        if len(p) < 2:
            return False
        victim_is_me = self.is_me(p[1])
        if victim_is_me:
            self._left(p[0])
        self.emit(dataclasses.replace(base, kind=I.KICK, room=base.room or p[0],
                                      text=f"{p[1]} {p[2] if len(p) > 2 else ''}".rstrip(),
                                      own=victim_is_me))
        return True

    def _quit(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        self.emit(dataclasses.replace(base, kind=I.QUIT, text=p[0] if p else ""))
        return True

    def _nick_change(self, message: Message, base: ChatEvent) -> bool:
        if not message.params:
            return False
        new = message.params[0]
        if base.own:
            self.me.nick = self.me.wanted_nick = new
        self.emit(dataclasses.replace(base, kind=I.NICK, text=new))
        return True

    def _topic(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        if not p:
            return False
        self.emit(dataclasses.replace(base, kind=I.TOPIC, room=base.room or p[0],
                                      text=p[1] if len(p) > 1 else ""))
        return True

    def _mode(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        if len(p) < 2:
            return False
        self.emit(dataclasses.replace(base, kind=I.MODE,
                                      room=base.room if is_room(p[0]) else None,
                                      text=" ".join(p[1:])))
        return True

    def _fail(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        self.emit(ChatEvent(I.ERROR, text=p[-1] if p else "FAIL", time_ms=base.time_ms,
                            message=message))
        return True

    def _error(self, message: Message, base: ChatEvent) -> bool:
        p = message.params
        self.emit(ChatEvent(I.ERROR, text=f"Server: {p[-1] if p else ''}",
                            time_ms=base.time_ms, message=message))
        return True

    _VERBS: dict[str, Callable[[UDPEvents, Message, ChatEvent], bool]] = {
        "PRIVMSG": _text,
        "NOTICE": _text,
        "JOIN": _join,
        "PART": _part,
        "KICK": _kick,
        "QUIT": _quit,
        "NICK": _nick_change,
        "TOPIC": _topic,
        "MODE": _mode,
        "FAIL": _fail,
        "ERROR": _error,
    }

    # ---------------------------------------------------------- numerics

    def _numeric(self, message: Message, time_ms: int) -> None:
        code, p = message.command, message.params
        if code in _SILENT:
            return
        if code == "353" and len(p) >= 4:
            self._names.setdefault(casefold(p[2]), []).extend(p[3].split())
        elif code == "366" and len(p) >= 2:
            names = tuple(self._names.pop(casefold(p[1]), ()))
            self.emit(ChatEvent(I.NAMES, room=p[1], names=names, time_ms=time_ms,
                                message=message))
        elif code == "332" and len(p) >= 3:
            self.emit(ChatEvent(I.TOPIC, room=p[1], text=p[2], time_ms=time_ms, message=message))
        elif code[0] in "45" and code != "422":
            self._error_reply(message, time_ms)
        else:
            text = p[-1] if len(p) < 2 or code in _LAST_PARAM_ONLY else " ".join(p[1:])
            self.emit(ChatEvent(I.INFO, text=text, time_ms=time_ms, message=message))

    def _error_reply(self, message: Message, time_ms: int) -> None:
        code, p = message.command, message.params
        detail = list(p[1:-1])
        text = (" ".join(detail) + ": " if detail else "") + (p[-1] if len(p) > 1 else code)
        room = p[1] if len(p) > 2 and is_room(p[1]) else None
        if code in _JOIN_REFUSED and room is not None:
            self.streams.refused(room)  # the JOIN failed: stop collecting
        self.emit(ChatEvent(I.ERROR, room=room, text=text, time_ms=time_ms, message=message))


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _nick(message: Message) -> str:
    return message.source.split("!", 1)[0] if message.source else ""


def _time_ms(text: str | None) -> int:
    if not text:
        return 0
    try:
        return parse_server_time(text)
    except ValueError:
        return 0
