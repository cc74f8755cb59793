"""
The room registry: users, nicks, rooms, topics, modes, and who may do what.

test-case-name: tests.test_registry

Rule 1: every chat rule lives in this file, with what it needs at hand: the
values it changes (:mod:`twistchat.core.model`), what each mode letter does
(:mod:`twistchat.core.modes`) and how questions are answered
(:mod:`twistchat.core.queries`).  Who may connect (per address),
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from twistchat.core import (
    accounts,
    identity,
    lists,
    modes,
    queries,
    readmarkers,
    reservations,
    roomreg,
)
from twistchat.core.accounts import AccountDirectory
from twistchat.core.events import Delivery, Disconnect, Event, Gated
from twistchat.core.invitations import Knocks
from twistchat.core.masks import matches_user
from twistchat.core.model import (
    CHANMODES,
    MYINFO_CHANMODES,
    MYINFO_PARAM_CHANMODES,
    PREFIX_MODES,
    PREFIX_SYMBOLS,
    VERSION,
    Channel,
    Limits,
    User,
)
from twistchat.core.monitor import Monitors, monitor
from twistchat.core.operators import Operators, OperEntry
from twistchat.core.ratelimit import TokenBucket
from twistchat.core.readmarkers import ReadMarkers
from twistchat.core.roomlog import LocalRoomLog, RoomLog
from twistchat.core.roomreg import RoomDirectory
from twistchat.core.targets import dm_key, dm_parties, is_room_key
from twistchat.core.whowas import NickHistory
from twistchat.wire import (
    CHANTYPES,
    Message,
    casefold,
    is_valid_channel,
    is_valid_nick,
    safe_middle,
)

__all__ = ["CHANMODES", "CHANTYPES", "PREFIX_MODES", "PREFIX_SYMBOLS", "VERSION", "Channel",
           "Limits", "Registry", "User", "casefold"]

class Registry:
    """
    All users and rooms of one server, and every chat rule.

    ``clock`` returns seconds since the epoch (the service passes the reactor's);
    ``log`` is the room log that numbers every event (default: an in-process
    :class:`~twistchat.core.roomlog.LocalRoomLog` starting at ``last_seqs``);
    ``password`` is the server password clients must send with PASS (None: none);
    ``opers`` the operator entries OPER checks (core/operators.py; None: none);
    ``accounts`` the registered accounts (core/accounts.py; None: none yet);
    ``rooms`` the registered rooms (core/roomreg.py; None: none yet);
    ``read_markers`` the accounts' read markers (core/readmarkers.py; None: none yet).
    ``registration_open`` whether clients may register accounts themselves
    (``--registration``; False: only the account tool makes them).
    """

    def __init__(
        self,
        server_name: str = "twistchat",
        network: str = "twistchat",
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        last_seqs: Mapping[str, int] | None = None,
        motd: list[str] | None = None,
        log: RoomLog | None = None,
        password: str | None = None,
        opers: Mapping[str, OperEntry] | None = None,
        accounts: AccountDirectory | None = None,
        rooms: RoomDirectory | None = None,
        read_markers: ReadMarkers | None = None,
        registration_open: bool = True,
    ) -> None:
        self.server_name = server_name
        self.network = network
        self.limits = limits = limits if limits is not None else Limits()
        self.clock = clock
        self.motd = motd
        self.password = password
        self.created = clock()
        if log is not None and last_seqs is not None:
            raise ValueError("give last_seqs to the room log, not to the registry as well")
        self.log: RoomLog = log if log is not None else LocalRoomLog(
            last_seqs=last_seqs, recent=limits.recent_history)
        self.extra_isupport: list[str] = []  # tokens of optional features (CHATHISTORY=...)
        self._users: dict[str, User] = {}  # casefolded nick -> registered User
        self._rooms: dict[str, Channel] = {}  # casefolded name -> Channel
        self._connections = 0  # all connected users, registered or not
        self._peak_users = 0  # the most registered at once
        self._per_address: dict[str, int] = {}  # host -> connected users from it
        self.monitors = Monitors()  # MONITOR watch lists (core/monitor.py)
        self.operators = Operators(opers)  # OPER entries, opers online (core/operators.py)
        self.nick_history = NickHistory(limits.whowas, limits.whowas_per_nick)  # WHOWAS
        self.knocks = Knocks(limits.knock_interval)  # KNOCK's rate (core/invitations.py)
        # Every account, in memory; the service fills it from the store (core/accounts.py).
        self.accounts = accounts if accounts is not None else AccountDirectory()
        # Users on a nick another account reserves, and their deadlines (core/reservations.py).
        self.reservations = reservations.NickReservations()
        # Registered rooms (ChanServ), their state kept while empty (core/roomreg.py).
        self.registered_rooms = rooms if rooms is not None else RoomDirectory()
        # draft/read-marker: each account's markers (core/readmarkers.py).
        self.read_markers = read_markers if read_markers is not None else ReadMarkers()
        self.registration_open = registration_open  # --registration=open|closed (#14)

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
                    client_tags: Mapping[str, str] | None = None,
                    extended: Message | None = None, sender: User | None = None) -> Event:
        """
        Number and record one event of ``channel`` in the room log.

        ``sender``: the user whose line it is; its account goes with the event
        (IRCv3 account-tag: "all commands sent by a user").
        """
        return self.log.append(channel.key, message, int(self.clock() * 1000), client_tags,
                               extended, sender.account if sender is not None else None)

    def announce(self, channel: Channel, message: Message,
                 sender: User | None = None) -> Delivery:
        """``message`` (a MODE, a TOPIC) as the next event of ``channel``, to its members."""
        return Delivery(channel.direct, self._room_event(channel, message, sender=sender))

    def watchers_told(self, user: User, line: Message) -> list[Delivery]:
        """``line`` about ``user`` for those who MONITOR it with IRCv3 extended-monitor."""
        return self.monitors.told(user, line)

    def peers(self, user: User) -> set[User]:
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

    def peak_user_count(self) -> int:
        """The most users registered at once since the server started (LUSERS 265/266)."""
        return self._peak_users

    def users(self) -> list[User]:
        """Every registered user (WHO with a mask)."""
        return list(self._users.values())

    def connection_count(self) -> int:
        """Connected users, registered or not."""
        return self._connections

    def room_count(self) -> int:
        """Rooms that exist now (rooms with members)."""
        return len(self._rooms)

    def rooms(self) -> list[Channel]:
        """Every room that exists now (LIST)."""
        return list(self._rooms.values())

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
        """
        The error that keeps ``user`` out of an existing ``channel``, or None (+b +i +k +l).

        An INVITE lets one past +b, +i and +k; a matching invite exception (+I)
        past +i only (as Ergo and InspIRCd); a ban exception (+e) unbans
        (:meth:`is_banned`).  The founder and AMODE accounts of a registered room
        pass all four (core/roomreg.py).
        """
        if self.registered_rooms.amode_of(channel, user):
            return None
        invited = user.invited_to is not None and channel in user.invited_to
        if self.is_banned(user, channel) and not invited:
            return self.reply(user, "474", channel.name, "Cannot join channel (+b)")
        if channel.invite_only and not invited \
                and not matches_user(channel.invex, user.source, user.account):
            return self.reply(user, "473", channel.name, "Cannot join channel (+i)")
        if channel.password is not None and password != channel.password and not invited:
            return self.reply(user, "475", channel.name, "Cannot join channel (+k)")
        if channel.limit is not None and len(channel.members) >= channel.limit:
            return self.reply(user, "471", channel.name, "Cannot join channel (+l)")
        return None

    def can_speak(self, user: User, channel: Channel, text: str = "") -> Delivery | None:
        """
        The error that keeps ``user`` from saying ``text`` in ``channel``, or None.

        +n, +m, +b (unless +e), and +C: a CTCP other than ACTION (``\\x01VERSION\\x01``)
        to a +C room is refused, from anyone (as InspIRCd's noctcp, ops included).
        """
        if channel.no_ctcp and _is_ctcp(text):
            return self.reply(user, "404", channel.name, "Cannot send CTCP to channel (+C)")
        modes = channel.members.get(user)
        if modes is None and channel.no_external:
            return self.reply(user, "404", channel.name, "Cannot send to channel (+n)")
        if channel.moderated and not modes:
            return self.reply(user, "404", channel.name, "Cannot send to channel (+m)")
        if not modes and self.is_banned(user, channel):
            # A banned member stays, but says nothing unless voiced or op (as Ergo does).
            return self.reply(user, "404", channel.name, "Cannot send to channel (+b)")
        return None

    def is_banned(self, user: User, channel: Channel) -> bool:
        """
        Does a ban of ``channel`` match ``user``'s nick!user@host (rfc1459 folding)?

        Not if a ban exception (+e) matches too: an exception outweighs every ban.
        ``~a:<account>`` entries match the account the user is logged in as
        (core/masks.py), whatever its nick.
        """
        if not channel.bans:
            return False
        source, account = user.source, user.account
        return matches_user(channel.bans, source, account) \
            and not matches_user(channel.excepts, source, account)

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
        """
        May ``user`` see ``channel``, who is in it and its topic (LIST, NAMES, WHO, WHOIS)?

        Its members always; others unless it is secret (+s).  +i hides nothing:
        it keeps people out, it does not hide who is in (modern.ircdocs.horse).
        """
        return not channel.secret or user in channel.members

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

    # ---------------------------------------- questions (answered in queries.py)

    def isupport(self) -> list[str]:
        """The ISUPPORT (005) tokens this server advertises."""
        return queries.isupport(self)

    def isupport_replies(self, user: User) -> list[Delivery]:
        """RPL_ISUPPORT lines."""
        return queries.isupport_replies(self, user)

    def lusers(self, user: User) -> list[Delivery]:
        """LUSERS: 251-255, 265, 266."""
        return queries.lusers(self, user)

    def motd_replies(self, user: User) -> list[Delivery]:
        """MOTD: 375, 372 per line, 376; or 422."""
        return queries.motd_replies(self, user)

    def names(self, user: User, name: str, multi_prefix: bool = False,
              userhost: bool = False) -> list[Delivery]:
        """NAMES for one room: 353 lines that fit 512 bytes, then 366 (userhost-in-names)."""
        return queries.names(self, user, name, multi_prefix, userhost)

    def list_channels(self, user: User, params: Sequence[str] = ()) -> list[Delivery]:
        """LIST (rooms named, ELIST conditions): 321, one 322 per room, 323."""
        return queries.list_channels(self, user, params)

    def who(self, user: User, mask: str, multi_prefix: bool = False,
            options: str = "") -> list[Delivery]:
        """WHO for a room or a mask: 352 (or WHOX's 354) per match, then 315."""
        return queries.who(self, user, mask, multi_prefix, options)

    def whois(self, user: User, nick: str) -> list[Delivery]:
        """WHOIS: 311, 319, 312, 301, 317, 318 (or 401 + 318)."""
        return queries.whois(self, user, nick)

    def ison(self, user: User, nicks: Iterable[str]) -> list[Delivery]:
        """ISON: the nicks given that are online."""
        return queries.ison(self, user, nicks)

    def userhost(self, user: User, nicks: Iterable[str]) -> list[Delivery]:
        """USERHOST: up to five ``nick=+user@host`` entries."""
        return queries.userhost(self, user, nicks)

    def version(self, user: User) -> list[Delivery]:
        """VERSION: 351 and the ISUPPORT lines."""
        return queries.version(self, user)

    def time(self, user: User) -> list[Delivery]:
        """TIME: 391 with the server's local time."""
        return queries.server_time(self, user)

    # ------------------------------------------------------------ registration

    def connect(self, conn: Any, host: str, by_broadcast: bool = False,
                limited: bool = True) -> User | None:
        """
        A new connection from ``host``: an unregistered user with no nick.

        None if ``host`` already has ``max_per_ip`` connections (over every
        front-end): the front-end refuses it.  ``by_broadcast``: see :class:`User`.
        ``limited=False``: counted, never refused (a cluster replica's copy of a
        connection another node already accepted, twistchat/cluster/fold.py).
        """
        count = self._per_address.get(host, 0)
        if limited and count >= self.limits.max_per_ip:
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
        if accounts.is_service_nick(nick):
            return [self.reply(user, "432", nick, "Erroneous nickname (reserved for services)")]
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
        user.realname = _truncate(realname, self.limits.namelen)
        user.registered = True
        self._users[key] = user
        self._peak_users = max(self._peak_users, len(self._users))
        out = [
            self.reply(user, "001", f"Welcome to the {self.network} IRC network {user.source}"),
            self.reply(user, "002", f"Your host is {self.server_name}, running version {VERSION}"),
            self.reply(user, "003", "This server was created " + time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.created))),
            self.reply(user, "004", self.server_name, VERSION, "".join(modes.USER_MODES),
                       MYINFO_CHANMODES, MYINFO_PARAM_CHANMODES),
        ]
        out += self.isupport_replies(user)
        out += self.lusers(user)
        out += self.motd_replies(user)
        out += self.monitors.online(self, user)
        out += reservations.on_nick(self, user)  # a reserved nick: NickServ says so at once
        return out

    def change_nick(self, user: User, nick: str) -> list[Delivery]:
        """NICK for a registered user: a NICK event in each of its rooms, one line per peer."""
        errors = self.check_nick(user, nick)
        if errors:
            return errors
        if nick == user.nick:
            return []
        message = Message("NICK", (nick,), user.source)
        key, old = casefold(nick), user.nick
        del self._users[user.key]
        self._users[key] = user
        moved = key != user.key
        self.nick_history.record(user, self.clock())  # WHOWAS: the old nick
        user.nick, user.key = nick, key
        out = self._to_peers(user, message)
        if moved:  # MONITOR: the old nick is free, the new one taken
            out += self.monitors.offline(self, old, user) + self.monitors.online(self, user)
        out += reservations.on_nick(self, user)
        return out

    def _to_peers(self, user: User, message: Message, skip_self: bool = False) -> list[Delivery]:
        """
        Record ``message`` as an event of each room of ``user``; deliver it once per peer.

        NICK and QUIT concern every room a user is in: each room's transcript
        gets its own numbered event, but a peer in several of those rooms sees
        the line once (as IRC clients expect).
        """
        events = [self._room_event(channel, message, sender=user)
                  for channel in user.channels.values()]
        payload: Event | Message = events[0] if events else message
        return [Delivery(self.peers(user), payload, user if skip_self else None)]

    def quit(self, user: User, reason: str = "Client Quit",
             shown: str | None = None) -> list[Delivery]:
        """
        The user leaves the server: QUIT to its peers, its nick and rooms freed (once).

        Peers see ``Quit: reason``, or ``shown`` as it is (a KILL's ``Killed (...)``).
        """
        if not user.connected:
            return []
        user.connected = False
        self._connections -= 1
        count = self._per_address.get(user.address, 0) - 1
        if count > 0:
            self._per_address[user.address] = count
        else:
            self._per_address.pop(user.address, None)
        self.monitors.clear(user)
        if not user.registered:
            return []
        self.nick_history.record(user, self.clock())  # WHOWAS
        out = self.monitors.offline(self, user.nick, user)
        if user.channels:
            text = f"Quit: {reason}" if shown is None else shown
            out += self._to_peers(user, Message("QUIT", (text,), user.source), skip_self=True)
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

    def join(self, user: User, name: str, password: str | None = None,
             names: queries.NamesView | None = queries.PLAIN_NAMES) -> list:
        """
        JOIN one room: checks +i +k +l and CHANLIMIT; the first joiner becomes operator.

        Answers the joiner with the JOIN, the topic (332/333) and NAMES (353/366)
        as ``names`` asks (None: no NAMES, IRCv3 draft/no-implicit-names).  The
        JOIN event carries its extended-join form, ``JOIN #room account
        :realname`` (account ``*``: not logged in).
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
            # A registered room comes back with its state, bans included; no one is
            # operator by being first in it (core/roomreg.py).
            registered = self.registered_rooms.restore(channel) is not None
            refused = self.can_join(user, channel, password) if registered else None
            if refused is not None:
                return [refused]
            self._rooms[key] = channel
            self.log.open(key)
            modes = "" if registered else "o"
        else:
            refused = self.can_join(user, channel, password)
            if refused is not None:
                return [refused]
            if user.invited_to is not None:
                user.invited_to.discard(channel)
            modes = ""
        channel.members[user] = modes
        if not user.by_broadcast:
            channel.direct[user] = None
        user.channels[key] = channel
        event = self._room_event(
            channel, Message("JOIN", (channel.name,), user.source),
            extended=Message("JOIN", (channel.name, user.account or "*", user.realname),
                             user.source),
            sender=user)
        out = [Delivery(channel.members, event)]
        if user.away is not None:
            out.append(Delivery(channel.members, Message("AWAY", (user.away,), user.source), user))
        out += roomreg.on_join(self, channel, user)
        if channel.topic:
            out += self._topic_replies(user, channel)
        out += readmarkers.on_join(self, channel, user)  # draft/read-marker: before 366
        if names is not None:
            out += self.names(user, channel.name, names.multi_prefix, names.userhost)
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
        event = self._room_event(channel, Message("PART", params, user.source), sender=user)
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
        return [self.set_topic(channel, text, user.source, user.source, user)]

    def set_topic(self, channel: Channel, text: str, by: str, source: str,
                  sender: User | None = None) -> Delivery:
        """Set ``channel``'s topic (cut to TOPICLEN) as ``by``; TOPIC from ``source``."""
        text = _truncate(text, self.limits.topiclen)
        channel.topic, channel.topic_by, channel.topic_time = text, by, int(self.clock())
        self.registered_rooms.channel_changed(channel)  # a registered room keeps it
        return self.announce(channel, Message("TOPIC", (channel.name, text), source), sender)

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
        client_tags = bot_tags(user, client_tags)

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
            if name[0] in PREFIX_SYMBOLS and name[1:2] in CHANTYPES:
                out += self._status_message(user, command, name, text, client_tags, echo)
            elif name[0] in CHANTYPES:
                channel = self.find_channel(name)
                if channel is None:
                    error("403", name, "No such channel")
                    continue
                refused = self.can_speak(user, channel, text)
                if refused is not None:
                    if not notice:
                        out.append(refused)
                    continue
                event = self._room_event(
                    channel, Message(command, (channel.name, text), user.source), client_tags,
                    sender=user)
                out.append(Delivery(channel.direct, event, None if echo else user))
            else:
                target = self.find_user(name)
                if target is None:
                    error("401", name, "No such nick/channel")
                    continue
                event = self._dm_event(user, target, Message(command, (target.nick, text),
                                                             user.source), client_tags)
                # To oneself with echo-message: the echo and the delivered copy, as TAGMSG
                # does (labeled-response labels only the echo: the front-end's job).
                out.append(Delivery((target, user) if echo else (target,), event))
                if target.away is not None and not notice:
                    out.append(self.reply(user, "301", target.nick, target.away))
        return out

    def _status_message(self, user: User, command: str, target: str, text: str,
                        client_tags: Mapping[str, str] | None, echo: bool) -> list[Delivery]:
        """
        ``PRIVMSG @#room`` / ``+#room`` (ISUPPORT STATUSMSG=@+): to its ops, or voiced and ops.

        The sender must be allowed to speak in the room.  Not a line of the room's
        transcript (not every member may read it), so it gets no sequence number
        and is not kept in history.
        """
        notice = command == "NOTICE"
        symbol, name = target[0], target[1:]
        channel = self.find_channel(name)
        if channel is None:
            return [] if notice else [self.reply(user, "403", name, "No such channel")]
        refused = self.can_speak(user, channel, text)
        if refused is not None:
            return [] if notice else [refused]
        wanted = PREFIX_MODES[:PREFIX_SYMBOLS.index(symbol) + 1]  # "@": o; "+": o or v
        audience = [m for m, held in channel.members.items()
                    if any(mode in held for mode in wanted) and (echo or m is not user)]
        message = Message(command, (symbol + channel.name, text), user.source,
                          account_tags(user, client_tags))
        return [Delivery(audience, message)]

    def _dm_event(self, sender: User, target: User, message: Message,
                  client_tags: Mapping[str, str] | None) -> Event:
        """
        Number a private message in the conversation of its two parties.

        The conversation key is the two casefolded nicks, sorted
        (:func:`~twistchat.core.targets.dm_key`): it is visible only to those two.
        """
        return self.log.append(dm_key(sender.key, target.key), message,
                               int(self.clock() * 1000), client_tags, None, sender.account)

    def tagmsg(self, user: User, target: str, client_tags: dict, echo: bool = False) -> list:
        """
        IRCv3 TAGMSG (client-only tags, e.g. +typing): relayed, never numbered.

        Typing notices are not transcript lines, so they get no sequence number
        and are not stored; but like every relayed message they carry a msgid
        (message-tags: "servers MUST include a msgid on every relayed message").

        At most ``tagmsg_burst`` at once, then ``tagmsg_rate`` a second per
        user: past that they are dropped without a reply, so a client's typing
        storm cannot flood a room (a typing notice is stale a moment later, and
        an error per dropped one would be a flood of its own).
        """
        now = self.clock()
        bucket = user.tagmsg_bucket
        if bucket is None:
            bucket = user.tagmsg_bucket = TokenBucket(
                self.limits.tagmsg_burst, self.limits.tagmsg_rate, now)
        if not bucket.take(now):
            return []
        tags = {**account_tags(user, bot_tags(user, client_tags)), "msgid": self.log.new_msgid()}
        message = Message("TAGMSG", (target,), user.source, tags)
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
            channel, Message("KICK", (channel.name, target.nick, reason), user.source),
            sender=user)
        out = [Delivery(list(channel.members), event)]
        self._remove_member(channel, target)
        return out

    def invite(self, user: User, nick: str, name: str) -> list:
        """
        INVITE: members may invite; on a +i room only operators.

        IRCv3 invite-notify: the room's members with the capability see the
        INVITE too (on a +i room only its operators, who manage who comes in).
        """
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
        if target.invited_to is None:
            target.invited_to = set()
        target.invited_to.add(channel)
        line = Message("INVITE", (target.nick, channel.name), user.source)
        told = [m for m in channel.members
                if m is not user and (not channel.invite_only or self.is_operator(m, channel))]
        out = [self.reply(user, "341", target.nick, channel.name),
               Delivery((target,), line), Delivery(told, Gated("invite-notify", line))]
        if target.away is not None:
            out.append(self.reply(user, "301", target.nick, target.away))
        return out

    def mode(self, user: User, target: str, changes: str | None = None,
             args: Iterable[str] = ()) -> list:
        """MODE on a room (query, or a change of CHANMODES/PREFIX letters) or on oneself."""
        if target[:1] not in CHANTYPES:
            return modes.user_mode(self, user, target, changes)
        channel = self.find_channel(target)
        if channel is None:
            return [self.reply(user, "403", target, "No such channel")]
        if changes is None:
            shown = channel.mode_string(show_key=user in channel.members)
            return [self.reply(user, "324", channel.name, *shown),
                    self.reply(user, "329", channel.name, str(channel.created))]
        if changes.strip("+-") in lists.LIST_MODES and not args:
            # A list, asked by anyone (clients ask for +b on join): lists.listing says
            # who may see which.
            return lists.listing(self, user, channel, changes.strip("+-"))
        if user not in channel.members:
            return [self.reply(user, "442", channel.name, "You're not on that channel")]
        if not self.is_operator(user, channel):
            return [self.reply(user, "482", channel.name, "You're not channel operator")]
        params, out = modes.apply_channel_modes(self, user, channel, changes, list(args))
        if params is not None:
            self.registered_rooms.channel_changed(channel)  # a registered room keeps them
            event = self._room_event(channel, Message("MODE", (channel.name, *params),
                                                      user.source), sender=user)
            out.insert(0, Delivery(channel.direct, event))
        return out

    # --------------------------------------------------------------- identity

    def log_in(self, user: User, name: str) -> list[Delivery]:
        """``user`` logged in as account ``name`` (:func:`twistchat.core.accounts.log_in`)."""
        return accounts.log_in(self, user, name)

    def log_out(self, user: User) -> list[Delivery]:
        """``user`` logged out (:func:`twistchat.core.accounts.log_out`)."""
        return accounts.log_out(self, user)

    def enforce_reservations(self, now: float) -> list[Delivery]:
        """
        Users past their grace period on a nick another account reserves become Guests.

        :func:`twistchat.core.reservations.enforce`; the service runs it every second.
        """
        return reservations.enforce(self, now)

    def evict_ghost(self, owner: User, nick: str) -> list[Delivery]:
        """NickServ GHOST (:func:`twistchat.core.accounts.evict_ghost`)."""
        return accounts.evict_ghost(self, owner, nick)

    def set_realname(self, user: User, realname: str) -> list[Delivery]:
        """IRCv3 SETNAME (:func:`twistchat.core.identity.set_realname`)."""
        return identity.set_realname(self, user, realname)

    def change_host(self, user: User, username: str, host: str) -> list[Delivery]:
        """A new ``user@host`` for ``user``, CHGHOST to its peers (vhosts, accounts: #14)."""
        return identity.change_host(self, user, username, host)

    # ------------------------------------------------------------------ queries

    def set_away(self, user: User, text: str | None) -> list:
        """AWAY with text marks the user away (306); without, back (305)."""
        # IRCv3 away-notify: peers are told; front-ends show AWAY only to clients that asked.
        # extended-monitor: watchers with it (and away-notify) are told too.
        if text:
            user.away = _truncate(text, self.limits.awaylen)
            line = Message("AWAY", (user.away,), user.source)
            return [self.reply(user, "306", "You have been marked as being away"),
                    Delivery(self.peers(user), line, user), *self.watchers_told(user, line)]
        user.away = None
        line = Message("AWAY", (), user.source)
        return [self.reply(user, "305", "You are no longer marked as being away"),
                Delivery(self.peers(user), line, user), *self.watchers_told(user, line)]

    def monitor(self, user: User, sub: str, targets: str | None = None) -> list[Delivery]:
        """MONITOR + - C L S (:func:`twistchat.core.monitor.monitor`)."""
        return monitor(self, user, sub, targets)


def bot_tags(user: User, client_tags: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """
    The tags a message from ``user`` carries: a bot's get IRCv3 ``bot``.

    https://ircv3.net/specs/extensions/bot-mode: shown, like client-only tags,
    to receivers with message-tags (and kept with the line in history).
    """
    if not user.bot:
        return client_tags
    return {**(client_tags or {}), "bot": ""}


def account_tags(user: User, tags: Mapping[str, str] | None) -> dict[str, str]:
    """
    ``tags`` and, for a logged-in ``user``, IRCv3 ``account=<name>`` (account-tag).

    For lines that are no room event (TAGMSG, ``PRIVMSG @#room``): the front-end
    shows ``account`` to clients with account-tag only, the rest with message-tags
    (:class:`twistchat.frontends.ircv3.View`).  Room events carry the account
    beside their tags instead (:attr:`~twistchat.core.events.Event.account`).
    """
    out = dict(tags or {})
    if user.account is not None:
        out["account"] = user.account
    return out


def _is_ctcp(text: str) -> bool:
    """
    Is ``text`` a CTCP other than ACTION (what +C refuses)?

    A CTCP is a message that starts with ``\\x01`` (the CTCP spec, ircdocs
    ctcp.html); ``\\x01ACTION ...`` is ``/me``, ordinary talk.
    """
    if not text.startswith("\x01"):
        return False
    verb = text[1:].split(" ", 1)[0].rstrip("\x01")
    return verb.upper() != "ACTION"


def _truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")

