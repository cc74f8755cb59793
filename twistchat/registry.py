"""
The room registry: users, nicks, rooms, topics, modes and sequence numbers.

test-case-name: tests.test_registry

Rule 1: every chat rule lives in this file.  Who may join, speak, set a topic,
kick or change a mode; what a nick or a room name may look like; that nicks
and room names are unique under rfc1459 case mapping; the order of every room
(its sequence numbers).  Front-ends (TCP/IRC, UDP) parse their wire format,
call a method here and deliver what it returns.  Nothing here does I/O or
imports Twisted; time comes from the ``clock`` the service passes in.

Every public method returns a list of :class:`~twistchat.events.Delivery`:
who gets what, replies (numerics) to the caller included.  Numerics follow
RFC 2812 section 5 and https://modern.ircdocs.horse/.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twistchat.events import Delivery, Event
from twistchat.wire import Message, safe_middle

__all__ = ["Registry", "Limits", "User", "Channel", "casefold"]

VERSION = "twistchat-0.1"

# rfc1459 case mapping (ISUPPORT CASEMAPPING=rfc1459): A-Z and []\~ fold to a-z and {}|^.
_RFC1459 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^"
)


def casefold(name: str) -> str:
    """Fold a nick or room name under rfc1459 case mapping."""
    return name.translate(_RFC1459)


# RFC 2812 2.3.1: nickname = ( letter / special ) *( letter / digit / special / "-" )
_NICK_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz[]\\`_^{|}")
_NICK_REST = _NICK_FIRST | frozenset("0123456789-")
# RFC 2812 2.3.1: chanstring excludes NUL, BELL, CR, LF, SPACE, "," and ":".
_CHANNEL_FORBIDDEN = frozenset("\x00\x07\r\n ,:")
CHANTYPES = "#"
# Channel modes we know, by kind (ISUPPORT CHANMODES=A,B,C,D):
# A (list, always a param): b; B (always a param): k; C (param when set): l; D (flag): imnt.
CHANMODES = "b,k,l,imnt"
PREFIX_MODES = "ov"
PREFIX_SYMBOLS = "@+"


@dataclass(frozen=True)
class Limits:
    """Protocol limits the registry enforces; each has a service flag (see service.py)."""

    nicklen: int = 30
    channellen: int = 50
    topiclen: int = 390
    awaylen: int = 200
    kicklen: int = 255
    max_channels: int = 50  # per user (ISUPPORT CHANLIMIT)
    max_targets: int = 4  # per PRIVMSG/NOTICE (ISUPPORT TARGMAX)
    recent_history: int = 1000  # events kept in memory per room (repair, history)


class User:
    """One connected client, whichever front-end serves it."""

    __slots__ = (
        "conn", "nick", "key", "user", "host", "realname", "away",
        "channels", "registered", "invisible", "signon", "last_active",
    )

    def __init__(self, conn, host: str, now: float) -> None:
        self.conn = conn
        self.nick = "*"
        self.key = ""  # casefolded nick while registered
        self.user = ""
        self.host = host
        self.realname = ""
        self.away: str | None = None
        self.channels: dict = {}  # casefolded name -> Channel
        self.registered = False
        self.invisible = False
        self.signon = now
        self.last_active = now

    @property
    def source(self) -> str:
        """The ``nick!user@host`` prefix of lines this user causes."""
        return f"{self.nick}!{self.user}@{self.host}"

    def __repr__(self) -> str:
        return f"<User {self.nick}>"


class Channel:
    """A room: members with their prefix modes, topic, modes, its own sequence."""

    __slots__ = (
        "name", "key", "members", "direct", "topic", "topic_by", "topic_time", "created",
        "moderated", "no_external", "topic_lock", "invite_only", "password",
        "limit", "invited", "seq", "recent",
    )

    def __init__(self, name: str, key: str, now: float, seq: int, recent: int) -> None:
        self.name = name
        self.key = key
        self.members: dict = {}  # User -> prefix modes held, e.g. "o", "ov", ""
        # The members whose connection needs each room line handed to it: all but those
        # whose front-end sends room lines by other means (UDP broadcast).  Fan-out of
        # PRIVMSG/NOTICE/TOPIC/MODE walks this, so broadcast members cost nothing per line.
        self.direct: dict = {}
        self.topic = ""
        self.topic_by = ""
        self.topic_time = 0
        self.created = int(now)
        # Defaults as most IRC servers set them on a new channel: +nt.
        self.moderated = False
        self.no_external = True
        self.topic_lock = True
        self.invite_only = False
        self.password: str | None = None
        self.limit: int | None = None
        self.invited: set = set()  # casefolded nicks
        self.seq = seq  # the last sequence number handed out
        self.recent: deque = deque(maxlen=recent)  # recent Events, for repair and history

    def mode_string(self) -> tuple:
        """The ``+ntk key`` style mode string and its params (RPL_CHANNELMODEIS)."""
        flags = "".join(
            c for c, on in (("i", self.invite_only), ("m", self.moderated),
                            ("n", self.no_external), ("t", self.topic_lock)) if on
        )
        params = []
        if self.password is not None:
            flags += "k"
            params.append(self.password)
        if self.limit is not None:
            flags += "l"
            params.append(str(self.limit))
        return ("+" + flags, *params)

    def prefix(self, user: User, multi: bool = False) -> str:
        """The NAMES/WHO prefix of ``user`` here: "@", "+", "" (or "@+" with multi-prefix)."""
        modes = self.members.get(user, "")
        symbols = "".join(s for m, s in zip(PREFIX_MODES, PREFIX_SYMBOLS) if m in modes)
        return symbols if multi else symbols[:1]


class Registry:
    """
    All users and rooms of one server, and every chat rule.

    ``clock`` returns seconds since the epoch (the service passes the reactor's);
    ``last_seqs`` maps casefolded room names to the last sequence number the
    history store holds, so numbers keep rising across restarts;
    ``listeners`` are called with every new :class:`Event` (the store records
    it, the UDP front-end broadcasts it).
    """

    def __init__(
        self,
        server_name: str = "twistchat",
        network: str = "twistchat",
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.time,
        last_seqs: dict | None = None,
        motd: list | None = None,
    ) -> None:
        self.server_name = server_name
        self.network = network
        self.limits = limits
        self.clock = clock
        self.motd = motd
        self.created = clock()
        self.users: dict = {}  # casefolded nick -> registered User
        self.connections = 0  # all connected users, registered or not
        self.channels: dict = {}  # casefolded name -> Channel
        self.listeners: list = []
        self.extra_isupport: list = []  # tokens of optional features (CHATHISTORY=...)
        self._last_seqs = dict(last_seqs or {})
        # msgids: unique across restarts by a random prefix per process.
        self._msgid_prefix = os.urandom(6).hex()
        self._msgid_counter = itertools.count(1)

    # ----------------------------------------------------------------- helpers

    def reply(self, user: User, code: str, *params: str) -> Delivery:
        """
        A numeric reply to ``user``, addressed by its current nick.

        Replies echo what the client sent (a target, a mode); where that cannot
        stand as a middle parameter (empty, a space, a leading ':'), it is
        shown as ``*`` so the reply is still one valid line.
        """
        middle = [safe_middle(p) for p in params[:-1]]
        return Delivery((user,), Message(code, (user.nick, *middle, *params[-1:]), self.server_name))

    def _new_event(self, target: str, seq: int, message: Message, client_tags=None) -> Event:
        event = Event(
            target, seq, int(self.clock() * 1000),
            f"{self._msgid_prefix}{next(self._msgid_counter):x}", message, client_tags,
        )
        for listener in self.listeners:
            listener(event)
        return event

    def _room_event(self, channel: Channel, message: Message, client_tags=None) -> Event:
        """Number, record and announce one event of ``channel``."""
        channel.seq += 1
        event = self._new_event(channel.key, channel.seq, message, client_tags)
        channel.recent.append(event)
        return event

    def _peers(self, user: User) -> set:
        """Everyone who shares a room with ``user``, ``user`` included."""
        peers = {user}
        for channel in user.channels.values():
            peers.update(channel.members)
        return peers

    def find_user(self, nick: str) -> User | None:
        """The registered user called ``nick`` (any case), or None."""
        return self.users.get(casefold(nick))

    def find_channel(self, name: str) -> Channel | None:
        """The room called ``name`` (any case), or None."""
        return self.channels.get(casefold(name))

    def valid_nick(self, nick: str) -> bool:
        """RFC 2812 nickname grammar, at most NICKLEN characters."""
        return (
            0 < len(nick) <= self.limits.nicklen
            and nick[0] in _NICK_FIRST
            and all(c in _NICK_REST for c in nick[1:])
        )

    def valid_channel(self, name: str) -> bool:
        """RFC 2812 channel grammar (CHANTYPES ``#``), at most CHANNELLEN bytes."""
        return (
            1 < len(name.encode("utf-8")) <= self.limits.channellen
            and name[0] in CHANTYPES
            and not any(c in _CHANNEL_FORBIDDEN for c in name)
        )

    def isupport(self) -> list:
        """The ISUPPORT (005) tokens this server advertises."""
        lim = self.limits
        return [
            "CASEMAPPING=rfc1459", f"CHANTYPES={CHANTYPES}",
            f"PREFIX=({PREFIX_MODES}){PREFIX_SYMBOLS}", f"CHANMODES={CHANMODES}",
            f"NICKLEN={lim.nicklen}", f"CHANNELLEN={lim.channellen}",
            f"TOPICLEN={lim.topiclen}", f"AWAYLEN={lim.awaylen}", f"KICKLEN={lim.kicklen}",
            f"CHANLIMIT={CHANTYPES}:{lim.max_channels}", "MODES=4",
            f"TARGMAX=PRIVMSG:{lim.max_targets},NOTICE:{lim.max_targets}",
            f"NETWORK={self.network}", "LINELEN=512", "STATUSMSG=@+",
        ] + self.extra_isupport

    # ------------------------------------------------------------ registration

    def connect(self, conn, host: str) -> User:
        """A new connection: an unregistered user with no nick."""
        self.connections += 1
        return User(conn, host, self.clock())

    def check_nick(self, user: User, nick: str) -> list:
        """
        Errors for taking ``nick`` now, or [] if it is free and well formed.

        Before registration nicks are not held, so two unregistered clients may
        ask for the same one: the first to finish registering wins (see
        :meth:`register`, ERR_NICKCOLLISION).
        """
        if not nick:
            return [self.reply(user, "431", "No nickname given")]
        if not self.valid_nick(nick):
            return [self.reply(user, "432", nick, "Erroneous nickname")]
        holder = self.users.get(casefold(nick))
        if holder is not None and holder is not user:
            return [self.reply(user, "433", nick, "Nickname is already in use")]
        return []

    def register(self, user: User, nick: str, username: str, realname: str) -> list:
        """
        Finish registration: hold ``nick``, send the welcome burst (001-005, LUSERS, MOTD).

        If another client registered ``nick`` since this one asked for it
        (both were unregistered), answer ERR_NICKCOLLISION (436) and leave the
        user unregistered, free to pick another nick.
        """
        key = casefold(nick)
        if key in self.users:
            return [self.reply(user, "436", nick, "Nickname collision, choose another nickname")]
        user.nick = nick
        user.key = key
        user.user = username[:16] or nick
        user.realname = realname
        user.registered = True
        self.users[key] = user
        out = [
            self.reply(user, "001", f"Welcome to the {self.network} IRC network {user.source}"),
            self.reply(user, "002", f"Your host is {self.server_name}, running version {VERSION}"),
            self.reply(user, "003", "This server was created " + time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.created))),
            self.reply(user, "004", self.server_name, VERSION, "i", "biklmnotv", "bklov"),
        ]
        out += self.isupport_replies(user)
        out += self.lusers(user)
        out += self.motd_replies(user)
        return out

    def isupport_replies(self, user: User) -> list:
        """RPL_ISUPPORT lines, at most 13 tokens each."""
        tokens = self.isupport()
        return [
            self.reply(user, "005", *tokens[i:i + 13], "are supported by this server")
            for i in range(0, len(tokens), 13)
        ]

    def lusers(self, user: User) -> list:
        """LUSERS: 251, 252, 254, 255, 265, 266."""
        users = len(self.users)
        unknown = self.connections - users
        out = [
            self.reply(user, "251", f"There are {users} users and 0 invisible on 1 servers"),
            self.reply(user, "252", "0", "operator(s) online"),
        ]
        if unknown > 0:
            out.append(self.reply(user, "253", str(unknown), "unknown connection(s)"))
        out += [
            self.reply(user, "254", str(len(self.channels)), "channels formed"),
            self.reply(user, "255", f"I have {users} clients and 0 servers"),
            self.reply(user, "265", str(users), str(users), f"Current local users {users}"),
            self.reply(user, "266", str(users), str(users), f"Current global users {users}"),
        ]
        return out

    def motd_replies(self, user: User) -> list:
        """MOTD: 375, 372 per line, 376; or 422 when there is none."""
        if not self.motd:
            return [self.reply(user, "422", "MOTD File is missing")]
        out = [self.reply(user, "375", f"- {self.server_name} Message of the day - ")]
        out += [self.reply(user, "372", f"- {line}") for line in self.motd]
        out.append(self.reply(user, "376", "End of /MOTD command."))
        return out

    def change_nick(self, user: User, nick: str) -> list:
        """NICK for a registered user: a NICK event in each of its rooms, one line per peer."""
        errors = self.check_nick(user, nick)
        if errors:
            return errors
        if nick == user.nick:
            return []
        message = Message("NICK", (nick,), user.source)
        key = casefold(nick)
        del self.users[user.key]
        self.users[key] = user
        user.nick, user.key = nick, key
        for name, channel in user.channels.items():
            channel.invited.discard(key)
        return self._to_peers(user, message)

    def _to_peers(self, user: User, message: Message, skip_self: bool = False) -> list:
        """
        Record ``message`` as an event of each room of ``user``; deliver it once per peer.

        NICK and QUIT concern every room a user is in: each room's transcript
        gets its own numbered event, but a peer in several of those rooms sees
        the line once (as IRC clients expect).
        """
        events = [self._room_event(channel, message) for channel in user.channels.values()]
        payload = events[0] if events else message
        return [Delivery(self._peers(user), payload, user if skip_self else None)]

    def quit(self, user: User, reason: str = "Client Quit") -> list:
        """The user leaves the server: QUIT to its peers, its nick and rooms freed."""
        self.connections -= 1
        if not user.registered:
            return []
        out = []
        if user.channels:
            out = self._to_peers(user, Message("QUIT", (f"Quit: {reason}",), user.source),
                                 skip_self=True)
        for channel in list(user.channels.values()):
            self._remove_member(channel, user)
        self.users.pop(user.key, None)
        user.registered = False
        return out

    def _remove_member(self, channel: Channel, user: User) -> None:
        del channel.members[user]
        channel.direct.pop(user, None)
        del user.channels[channel.key]
        if not channel.members:
            # The room's sequence lives on in the store and in _last_seqs.
            self._last_seqs[channel.key] = channel.seq
            del self.channels[channel.key]

    # ------------------------------------------------------------------- rooms

    def join(self, user: User, name: str, password: str | None = None) -> list:
        """
        JOIN one room: checks +i +k +l and CHANLIMIT; the first joiner becomes operator.

        Answers the joiner with the JOIN, the topic (332/333) and NAMES (353/366).
        """
        if not self.valid_channel(name):
            return [self.reply(user, "403", name, "No such channel")]
        key = casefold(name)
        channel = self.channels.get(key)
        if channel is not None and user in channel.members:
            return []
        if len(user.channels) >= self.limits.max_channels:
            return [self.reply(user, "405", name, "You have joined too many channels")]
        if channel is None:
            channel = Channel(name, key, self.clock(), self._last_seqs.get(key, 0),
                              self.limits.recent_history)
            self.channels[key] = channel
            modes = "o"
        else:
            invited = user.key in channel.invited
            if channel.invite_only and not invited:
                return [self.reply(user, "473", channel.name, "Cannot join channel (+i)")]
            if channel.password is not None and password != channel.password and not invited:
                return [self.reply(user, "475", channel.name, "Cannot join channel (+k)")]
            if channel.limit is not None and len(channel.members) >= channel.limit:
                return [self.reply(user, "471", channel.name, "Cannot join channel (+l)")]
            channel.invited.discard(user.key)
            modes = ""
        channel.members[user] = modes
        if not getattr(user.conn, "room_lines_by_broadcast", False):
            channel.direct[user] = None
        user.channels[key] = channel
        event = self._room_event(channel, Message("JOIN", (channel.name,), user.source))
        out = [Delivery(channel.members, event)]
        if user.away is not None:
            out.append(Delivery(channel.members, Message("AWAY", (user.away,), user.source), user))
        if channel.topic:
            out += self._topic_replies(user, channel)
        out += self.names(user, channel.name)
        return out

    def join_zero(self, user: User) -> list:
        """``JOIN 0``: leave every room (RFC 2812 3.2.1)."""
        out = []
        for channel in list(user.channels.values()):
            out += self.part(user, channel.name, "")
        return out

    def part(self, user: User, name: str, reason: str = "") -> list:
        """PART one room."""
        channel = self.find_channel(name)
        if channel is None:
            return [self.reply(user, "403", name, "No such channel")]
        if user not in channel.members:
            return [self.reply(user, "442", channel.name, "You're not on that channel")]
        params = (channel.name, reason) if reason else (channel.name,)
        event = self._room_event(channel, Message("PART", params, user.source))
        out = [Delivery(list(channel.members), event)]
        self._remove_member(channel, user)
        return out

    def _topic_replies(self, user: User, channel: Channel) -> list:
        return [
            self.reply(user, "332", channel.name, channel.topic),
            self.reply(user, "333", channel.name, channel.topic_by, str(channel.topic_time)),
        ]

    def topic(self, user: User, name: str, text: str | None = None) -> list:
        """TOPIC: query (331/332/333) or set (+t: operators only)."""
        channel = self.find_channel(name)
        if channel is None:
            return [self.reply(user, "403", name, "No such channel")]
        if text is None:
            if user not in channel.members and channel.invite_only:
                return [self.reply(user, "442", channel.name, "You're not on that channel")]
            if not channel.topic:
                return [self.reply(user, "331", channel.name, "No topic is set")]
            return self._topic_replies(user, channel)
        if user not in channel.members:
            return [self.reply(user, "442", channel.name, "You're not on that channel")]
        if channel.topic_lock and "o" not in channel.members[user]:
            return [self.reply(user, "482", channel.name, "You're not channel operator")]
        text = _truncate(text, self.limits.topiclen)
        channel.topic, channel.topic_by, channel.topic_time = text, user.source, int(self.clock())
        event = self._room_event(channel, Message("TOPIC", (channel.name, text), user.source))
        return [Delivery(channel.direct, event)]

    def names(self, user: User, name: str, multi_prefix: bool = False) -> list:
        """NAMES for one room: 353 lines that fit 512 bytes, then 366."""
        channel = self.find_channel(name)
        out = []
        if channel is not None and (user in channel.members or not channel.invite_only):
            names = [channel.prefix(m, multi_prefix) + m.nick for m in channel.members]
            head = f":{self.server_name} 353 {user.nick} = {channel.name} :"
            room = 510 - len(head.encode("utf-8"))
            line: list = []
            size = 0
            for entry in names:
                if line and size + len(entry) + 1 > room:
                    out.append(self.reply(user, "353", "=", channel.name, " ".join(line)))
                    line, size = [], 0
                line.append(entry)
                size += len(entry) + 1
            if line:
                out.append(self.reply(user, "353", "=", channel.name, " ".join(line)))
        shown = channel.name if channel is not None else name
        out.append(self.reply(user, "366", shown, "End of /NAMES list"))
        return out

    def list_channels(self, user: User, names: list | None = None) -> list:
        """LIST: 321, one 322 per room (all, or the ones named), 323."""
        out = [self.reply(user, "321", "Channel", "Users  Name")]
        if names is None:
            channels = list(self.channels.values())
        else:
            channels = [c for c in (self.find_channel(n) for n in names) if c is not None]
        for channel in channels:
            out.append(self.reply(user, "322", channel.name, str(len(channel.members)),
                                   channel.topic))
        out.append(self.reply(user, "323", "End of /LIST"))
        return out

    # ---------------------------------------------------------------- messages

    def message(self, user: User, command: str, targets: str, text: str,
                client_tags: dict | None = None, echo: bool = False) -> list:
        """
        PRIVMSG or NOTICE to rooms and nicks (comma list, at most TARGMAX).

        Room rules: +n keeps out non-members, +m lets only voiced and operators
        speak.  Per RFC 2812 3.3.2, a NOTICE never causes an error reply.
        ``echo`` (IRCv3 echo-message) sends the sender its own line too.
        """
        notice = command == "NOTICE"
        out: list = []

        def error(code, *params):
            if not notice:
                out.append(self.reply(user, code, *params))

        if not targets:
            error("411", f"No recipient given ({command})")
            return out
        if not text:
            error("412", "No text to send")
            return out
        names = list(dict.fromkeys(t for t in targets.split(",") if t))
        if len(names) > self.limits.max_targets:
            error("407", targets, f"Too many targets, at most {self.limits.max_targets}")
            return out
        user.last_active = self.clock()
        for name in names:
            if name[0] in CHANTYPES:
                channel = self.find_channel(name)
                if channel is None:
                    error("403", name, "No such channel")
                    continue
                modes = channel.members.get(user)
                if modes is None and channel.no_external:
                    error("404", channel.name, "Cannot send to channel (+n)")
                    continue
                if channel.moderated and not modes:
                    error("404", channel.name, "Cannot send to channel (+m)")
                    continue
                event = self._room_event(
                    channel, Message(command, (channel.name, text), user.source), client_tags)
                out.append(Delivery(channel.direct, event, None if echo else user))
            else:
                target = self.find_user(name)
                if target is None:
                    error("401", name, "No such nick/channel")
                    continue
                event = self._dm_event(user, target, Message(command, (target.nick, text),
                                                             user.source), client_tags)
                out.append(Delivery((target, user) if echo and target is not user else (target,),
                                    event))
                if target.away is not None and not notice:
                    out.append(self.reply(user, "301", target.nick, target.away))
        return out

    def _dm_event(self, sender: User, target: User, message: Message, client_tags) -> Event:
        """
        Number a private message in the conversation of its two parties.

        The conversation key is the two casefolded nicks, sorted (the store's
        ``dm_key``): it is visible only to those two.
        """
        key = "~dm:" + ":".join(sorted((sender.key, target.key)))
        seq = self._last_seqs.get(key, 0) + 1
        self._last_seqs[key] = seq
        return self._new_event(key, seq, message, client_tags)

    def tagmsg(self, user: User, target: str, client_tags: dict, echo: bool = False) -> list:
        """
        IRCv3 TAGMSG (client-only tags, e.g. +typing): relayed, never numbered.

        Typing notices are not transcript lines, so they get no sequence number
        and are not stored.
        """
        message = Message("TAGMSG", (target,), user.source, client_tags)
        if target[:1] in CHANTYPES:
            channel = self.find_channel(target)
            if channel is None or user not in channel.members:
                return [self.reply(user, "404", target, "Cannot send to channel")]
            return [Delivery(channel.members, message, None if echo else user)]
        other = self.find_user(target)
        if other is None:
            return [self.reply(user, "401", target, "No such nick/channel")]
        return [Delivery((other, user) if echo else (other,), message)]

    # ------------------------------------------------------------- operators

    def kick(self, user: User, name: str, nick: str, reason: str = "") -> list:
        """KICK: operators only; the kicked user leaves the room."""
        channel = self.find_channel(name)
        if channel is None:
            return [self.reply(user, "403", name, "No such channel")]
        if user not in channel.members:
            return [self.reply(user, "442", channel.name, "You're not on that channel")]
        if "o" not in channel.members[user]:
            return [self.reply(user, "482", channel.name, "You're not channel operator")]
        target = self.find_user(nick)
        if target is None:
            return [self.reply(user, "401", nick, "No such nick/channel")]
        if target not in channel.members:
            return [self.reply(user, "441", target.nick, channel.name,
                                "They aren't on that channel")]
        reason = _truncate(reason or user.nick, self.limits.kicklen)
        event = self._room_event(
            channel, Message("KICK", (channel.name, target.nick, reason), user.source))
        out = [Delivery(list(channel.members), event)]
        self._remove_member(channel, target)
        return out

    def invite(self, user: User, nick: str, name: str) -> list:
        """INVITE: members may invite; on a +i room only operators."""
        target = self.find_user(nick)
        if target is None:
            return [self.reply(user, "401", nick, "No such nick/channel")]
        channel = self.find_channel(name)
        if channel is None:
            return [self.reply(user, "403", name, "No such channel")]
        if user not in channel.members:
            return [self.reply(user, "442", channel.name, "You're not on that channel")]
        if target in channel.members:
            return [self.reply(user, "443", target.nick, channel.name,
                                "is already on channel")]
        if channel.invite_only and "o" not in channel.members[user]:
            return [self.reply(user, "482", channel.name, "You're not channel operator")]
        channel.invited.add(target.key)
        out = [self.reply(user, "341", target.nick, channel.name),
               Delivery((target,), Message("INVITE", (target.nick, channel.name), user.source))]
        if target.away is not None:
            out.append(self.reply(user, "301", target.nick, target.away))
        return out

    def mode(self, user: User, target: str, changes: str | None = None,
             args: Iterable[str] = ()) -> list:
        """MODE on a room (query, or +o/+v/+t/+n/+m/+i/+k/+l) or on oneself (+i)."""
        if target[:1] not in CHANTYPES:
            return self._user_mode(user, target, changes)
        channel = self.find_channel(target)
        if channel is None:
            return [self.reply(user, "403", target, "No such channel")]
        if changes is None:
            return [self.reply(user, "324", channel.name, *channel.mode_string()),
                    self.reply(user, "329", channel.name, str(channel.created))]
        if changes.strip("+-") in ("b", "e", "I") and not args:
            # Ban, exception and invite lists: we keep none (clients ask on join).
            end = {"b": ("368", "End of channel ban list"),
                   "e": ("349", "End of channel exception list"),
                   "I": ("347", "End of channel invite list")}[changes.strip("+-")]
            return [self.reply(user, end[0], channel.name, end[1])]
        if user not in channel.members:
            return [self.reply(user, "442", channel.name, "You're not on that channel")]
        if "o" not in channel.members[user]:
            return [self.reply(user, "482", channel.name, "You're not channel operator")]
        return self._apply_channel_modes(user, channel, changes, list(args))

    def _apply_channel_modes(self, user: User, channel: Channel, changes: str,
                             args: list) -> list:
        out: list = []
        applied: list = []  # (sign, letter, param or None)
        sign = "+"
        flags = {"i": "invite_only", "m": "moderated", "n": "no_external", "t": "topic_lock"}
        for letter in changes:
            if letter in "+-":
                sign = letter
                continue
            on = sign == "+"
            if letter in flags:
                if getattr(channel, flags[letter]) != on:
                    setattr(channel, flags[letter], on)
                    applied.append((sign, letter, None))
            elif letter in PREFIX_MODES:
                if not args:
                    out.append(self.reply(user, "461", "MODE", "Not enough parameters"))
                    continue
                nick = args.pop(0)
                member = self.find_user(nick)
                if member is None:
                    out.append(self.reply(user, "401", nick, "No such nick/channel"))
                    continue
                if member not in channel.members:
                    out.append(self.reply(user, "441", member.nick, channel.name,
                                           "They aren't on that channel"))
                    continue
                held = channel.members[member]
                if on and letter not in held:
                    channel.members[member] = "".join(
                        m for m in PREFIX_MODES if m in held or m == letter)
                elif not on and letter in held:
                    channel.members[member] = held.replace(letter, "")
                else:
                    continue
                applied.append((sign, letter, member.nick))
            elif letter == "k":
                if on:
                    if not args:
                        out.append(self.reply(user, "461", "MODE", "Not enough parameters"))
                        continue
                    password = args.pop(0)
                    if not password or " " in password or "," in password:
                        out.append(self.reply(user, "525", channel.name, "Key is not well-formed"))
                        continue
                    channel.password = password
                    applied.append(("+", "k", password))
                elif channel.password is not None:
                    if args:
                        args.pop(0)
                    channel.password = None
                    applied.append(("-", "k", "*"))
            elif letter == "l":
                if on:
                    if not args:
                        out.append(self.reply(user, "461", "MODE", "Not enough parameters"))
                        continue
                    raw = args.pop(0)
                    if not raw.isdigit() or int(raw) < 1:
                        out.append(self.reply(user, "696", channel.name, "l", raw,
                                               "Invalid limit"))
                        continue
                    channel.limit = int(raw)
                    applied.append(("+", "l", raw))
                elif channel.limit is not None:
                    channel.limit = None
                    applied.append(("-", "l", None))
            elif letter == "b":
                if args:
                    args.pop(0)
                out.append(self.reply(user, "368", channel.name, "End of channel ban list"))
            else:
                out.append(self.reply(user, "472", letter, "is unknown mode char to me"))
        if applied:
            text, params, last = "", [], None
            for sign, letter, param in applied:
                if sign != last:
                    text += sign
                    last = sign
                text += letter
                if param is not None:
                    params.append(param)
            event = self._room_event(
                channel, Message("MODE", (channel.name, text, *params), user.source))
            out.insert(0, Delivery(channel.direct, event))
        return out

    def _user_mode(self, user: User, nick: str, changes: str | None) -> list:
        if casefold(nick) != user.key:
            if self.find_user(nick) is None:
                return [self.reply(user, "401", nick, "No such nick/channel")]
            return [self.reply(user, "502", "Can't change mode for other users")]
        if changes is None:
            return [self.reply(user, "221", "+i" if user.invisible else "+")]
        out: list = []
        sign, applied = "+", ""
        for letter in changes:
            if letter in "+-":
                sign = letter
            elif letter == "i":
                if user.invisible != (sign == "+"):
                    user.invisible = sign == "+"
                    applied += sign + "i"
            else:
                out.append(self.reply(user, "501", "Unknown MODE flag"))
        if applied:
            out.insert(0, Delivery((user,), Message("MODE", (user.nick, applied), user.source)))
        return out

    # ------------------------------------------------------------------ queries

    def who(self, user: User, mask: str) -> list:
        """WHO for a room or a nick: 352 per match, then 315."""
        out = []
        channel = self.find_channel(mask) if mask[:1] in CHANTYPES else None
        if channel is not None:
            if user in channel.members or not channel.invite_only:
                for member in channel.members:
                    out.append(self._who_line(user, member, channel))
        else:
            member = self.find_user(mask)
            if member is not None:
                out.append(self._who_line(user, member, None))
        out.append(self.reply(user, "315", mask, "End of WHO list"))
        return out

    def _who_line(self, asker: User, member: User, channel: Channel | None) -> Delivery:
        flags = "G" if member.away is not None else "H"
        if channel is not None:
            flags += channel.prefix(member)
        return self.reply(asker, "352", channel.name if channel else "*", member.user,
                           member.host, self.server_name, member.nick, flags,
                           f"0 {member.realname}")

    def whois(self, user: User, nick: str) -> list:
        """WHOIS: 311, 319, 312, 301, 317, 318 (or 401 + 318)."""
        target = self.find_user(nick)
        if target is None:
            return [self.reply(user, "401", nick, "No such nick/channel"),
                    self.reply(user, "318", nick, "End of /WHOIS list")]
        out = [self.reply(user, "311", target.nick, target.user, target.host, "*",
                           target.realname)]
        rooms = [c.prefix(target) + c.name for c in target.channels.values()
                 if not c.invite_only or user in c.members]
        if rooms:
            out.append(self.reply(user, "319", target.nick, " ".join(rooms)))
        out.append(self.reply(user, "312", target.nick, self.server_name, "twistchat"))
        if target.away is not None:
            out.append(self.reply(user, "301", target.nick, target.away))
        idle = int(self.clock() - target.last_active)
        out.append(self.reply(user, "317", target.nick, str(max(idle, 0)),
                               str(int(target.signon)), "seconds idle, signon time"))
        out.append(self.reply(user, "318", target.nick, "End of /WHOIS list"))
        return out

    def ison(self, user: User, nicks: Iterable[str]) -> list:
        """ISON: the nicks given that are online, as the server spells them."""
        online = [u.nick for u in (self.find_user(n) for n in nicks) if u is not None]
        return [self.reply(user, "303", " ".join(online))]

    def userhost(self, user: User, nicks: Iterable[str]) -> list:
        """USERHOST: up to five ``nick=+user@host`` entries (``-`` when away)."""
        entries = []
        for nick in list(nicks)[:5]:
            found = self.find_user(nick)
            if found is not None:
                here = "-" if found.away is not None else "+"
                entries.append(f"{found.nick}={here}{found.user}@{found.host}")
        return [self.reply(user, "302", " ".join(entries))]

    def set_away(self, user: User, text: str | None) -> list:
        """AWAY with text marks the user away (306); without, back (305)."""
        # IRCv3 away-notify: peers are told; front-ends show AWAY only to clients that asked.
        if text:
            user.away = _truncate(text, self.limits.awaylen)
            return [self.reply(user, "306", "You have been marked as being away"),
                    Delivery(self._peers(user), Message("AWAY", (user.away,), user.source), user)]
        user.away = None
        return [self.reply(user, "305", "You are no longer marked as being away"),
                Delivery(self._peers(user), Message("AWAY", (), user.source), user)]

    def version(self, user: User) -> list:
        """VERSION: 351 and the ISUPPORT lines."""
        return [self.reply(user, "351", VERSION, self.server_name, "twistchat chat server")] \
            + self.isupport_replies(user)

    def time(self, user: User) -> list:
        """TIME: 391 with the server's local time."""
        now = self.clock()
        return [self.reply(user, "391", self.server_name, str(int(now)), "0",
                            time.strftime("%A %B %d %Y -- %H:%M:%S %z", time.localtime(now)))]

    def recent_events(self, name: str, after_seq: int = 0, limit: int = 100) -> list:
        """Events of room ``name`` still held in memory with seq > ``after_seq``."""
        channel = self.find_channel(name)
        if channel is None:
            return []
        return [e for e in channel.recent if e.seq > after_seq][:limit]


def _truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")
