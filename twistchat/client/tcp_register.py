"""
Registration of a TCP session: capability negotiation, NICK and USER, up to 001.

test-case-name: tests.test_client_tcp

Apart from :class:`~twistchat.client.tcp.TCPChatSession` (which decides when
to connect, reconnect and give up) because it is the one conversation with
rules of its own: IRCv3 ``CAP LS 302`` / ``REQ`` / ``ACK`` / ``END``
(https://ircv3.net/specs/extensions/capability-negotiation), a nick
refused at registration (432, 433, 436) answered with another one, and, with
credentials, the SASL PLAIN login between ``CAP REQ sasl`` and ``CAP END``
(:mod:`.sasl`; issue #14).  A login that fails is reported and registration
goes on without an account.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twistchat.client.sasl import Credentials, SaslLogin, SaslStep
from twistchat.wire import Message, is_valid_nick, sanitize_nick

__all__ = ["WANTED_CAPS", "Registration"]

# Capabilities we use when offered.
WANTED_CAPS = ("server-time", "echo-message", "message-tags", "batch", "multi-prefix",
               "draft/chathistory")
# Nicks tried after a refusal before we give the connection up.
MAX_ALTERNATIVES = 20


class Registration:
    """The capabilities in use, and the registration in progress on one connection."""

    def __init__(self, credentials: Credentials | None = None,
                 report: Callable[[SaslStep], None] | None = None) -> None:
        self.caps: set[str] = set()
        self._cap_ls: list[str] = []
        self._alt_nicks = 0
        self.credentials = credentials
        self.report = report or (lambda step: None)
        self.login: SaslLogin | None = None  # this connection's login (with credentials)

    def begin(self, proto: Any, nick: str, username: str, realname: str,
              password: str | None) -> None:
        """A new connection: forget the old one's caps; send PASS, CAP LS, NICK, USER."""
        self.caps = set()
        self._cap_ls = []
        self._alt_nicks = 0
        # Every connection logs in again (a reconnect is a new connection).
        self.login = SaslLogin(self.credentials) if self.credentials is not None else None
        try:
            if password:
                proto.send("PASS", password)
            proto.send("CAP", "LS", "302")
            proto.send("NICK", nick if is_valid_nick(nick) else "guest")
            proto.send("USER", username, "0", "*", realname)
        except ValueError:
            proto.send("NICK", "guest")
            proto.send("USER", "guest", "0", "*", "twistchat user")

    def on_cap(self, proto: Any, msg: Message) -> None:
        """``CAP * LS|ACK|NAK|DEL ...``: ask for what we want, then end negotiation."""
        params = msg.params
        if len(params) < 2:
            return
        sub = params[1].upper()
        if sub == "LS":
            self._cap_ls += params[-1].split()
            if len(params) > 3 and params[2] == "*":
                return  # more LS lines follow
            offered = dict(item.partition("=")[::2] for item in self._cap_ls)
            self._cap_ls = []
            wanted = [c for c in WANTED_CAPS if c in offered]
            if self._wants_sasl(proto, offered):
                wanted.append("sasl")
            if wanted and not proto.registered:
                proto.send("CAP", "REQ", " ".join(wanted))
                return
        elif sub == "ACK":
            for cap in params[-1].split():
                if cap.startswith("-"):
                    self.caps.discard(cap[1:])
                else:
                    self.caps.add(cap)
            login = self.login
            if login is not None and not login.started and "sasl" in self.caps \
                    and not proto.registered:
                # CAP END waits for the exchange's end (sasl-3.1): see on_sasl.
                proto.send("AUTHENTICATE", *login.start())
                return
        elif sub == "DEL":
            self.caps.difference_update(params[-1].split())
            return
        elif sub == "NAK":
            login = self.login
            if login is not None and not login.done and "sasl" in params[-1].split():
                self.report(login.unavailable("the server refused the sasl capability"))
        else:
            return
        if not proto.registered:
            proto.send("CAP", "END")

    def _wants_sasl(self, proto: Any, offered: dict[str, str]) -> bool:
        """Ask for ``sasl``?  Only with credentials, and when the server has PLAIN."""
        login = self.login
        if login is None or login.started or login.done or proto.registered:
            return False
        # CAP LS 302 gives the mechanisms (sasl=PLAIN,EXTERNAL); without a value, try.
        mechanisms = offered.get("sasl")
        if mechanisms is None:
            self.report(login.unavailable("the server offers no SASL"))
            return False
        if mechanisms and "PLAIN" not in mechanisms.upper().split(","):
            self.report(login.unavailable("the server offers no SASL PLAIN"))
            return False
        return True

    def on_sasl(self, proto: Any, msg: Message) -> bool:
        """``AUTHENTICATE`` and 900-908: the login's next step; False if not the login's."""
        login = self.login
        if login is None:
            return False
        step = login.on_message(msg)
        if step is None:
            return False
        for chunk in step.send:
            proto.send("AUTHENTICATE", chunk)
        self.report(step)
        if step.done and not proto.registered:
            proto.send("CAP", "END")
        return True

    def alternative_nick(self, wanted: str, isupport: dict[str, str]) -> str | None:
        """``wanted`` is refused: try ``nick_``, ``nick__``, then digits; None: give up."""
        self._alt_nicks += 1
        if self._alt_nicks > MAX_ALTERNATIVES:
            return None
        base = sanitize_nick(wanted)
        nicklen = 30
        try:
            nicklen = int(isupport.get("NICKLEN") or 30)
        except ValueError:
            pass
        if self._alt_nicks <= 2:
            return base[: nicklen - self._alt_nicks] + "_" * self._alt_nicks
        digits = str(random.randint(100, 99999))
        return base[: nicklen - len(digits)] + digits
