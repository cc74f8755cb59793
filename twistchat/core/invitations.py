"""
The invitations a user holds: INVITE with no parameter.

test-case-name: tests.test_servercmds

Rules without I/O.  Who may INVITE, and what an invitation lets in, stay in
the registry (:meth:`Registry.invite`, :meth:`Registry.can_join`); this module
reads ``User.invited_to`` and asks the registry's permission methods.

INVITE with no parameter (https://modern.ircdocs.horse/#invite-message,
"Invite list"): "reply with a list of channels the sender is invited to as
RPL_INVITELIST (336) numerics, ending with a RPL_ENDOFINVITELIST (337) numeric":
336 ``<client> <channel>``, 337 ``<client> :End of /INVITE list``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import User

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["invite_list"]


def invite_list(registry: Registry, user: User) -> list[Delivery]:
    """INVITE with no parameter: 336 per room ``user`` is invited to (and still exists), 337."""
    rooms = sorted(channel.name for channel in user.invited_to or ()
                   if registry.find_channel(channel.name) is channel)
    return [*(registry.reply(user, "336", name) for name in rooms),
            registry.reply(user, "337", "End of /INVITE list")]
