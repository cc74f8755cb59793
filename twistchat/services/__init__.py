"""
The services: pseudo-users that answer ``PRIVMSG <service> :<command>``.

test-case-name: tests.test_services

Both front-ends (TCP and UDP) ask :meth:`Services.addressed` of each line and
hand the lines it claims to :meth:`Services.route`: ``PRIVMSG NickServ :text``
and the verb ``NS text``.  A service answers with deliveries now or a Deferred
of them (a password check runs off the reactor thread).  The services sit
above ``auth`` and the core and below the front-ends (setup.cfg's layers).
ChanServ (registered rooms) is routed here by the branch that writes it.
Design: docs/accounts.md (issue #14).
"""

from __future__ import annotations

from twistchat.auth import Authenticator
from twistchat.core.registry import Registry, User
from twistchat.services.nickserv import Answer, NickServ
from twistchat.wire import Message, casefold

__all__ = ["Answer", "Services"]

_NICKSERV = casefold("NickServ")


class Services:
    """The services of one registry: which lines are theirs, and their answers."""

    def __init__(self, registry: Registry, authenticator: Authenticator) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.nickserv = NickServ(registry, authenticator)

    def addressed(self, message: Message) -> bool:
        """Is ``message`` for a service (``PRIVMSG NickServ :...`` or ``NS ...``)?"""
        verb, params = message.verb, message.params
        if verb == "NS":
            return True
        return verb == "PRIVMSG" and len(params) > 1 and casefold(params[0]) == _NICKSERV

    def route(self, user: User, message: Message, certfp: str | None = None) -> Answer:
        """The answer to a line :meth:`addressed` claimed; ``certfp``: the TLS client cert."""
        if message.verb == "NS":
            text = " ".join(message.params)
        else:
            text = message.params[1]
        return self.nickserv.handle(user, text, certfp)
