"""
MONITOR: each user's list of nicks to be told about, as they sign on and off.

test-case-name: tests.test_caps

IRCv3 https://ircv3.net/specs/extensions/monitor and ``extended-monitor``.
Lists are keyed by casefolded nick (the server's case mapping) and end with the
watcher's connection; the registry calls :meth:`Monitors.online` and
:meth:`Monitors.offline` when a nick is taken (registration, a nick change)
or let go (a nick change, quit).  Rules without I/O; replies are numerics:

- 730 RPL_MONONLINE ``<nick> :target!user@host[,...]``
- 731 RPL_MONOFFLINE ``<nick> :target[,...]``
- 732 RPL_MONLIST ``<nick> :target[,...]``, 733 RPL_ENDOFMONLIST
- 734 ERR_MONLISTFULL ``<nick> <limit> <targets> :Monitor list is full``

The limit is ISUPPORT ``MONITOR=<limit>`` (:attr:`Limits.monitor`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery, Gated
from twistchat.core.model import User, share_a_room
from twistchat.wire import Message, casefold, is_valid_nick

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["Monitors", "monitor"]

# Bytes of targets per 730-733 line: room for the prefix, numeric and nick in 512.
_LINE_ROOM = 400


class Monitors:
    """Every user's watch list, and who watches each nick."""

    __slots__ = ("_lists", "_watchers")

    def __init__(self) -> None:
        self._lists: dict[User, dict[str, str]] = {}  # watcher -> key -> nick as given
        self._watchers: dict[str, set[User]] = {}  # key -> watchers

    def watched_by(self, user: User) -> list[str]:
        """The nicks ``user`` watches, as it spelled them, in the order it added them."""
        return list(self._lists.get(user, {}).values())

    def watchers(self, nick: str) -> set[User]:
        """Who watches ``nick`` (any case)."""
        return self._watchers.get(casefold(nick), set())

    def add(self, user: User, nick: str) -> None:
        key = casefold(nick)
        self._lists.setdefault(user, {})[key] = nick
        self._watchers.setdefault(key, set()).add(user)

    def remove(self, user: User, nick: str) -> None:
        key = casefold(nick)
        targets = self._lists.get(user)
        if targets is None or key not in targets:
            return
        del targets[key]
        if not targets:
            del self._lists[user]
        watchers = self._watchers[key]
        watchers.discard(user)
        if not watchers:
            del self._watchers[key]

    def clear(self, user: User) -> None:
        """``MONITOR C``, or the watcher is gone."""
        for nick in self.watched_by(user):
            self.remove(user, nick)

    def online(self, registry: Registry, user: User) -> list[Delivery]:
        """``user`` holds its nick now: 730 to each of its watchers."""
        return [registry.reply(w, "730", user.source) for w in self.watchers(user.nick)
                if w is not user]

    def offline(self, registry: Registry, nick: str, user: User) -> list[Delivery]:
        """``nick`` is free now: 731 to each of its watchers."""
        return [registry.reply(w, "731", nick) for w in self.watchers(nick) if w is not user]

    def told(self, user: User, line: Message) -> list[Delivery]:
        """
        IRCv3 extended-monitor: ``line`` (AWAY, SETNAME, CHGHOST) about ``user``.

        To its watchers that do not already hear it by sharing a room, for
        connections with extended-monitor (and the line's own capability).
        """
        watchers = [w for w in self.watchers(user.nick)
                    if w is not user and not share_a_room(w, user)]
        return [Delivery(watchers, Gated("extended-monitor", line))] if watchers else []


def _lines(registry: Registry, user: User, code: str, entries: Iterable[str]) -> list[Delivery]:
    """``entries`` comma-joined over as many ``code`` lines as fit."""
    out: list[Delivery] = []
    line: list[str] = []
    size = 0
    for entry in entries:
        if line and size + 1 + len(entry.encode()) > _LINE_ROOM:
            out.append(registry.reply(user, code, ",".join(line)))
            line, size = [], 0
        size += (1 if line else 0) + len(entry.encode())
        line.append(entry)
    if line:
        out.append(registry.reply(user, code, ",".join(line)))
    return out


def _status(registry: Registry, user: User, nicks: Iterable[str]) -> list[Delivery]:
    """730 for those of ``nicks`` online (nick!user@host), 731 for the others."""
    on, off = [], []
    for nick in nicks:
        found = registry.find_user(nick)
        if found is not None:
            on.append(found.source)
        else:
            off.append(nick)
    return _lines(registry, user, "730", on) + _lines(registry, user, "731", off)


def monitor(registry: Registry, user: User, sub: str, targets: str | None) -> list[Delivery]:
    """
    ``MONITOR + a,b`` / ``- a`` / ``C`` / ``L`` / ``S``.

    ``+`` adds nicks (targets that are not nicks are skipped) up to the limit:
    their status at once (730/731); past the limit 734 names the ones left
    out.  ``-`` and ``C`` answer nothing; ``L`` lists (732, 733); ``S`` gives
    the status of every watched nick.
    """
    watch = registry.monitors
    sub = sub.upper()
    if sub in ("+", "-") and not targets:
        return [registry.reply(user, "461", "MONITOR", "Not enough parameters")]
    if sub == "+":
        limit = registry.limits.monitor
        known = {casefold(n) for n in watch.watched_by(user)}
        added: list[str] = []
        wanted = [t for t in (targets or "").split(",") if t]
        for i, nick in enumerate(wanted):
            if not is_valid_nick(nick, registry.limits.nicklen) or casefold(nick) in known:
                continue
            if len(known) >= limit:
                return _status(registry, user, added) + [registry.reply(
                    user, "734", str(limit), ",".join(wanted[i:]), "Monitor list is full")]
            watch.add(user, nick)
            known.add(casefold(nick))
            added.append(nick)
        return _status(registry, user, added)
    if sub == "-":
        for nick in (targets or "").split(","):
            if nick:
                watch.remove(user, nick)
        return []
    if sub == "C":
        watch.clear(user)
        return []
    if sub == "L":
        return _lines(registry, user, "732", watch.watched_by(user)) + [
            registry.reply(user, "733", "End of MONITOR list")]
    if sub == "S":
        return _status(registry, user, watch.watched_by(user))
    return [registry.reply(user, "461", "MONITOR", "Not enough parameters")]
