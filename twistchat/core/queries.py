"""
Questions about users and rooms: NAMES, WHO, WHOIS, LIST, LUSERS, MOTD, ISUPPORT...

test-case-name: tests.test_registry

Read-only answers, built from the registry's public methods (``find_user``,
``find_channel``, ``can_see``...): who may see what is decided there
(:meth:`Registry.can_see`), how the answer is written is decided here.
Numerics follow RFC 2812 section 5 and https://modern.ircdocs.horse/.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twistchat.core import modes
from twistchat.core.events import Delivery
from twistchat.core.model import CHANMODES, PREFIX_MODES, PREFIX_SYMBOLS, VERSION, Channel, User
from twistchat.wire import CHANTYPES, casefold

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
        "MAXLIST=b:100",
        f"TARGMAX=PRIVMSG:{lim.max_targets},NOTICE:{lim.max_targets}",
        f"NETWORK={registry.network}", "LINELEN=512", "STATUSMSG=@+",
        "KNOCK",  # the KNOCK command (core/invitations.py)
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
    out = [
        registry.reply(user, "251", f"There are {users} users and 0 invisible on 1 servers"),
        registry.reply(user, "252", "0", "operator(s) online"),
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
    """NAMES for one room: 353 lines that fit 512 bytes, then 366."""
    channel = registry.find_channel(name)
    out = []
    if channel is not None and registry.can_see(user, channel):
        names = [channel.prefix(m, multi_prefix) + (m.source if userhost else m.nick)
                 for m in channel.members]
        head = f":{registry.server_name} 353 {user.nick} = {channel.name} :"
        room = 510 - len(head.encode("utf-8"))
        line: list = []
        size = 0
        for entry in names:
            if line and size + len(entry) + 1 > room:
                out.append(registry.reply(user, "353", "=", channel.name, " ".join(line)))
                line, size = [], 0
            line.append(entry)
            size += len(entry) + 1
        if line:
            out.append(registry.reply(user, "353", "=", channel.name, " ".join(line)))
    shown = channel.name if channel is not None else name
    out.append(registry.reply(user, "366", shown, "End of /NAMES list"))
    return out


def list_channels(registry: Registry, user: User, names: list | None = None) -> list:
    """LIST: 321, one 322 per room (all, or the ones named), 323."""
    out = [registry.reply(user, "321", "Channel", "Users  Name")]
    if names is None:
        channels = registry.rooms()
    else:
        channels = [c for c in (registry.find_channel(n) for n in names) if c is not None]
    for channel in channels:
        out.append(registry.reply(user, "322", channel.name, str(len(channel.members)),
                               channel.topic))
    out.append(registry.reply(user, "323", "End of /LIST"))
    return out


def who(registry: Registry, user: User, mask: str, multi_prefix: bool = False) -> list:
    """
    WHO for a room, or a mask of nicks: 352 per match, then 315.

    A room lists its members (if the asker may see them).  Any other mask is
    matched, ``*`` and ``?`` as wildcards under the server's case mapping,
    against each user's nick, user name, host and real name; ``*`` and ``0``
    match everyone.  Users with ``+i`` are listed only to those who share a
    room with them (RFC 2812 3.6.1; as Ergo and InspIRCd do).
    """
    out = []
    channel = registry.find_channel(mask) if mask[:1] in CHANTYPES else None
    if channel is not None:
        if registry.can_see(user, channel):
            for member in channel.members:
                out.append(_who_line(registry, user, member, channel, multi_prefix))
    elif mask[:1] not in CHANTYPES:
        matches = mask_matcher("*" if mask in ("", "0") else mask)
        for found in registry.users():
            if found.invisible and found is not user and not _share_a_room(user, found):
                continue
            if any(matches(field) for field in (found.nick, found.user, found.host,
                                                   found.realname)):
                out.append(_who_line(registry, user, found, None, multi_prefix))
    out.append(registry.reply(user, "315", mask, "End of WHO list"))
    return out


def mask_matcher(mask: str) -> Callable[[str], bool]:
    """A test of a name against an IRC mask (``*``, ``?``), case folded (rfc1459)."""
    pattern = re.compile("".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in casefold(mask)),
        re.DOTALL)
    return lambda name: pattern.fullmatch(casefold(name)) is not None


def _share_a_room(one: User, other: User) -> bool:
    return not one.channels.keys().isdisjoint(other.channels.keys())


def _who_line(registry: Registry, asker: User, member: User, channel: Channel | None,
              multi_prefix: bool = False) -> Delivery:
    flags = "G" if member.away is not None else "H"
    if member.bot:
        flags += "B"  # IRCv3 bot mode: the BOT=B letter among the WHO flags
    if channel is not None:
        flags += channel.prefix(member, multi_prefix)
    return registry.reply(asker, "352", channel.name if channel else "*", member.user,
                          member.host, registry.server_name, member.nick, flags,
                          f"0 {member.realname}")


def whois(registry: Registry, user: User, nick: str) -> list:
    """WHOIS: 311, 319, 312, 301, 317, 318 (or 401 + 318)."""
    target = registry.find_user(nick)
    if target is None:
        return [registry.reply(user, "401", nick, "No such nick/channel"),
                registry.reply(user, "318", nick, "End of /WHOIS list")]
    out = [registry.reply(user, "311", target.nick, target.user, target.host, "*",
                       target.realname)]
    rooms = [c.prefix(target) + c.name for c in target.channels.values()
             if registry.can_see(user, c)]
    if rooms:
        out.append(registry.reply(user, "319", target.nick, " ".join(rooms)))
    out.append(registry.reply(user, "312", target.nick, registry.server_name, "twistchat"))
    if target.bot:
        out.append(registry.reply(user, "335", target.nick, f"is a Bot on {registry.network}"))
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
    """USERHOST: up to five ``nick=+user@host`` entries (``-`` when away)."""
    entries = []
    for nick in list(nicks)[:5]:
        found = registry.find_user(nick)
        if found is not None:
            here = "-" if found.away is not None else "+"
            entries.append(f"{found.nick}={here}{found.user}@{found.host}")
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
