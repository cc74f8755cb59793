"""
Changes to who a registered user is shown as: real name (SETNAME), user and host (CHGHOST).

test-case-name: tests.test_caps

Rules without I/O, called by the registry (:meth:`Registry.set_realname`,
:meth:`Registry.change_host`).  The core tells everyone who shares a room with
the user (and the user itself); what a connection is shown is its front-end's
business: IRCv3 ``setname`` and ``chghost`` lines only to clients that
negotiated them (:data:`twistchat.frontends.ircv3.CAP_GATED`); monitoring
clients with ``extended-monitor`` hear them too (:mod:`twistchat.core.monitor`).

Specs: https://ircv3.net/specs/extensions/setname,
https://ircv3.net/specs/extensions/chghost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import User
from twistchat.wire import Message

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["change_host", "fail", "set_realname"]


def fail(registry: Registry, user: User, command: str, code: str, text: str) -> Delivery:
    """An IRCv3 standard reply ``FAIL <command> <code> :<text>`` to ``user``."""
    return Delivery((user,), Message("FAIL", (command, code, text), registry.server_name))


def set_realname(registry: Registry, user: User, realname: str) -> list[Delivery]:
    """
    ``SETNAME :realname``: a new real name, told to the user's peers and itself.

    Empty or longer than NAMELEN (UTF-8 bytes): ``FAIL SETNAME INVALID_REALNAME``
    and nothing changes (as InspIRCd and UnrealIRCd refuse, rather than cut).
    """
    limit = registry.limits.namelen
    if not realname.strip() or len(realname.encode("utf-8")) > limit:
        return [fail(registry, user, "SETNAME", "INVALID_REALNAME",
                     f"Realname must be 1 to {limit} bytes")]
    user.realname = realname
    line = Message("SETNAME", (realname,), user.source)
    return [Delivery(registry.peers(user), line), *registry.watchers_told(user, line)]


def change_host(registry: Registry, user: User, username: str, host: str) -> list[Delivery]:
    """
    A user's ``user@host`` changes (vhosts and accounts, issue #14): CHGHOST to its peers.

    Peers with ``chghost`` get ``:old!source CHGHOST <user> <host>`` (the user
    too, as the spec asks); peers without it get nothing, as the spec allows:
    the QUIT + JOIN fallback Ergo can send would add lines to every room's
    transcript and look like a reconnection, for a cosmetic change.  Their
    next line from the user shows the new source.
    """
    if (username, host) == (user.user, user.host):
        return []
    line = Message("CHGHOST", (username, host), user.source)
    user.user, user.host = username, host
    return [Delivery(registry.peers(user), line), *registry.watchers_told(user, line)]
