"""
A room's mask lists: bans (+b), ban exceptions (+e), invite exceptions (+I).

test-case-name: tests.test_chanmodes

The three are CHANMODES type A (``CHANMODES=beI,...``): always a parameter, a
mask; without one, MODE shows the list.  What each list means is the
registry's rule (:meth:`Registry.is_banned`, :meth:`Registry.can_join`); this
module says where each list is kept, who may see it, how it is shown and how
long the lists may grow (https://modern.ircdocs.horse/, "Channel Modes"):

- ``+b`` ban: a matching user may not join, nor speak unless voiced (as Ergo);
- ``+e`` ban exception (ISUPPORT ``EXCEPTS=e``): a user matching one is not banned;
- ``+I`` invite exception (ISUPPORT ``INVEX=I``): a matching user may join a
  ``+i`` room without an INVITE (it lifts ``+i`` only, not a ban or a key).

Who may see a list: anyone may see ``+b`` (clients ask for it on join); ``+e``
and ``+I`` only the room's operators (482 to others), as Solanum and Ergo do:
they tell who gets round a ban or ``+i``.  Each entry carries who set it and
when, as RPL_BANLIST does (InspIRCd and Ergo send the two for all three lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import Channel, User
from twistchat.wire import casefold

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["LIST_MODES", "MAX_LIST", "ListMode", "entries", "find", "listing", "total"]


@dataclass(frozen=True)
class ListMode:
    """One list mode: the Channel attribute that holds it, its numerics, who may see it."""

    attribute: str  # Channel attribute: dict mask -> (set by, when)
    entry: str  # one numeric per mask
    end: str  # then this one
    end_text: str
    ops_only: bool  # only the room's operators may see the list


LIST_MODES = {
    # RPL_BANLIST / RPL_ENDOFBANLIST
    "b": ListMode("bans", "367", "368", "End of channel ban list", ops_only=False),
    # RPL_EXCEPTLIST / RPL_ENDOFEXCEPTLIST
    "e": ListMode("excepts", "348", "349", "End of channel exception list", ops_only=True),
    # RPL_INVITELIST / RPL_ENDOFINVITELIST
    "I": ListMode("invex", "346", "347", "End of channel invite exception list",
                  ops_only=True),
}

# ISUPPORT MAXLIST=beI:100: the most masks one room keeps in its three lists together
# (a room's memory is bounded however its operators share it out).  Past it:
# ERR_BANLISTFULL (478) "<channel> <char> :Channel list is full".
MAX_LIST = 100


def entries(channel: Channel, letter: str) -> dict[str, tuple[str, int]]:
    """The list of mode ``letter`` (b, e or I) of ``channel``: mask -> (set by, when)."""
    held: dict[str, tuple[str, int]] = getattr(channel, LIST_MODES[letter].attribute)
    return held


def total(channel: Channel) -> int:
    """How many masks ``channel`` keeps in all its lists (what MAXLIST bounds)."""
    return sum(len(entries(channel, letter)) for letter in LIST_MODES)


def find(held: dict[str, tuple[str, int]], mask: str) -> str | None:
    """The mask of ``held`` equal to ``mask`` under rfc1459 folding, or None."""
    folded = casefold(mask)
    return next((m for m in held if casefold(m) == folded), None)


def listing(registry: Registry, user: User, channel: Channel, letter: str) -> list[Delivery]:
    """``MODE #room b`` (or e, I): one entry numeric per mask, then the end numeric."""
    mode = LIST_MODES[letter]
    if mode.ops_only and not registry.is_operator(user, channel):
        return [registry.reply(user, "482", channel.name, "You're not channel operator")]
    out = [registry.reply(user, mode.entry, channel.name, mask, by, str(when))
           for mask, (by, when) in entries(channel, letter).items()]
    out.append(registry.reply(user, mode.end, channel.name, mode.end_text))
    return out
