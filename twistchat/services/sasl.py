"""
SASL for any front-end: one connection's AUTHENTICATE exchanges (PLAIN, EXTERNAL).

test-case-name: tests.test_sasl, tests.test_services

https://ircv3.net/specs/extensions/sasl-3.1 and sasl-3.2: ``AUTHENTICATE
<mechanism>``, the server's ``AUTHENTICATE +``, the client's response in
base64 chunks of :data:`CHUNK` bytes (a chunk that long means more follow, ``+``
is an empty one), ``AUTHENTICATE *`` aborts.  Replies: 900 RPL_LOGGEDIN and 903
on success, 904 failure, 905 too long, 906 aborted, 907 already logged in, 908
the mechanisms.  PLAIN is RFC 4616 (``authzid NUL authcid NUL passwd``; an
authzid, if given, must name the same account); EXTERNAL (RFC 4422 appendix A)
is the SHA-256 of the TLS client certificate, which the front-end reads.  The
TCP front-end and the UDP one keep a :class:`Sasl` per connection and deliver
what :meth:`Sasl.step` answers, now or later (the password check is off the
reactor thread).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail

from twistchat.auth import Authenticator, AuthFailed
from twistchat.core.accounts import Account
from twistchat.core.events import Delivery
from twistchat.core.registry import Registry, User
from twistchat.services.nickserv import Answer, auth_failure_text
from twistchat.wire import Message, casefold

__all__ = ["CHUNK", "MAX_RESPONSE", "MECHANISMS", "Sasl"]

MECHANISMS = ("PLAIN", "EXTERNAL")
CHUNK = 400
# The most base64 one exchange may send in all: PLAIN's names and a password of
# twistchat.auth.MAX_PASSWORD_BYTES fit easily; beyond, 905 ERR_SASLTOOLONG.
MAX_RESPONSE = 4 * CHUNK


class Sasl:
    """
    One connection's SASL state: the exchange in progress, if any.

    ``address``: where the connection comes from (the auth layer's rate limit);
    ``certfp()``: the SHA-256 of its TLS client certificate, or None.
    """

    __slots__ = ("registry", "auth", "address", "certfp", "mechanism", "chunks", "size",
                 "checking", "end_waiting")

    def __init__(self, registry: Registry, authenticator: Authenticator, address: str,
                 certfp: Callable[[], str | None]) -> None:
        self.registry, self.auth, self.address, self.certfp = \
            registry, authenticator, address, certfp
        self.mechanism: str | None = None  # the exchange in progress (None: none)
        self.chunks: list[str] = []
        self.size = 0
        self.checking = False  # the credentials are being checked (a Deferred)
        self.end_waiting = False  # the TCP front-end's CAP END came during the check

    @property
    def in_progress(self) -> bool:
        """An exchange was started and has not ended."""
        return self.mechanism is not None

    def abort(self, user: User) -> list[Delivery]:
        """End the exchange (registration completed mid-exchange, sasl-3.1): 906."""
        self._end()
        return [self._reply(user, "906", "SASL authentication aborted")]

    def step(self, user: User, arg: str) -> Answer:
        """One ``AUTHENTICATE <arg>``: replies now, or a Deferred of them (the check)."""
        if self.checking:
            return [self._reply(user, "904",
                                "SASL authentication failed: a check is still running")]
        if arg == "*":
            return self.abort(user)
        if self.mechanism is None:
            if user.account is not None:
                return [self._reply(user, "907", "You have already authenticated using SASL")]
            mechanism = arg.upper()
            if mechanism not in MECHANISMS:
                return [self._reply(user, "908", ",".join(MECHANISMS),
                                    "are available SASL mechanisms"),
                        self._reply(user, "904", "SASL authentication failed")]
            self.mechanism = mechanism
            # No source, as in the spec's examples ("S: AUTHENTICATE +") and most servers.
            return [Delivery((user,), Message("AUTHENTICATE", ("+",)))]
        if len(arg.encode("utf-8")) > CHUNK:
            self._end()
            return [self._reply(user, "905", "SASL message too long")]
        if arg != "+":
            self.chunks.append(arg)
            self.size += len(arg)
        if self.size > MAX_RESPONSE:
            self._end()
            return [self._reply(user, "905", "SASL message too long")]
        if len(arg) == CHUNK:
            return []  # more chunks follow
        mechanism, response = self.mechanism, "".join(self.chunks)
        try:
            data = base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            self._end()
            return [self._reply(user, "904", "SASL authentication failed")]
        self.checking = True

        def logged_in(account: Account) -> list[Delivery]:
            return self.registry.log_in(user, account.name) + \
                [self._reply(user, "903", "SASL authentication successful")]

        def failed(failure: Any) -> list[Delivery]:
            failure.trap(AuthFailed)
            code = failure.value.code
            text = "SASL authentication failed"
            if code != "invalid":
                text += ": " + auth_failure_text(code)
            return [self._reply(user, "904", text)]

        def over(out: list[Delivery]) -> list[Delivery]:
            self._end()
            return out

        d = self._check(mechanism, data).addCallbacks(logged_in, failed)
        return d.addCallback(over)

    def _check(self, mechanism: str, data: bytes) -> Deferred[Account]:
        """The account the client's response proves (fails with AuthFailed)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return fail(AuthFailed("invalid"))
        if mechanism == "PLAIN":
            parts = text.split("\0")
            if len(parts) != 3 or not parts[1]:
                return fail(AuthFailed("invalid"))
            authzid, authcid, password = parts
            if authzid and casefold(authzid) != casefold(authcid):
                return fail(AuthFailed("invalid"))  # no logging in as someone else
            return self.auth.check_password(self.address, authcid, password)
        fp = self.certfp()
        if fp is None:
            return fail(AuthFailed("invalid"))

        def same(account: Account) -> Account:
            if text and casefold(text) != account.key:
                raise AuthFailed("invalid")
            return account

        return self.auth.by_certfp(fp).addCallback(same)

    def _end(self) -> None:
        self.mechanism = None
        self.chunks = []
        self.size = 0
        self.checking = False

    def _reply(self, user: User, code: str, *params: str) -> Delivery:
        return self.registry.reply(user, code, *params)
