"""
Questions about users and rooms: NAMES, WHO, WHOIS, LIST, LUSERS, MOTD, ISUPPORT...

test-case-name: tests.test_registry

Read-only answers, built from the registry's public methods (``find_user``,
``find_channel``, ``can_see``...): who may see what is decided there
(:meth:`Registry.can_see`), how the answer is written is decided here.
Numerics follow RFC 2812 section 5 and https://modern.ircdocs.horse/.
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twistchat.core import accounts, elist, lists, masks, modes, whox
from twistchat.core.events import Delivery
from twistchat.core.masks import mask_matcher
from twistchat.core.model import (
    CHANMODES,
    PREFIX_MODES,
    PREFIX_SYMBOLS,
    VERSION,
    Channel,
    User,
    share_a_room,
)
from twistchat.wire import CHANTYPES

if TYPE_CHECKING:
    from twistchat.core.registry import Registry


def isupport(registry: Registry) -> list[str]:
    """The ISUPPORT (005) tokens this server advertises."""
    lim = registry.limits
    return [
        "CASEMAPPING=rfc1459", f"CHANTYPES={CHANTYPES}",
        f"PREFIX=({PREFIX_MODES}){PREFIX_SYMBOLS}", f"CHANMODES={CHANMODES}",
        f"NICKLEN={lim.nicklen}", f"CHANNELLEN={lim.channellen}",
        f"TOPICLEN={lim.topiclen}", f"AWAYLEN={lim.awaylen}", f"KICKLEN={lim.kicklen}",
        f"NAMELEN={lim.namelen}", f"MONITOR={lim.monitor}", "BOT=B", "UTF8ONLY",
        f"CHANLIMIT={CHANTYPES}:{lim.max_channels}", f"MODES={modes.MODES_PER_LINE}",
        f"MAXLIST={''.join(lists.LIST_MODES)}:{lists.MAX_LIST}", "EXCEPTS=e", "INVEX=I",
        "WHOX",  # WHO's fields (core/whox.py)
        f"ELIST={elist.ELIST}",  # LIST's search extensions (core/elist.py)
        f"TARGMAX=PRIVMSG:{lim.max_targets},NOTICE:{lim.max_targets}",
        f"NETWORK={registry.network}", "LINELEN=512", "STATUSMSG=@+",
        "KNOCK",  # the KNOCK command (core/invitations.py)
        f"EXTBAN={masks.EXTBAN_PREFIX},{masks.EXTBAN_TYPES}",  # ~a:account bans (core/masks.py)
    ] + registry.extra_isupport


def isupport_replies(registry: Registry, user: User) -> list[Delivery]:
    """RPL_ISUPPORT lines, at most 13 tokens each."""
    tokens = isupport(registry)
    return [
        registry.reply(user, "005", *tokens[i:i + 13], "are supported by this server")
        for i in range(0, len(tokens), 13)
    ]


def lusers(registry: Registry, user: User) -> list[Delivery]:
    """LUSERS: 251, 252, 254, 255, 265, 266."""
    users = registry.user_count()
    peak = registry.peak_user_count()
    unknown = registry.connection_count() - users
    invisible = sum(1 for other in registry.users() if other.invisible)
    out = [
        registry.reply(user, "251", f"There are {users - invisible} users and {invisible} "
                       "invisible on 1 servers"),
        registry.reply(user, "252", str(len(registry.operators.online())),
                       "operator(s) online"),
    ]
    if unknown > 0:
        out.append(registry.reply(user, "253", str(unknown), "unknown connection(s)"))
    out += [
        registry.reply(user, "254", str(registry.room_count()), "channels formed"),
        registry.reply(user, "255", f"I have {users} clients and 0 servers"),
        registry.reply(user, "265", str(users), str(peak), f"Current local users {users}, "
                       f"max {peak}"),
        registry.reply(user, "266", str(users), str(peak), f"Current global users {users}, "
                       f"max {peak}"),
    ]
    return out


def motd_replies(registry: Registry, user: User) -> list[Delivery]:
    """MOTD: 375, 372 per line, 376; or 422 when there is none."""
    if not registry.motd:
        return [registry.reply(user, "422", "MOTD File is missing")]
    out = [registry.reply(user, "375", f"- {registry.server_name} Message of the day - ")]
    out += [registry.reply(user, "372", f"- {line}") for line in registry.motd]
    out.append(registry.reply(user, "376", "End of /MOTD command."))
    return out


@dataclass(frozen=True)
class NamesView:
    """How a client wants 353 entries: every prefix (multi-prefix), ``nick!user@host``."""

    multi_prefix: bool = False
    userhost: bool = False  # IRCv3 userhost-in-names


PLAIN_NAMES = NamesView()


def names(registry: Registry, user: User, name: str, multi_prefix: bool = False,
          userhost: bool = False) -> list:
    """
    NAMES for one room: 353 lines that fit 512 bytes, then 366.

    RPL_NAMREPLY's symbol is ``@`` for a secret (+s) room, ``=`` for any other
    (modern.ircdocs.horse; ``*``, private, is +p, which we do not have).
    """
    channel = registry.find_channel(name)
    out = []
    seen = channel is not None and registry.can_see(user, channel)
    if channel is not None and seen:
        names = [channel.prefix(m, multi_prefix) + (m.source if userhost else m.nick)
                 for m in channel.members]
        symbol = "@" if channel.secret else "="
        head = f":{registry.server_name} 353 {user.nick} {symbol} {channel.name} :"
        room = 510 - len(head.encode("utf-8"))
        line: list = []
        size = 0
        for entry in names:
            if line and size + len(entry) + 1 > room:
                out.append(registry.reply(user, "353", symbol, channel.name, " ".join(line)))
                line, size = [], 0
            line.append(entry)
            size += len(entry) + 1
        if line:
            out.append(registry.reply(user, "353", symbol, channel.name, " ".join(line)))
    shown = channel.name if channel is not None and seen else name  # +s: not even its spelling
    out.append(registry.reply(user, "366", shown, "End of /NAMES list"))
    return out


def list_channels(registry: Registry, user: User, params: Sequence[str] = ()) -> list:
    """
    LIST: 321, one 322 per room asked for, 323.

    ``params`` are LIST's as sent: room names, masks and the ELIST conditions
    of :mod:`twistchat.core.elist`, comma-separated, in one parameter or two.
    Named rooms alone are listed in the order named; otherwise every room is
    searched.  A bad condition gets ERR_UNKNOWNERROR (400), then 323, nothing listed.
    """
    try:
        query = elist.parse_list(params)
    except elist.BadCondition as bad:
        return [registry.reply(user, "400", "LIST", f'Unknown LIST condition "{bad}" '
                               f"(ELIST={elist.ELIST}: <n >n C<n C>n T<n T>n !mask)"),
                registry.reply(user, "323", "End of /LIST")]
    if query.only_names:
        found = (registry.find_channel(n) for n in query.names)
        channels = list(dict.fromkeys(c for c in found if c is not None))  # once each
    else:
        channels = registry.rooms()
    matches = query.matcher()
    now = registry.clock()
    out = [registry.reply(user, "321", "Channel", "Users  Name")]
    for channel in channels:
        if not registry.can_see(user, channel):
            continue  # +s: not listed to those outside it, named or not
        if not matches(channel, now):
            continue
        out.append(registry.reply(user, "322", channel.name, str(len(channel.members)),
                                  channel.topic))
    out.append(registry.reply(user, "323", "End of /LIST"))
    return out


def who(registry: Registry, user: User, mask: str, multi_prefix: bool = False,
        options: str = "") -> list:
    """
    WHO for a room, or a mask of nicks: 352 per match (354 for WHOX), then 315.

    A room lists its members (if the asker may see them).  Any other mask is
    matched, ``*`` and ``?`` as wildcards under the server's case mapping,
    against each user's nick, user name, host and real name; ``*`` and ``0``
    match everyone.  Users with ``+i`` are listed only to those who share a
    room with them (RFC 2812 3.6.1; as Ergo and InspIRCd do).

    ``options`` is WHO's second parameter: with a ``%`` it is a WHOX request
    (:mod:`twistchat.core.whox`) for other fields of the same users; one this
    server cannot answer gets ERR_UNKNOWNERROR (400) before the 315.
    """
    try:
        query = whox.parse_query(options)
    except whox.BadQuery as bad:
        return [registry.reply(user, "400", "WHO", str(bad)),
                registry.reply(user, "315", mask, "End of WHO list")]
    out = []
    for member, channel in _who_matches(registry, user, mask):
        flags = _who_flags(member, channel, multi_prefix)
        if query is not None:
            out.append(whox.reply_line(registry, user, member, channel, flags, query))
        else:
            out.append(_who_line(registry, user, member, channel, flags))
    out.append(registry.reply(user, "315", mask, "End of WHO list"))
    return out


def _who_matches(registry: Registry, user: User, mask: str) -> list[tuple[User, Channel | None]]:
    """Who a WHO for ``mask`` lists, with the room it lists them in (None for a mask)."""
    channel = registry.find_channel(mask) if mask[:1] in CHANTYPES else None
    if channel is not None:
        if not registry.can_see(user, channel):
            return []
        return [(member, channel) for member in channel.members]
    if mask[:1] in CHANTYPES:
        return []
    matches = mask_matcher("*" if mask in ("", "0") else mask)
    found: list[tuple[User, Channel | None]] = []
    for other in registry.users():
        if other.invisible and other is not user and not share_a_room(user, other):
            continue
        if any(matches(field) for field in (other.nick, other.user, other.host,
                                               other.realname)):
            found.append((other, None))
    return found


def _who_flags(member: User, channel: Channel | None, multi_prefix: bool = False) -> str:
    """WHO's flags of ``member``: H or G (away), B for a bot, its prefix in ``channel``."""
    flags = "G" if member.away is not None else "H"
    if member.oper:
        flags += "*"  # an IRC operator (RFC 2812 RPL_WHOREPLY; modern.ircdocs.horse)
    if member.bot:
        flags += "B"  # IRCv3 bot mode: the BOT=B letter among the WHO flags
    if channel is not None:
        flags += channel.prefix(member, multi_prefix)
    return flags


def _who_line(registry: Registry, asker: User, member: User, channel: Channel | None,
              flags: str) -> Delivery:
    return registry.reply(asker, "352", channel.name if channel else "*", member.user,
                          member.host, registry.server_name, member.nick, flags,
                          f"0 {member.realname}")


def whois(registry: Registry, user: User, nick: str) -> list:
    """WHOIS: 311, 319, 312, 313 (an oper), 335 (a bot), 330 (logged in), 301, 317, 318 (or 401)."""
    target = registry.find_user(nick)
    if target is None:
        service = accounts.service_whois(registry, user, nick)
        if service is not None:
            return service
        return [registry.reply(user, "401", nick, "No such nick/channel"),
                registry.reply(user, "318", nick, "End of /WHOIS list")]
    out = [registry.reply(user, "311", target.nick, target.user, target.host, "*",
                       target.realname)]
    rooms = [c.prefix(target) + c.name for c in target.channels.values()
             if registry.can_see(user, c)]
    if rooms:
        out.append(registry.reply(user, "319", target.nick, " ".join(rooms)))
    out.append(registry.reply(user, "312", target.nick, registry.server_name, "twistchat"))
    if target.oper:
        out.append(registry.reply(user, "313", target.nick, "is an IRC operator"))
    if target.bot:
        out.append(registry.reply(user, "335", target.nick, f"is a Bot on {registry.network}"))
    if target.account is not None:
        # RPL_WHOISACCOUNT: "<client> <nick> <account> :is logged in as" (modern.ircdocs.horse)
        out.append(registry.reply(user, "330", target.nick, target.account, "is logged in as"))
    if target.away is not None:
        out.append(registry.reply(user, "301", target.nick, target.away))
    idle = int(registry.clock() - target.last_active)
    out.append(registry.reply(user, "317", target.nick, str(max(idle, 0)),
                           str(int(target.signon)), "seconds idle, signon time"))
    out.append(registry.reply(user, "318", target.nick, "End of /WHOIS list"))
    return out


def ison(registry: Registry, user: User, nicks: Iterable[str]) -> list:
    """ISON: the nicks given that are online, as the server spells them."""
    online = [u.nick for u in (registry.find_user(n) for n in nicks) if u is not None]
    return [registry.reply(user, "303", " ".join(online))]


def userhost(registry: Registry, user: User, nicks: Iterable[str]) -> list:
    """USERHOST: up to five ``nick=+user@host`` entries (``-`` when away, ``nick*`` an oper)."""
    entries = []
    for nick in list(nicks)[:5]:
        found = registry.find_user(nick)
        if found is not None:
            here = "-" if found.away is not None else "+"
            oper = "*" if found.oper else ""  # RFC 2812 RPL_USERHOST: '*' for an operator
            entries.append(f"{found.nick}{oper}={here}{found.user}@{found.host}")
    return [registry.reply(user, "302", " ".join(entries))]


def version(registry: Registry, user: User) -> list:
    """VERSION: 351 and the ISUPPORT lines."""
    return [registry.reply(user, "351", VERSION, registry.server_name, "twistchat chat server")] \
        + isupport_replies(registry, user)


def server_time(registry: Registry, user: User) -> list:
    """TIME: 391 with the server's local time."""
    now = registry.clock()
    return [registry.reply(user, "391", registry.server_name, str(int(now)), "0",
                        _time.strftime("%A %B %d %Y -- %H:%M:%S %z", _time.localtime(now)))]
