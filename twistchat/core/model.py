"""
The core's values: a user, a room, the limits.

test-case-name: tests.test_registry

Plain objects the registry (:mod:`twistchat.core.registry`) changes and every
core module reads.  A front-end may read a user's identity (``nick``, ``key``,
``registered``, ``host``) and its own ``conn``; everything else here is the
core's (docs/core.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CHANMODES", "FLAG_MODES", "MYINFO_CHANMODES", "MYINFO_PARAM_CHANMODES",
           "PREFIX_MODES", "PREFIX_SYMBOLS", "VERSION", "Channel", "Limits", "User",
           "share_a_room"]

VERSION = "twistchat-0.1"

# Channel modes we know, by kind (ISUPPORT CHANMODES=A,B,C,D):
# A (list, always a param): beI (core/lists.py); B (always a param): k; C (param when
# set): l; D (flag): Cimnst.
CHANMODES = "beI,k,l,Cimnst"
PREFIX_MODES = "ov"
PREFIX_SYMBOLS = "@+"
# Room flags (CHANMODES kind D) and the Channel attribute each one sets, in CHANMODES
# order (the order RPL_CHANNELMODEIS shows them in).  +C and +s as InspIRCd and Ergo:
# +C refuses CTCPs but ACTION, +s hides the room from those outside it.
FLAG_MODES = {"C": "no_ctcp", "i": "invite_only", "m": "moderated", "n": "no_external",
              "s": "secret", "t": "topic_lock"}
# RPL_MYINFO (004): every channel mode letter, and those that take a parameter.
MYINFO_CHANMODES = "".join(sorted(set(CHANMODES.replace(",", "") + PREFIX_MODES)))
MYINFO_PARAM_CHANMODES = "".join(sorted(set("".join(CHANMODES.split(",")[:3]) + PREFIX_MODES)))


@dataclass(frozen=True)
class Limits:
    """Protocol limits the registry enforces; each has a service flag (see service.py)."""

    nicklen: int = 30
    channellen: int = 50
    topiclen: int = 390
    awaylen: int = 200
    namelen: int = 128  # real name bytes (ISUPPORT NAMELEN; USER cuts, SETNAME refuses)
    kicklen: int = 255
    max_channels: int = 50  # per user (ISUPPORT CHANLIMIT)
    max_targets: int = 4  # per PRIVMSG/NOTICE (ISUPPORT TARGMAX)
    monitor: int = 100  # nicks one user may MONITOR (ISUPPORT MONITOR)
    # TAGMSG (typing notifications) per user: a burst, then this many per second.
    tagmsg_burst: int = 8
    tagmsg_rate: float = 2.0
    recent_history: int = 1000  # events kept in memory per room (repair)
    max_per_ip: int = 16  # connections and UDP sessions from one address, all front-ends
    # WHOWAS (core/whowas.py): nicks let go (quit, nick change) kept in all, and per nick.
    whowas: int = 1000
    whowas_per_nick: int = 5
    knock_interval: float = 60.0  # seconds between two KNOCKs of one user on one room
    # Seconds a user on a nick another account reserves has to log in before it is
    # renamed Guest<digits> (core/reservations.py, issue #14).
    nick_grace: float = 30.0
    # Accounts one address may REGISTER: a burst, then this many per second (1 a minute).
    register_burst: int = 3
    register_rate: float = 1 / 60


class User:
    """
    One connected client, whichever front-end serves it.

    ``conn`` is the front-end's object for it (it provides ``deliver``); the
    registry never looks further into it.  ``by_broadcast`` says the front-end
    carries room lines to this user by other means (UDP broadcast), so the
    registry need not hand them over one by one.
    """

    __slots__ = (
        "conn", "nick", "key", "user", "host", "address", "realname", "away",
        "channels", "registered", "invisible", "bot", "signon", "last_active", "by_broadcast",
        "pending_nick", "pending_user", "password_ok", "cap_hold", "invited_to", "connected",
        "tagmsg_bucket", "oper", "wallops", "account", "nick_deadline",
    )

    def __init__(self, conn: Any, host: str, now: float, by_broadcast: bool = False) -> None:
        self.conn = conn
        self.nick = "*"
        self.key = ""  # casefolded nick while registered
        self.user = ""
        self.host = host  # as shown (nick!user@host); a vhost may replace it (CHGHOST)
        self.address = host  # where the connection comes from: the per-address limit's
        self.realname = ""
        self.away: str | None = None
        self.channels: dict[str, Channel] = {}  # casefolded name -> Channel
        self.registered = False
        self.invisible = False
        self.bot = False  # user mode +B (IRCv3 bot mode, ISUPPORT BOT=B)
        self.signon = now
        self.last_active = now
        self.by_broadcast = by_broadcast
        # Registration in progress (NICK, USER, PASS, CAP before 001).
        self.pending_nick: str | None = None
        self.pending_user: tuple[str, str] | None = None
        self.password_ok = False
        self.cap_hold = False  # CAP negotiation holds registration until CAP END
        # Rooms this user was INVITEd to: the invitation is the user's, not its nick's,
        # so it follows a nick change and ends with the connection.
        # (None until the first invitation: an idle connection's memory is the
        # server's cost per user, and an empty set alone is 216 bytes.)
        self.invited_to: set[Channel] | None = None
        self.connected = True  # until Registry.quit
        self.account: str | None = None  # the account name logged in as (core/accounts.py)
        # When a reserved nick not this user's own is taken back (core/reservations.py).
        self.nick_deadline: float | None = None
        self.tagmsg_bucket: Any = None  # TAGMSG rate limit (a TokenBucket), made on first use
        # User mode +o: the operator entry this user opered up as (core/operators.py).
        self.oper: str | None = None
        self.wallops = False  # user mode +w: receives WALLOPS

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
        "limit", "bans", "excepts", "invex", "secret", "no_ctcp",
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
        self.secret = False  # +s
        self.no_ctcp = False  # +C
        self.password: str | None = None
        self.limit: int | None = None
        # +b, +e, +I (core/lists.py): mask -> (set by, when); masks as set
        # (nick!user@host with * and ?).
        self.bans: dict[str, tuple[str, int]] = {}
        self.excepts: dict[str, tuple[str, int]] = {}
        self.invex: dict[str, tuple[str, int]] = {}

    def mode_string(self, show_key: bool = True) -> tuple[str, ...]:
        """
        The ``+ntk key`` style mode string and its params (RPL_CHANNELMODEIS).

        Without ``show_key`` (asked by one outside the room) the key reads ``<key>``,
        as InspIRCd shows it: the room says it has one, not what it is.
        """
        flags = "".join(c for c, attr in FLAG_MODES.items() if getattr(self, attr))
        params = []
        if self.password is not None:
            flags += "k"
            params.append(self.password if show_key else "<key>")
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


def share_a_room(one: User, other: User) -> bool:
    """Are ``one`` and ``other`` members of at least one room together?"""
    return not one.channels.keys().isdisjoint(other.channels.keys())
