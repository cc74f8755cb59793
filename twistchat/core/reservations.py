"""
Reserved nicks: an account's name is a nick only that account may keep.

test-case-name: tests.test_account_rules

The rule (issue #14, as Ergo's ``nick-reservation`` with ``method: timeout``):
a user who takes a nick an account reserves (:meth:`AccountDirectory.owner_of`)
without being logged in as that account is told at once, in a NOTICE from
NickServ, and gets a deadline ``Limits.nick_grace`` seconds away (``--nick-grace``,
30 by default).  Logging in as the owner, or moving to a nick nobody reserves,
lifts the deadline.  :func:`enforce` (the service runs it every second) renames
each user still on a nick not its own at or after its deadline to a free
``Guest<digits>``, as an ordinary NICK change its peers and itself see.

- "at or after": a deadline ``t`` is due when ``now >= t`` (the user had its
  ``nick_grace`` seconds, not one tick more).
- A user who hops from one reserved nick to another (or to the same one in
  another case) keeps the deadline it already has, so hopping does not buy time.
- Logging out while on one's own account's nick starts the grace period too: the
  nick is the account's, not the connection's.

Pure rules, no clock of their own: ``now`` is an argument or the registry's clock.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import User
from twistchat.wire import Message, casefold

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["GUEST_PREFIX", "NICKSERV", "NICKSERV_SOURCE", "NickReservations", "enforce",
           "guest_nick", "on_nick"]

# The services pseudo-user's name and the source of its lines (docs/accounts.md).
NICKSERV = "NickServ"
NICKSERV_SOURCE = "NickServ!NickServ@services."
# Renamed users become GUEST_PREFIX + digits (Ergo: "Guest-", most networks "Guest").
GUEST_PREFIX = "Guest"


class NickReservations:
    """The users on a nick reserved by another account, waiting for their deadline."""

    __slots__ = ("pending", "_guests")

    def __init__(self) -> None:
        self.pending: dict[User, None] = {}  # users whose nick_deadline is set
        self._guests = itertools.count(1)  # the next Guest number to try

    def next_guest(self) -> int:
        """The next number to try for a Guest nick."""
        return next(self._guests)


def _notice(user: User, text: str) -> Delivery:
    return Delivery((user,), Message("NOTICE", (user.nick, text), NICKSERV_SOURCE))


def _taken_by_other(registry: Registry, user: User) -> bool:
    """Is ``user``'s nick reserved by an account ``user`` is not logged in as?"""
    owner = registry.accounts.owner_of(user.nick)
    return owner is not None and (user.account is None
                                  or casefold(user.account) != owner.key)


def on_nick(registry: Registry, user: User) -> list[Delivery]:
    """
    ``user`` (registered) has a new nick, or logged in or out: start or lift its deadline.

    Answers the NickServ NOTICE when a deadline starts; nothing otherwise.
    """
    if not user.registered:
        return []
    if not _taken_by_other(registry, user):
        user.nick_deadline = None
        registry.reservations.pending.pop(user, None)
        return []
    now = registry.clock()
    if user.nick_deadline is None:
        user.nick_deadline = now + registry.limits.nick_grace
        registry.reservations.pending[user] = None
    seconds = max(math.ceil(user.nick_deadline - now), 0)
    return [_notice(user, f"This nickname is registered. Identify within {seconds} seconds "
                          "or it will be changed")]


def guest_nick(registry: Registry) -> str:
    """A ``Guest<digits>`` nick nobody uses and no account reserves."""
    while True:
        nick = f"{GUEST_PREFIX}{registry.reservations.next_guest()}"
        if registry.find_user(nick) is None and registry.accounts.owner_of(nick) is None:
            return nick


def enforce(registry: Registry, now: float) -> list[Delivery]:
    """
    Rename every user whose deadline is due (``now >= deadline``) and who is still on
    a nick reserved by another account, to a free ``Guest<digits>``.

    The NICK line goes to the user and its peers (:meth:`Registry.change_nick`),
    then a NickServ NOTICE says why.  Users who left, identified or moved on are
    forgotten.
    """
    pending = registry.reservations.pending
    out: list[Delivery] = []
    for user in list(pending):
        deadline = user.nick_deadline
        if not (user.connected and user.registered) or deadline is None \
                or not _taken_by_other(registry, user):
            user.nick_deadline = None
            del pending[user]
            continue
        if now < deadline:
            continue
        old = user.nick
        guest = guest_nick(registry)
        renamed = registry.change_nick(user, guest)
        if user.nick != guest:  # refused (a NICKLEN too short for Guest nicks): try later
            user.nick_deadline = now + registry.limits.nick_grace
            continue
        out += renamed
        out.append(_notice(user, f"Your nickname {old} is registered to another account: "
                                 f"you are now {guest}"))
    return out
