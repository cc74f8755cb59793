"""
The services: pseudo-users that answer ``PRIVMSG <service> :<command>``.

test-case-name: tests.test_services

Both front-ends (TCP and UDP) ask :meth:`Services.addressed` of each line and
hand the lines it claims to :meth:`Services.route`: ``PRIVMSG NickServ :text``
or the verb ``NS text``, and ``PRIVMSG ChanServ :text`` or ``CS text``.  A
service answers with deliveries now or a Deferred of them (NickServ: a password
check runs off the reactor thread; ChanServ answers at once).  The services sit
above ``auth`` and the core and below the front-ends (setup.cfg's layers).
Design: docs/accounts.md (issue #14).
"""

from __future__ import annotations

from twistchat.auth import Authenticator
from twistchat.core.registry import Registry, User
from twistchat.services import chanserv
from twistchat.services.nickserv import Answer, NickServ
from twistchat.wire import Message, casefold

__all__ = ["Answer", "Services"]

# The pseudo-users by casefolded nick, and the short verbs that address them.
_NICKSERV, _CHANSERV = casefold("NickServ"), casefold("ChanServ")
_VERBS = {"NS": _NICKSERV, "CS": _CHANSERV}


class Services:
    """The services of one registry: which lines are theirs, and their answers."""

    def __init__(self, registry: Registry, authenticator: Authenticator) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.nickserv = NickServ(registry, authenticator)

    def addressed(self, message: Message) -> bool:
        """Is ``message`` for a service (``PRIVMSG NickServ :...``, ``NS ...``, ChanServ's)?"""
        return self._service_of(message) is not None

    def route(self, user: User, message: Message, certfp: str | None = None) -> Answer:
        """The answer to a line :meth:`addressed` claimed; ``certfp``: the TLS client cert."""
        service = self._service_of(message)
        text = " ".join(message.params) if message.verb in _VERBS else message.params[1]
        if service == _CHANSERV:
            return chanserv.handle(self.registry, user, text)
        return self.nickserv.handle(user, text, certfp)

    def _service_of(self, message: Message) -> str | None:
        verb, params = message.verb, message.params
        if verb in _VERBS:
            return _VERBS[verb]
        if verb == "PRIVMSG" and len(params) > 1 and casefold(params[0]) in (_NICKSERV,
                                                                             _CHANSERV):
            return casefold(params[0])
        return None
