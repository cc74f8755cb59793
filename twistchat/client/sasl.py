"""
Logging in to an account from a client session: SASL PLAIN, for TCP and UDP alike.

test-case-name: tests.test_client_sasl

https://ircv3.net/specs/extensions/sasl-3.1 (and 3.2): the client sends
``AUTHENTICATE PLAIN``, the server answers ``AUTHENTICATE +``, the client
sends its response in base64, in chunks of :data:`CHUNK` bytes (a chunk of
exactly 400 means more follow, so a response whose last chunk is 400 long is
followed by ``AUTHENTICATE +``); the server ends with 900 RPL_LOGGEDIN and
903 RPL_SASLSUCCESS, or 902/904/905/906/907.  PLAIN's response is RFC 4616's
``authzid NUL authcid NUL passwd`` with an empty authzid.

Over TCP the exchange runs between ``CAP REQ sasl`` and ``CAP END``
(:mod:`.tcp_register`); over UDP the same lines go in numbered datagrams once
the session is open (docs/udp-protocol.md, "Accounts").  :class:`SaslLogin`
is the exchange without I/O: lines in, lines to send and one line to show out.

The password is in :class:`Credentials` only: its ``repr`` hides it, and no
text this module makes contains it (the base64 response goes to the server,
never to an event or the log).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from twistchat.wire import Message

__all__ = ["CHUNK", "MAX_PASSWORD_BYTES", "Credentials", "SaslLogin", "SaslStep",
           "plain_response"]

CHUNK = 400  # sasl-3.1: "The response is split into 400-byte chunks"
# The server refuses longer passwords before hashing (twistchat.auth.MAX_PASSWORD_BYTES);
# the client says so before connecting rather than failing on every connection.
MAX_PASSWORD_BYTES = 512

# Numerics that end an exchange (sasl-3.1 and modern.ircdocs.horse), with how to read them.
_FAILED = {"902": "the account is locked", "904": "", "905": "the response was too long",
           "906": "aborted"}


@dataclass(frozen=True)
class Credentials:
    """An account name and its password; ``repr`` and ``str`` never show the password."""

    account: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return self.account


def plain_response(credentials: Credentials) -> list[str]:
    """The ``AUTHENTICATE`` arguments that carry PLAIN's response, in 400-byte chunks."""
    raw = b"\0" + credentials.account.encode("utf-8") + b"\0" + \
        credentials.password.encode("utf-8")
    encoded = base64.b64encode(raw).decode("ascii")
    chunks = [encoded[i:i + CHUNK] for i in range(0, len(encoded), CHUNK)]
    if not chunks or len(chunks[-1]) == CHUNK:
        chunks.append("+")  # the response ends with an empty chunk
    return chunks


@dataclass(frozen=True)
class SaslStep:
    """
    What one server line means to the exchange: ``send`` these AUTHENTICATE
    arguments; ``done`` (the exchange is over: TCP may send ``CAP END``);
    ``ok`` True (logged in) / False (not) once known; ``text`` one line to show.
    """

    send: tuple[str, ...] = ()
    done: bool = False
    ok: bool | None = None
    text: str | None = None


class SaslLogin:
    """One connection's login with ``credentials`` (made again for each connection)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.started = False
        self.sent = False
        self.done = False
        self.account: str | None = None  # the account the server's 900 names

    def __repr__(self) -> str:
        return f"<SaslLogin {self.credentials.account!r} done={self.done}>"

    def start(self) -> tuple[str, ...]:
        """The first line's arguments: ``AUTHENTICATE PLAIN``."""
        self.started = True
        return ("PLAIN",)

    def unavailable(self, why: str) -> SaslStep:
        """The server cannot do SASL here (not offered, NAKed): one line, chat goes on."""
        self.done = True
        return SaslStep(done=True, ok=False, text=self._failed(why))

    def on_message(self, msg: Message) -> SaslStep | None:
        """A server line: the next step, or None when the line is not this exchange's."""
        if not self.started or self.done:
            if msg.command == "900" and self.done:
                return self._logged_in(msg)  # a later 900 (NickServ IDENTIFY): shown
            return None
        code = msg.command
        if code == "AUTHENTICATE":
            if self.sent or not msg.params or msg.params[0] != "+":
                return None
            self.sent = True
            return SaslStep(send=tuple(plain_response(self.credentials)))
        if code == "900":
            return self._logged_in(msg)
        if code in ("903", "907"):
            self.done = True
            return SaslStep(done=True, ok=True)
        if code == "421" and len(msg.params) > 1 and msg.params[1].upper() == "AUTHENTICATE":
            # A server without accounts does not know the verb (UDP has no CAP to ask first).
            return self.unavailable("the server offers no SASL")
        if code == "908":
            return SaslStep()  # the mechanisms; the 904 that follows ends it
        if code in _FAILED:
            self.done = True
            server_text = msg.params[-1] if len(msg.params) > 1 else ""
            reason = _FAILED[code] or server_text or "refused"
            detail = server_text.partition(": ")[2]
            if code == "904" and detail:
                # "SASL authentication failed: Too many failed attempts; try again later"
                reason = detail[:1].lower() + detail[1:]
            elif code == "904":
                reason = "wrong account or password"
            return SaslStep(done=True, ok=False, text=self._failed(reason))
        return None

    def _logged_in(self, msg: Message) -> SaslStep:
        # 900 RPL_LOGGEDIN <nick> <nick!user@host> <account> :You are now logged in as <account>
        account = msg.params[2] if len(msg.params) > 3 else self.credentials.account
        self.account = account
        return SaslStep(ok=True, text=f"Logged in as {account}.")

    def _failed(self, why: str) -> str:
        return (f"Login as {self.credentials.account} failed ({why}): "
                "connected without an account.")
