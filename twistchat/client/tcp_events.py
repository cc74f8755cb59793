"""
IRC lines to :class:`~twistchat.client.interfaces.ChatEvent` values, for the TCP session.

test-case-name: tests.test_client_tcp

One job: say what a server line means to a chat program (a message, a join,
an error reply ...).  The connection's own lines (PING, CAP, 001, 005, a nick
refused during registration) stay with
:class:`~twistchat.client.tcp.TCPChatSession`; the order in which room
events are shown belongs to :class:`~twistchat.client.tcp_order.RoomOrder`.
Commands are handled by ``_irc_<VERB>`` methods, numerics through a table of
small handlers, as Twisted's ``IRCClient`` and Ergo's ``irc/commands.go`` do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from twistchat.client import ctcp
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent, is_room
from twistchat.client.tcp_order import RoomOrder
from twistchat.wire import Message, casefold, parse_server_time, split_source

__all__ = ["IRCEvents", "Rooms"]

# Join refused (no such room, too many rooms, full, invite only, banned, bad key).
_JOIN_REFUSED = frozenset(("403", "405", "471", "473", "474", "475"))
# Error-numbered, but only news: "MOTD File is missing".
_NOT_ERRORS = frozenset(("422",))
# Numerics whose only useful text is the last parameter.
_LAST_PARAM_ONLY = frozenset(("265", "266", "422"))
# Numerics about a room: the room goes into ChatEvent.room (WHO end, no topic, modes).
_ROOM_INFO = frozenset(("315", "331", "324"))
# Numerics nobody needs to see (server version, topic setter, room creation time).
_SILENT = frozenset(("004", "333", "329"))


class _Sender(Protocol):
    """Where a CTCP reply or a CHATHISTORY request is written."""

    def send(self, command: str, *params: str, tags: dict[str, str] | None = None) -> None: ...


class _Me(Protocol):
    """What the events need to know of their session."""

    nick: str
    wanted_nick: str
    isupport: dict[str, str]


class Rooms:
    """The rooms we are in (in join order), and those to join again after a reconnect."""

    def __init__(self, wanted: Iterable[str] = ()) -> None:
        self.joined: list[str] = []
        self.want: dict[str, str] = {}  # casefolded room -> name, in join order
        for room in wanted:
            self.want.setdefault(casefold(room), room)

    def wish(self, room: str) -> None:
        """Join ``room`` now and after every reconnect."""
        self.want.setdefault(casefold(room), room)

    def unwish(self, room: str) -> None:
        """Do not join ``room`` again."""
        self.want.pop(casefold(room), None)

    def entered(self, room: str) -> None:
        """Our JOIN to ``room`` arrived."""
        key = casefold(room)
        if key not in {casefold(r) for r in self.joined}:
            self.joined.append(room)
        self.want[key] = room

    def left(self, room: str) -> None:
        """We parted ``room`` or were kicked."""
        key = casefold(room)
        self.joined = [r for r in self.joined if casefold(r) != key]
        self.want.pop(key, None)


class IRCEvents:
    """
    Turns each server line into events: through ``order`` for a room's events,
    straight to ``emit`` for the rest.  ``now_ms`` is local time, for lines
    without IRCv3 server-time.
    """

    def __init__(self, me: _Me, rooms: Rooms, order: RoomOrder,
                 emit: Callable[[ChatEvent], None], now_ms: Callable[[], int]) -> None:
        self.me = me
        self.rooms = rooms
        self.order = order
        self.emit = emit
        self.now_ms = now_ms
        self._names: dict[str, list[str]] = {}  # casefolded room -> names while 353s arrive

    def reset(self) -> None:
        """The connection is gone: NAMES replies in progress will not end."""
        self._names.clear()

    def handle(self, proto: _Sender, msg: Message) -> None:
        """Whatever ``msg`` means, as events."""
        handler = getattr(self, "_irc_" + msg.verb, None)
        if handler is not None:
            handler(proto, msg)
        elif msg.verb.isdigit():
            self._numeric(msg)
        else:
            self.emit(ChatEvent(I.INFO, text=" ".join((msg.command,) + msg.params),
                                time_ms=self.time_ms(msg), message=msg))

    # ------------------------------------------------------------- helpers

    def time_ms(self, msg: Message) -> int:
        """IRCv3 server-time of ``msg``, else now."""
        stamp = msg.tags.get("time")
        if stamp:
            try:
                return parse_server_time(stamp)
            except ValueError:
                pass
        return self.now_ms()

    def _is_me(self, nick: str) -> bool:
        return bool(nick) and casefold(nick) == casefold(self.me.nick)

    def _chantypes(self) -> str:
        return self.me.isupport.get("CHANTYPES") or "#&"

    def _is_room(self, name: str) -> bool:
        return is_room(name, self._chantypes())

    def _room_or_server(self, msg: Message, event: ChatEvent) -> None:
        if event.room is None:
            self.emit(event)
        else:
            self.order.room_event(msg, event)

    # ------------------------------------------------------------ commands

    def _irc_PRIVMSG(self, proto: _Sender, msg: Message, notice: bool = False) -> None:
        if len(msg.params) < 2:
            return
        target, text = msg.params[0], msg.params[1]
        nick = _nick_of(msg)
        own = self._is_me(nick)
        room = self._conversation(msg, target, nick, own)
        kind = I.NOTICE if notice else I.MESSAGE
        request = ctcp.parse(text)
        if request is not None:
            verb, arg = request
            if verb == "ACTION" and not notice:
                kind, text = I.ACTION, arg
            else:
                self._ctcp(proto, msg, verb, arg, nick, own, notice)
                return
        self._room_or_server(msg, ChatEvent(kind, room=room, nick=nick or None, text=text,
                                            time_ms=self.time_ms(msg), own=own, message=msg))

    def _conversation(self, msg: Message, target: str, nick: str, own: bool) -> str | None:
        """The room, or the other party of a private message (None: from the server)."""
        bare = target.lstrip("@+%~&") if target[:1] in "@+%~" else target  # STATUSMSG
        if self._is_room(bare):
            return bare
        if not msg.source or "!" not in msg.source:
            return None  # from the server itself (our server's users are all nick!user@host)
        return target if own else nick

    def _ctcp(self, proto: _Sender, msg: Message, verb: str, arg: str, nick: str,
              own: bool, notice: bool) -> None:
        """
        A CTCP other than ACTION: never a conversation window (issue #17).

        A request to us that :mod:`~twistchat.client.ctcp` answers is answered
        with a NOTICE and shown nowhere; any other request, or a reply, is one
        INFO line for the server window (room None).
        """
        to_me = self._is_me(msg.params[0])
        if not notice and not own and to_me and not self.order.replaying:
            answer = ctcp.reply(verb, arg, self.now_ms() / 1000)
            if answer is not None:
                try:
                    proto.send("NOTICE", nick, answer)
                except ValueError:
                    pass  # a PING argument that cannot be written back
                return
        if own:
            return  # our own request, echoed (echo-message)
        if notice:
            text = f"CTCP {verb} reply from {nick}" + (f": {arg}" if arg else "")
        else:
            text = f"CTCP {verb} from {nick}" + (f" to {msg.params[0]}" if not to_me else "")
        self.emit(ChatEvent(I.INFO, room=None, nick=nick, text=text,
                            time_ms=self.time_ms(msg), message=msg))

    def _irc_NOTICE(self, proto: _Sender, msg: Message) -> None:
        self._irc_PRIVMSG(proto, msg, notice=True)

    def _irc_JOIN(self, proto: _Sender, msg: Message) -> None:
        if not msg.params:
            return
        room = msg.params[0]
        nick = _nick_of(msg)
        own = self._is_me(nick)
        if own and not self.order.replaying:
            self.rooms.entered(room)
            self.order.own_join(proto, room, self.me.isupport)
        self.order.room_event(msg, ChatEvent(I.JOIN, room=room, nick=nick,
                                             time_ms=self.time_ms(msg), own=own, message=msg))

    def _irc_PART(self, proto: _Sender, msg: Message) -> None:
        if not msg.params:
            return
        room = msg.params[0]
        nick = _nick_of(msg)
        own = self._is_me(nick)
        if own and not self.order.replaying:
            self.rooms.left(room)
        self.order.room_event(msg, ChatEvent(I.PART, room=room, nick=nick, text=_param(msg, 1),
                                             time_ms=self.time_ms(msg), own=own, message=msg))

    def _irc_KICK(self, proto: _Sender, msg: Message) -> None:
        if len(msg.params) < 2:
            return
        room, victim = msg.params[0], msg.params[1]
        reason = _param(msg, 2)
        if self._is_me(victim) and not self.order.replaying:
            self.rooms.left(room)
        self.order.room_event(msg, ChatEvent(I.KICK, room=room, nick=_nick_of(msg),
                                             text=f"{victim} {reason}".rstrip(),
                                             time_ms=self.time_ms(msg),
                                             own=self._is_me(victim), message=msg))

    def _irc_QUIT(self, proto: _Sender, msg: Message) -> None:
        nick = _nick_of(msg)
        self.emit(ChatEvent(I.QUIT, nick=nick, text=_param(msg, 0),
                            time_ms=self.time_ms(msg), own=self._is_me(nick), message=msg))

    def _irc_NICK(self, proto: _Sender, msg: Message) -> None:
        if not msg.params:
            return
        old, new = _nick_of(msg), msg.params[0]
        own = self._is_me(old)
        if own and not self.order.replaying:
            self.me.nick = self.me.wanted_nick = new
        self.emit(ChatEvent(I.NICK, nick=old, text=new, time_ms=self.time_ms(msg), own=own,
                            message=msg))

    def _irc_TOPIC(self, proto: _Sender, msg: Message) -> None:
        if not msg.params:
            return
        nick = _nick_of(msg)
        self.order.room_event(msg, ChatEvent(I.TOPIC, room=msg.params[0], nick=nick,
                                             text=_param(msg, 1), time_ms=self.time_ms(msg),
                                             own=self._is_me(nick), message=msg))

    def _irc_MODE(self, proto: _Sender, msg: Message) -> None:
        if len(msg.params) < 2:
            return
        target = msg.params[0]
        room = target if self._is_room(target) else None
        self._room_or_server(msg, ChatEvent(I.MODE, room=room, nick=_nick_of(msg),
                                            text=" ".join(msg.params[1:]),
                                            time_ms=self.time_ms(msg), message=msg))

    def _irc_FAIL(self, proto: _Sender, msg: Message) -> None:
        # IRCv3 standard replies: FAIL <command> <code> [<context>...] <description>
        if msg.params and msg.params[0].upper() == "CHATHISTORY":
            self.order.release_all()
        self.emit(ChatEvent(I.ERROR, text=msg.params[-1] if msg.params else "FAIL",
                            time_ms=self.time_ms(msg), message=msg))

    def _irc_WARN(self, proto: _Sender, msg: Message) -> None:
        self.emit(ChatEvent(I.INFO, text=msg.params[-1] if msg.params else "WARN",
                            time_ms=self.time_ms(msg), message=msg))

    _irc_NOTE = _irc_WARN

    # ------------------------------------------------------------ numerics

    def _numeric(self, msg: Message) -> None:
        code = msg.command
        if code in _SILENT:
            return
        special = self._NUMERICS.get(code)
        if special is not None and special(self, msg):
            return
        if code[0] in "45" and code not in _NOT_ERRORS:
            self._error_reply(msg)
        else:
            self._info_reply(msg)

    def _names_part(self, msg: Message) -> bool:
        """353 RPL_NAMREPLY: one more part of a room's member list."""
        params = msg.params
        if len(params) < 4:
            return False
        self._names.setdefault(casefold(params[2]), []).extend(params[3].split())
        return True

    def _names_end(self, msg: Message) -> bool:
        """366 RPL_ENDOFNAMES: the member list is whole: one NAMES event."""
        if len(msg.params) < 2:
            return False
        room = msg.params[1]
        names = tuple(self._names.pop(casefold(room), ()))
        self.emit(ChatEvent(I.NAMES, room=room, names=names, time_ms=self.time_ms(msg),
                            message=msg))
        return True

    def _topic_reply(self, msg: Message) -> bool:
        """332 RPL_TOPIC."""
        if len(msg.params) < 3:
            return False
        self.emit(ChatEvent(I.TOPIC, room=msg.params[1], text=msg.params[2],
                            time_ms=self.time_ms(msg), message=msg))
        return True

    def _who_reply(self, msg: Message) -> bool:
        """352 RPL_WHOREPLY: ``nick (user@host) flags realname``."""
        params = msg.params
        if len(params) < 8:
            return False
        room = params[1] if self._is_room(params[1]) else None
        _, _, realname = params[7].partition(" ")
        text = f"{params[5]} ({params[2]}@{params[3]}) {params[6]} {realname}".rstrip()
        self.emit(ChatEvent(I.INFO, room=room, nick=params[5], text=text,
                            time_ms=self.time_ms(msg), message=msg))
        return True

    _NUMERICS: dict[str, Callable[[IRCEvents, Message], bool]] = {
        "353": _names_part,
        "366": _names_end,
        "332": _topic_reply,
        "352": _who_reply,
    }

    def _error_reply(self, msg: Message) -> None:
        params = msg.params
        if msg.command in _JOIN_REFUSED and len(params) >= 2:
            # A room we cannot join: stop trying it after every reconnect.
            self.rooms.unwish(params[1])
            self.order.forget_held(casefold(params[1]))
        detail = params[1:-1]
        text = (" ".join(detail) + ": " if detail else "") + (
            params[-1] if len(params) > 1 else msg.command)
        room = params[1] if len(params) > 2 and self._is_room(params[1]) else None
        self.emit(ChatEvent(I.ERROR, room=room, text=text, time_ms=self.time_ms(msg),
                            message=msg))

    def _info_reply(self, msg: Message) -> None:
        code, params = msg.command, msg.params
        if code in _LAST_PARAM_ONLY or len(params) < 2:
            text = params[-1] if params else code
        else:
            text = " ".join(params[1:])
        room = None
        if code in _ROOM_INFO and len(params) >= 2 and self._is_room(params[1]):
            room = params[1]
            text = " ".join(params[2:])
        self.emit(ChatEvent(I.INFO, room=room, text=text, time_ms=self.time_ms(msg),
                            message=msg))


def _nick_of(msg: Message) -> str:
    return split_source(msg.source)[0] if msg.source else ""


def _param(msg: Message, index: int) -> str:
    return msg.params[index] if len(msg.params) > index else ""
