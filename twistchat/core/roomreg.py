"""
Registered rooms: a founder, op and voice per account (AMODE), the room's state kept.

test-case-name: tests.test_roomreg, tests.test_chanserv

What a teacher needs of her room: when it empties, or the server restarts, it
comes back as she left it, with its topic, its modes, its bans, and her
operator status.  A :class:`RegisteredRoom` holds what is kept: the founder's
account, the AMODE list (casefolded account -> ``"o"`` or ``"v"``), and a copy
of the room's topic, flag modes (``CHANMODES`` kind D), key, limit and mask
lists (+b +e +I, each mask with who set it and when, as :mod:`lists` holds
them).  A :class:`RoomDirectory` holds every registered room, in memory; each
change is handed to ``saver`` (the service wires it to the store), as the
:class:`~twistchat.core.accounts.AccountDirectory` does.

The rules (as Ergo's registered channels, ``irc/channel.go``):

- when a registered room is made (its first JOIN after it emptied, or after a
  restart) the saved state is applied to it *before* the joiner is let in:
  its bans hold for the first joiner too;
- no one becomes operator by being first into a registered room: the founder
  and the AMODE accounts get their ``+o`` / ``+v`` on JOIN, and when one of them
  logs in while in the room, told to the room as a ``MODE`` from the server;
- the founder and the AMODE accounts pass ``+b +i +k +l`` (Ergo: a user with a
  persistent mode "has privileges" and skips those checks), so a teacher is
  never locked out of her own room;
- every change of a registered room's topic, modes or lists is saved at once
  (:meth:`RoomDirectory.channel_changed`, called by the registry where a topic
  is set and where a MODE applied something);
- an unregistered room behaves as it always did.

Design and the division of work: docs/accounts.md (issue #14).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twistchat.core import lists
from twistchat.core.events import Delivery
from twistchat.core.model import FLAG_MODES, PREFIX_MODES, Channel, User
from twistchat.wire import Message, casefold

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["AMODES", "MAX_AMODES", "MAX_ROOMS_PER_ACCOUNT", "RegisteredRoom", "RoomDirectory",
           "RoomSaver", "auto_modes", "on_join", "on_log_in", "set_prefixes"]

# The persistent modes an account may hold in a registered room (ChanServ AMODE).
AMODES = ("o", "v")
# The most accounts one room's AMODE list holds: a class and its helpers, not a city.
MAX_AMODES = 100
# The most rooms one account may found (Ergo's default max-channels-per-account: 15).
MAX_ROOMS_PER_ACCOUNT = 15
# One MODE line gives at most this many prefix modes (ISUPPORT MODES=4, core/modes.py).
_MODES_PER_LINE = 4

Entries = dict[str, tuple[str, int]]


@dataclass
class RegisteredRoom:
    """
    One registered room: who founded it, who gets op or voice, the state it keeps.

    ``founder`` is the founder's account name (as spelled at registration);
    ``amodes`` maps casefolded account names to ``"o"`` or ``"v"``; the rest is
    the room's own state (:class:`~twistchat.core.model.Channel`): ``flags``
    the flag letters set (``"nt"``), ``password`` the key (+k), ``limit`` +l,
    ``bans``/``excepts``/``invex`` mask -> (set by, when).
    """

    name: str
    founder: str
    registered: float = 0.0
    amodes: dict[str, str] = field(default_factory=dict)
    created: int = 0
    topic: str = ""
    topic_by: str = ""
    topic_time: int = 0
    flags: str = "nt"
    password: str | None = None
    limit: int | None = None
    bans: Entries = field(default_factory=dict)
    excepts: Entries = field(default_factory=dict)
    invex: Entries = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The casefolded name: the room's key, as the registry's."""
        return casefold(self.name)

    def is_founder(self, account: str | None) -> bool:
        """Is ``account`` (any case; None: not logged in) this room's founder?"""
        return account is not None and casefold(account) == casefold(self.founder)

    def amode_of(self, account: str | None) -> str:
        """The mode ``account`` gets here: ``"o"`` (founder, AMODE +o), ``"v"`` or ``""``."""
        if account is None:
            return ""
        if self.is_founder(account):
            return "o"
        return self.amodes.get(casefold(account), "")

    def capture(self, channel: Channel) -> None:
        """Copy ``channel``'s topic, modes and lists into this record."""
        self.created = channel.created
        self.topic, self.topic_by, self.topic_time = (
            channel.topic, channel.topic_by, channel.topic_time)
        self.flags = "".join(c for c, attr in FLAG_MODES.items() if getattr(channel, attr))
        self.password, self.limit = channel.password, channel.limit
        for letter in lists.LIST_MODES:
            setattr(self, lists.LIST_MODES[letter].attribute,
                    dict(lists.entries(channel, letter)))

    def restore(self, channel: Channel) -> None:
        """Give ``channel`` (just made) the saved topic, modes and lists."""
        channel.name = self.name
        if self.created:
            channel.created = self.created
        channel.topic, channel.topic_by, channel.topic_time = (
            self.topic, self.topic_by, self.topic_time)
        for letter, attribute in FLAG_MODES.items():
            setattr(channel, attribute, letter in self.flags)
        channel.password, channel.limit = self.password, self.limit
        for mode in lists.LIST_MODES.values():
            setattr(channel, mode.attribute, dict(getattr(self, mode.attribute)))

    def to_record(self) -> dict[str, Any]:
        """What the store keeps of the room (JSON-ready; the store does not look inside)."""
        record: dict[str, Any] = {
            "name": self.name, "founder": self.founder, "registered": self.registered,
            "amodes": dict(sorted(self.amodes.items())), "created": self.created,
            "topic": self.topic, "topic_by": self.topic_by, "topic_time": self.topic_time,
            "flags": self.flags, "password": self.password, "limit": self.limit,
        }
        for mode in lists.LIST_MODES.values():
            held: Entries = getattr(self, mode.attribute)
            record[mode.attribute] = [[mask, by, when] for mask, (by, when) in held.items()]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RegisteredRoom:
        """
        The room a stored record describes (:meth:`to_record`'s inverse).

        What could not have been saved is dropped rather than trusted: AMODEs
        other than o and v, flag letters we do not know, a limit below 1.
        """
        limit = record.get("limit")
        password = record.get("password")
        room = cls(
            str(record["name"]), str(record["founder"]), float(record.get("registered", 0.0)),
            {casefold(str(account)): str(mode)
             for account, mode in dict(record.get("amodes", {})).items() if mode in AMODES},
            int(record.get("created", 0)), str(record.get("topic", "")),
            str(record.get("topic_by", "")), int(record.get("topic_time", 0)),
            "".join(c for c in FLAG_MODES if c in str(record.get("flags", "nt"))),
            None if password is None else str(password),
            int(limit) if limit is not None and int(limit) >= 1 else None)
        for mode in lists.LIST_MODES.values():
            setattr(room, mode.attribute, {str(mask): (str(by), int(when))
                                           for mask, by, when in record.get(mode.attribute, ())})
        return room


# Told of every change: (casefolded room name, the room now, or None when it was dropped).
RoomSaver = Callable[[str, "RegisteredRoom | None"], None]


class RoomDirectory:
    """Every registered room, by casefolded name."""

    def __init__(self, rooms: Iterable[RegisteredRoom] = (),
                 saver: RoomSaver | None = None) -> None:
        self._by_key: dict[str, RegisteredRoom] = {room.key: room for room in rooms}
        self.saver = saver  # set by the service once the store is open

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[RegisteredRoom]:
        return iter(list(self._by_key.values()))

    def find(self, name: str) -> RegisteredRoom | None:
        """The registered room called ``name`` (any case), or None."""
        return self._by_key.get(casefold(name))

    def founded_by(self, account: str) -> list[RegisteredRoom]:
        """The rooms ``account`` (any case) founded (what MAX_ROOMS_PER_ACCOUNT bounds)."""
        return [room for room in self._by_key.values() if room.is_founder(account)]

    def add(self, room: RegisteredRoom) -> None:
        """A newly registered room; ``ValueError`` if it is registered already."""
        if room.key in self._by_key:
            raise ValueError(f"room {room.name} is registered")
        self._by_key[room.key] = room
        self._save(room.key, room)

    def changed(self, room: RegisteredRoom) -> None:
        """``room`` (already in the directory) was changed in place: save it."""
        self._save(room.key, room)

    def remove(self, name: str) -> RegisteredRoom | None:
        """Drop the registration of ``name``; the room dropped, or None."""
        room = self._by_key.pop(casefold(name), None)
        if room is not None:
            self._save(room.key, None)
        return room

    def forget_account(self, name: str) -> list[RegisteredRoom]:
        """
        Account ``name`` was dropped: its rooms are unregistered, its AMODEs removed.

        Else whoever registered the name again would found its rooms (Ergo, too,
        unregisters a dropped account's channels).  The rooms unregistered.
        """
        folded = casefold(name)
        dropped = [room for room in self if room.is_founder(name)]
        for room in dropped:
            self.remove(room.name)
        for room in self:
            if room.amodes.pop(folded, None) is not None:
                self._save(room.key, room)
        return dropped

    def restore(self, channel: Channel) -> RegisteredRoom | None:
        """``channel`` was just made: if it is registered, give it its saved state."""
        room = self._by_key.get(channel.key)
        if room is not None:
            room.restore(channel)
        return room

    def channel_changed(self, channel: Channel) -> None:
        """``channel``'s topic, modes or lists changed: if it is registered, save them."""
        room = self._by_key.get(channel.key)
        if room is not None:
            room.capture(channel)
            self._save(room.key, room)

    def amode_of(self, channel: Channel, user: User) -> str:
        """The persistent mode ``user``'s account holds in ``channel`` (``""``: none)."""
        room = self._by_key.get(channel.key)
        return "" if room is None else room.amode_of(user.account)

    def _save(self, key: str, room: RegisteredRoom | None) -> None:
        if self.saver is not None:
            self.saver(key, room)


def set_prefixes(registry: Registry, channel: Channel,
                 changes: Iterable[tuple[bool, str, User]], source: str) -> list[Delivery]:
    """
    Give (True) or take (False) prefix modes of members, told to the room as MODE from ``source``.

    Changes that change nothing (a mode held already, a user not in the room)
    are left out; at most MODES=4 per MODE line, as a client's would be.
    """
    applied: list[tuple[str, str, str]] = []
    for on, letter, member in changes:
        held = channel.members.get(member)
        if held is None or on == (letter in held):
            continue
        channel.members[member] = (
            "".join(m for m in PREFIX_MODES if m in held or m == letter) if on
            else held.replace(letter, ""))
        applied.append(("+" if on else "-", letter, member.nick))
    out = []
    for start in range(0, len(applied), _MODES_PER_LINE):
        text, last, nicks = "", "", []
        for sign, letter, nick in applied[start:start + _MODES_PER_LINE]:
            if sign != last:
                text, last = text + sign, sign
            text += letter
            nicks.append(nick)
        out.append(registry.announce(channel, Message("MODE", (channel.name, text, *nicks),
                                                      source)))
    return out


def auto_modes(registry: Registry, channel: Channel, users: Iterable[User]) -> list[Delivery]:
    """The founder's and AMODE accounts' ``+o`` / ``+v`` for ``users`` here, if missing."""
    room = registry.registered_rooms.find(channel.key)
    if room is None:
        return []
    changes = [(True, mode, user) for user in users for mode in room.amode_of(user.account)]
    return set_prefixes(registry, channel, changes, registry.server_name)


def on_join(registry: Registry, channel: Channel, user: User) -> list[Delivery]:
    """``user`` just joined ``channel``: its account's modes there, if it is registered."""
    return auto_modes(registry, channel, (user,))


def on_log_in(registry: Registry, user: User) -> list[Delivery]:
    """``user`` just logged in: its account's modes in each registered room it is in."""
    out = []
    for channel in list(user.channels.values()):
        out += auto_modes(registry, channel, (user,))
    return out
