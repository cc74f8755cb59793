"""
Invitations a user holds (INVITE with no parameter) and asking for one (KNOCK).

test-case-name: tests.test_servercmds

Rules without I/O.  Who may INVITE, and what an invitation lets in, stay in
the registry (:meth:`Registry.invite`, :meth:`Registry.can_join`); this module
reads ``User.invited_to`` and asks the registry's permission methods.

INVITE with no parameter (https://modern.ircdocs.horse/#invite-message,
"Invite list"): "reply with a list of channels the sender is invited to as
RPL_INVITELIST (336) numerics, ending with a RPL_ENDOFINVITELIST (337) numeric":
336 ``<client> <channel>``, 337 ``<client> :End of /INVITE list``.

KNOCK ``<channel> [:<message>]`` (not in modern.ircdocs.horse; as
Hybrid/Ratbox/Solanum do it, numerics 710-714 of their ``messages.h``):

- 710 RPL_KNOCK ``<channel> <nick>!<user>@<host> :has asked for an invite.``
  to each operator of the room;
- 711 RPL_KNOCKDLVR ``<channel> :Your KNOCK has been delivered.`` to the knocker;
- 712 ERR_TOOMANYKNOCK ``<channel> :Too many KNOCKs (user).``: one KNOCK per user
  per room each ``Limits.knock_interval`` seconds;
- 713 ERR_CHANOPEN ``<channel> :Channel is open.``: a room anyone may join
  (not +i, no key, not full) needs no knock;
- 714 ERR_KNOCKONCHAN ``<channel> :You are already on that channel.``;
- 403 for no such room, and 404 for a banned user (as Solanum refuses them:
  a ban keeps its holder from pestering the operators too).

ISUPPORT advertises ``KNOCK``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import User

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["KNOCK_TEXT", "Knocks", "invite_list", "knock"]

# Bytes of a KNOCK's message passed on to the operators: the 710 line must fit 512 bytes
# with a long room name and nick!user@host (the rest is cut, as a topic is at TOPICLEN).
KNOCK_TEXT = 200


def invite_list(registry: Registry, user: User) -> list[Delivery]:
    """INVITE with no parameter: 336 per room ``user`` is invited to (and still exists), 337."""
    rooms = sorted(channel.name for channel in user.invited_to or ()
                   if registry.find_channel(channel.name) is channel)
    return [*(registry.reply(user, "336", name) for name in rooms),
            registry.reply(user, "337", "End of /INVITE list")]


class Knocks:
    """
    When each user last knocked on each room, for ``interval`` seconds.

    Kept oldest first, so stale entries are dropped from the front as new ones
    come: the memory is the knocks of the last ``interval`` seconds only.
    """

    __slots__ = ("_last", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: OrderedDict[tuple[User, str], float] = OrderedDict()

    def allow(self, user: User, room_key: str, now: float) -> bool:
        """May ``user`` knock on room ``room_key`` now?  If so, it is counted."""
        while self._last:
            first, when = next(iter(self._last.items()))
            if now - when < self.interval:
                break
            del self._last[first]
        if (user, room_key) in self._last:
            return False
        self._last[(user, room_key)] = now
        return True


def knock(registry: Registry, user: User, name: str, text: str = "") -> list[Delivery]:
    """KNOCK ``name`` [``text``]: ask the operators of a closed room for an invitation."""
    channel = registry.find_channel(name)
    if channel is None:
        return [registry.reply(user, "403", name, "No such channel")]
    if user in channel.members:
        return [registry.reply(user, "714", channel.name, "You are already on that channel.")]
    full = channel.limit is not None and len(channel.members) >= channel.limit
    if not (channel.invite_only or channel.password is not None or full):
        return [registry.reply(user, "713", channel.name, "Channel is open.")]
    if registry.is_banned(user, channel):
        return [registry.reply(user, "404", channel.name, "Cannot knock on channel (+b)")]
    if not registry.knocks.allow(user, channel.key, registry.clock()):
        every = f"{registry.knocks.interval:g}"
        return [registry.reply(user, "712", channel.name,
                               f"Too many KNOCKs (user): one per room every {every} seconds.")]
    said = text.encode("utf-8")[:KNOCK_TEXT].decode("utf-8", "ignore")
    asked = f"has asked for an invite: {said}" if said else "has asked for an invite."
    out = [registry.reply(op, "710", channel.name, user.source, asked)
           for op in channel.members if registry.is_operator(op, channel)]
    out.append(registry.reply(user, "711", channel.name, "Your KNOCK has been delivered."))
    return out
