"""
The room registry: users, nicks, rooms, topics, modes, and who may do what.

test-case-name: tests.test_registry

Rule 1: every chat rule lives in this file.  Who may connect (per address),
register, join, speak, read a room's history, set a topic, kick or change a
mode; that nicks and room names are unique under rfc1459 case mapping.  The
permission methods (:meth:`Registry.can_join`, :meth:`Registry.can_speak`,
:meth:`Registry.can_read`, :meth:`Registry.can_see`, :meth:`Registry.audience`)
are the only place a room's modes are read: a front-end asks them, it never
reads a room's attributes and decides for itself (Ergo's ``irc/channel.go``).
The order of a room belongs to the room log (:mod:`twistchat.core.roomlog`),
which this registry appends every room event to.

Front-ends (TCP/IRC, UDP) parse their wire format, call a method here (through
the command table, :mod:`twistchat.core.commands`) and deliver what it returns.
Nothing here does I/O or imports Twisted; time comes from the ``clock`` the
service passes in.  What differs per front-end is passed in explicitly (e.g.
``connect(..., by_broadcast=True)``); the registry never looks into a
connection object.

Every public method returns a list of :class:`~twistchat.core.events.Delivery`:
who gets what, replies (numerics) to the caller included.  Numerics follow
RFC 2812 section 5 and https://modern.ircdocs.horse/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from twistchat.core.events import Delivery, Disconnect, Event
from twistchat.core.roomlog import LocalRoomLog, RoomLog
from twistchat.core.targets import dm_key, dm_parties, is_room_key
from twistchat.wire import (
    CHANTYPES,
    Message,
    casefold,
    is_decimal,
    is_valid_channel,
    is_valid_nick,
    safe_middle,
)

__all__ = ["CHANTYPES", "Channel", "Limits", "Registry", "User", "casefold"]

VERSION = "twistchat-0.1"

# Channel modes we know, by kind (ISUPPORT CHANMODES=A,B,C,D):
# A (list, always a param): b; B (always a param): k; C (param when set): l; D (flag): imnt.
CHANMODES = "b,k,l,imnt"
PREFIX_MODES = "ov"
PREFIX_SYMBOLS = "@+"
# Room flags (CHANMODES kind D) and the Channel attribute each one sets.
_FLAG_MODES = {"i": "invite_only", "m": "moderated", "n": "no_external", "t": "topic_lock"}


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
    recent_history: int = 1000  # events kept in memory per room (repair)
    max_per_ip: int = 16  # connections and UDP sessions from one address, all front-ends


class User:
    """
    One connected client, whichever front-end serves it.

    ``conn`` is the front-end's object for it (it provides ``deliver``); the
    registry never looks further into it.  ``by_broadcast`` says the front-end
    carries room lines to this user by other means (UDP broadcast), so the
    registry need not hand them over one by one.
    """

    __slots__ = (
        "conn", "nick", "key", "user", "host", "realname", "away",
        "channels", "registered", "invisible", "signon", "last_active", "by_broadcast",
        "pending_nick", "pending_user", "password_ok", "cap_hold",
    )

    def __init__(self, conn: Any, host: str, now: float, by_broadcast: bool = False) -> None:
        self.conn = conn
        self.nick = "*"
        self.key = ""  # casefolded nick while registered
        self.user = ""
        self.host = host
        self.realname = ""
        self.away: str | None = None
        self.channels: dict[str, Channel] = {}  # casefolded name -> Channel
        self.registered = False
        self.invisible = False
        self.signon = now
        self.last_active = now
        self.by_broadcast = by_broadcast
        # Registration in progress (NICK, USER, PASS, CAP before 001).
        self.pending_nick: str | None = None
        self.pending_user: tuple[str, str] | None = None
        self.password_ok = False
        self.cap_hold = False  # CAP negotiation holds registration until CAP END

    @property
    def source(self) -> str:
        """The ``nick!user@host`` prefix of lines this user causes."""
        return f"{self.nick}!{self.user}@{self.host}"

    def __repr__(self) -> str:
        return f"<User {self.nick}>"


class Channel:
    """A room: members with their prefix modes, topic, modes.  Its order is the room log's."""

    __slots__ = (
        "name", "key", "members", "direct", "topic", "topic_by", "topic_time", "created",
        "moderated", "no_external", "topic_lock", "invite_only", "password",
        "limit", "invited",
    )

    def __init__(self, name: str, key: str, now: float) -> None:
        self.name = name
        self.key = key
        self.members: dict[User, str] = {}  # User -> prefix modes held, e.g. "o", "ov", ""
        # The members whose connection needs each room line handed to it: all but those
        # whose front-end sends room lines by other means (UDP broadcast).  Fan-out of
        # PRIVMSG/NOTICE/TOPIC/MODE walks this, so broadcast members cost nothing per line.
        self.direct: dict[User, None] = {}
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
        self.invited: set[str] = set()  # casefolded nicks

    def mode_string(self) -> tuple[str, ...]:
        """The ``+ntk key`` style mode string and its params (RPL_CHANNELMODEIS)."""
        flags = "".join(c for c, attr in _FLAG_MODES.items() if getattr(self, attr))
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
        symbols = "".join(s for m, s in zip(PREFIX_MODES, PREFIX_SYMBOLS, strict=True)
                          if m in modes)
        return symbols if multi else symbols[:1]


class Registry:
    """
    All users and rooms of one server, and every chat rule.

    ``clock`` returns seconds since the epoch (the service passes the reactor's);
    ``log`` is the room log that numbers every event (default: an in-process
    :class:`~twistchat.core.roomlog.LocalRoomLog` starting at ``last_seqs``);
    ``password`` is the server password clients must send with PASS (None: none).
    """

    def __init__(
        self,
        server_name: str = "twistchat",
        network: str = "twistchat",
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.time,
        last_seqs: Mapping[str, int] | None = None,
        motd: list[str] | None = None,
        log: RoomLog | None = None,
        password: str | None = None,
    ) -> None:
        self.server_name = server_name
        self.network = network
        self.limits = limits
        self.clock = clock
        self.motd = motd
        self.password = password
        self.created = clock()
        self.log: RoomLog = log if log is not None else LocalRoomLog(
            last_seqs=last_seqs, recent=limits.recent_history)
        self.extra_isupport: list[str] = []  # tokens of optional features (CHATHISTORY=...)
        self._users: dict[str, User] = {}  # casefolded nick -> registered User
        self._rooms: dict[str, Channel] = {}  # casefolded name -> Channel
        self._connections = 0  # all connected users, registered or not
        self._per_address: dict[str, int] = {}  # host -> connected users from it

    # ----------------------------------------------------------------- helpers

    def reply(self, user: User, code: str, *params: str) -> Delivery:
        """
        A numeric reply to ``user``, addressed by its current nick.

        Replies echo what the client sent (a target, a mode); where that cannot
        stand as a middle parameter (empty, a space, a leading ':'), it is
        shown as ``*`` so the reply is still one valid line.
        """
        middle = [safe_middle(p) for p in params[:-1]]
        return Delivery((user,), Message(code, (user.nick, *middle, *params[-1:]),
                                         self.server_name))

    def _room_event(self, channel: Channel, message: Message,
                    client_tags: Mapping[str, str] | None = None) -> Event:
        """Number and record one event of ``channel`` in the room log."""
        return self.log.append(channel.key, message, int(self.clock() * 1000), client_tags)

    def _peers(self, user: User) -> set[User]:
        """Everyone who shares a room with ``user``, ``user`` included."""
        peers = {user}
        for channel in user.channels.values():
            peers.update(channel.members)
        return peers

    def find_user(self, nick: str) -> User | None:
        """The registered user called ``nick`` (any case), or None."""
        return self._users.get(casefold(nick))

    def find_channel(self, name: str) -> Channel | None:
        """The room called ``name`` (any case), or None."""
        return self._rooms.get(casefold(name))

    def valid_nick(self, nick: str) -> bool:
        """RFC 2812 nickname grammar, at most NICKLEN characters."""
        return is_valid_nick(nick, self.limits.nicklen)

    def valid_channel(self, name: str) -> bool:
        """RFC 2812 channel grammar (CHANTYPES ``#``), at most CHANNELLEN bytes."""
        return is_valid_channel(name, self.limits.channellen)

    # ----------------------------------------------------------- what is there

    def user_count(self) -> int:
        """Registered users (the metrics gauge)."""
        return len(self._users)

    def connection_count(self) -> int:
        """Connected users, registered or not."""
        return self._connections

    def room_count(self) -> int:
        """Rooms that exist now (rooms with members)."""
        return len(self._rooms)

    def rooms_of(self, user: User) -> list[tuple[str, str]]:
        """``[(key, name)]`` of the rooms ``user`` is in."""
        return [(key, channel.name) for key, channel in user.channels.items()]

    def room_name(self, key: str) -> str | None:
        """How the room with casefolded name ``key`` is spelled, or None if it has no members."""
        channel = self._rooms.get(key)
        return channel.name if channel is not None else None

    def latest(self, key: str) -> int:
        """The latest sequence number of target ``key`` (the room log's)."""
        return self.log.latest(key)

    # ------------------------------------------------------------- permissions

    def can_join(self, user: User, channel: Channel, password: str | None) -> Delivery | None:
        """The error that keeps ``user`` out of an existing ``channel``, or None (+i +k +l)."""
        invited = user.key in channel.invited
        if channel.invite_only and not invited:
            return self.reply(user, "473", channel.name, "Cannot join channel (+i)")
        if channel.password is not None and password != channel.password and not invited:
            return self.reply(user, "475", channel.name, "Cannot join channel (+k)")
        if channel.limit is not None and len(channel.members) >= channel.limit:
            return self.reply(user, "471", channel.name, "Cannot join channel (+l)")
        return None

    def can_speak(self, user: User, channel: Channel) -> Delivery | None:
        """The error that keeps ``user`` from speaking in ``channel``, or None (+n, +m)."""
        modes = channel.members.get(user)
        if modes is None and channel.no_external:
            return self.reply(user, "404", channel.name, "Cannot send to channel (+n)")
        if channel.moderated and not modes:
            return self.reply(user, "404", channel.name, "Cannot send to channel (+m)")
        return None

    def can_read(self, user: User, target: str) -> bool:
        """
        May ``user`` read the transcript of ``target`` (a room key or a conversation key)?

        A room's transcript: its members only (history and repair alike); a
        private conversation: its two parties only.
        """
        if is_room_key(target):
            channel = self._rooms.get(target)
            return channel is not None and user in channel.members
        parties = dm_parties(target)
        return parties is not None and user.registered and user.key in parties

    def can_see(self, user: User, channel: Channel) -> bool:
        """May ``user`` see who is in ``channel`` and its topic (NAMES, WHO, WHOIS)?"""
        return user in channel.members or not channel.invite_only

    def is_operator(self, user: User, channel: Channel) -> bool:
        """Is ``user`` an operator (``@``) of ``channel``?"""
        return "o" in channel.members.get(user, "")

    def audience(self, key: str) -> Iterator[User]:
        """Everyone who hears the live events of room ``key`` (its members)."""
        channel = self._rooms.get(key)
        return iter(()) if channel is None else iter(channel.members)

    def conversation_key(self, user: User, nick: str) -> str | None:
        """The key of ``user``'s private conversation with ``nick``, or None if not a nick."""
        if not self.valid_nick(nick):
            return None
        return dm_key(user.key, casefold(nick))

    def target_name(self, user: User, key: str) -> str:
        """How ``user`` names target ``key``: the room's name, or the other party's nick."""
        parties = dm_parties(key)
        if parties is None:
            return self.room_name(key) or key
        other = parties[1] if parties[0] == user.key else parties[0]
        found = self._users.get(other)
        return found.nick if found is not None else other

    def isupport(self) -> list[str]:
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

    def connect(self, conn: Any, host: str, by_broadcast: bool = False) -> User | None:
        """
        A new connection from ``host``: an unregistered user with no nick.

        None if ``host`` already has ``max_per_ip`` connections (over every
        front-end): the front-end refuses it.  ``by_broadcast``: see :class:`User`.
        """
        count = self._per_address.get(host, 0)
        if count >= self.limits.max_per_ip:
            return None
        self._per_address[host] = count + 1
        self._connections += 1
        user = User(conn, host, self.clock(), by_broadcast)
        user.password_ok = self.password is None
        return user

    def check_nick(self, user: User, nick: str) -> list[Delivery]:
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
        holder = self._users.get(casefold(nick))
        if holder is not None and holder is not user:
            return [self.reply(user, "433", nick, "Nickname is already in use")]
        return []

    def offer_nick(self, user: User, nick: str) -> list[Delivery]:
        """NICK before registration: remember it if it may be taken; register when ready."""
        errors = self.check_nick(user, nick)
        if errors:
            return errors
        user.pending_nick = nick
        return self._try_register(user)

    def offer_user(self, user: User, username: str, realname: str) -> list[Delivery]:
        """USER before registration (after it: 462)."""
        if user.registered:
            return [self.reply(user, "462", "You may not reregister")]
        user.pending_user = (username, realname)
        return self._try_register(user)

    def offer_password(self, user: User, password: str) -> list[Delivery]:
        """PASS before registration (after it: 462): right if it is the server's."""
        if user.registered:
            return [self.reply(user, "462", "You may not reregister")]
        user.password_ok = self.password in (None, password)
        return []

    def hold_registration(self, user: User) -> None:
        """CAP LS / CAP REQ before registration: no 001 until CAP END (IRCv3)."""
        if not user.registered:
            user.cap_hold = True

    def release_registration(self, user: User) -> list[Delivery]:
        """CAP END: registration goes on if NICK and USER were given."""
        if not user.cap_hold:
            return []
        user.cap_hold = False
        return self._try_register(user)

    def _try_register(self, user: User) -> list[Delivery]:
        if user.pending_nick is None or user.pending_user is None or user.cap_hold:
            return []
        if not user.password_ok:
            return [self.reply(user, "464", "Password incorrect"),
                    Delivery((user,), Disconnect("Bad password"))]
        out = self.register(user, user.pending_nick, *user.pending_user)
        if user.registered:
            user.pending_nick = user.pending_user = None
        else:
            user.pending_nick = None  # 436: the client must choose again
        return out

    def register(self, user: User, nick: str, username: str, realname: str) -> list[Delivery]:
        """
        Finish registration: hold ``nick``, send the welcome burst (001-005, LUSERS, MOTD).

        If another client registered ``nick`` since this one asked for it
        (both were unregistered), answer ERR_NICKCOLLISION (436) and leave the
        user unregistered, free to pick another nick.
        """
        key = casefold(nick)
        if key in self._users:
            return [self.reply(user, "436", nick, "Nickname collision, choose another nickname")]
        user.nick = nick
        user.key = key
        user.user = username[:16] or nick
        user.realname = realname
        user.registered = True
        self._users[key] = user
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

    def isupport_replies(self, user: User) -> list[Delivery]:
        """RPL_ISUPPORT lines, at most 13 tokens each."""
        tokens = self.isupport()
        return [
            self.reply(user, "005", *tokens[i:i + 13], "are supported by this server")
            for i in range(0, len(tokens), 13)
        ]

    def lusers(self, user: User) -> list[Delivery]:
        """LUSERS: 251, 252, 254, 255, 265, 266."""
        users = len(self._users)
        unknown = self._connections - users
        out = [
            self.reply(user, "251", f"There are {users} users and 0 invisible on 1 servers"),
            self.reply(user, "252", "0", "operator(s) online"),
        ]
        if unknown > 0:
            out.append(self.reply(user, "253", str(unknown), "unknown connection(s)"))
        out += [
            self.reply(user, "254", str(len(self._rooms)), "channels formed"),
            self.reply(user, "255", f"I have {users} clients and 0 servers"),
            self.reply(user, "265", str(users), str(users), f"Current local users {users}"),
            self.reply(user, "266", str(users), str(users), f"Current global users {users}"),
        ]
        return out

    def motd_replies(self, user: User) -> list[Delivery]:
        """MOTD: 375, 372 per line, 376; or 422 when there is none."""
        if not self.motd:
            return [self.reply(user, "422", "MOTD File is missing")]
        out = [self.reply(user, "375", f"- {self.server_name} Message of the day - ")]
        out += [self.reply(user, "372", f"- {line}") for line in self.motd]
        out.append(self.reply(user, "376", "End of /MOTD command."))
        return out

    def change_nick(self, user: User, nick: str) -> list[Delivery]:
        """NICK for a registered user: a NICK event in each of its rooms, one line per peer."""
        errors = self.check_nick(user, nick)
        if errors:
            return errors
        if nick == user.nick:
            return []
        message = Message("NICK", (nick,), user.source)
        key = casefold(nick)
        del self._users[user.key]
        self._users[key] = user
        user.nick, user.key = nick, key
        for channel in user.channels.values():
            channel.invited.discard(key)
        return self._to_peers(user, message)

    def _to_peers(self, user: User, message: Message, skip_self: bool = False) -> list[Delivery]:
        """
        Record ``message`` as an event of each room of ``user``; deliver it once per peer.

        NICK and QUIT concern every room a user is in: each room's transcript
        gets its own numbered event, but a peer in several of those rooms sees
        the line once (as IRC clients expect).
        """
        events = [self._room_event(channel, message) for channel in user.channels.values()]
        payload: Event | Message = events[0] if events else message
        return [Delivery(self._peers(user), payload, user if skip_self else None)]

    def quit(self, user: User, reason: str = "Client Quit") -> list[Delivery]:
        """The user leaves the server: QUIT to its peers, its nick and rooms freed."""
        self._connections -= 1
        count = self._per_address.get(user.host, 0) - 1
        if count > 0:
            self._per_address[user.host] = count
        else:
            self._per_address.pop(user.host, None)
        if not user.registered:
            return []
        out = []
        if user.channels:
            out = self._to_peers(user, Message("QUIT", (f"Quit: {reason}",), user.source),
                                 skip_self=True)
        for channel in list(user.channels.values()):
            self._remove_member(channel, user)
        self._users.pop(user.key, None)
        user.registered = False
        return out

    def _remove_member(self, channel: Channel, user: User) -> None:
        del channel.members[user]
        channel.direct.pop(user, None)
        del user.channels[channel.key]
        if not channel.members:
            # The room's numbering lives on in the room log (and the store).
            self.log.close(channel.key)
            del self._rooms[channel.key]

    # ------------------------------------------------------------------- rooms

    def join(self, user: User, name: str, password: str | None = None) -> list:
        """
        JOIN one room: checks +i +k +l and CHANLIMIT; the first joiner becomes operator.

        Answers the joiner with the JOIN, the topic (332/333) and NAMES (353/366).
        """
        if not self.valid_channel(name):
            return [self.reply(user, "403", name, "No such channel")]
        key = casefold(name)
        channel = self._rooms.get(key)
        if channel is not None and user in channel.members:
            return []
        if len(user.channels) >= self.limits.max_channels:
            return [self.reply(user, "405", name, "You have joined too many channels")]
        if channel is None:
            channel = Channel(name, key, self.clock())
            self._rooms[key] = channel
            self.log.open(key)
            modes = "o"
        else:
            refused = self.can_join(user, channel, password)
            if refused is not None:
                return [refused]
            channel.invited.discard(user.key)
            modes = ""
        channel.members[user] = modes
        if not user.by_broadcast:
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
            if not self.can_see(user, channel):
                return [self.reply(user, "442", channel.name, "You're not on that channel")]
            if not channel.topic:
                return [self.reply(user, "331", channel.name, "No topic is set")]
            return self._topic_replies(user, channel)
        if user not in channel.members:
            return [self.reply(user, "442", channel.name, "You're not on that channel")]
        if channel.topic_lock and not self.is_operator(user, channel):
            return [self.reply(user, "482", channel.name, "You're not channel operator")]
        text = _truncate(text, self.limits.topiclen)
        channel.topic, channel.topic_by, channel.topic_time = text, user.source, int(self.clock())
        event = self._room_event(channel, Message("TOPIC", (channel.name, text), user.source))
        return [Delivery(channel.direct, event)]

    def names(self, user: User, name: str, multi_prefix: bool = False) -> list:
        """NAMES for one room: 353 lines that fit 512 bytes, then 366."""
        channel = self.find_channel(name)
        out = []
        if channel is not None and self.can_see(user, channel):
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
            channels = list(self._rooms.values())
        else:
            channels = [c for c in (self.find_channel(n) for n in names) if c is not None]
        for channel in channels:
            out.append(self.reply(user, "322", channel.name, str(len(channel.members)),
                                   channel.topic))
        out.append(self.reply(user, "323", "End of /LIST"))
        return out

    # ---------------------------------------------------------------- messages

    def message(self, user: User, command: str, targets: str, text: str,
                client_tags: Mapping[str, str] | None = None, echo: bool = False) -> list:
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
                refused = self.can_speak(user, channel)
                if refused is not None:
                    if not notice:
                        out.append(refused)
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

    def _dm_event(self, sender: User, target: User, message: Message,
                  client_tags: Mapping[str, str] | None) -> Event:
        """
        Number a private message in the conversation of its two parties.

        The conversation key is the two casefolded nicks, sorted
        (:func:`~twistchat.core.targets.dm_key`): it is visible only to those two.
        """
        return self.log.append(dm_key(sender.key, target.key), message,
                               int(self.clock() * 1000), client_tags)

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
        if not self.is_operator(user, channel):
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
        if channel.invite_only and not self.is_operator(user, channel):
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
        if not self.is_operator(user, channel):
            return [self.reply(user, "482", channel.name, "You're not channel operator")]
        return self._apply_channel_modes(user, channel, changes, list(args))

    def _apply_channel_modes(self, user: User, channel: Channel, changes: str,
                             args: list[str]) -> list[Delivery]:
        """Apply each letter of ``changes`` in order; one MODE event for what changed."""
        change = _ModeChange(self, user, channel, args)
        sign = "+"
        for letter in changes:
            if letter in "+-":
                sign = letter
                continue
            handler = _MODE_HANDLERS.get(letter)
            if handler is None:
                change.error("472", letter, "is unknown mode char to me")
            else:
                handler(change, sign == "+", letter)
        if change.applied:
            event = self._room_event(
                channel, Message("MODE", (channel.name, *change.mode_params()), user.source))
            change.out.insert(0, Delivery(channel.direct, event))
        return change.out

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
            if self.can_see(user, channel):
                for member in channel.members:
                    out.append(self._who_line(user, member, channel))
        else:
            found = self.find_user(mask)
            if found is not None:
                out.append(self._who_line(user, found, None))
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
                 if self.can_see(user, c)]
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


def _truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


class _ModeChange:
    """One MODE command on a room as it is applied: what changed, what was refused."""

    __slots__ = ("registry", "user", "channel", "args", "out", "applied")

    def __init__(self, registry: Registry, user: User, channel: Channel,
                 args: list[str]) -> None:
        self.registry = registry
        self.user = user
        self.channel = channel
        self.args = args
        self.out: list[Delivery] = []
        self.applied: list[tuple[str, str, str | None]] = []  # (sign, letter, param)

    def error(self, code: str, *params: str) -> None:
        self.out.append(self.registry.reply(self.user, code, *params))

    def param(self) -> str | None:
        """The next mode parameter, or None (after a 461) when there is none."""
        if not self.args:
            self.error("461", "MODE", "Not enough parameters")
            return None
        return self.args.pop(0)

    def mode_params(self) -> tuple[str, ...]:
        """``("+o-v", "alice", "bob")``: the applied changes as MODE parameters."""
        text, params, last = "", [], None
        for sign, letter, param in self.applied:
            if sign != last:
                text += sign
                last = sign
            text += letter
            if param is not None:
                params.append(param)
        return (text, *params)


def _mode_flag(change: _ModeChange, on: bool, letter: str) -> None:
    """+i +m +n +t: a flag of the room."""
    attribute = _FLAG_MODES[letter]
    if getattr(change.channel, attribute) != on:
        setattr(change.channel, attribute, on)
        change.applied.append(("+" if on else "-", letter, None))


def _mode_prefix(change: _ModeChange, on: bool, letter: str) -> None:
    """+o +v: a member's prefix mode."""
    nick = change.param()
    if nick is None:
        return
    channel = change.channel
    member = change.registry.find_user(nick)
    if member is None:
        change.error("401", nick, "No such nick/channel")
        return
    if member not in channel.members:
        change.error("441", member.nick, channel.name, "They aren't on that channel")
        return
    held = channel.members[member]
    if on == (letter in held):
        return
    channel.members[member] = (
        "".join(m for m in PREFIX_MODES if m in held or m == letter) if on
        else held.replace(letter, ""))
    change.applied.append(("+" if on else "-", letter, member.nick))


def _mode_key(change: _ModeChange, on: bool, letter: str) -> None:
    """+k key / -k: the room's key."""
    channel = change.channel
    if not on:
        if channel.password is not None:
            if change.args:
                change.args.pop(0)
            channel.password = None
            change.applied.append(("-", "k", "*"))
        return
    password = change.param()
    if password is None:
        return
    if not password or " " in password or "," in password:
        change.error("525", channel.name, "Key is not well-formed")
        return
    channel.password = password
    change.applied.append(("+", "k", password))


def _mode_limit(change: _ModeChange, on: bool, letter: str) -> None:
    """+l count / -l: the room's member limit."""
    channel = change.channel
    if not on:
        if channel.limit is not None:
            channel.limit = None
            change.applied.append(("-", "l", None))
        return
    raw = change.param()
    if raw is None:
        return
    if not is_decimal(raw) or int(raw) < 1:
        change.error("696", channel.name, "l", raw, "Invalid limit")
        return
    channel.limit = int(raw)
    change.applied.append(("+", "l", raw))


def _mode_ban(change: _ModeChange, on: bool, letter: str) -> None:
    """+b: no ban list is kept yet (issue #13); answer with the empty list's end."""
    if change.args:
        change.args.pop(0)
    change.error("368", change.channel.name, "End of channel ban list")


_MODE_HANDLERS: dict[str, Callable[[_ModeChange, bool, str], None]] = {
    **{letter: _mode_flag for letter in _FLAG_MODES},
    **{letter: _mode_prefix for letter in PREFIX_MODES},
    "k": _mode_key,
    "l": _mode_limit,
    "b": _mode_ban,
}
