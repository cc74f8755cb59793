"""
WHOWAS: who used a nick lately, kept in a bounded history of nicks let go.

test-case-name: tests.test_servercmds

The registry records a user's identity (nick, user, host, real name) when it
lets a nick go: on QUIT, and the old nick on a NICK change
(:meth:`NickHistory.record`, one call each in :meth:`Registry.quit` and
:meth:`Registry.change_nick`), whichever front-end served the user.

https://modern.ircdocs.horse/#whowas-message: the history "is searched
backward, returning the most recent entry first"; "up to <count> replies will be
returned (or all of them if no <count> parameter is given)"; a <count> that is
not a positive number means a full search.  Each entry is a 314 RPL_WHOWASUSER
``<nick> <username> <host> * :<realname>`` and a 312 RPL_WHOISSERVER ``<nick>
<server> :<when>`` (as InspIRCd and Solanum answer); an unknown nick gets 406
ERR_WASNOSUCHNICK; both end with 369 RPL_ENDOFWHOWAS.  No nick: 431
ERR_NONICKNAMEGIVEN ("a single reply").

Bounds (:class:`~twistchat.core.model.Limits`): ``whowas`` entries in all,
the oldest forgotten first, and ``whowas_per_nick`` entries per nick.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from twistchat.core.events import Delivery
from twistchat.core.model import User
from twistchat.wire import casefold, is_decimal

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["NickHistory", "WhowasEntry", "whowas"]


class WhowasEntry(NamedTuple):
    """One nick let go: who had it, and when (seconds since the epoch)."""

    nick: str
    user: str
    host: str
    realname: str
    when: float


class NickHistory:
    """
    The nicks let go lately: at most ``total`` entries, ``per_nick`` for one nick.

    Entries are numbered as they come; ``_order`` holds ``(key, number)`` oldest
    first and is never longer than ``total``, so the memory is bounded even when
    one nick churns (its older entries, dropped by ``per_nick``, leave numbers
    in ``_order`` that are simply skipped when they reach its front).
    """

    __slots__ = ("_by_nick", "_next", "_order", "per_nick", "total")

    def __init__(self, total: int, per_nick: int) -> None:
        self.total = total
        self.per_nick = per_nick
        self._by_nick: dict[str, deque[tuple[int, WhowasEntry]]] = {}  # key -> oldest first
        self._order: deque[tuple[str, int]] = deque()
        self._next = 0

    def __len__(self) -> int:
        """Entries kept now."""
        return sum(len(entries) for entries in self._by_nick.values())

    def record(self, user: User, now: float) -> None:
        """``user`` lets its current nick go (quit, or a nick change): remember who it was."""
        if self.total <= 0 or self.per_nick <= 0:
            return
        key, number = user.key or casefold(user.nick), self._next
        self._next += 1
        entries = self._by_nick.setdefault(key, deque())
        entries.append((number, WhowasEntry(user.nick, user.user, user.host, user.realname,
                                            now)))
        if len(entries) > self.per_nick:
            entries.popleft()
        self._order.append((key, number))
        while len(self._order) > self.total:
            old_key, old_number = self._order.popleft()
            old = self._by_nick.get(old_key)
            if old and old[0][0] == old_number:
                old.popleft()
                if not old:
                    del self._by_nick[old_key]

    def lookup(self, nick: str, count: int | None = None) -> list[WhowasEntry]:
        """Who had ``nick`` (any case), newest first; at most ``count`` (None: all)."""
        entries = [entry for _, entry in reversed(self._by_nick.get(casefold(nick), ()))]
        return entries if count is None else entries[:count]


def whowas(registry: Registry, user: User, nick: str, count: str | None = None) -> list[Delivery]:
    """WHOWAS ``nick`` [``count``]: 314 + 312 per entry, newest first, or 406; then 369."""
    if not nick:
        return [registry.reply(user, "431", "No nickname given")]
    # "If given, <count> SHOULD be a positive number. Otherwise, a full search is done."
    limit = int(count) if count is not None and is_decimal(count) and int(count) > 0 else None
    entries = registry.nick_history.lookup(nick, limit)
    if not entries:
        return [registry.reply(user, "406", nick, "There was no such nickname"),
                registry.reply(user, "369", nick, "End of WHOWAS")]
    out = []
    for entry in entries:
        out.append(registry.reply(user, "314", entry.nick, entry.user, entry.host, "*",
                                  entry.realname))
        out.append(registry.reply(user, "312", entry.nick, registry.server_name,
                                  time.strftime("%a %b %d %H:%M:%S %Y UTC",
                                                time.gmtime(entry.when))))
    out.append(registry.reply(user, "369", nick, "End of WHOWAS"))
    return out
