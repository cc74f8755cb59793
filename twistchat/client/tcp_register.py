"""
Registration of a TCP session: capability negotiation, NICK and USER, up to 001.

test-case-name: tests.test_client_tcp

Apart from :class:`~twistchat.client.tcp.TCPChatSession` (which decides when
to connect, reconnect and give up) because it is the one conversation with
rules of its own: IRCv3 ``CAP LS 302`` / ``REQ`` / ``ACK`` / ``END``
(https://ircv3.net/specs/extensions/capability-negotiation), and a nick
refused at registration (432, 433, 436) answered with another one.
"""

from __future__ import annotations

import random
from typing import Any

from twistchat.wire import Message, is_valid_nick, sanitize_nick

__all__ = ["WANTED_CAPS", "Registration"]

# Capabilities we use when offered.
WANTED_CAPS = ("server-time", "echo-message", "message-tags", "batch", "multi-prefix",
               "draft/chathistory")
# Nicks tried after a refusal before we give the connection up.
MAX_ALTERNATIVES = 20


class Registration:
    """The capabilities in use, and the registration in progress on one connection."""

    def __init__(self) -> None:
        self.caps: set[str] = set()
        self._cap_ls: list[str] = []
        self._alt_nicks = 0

    def begin(self, proto: Any, nick: str, username: str, realname: str,
              password: str | None) -> None:
        """A new connection: forget the old one's caps; send PASS, CAP LS, NICK, USER."""
        self.caps = set()
        self._cap_ls = []
        self._alt_nicks = 0
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
            offered = {item.partition("=")[0] for item in self._cap_ls}
            self._cap_ls = []
            wanted = [c for c in WANTED_CAPS if c in offered]
            if wanted and not proto.registered:
                proto.send("CAP", "REQ", " ".join(wanted))
                return
        elif sub == "ACK":
            for cap in params[-1].split():
                if cap.startswith("-"):
                    self.caps.discard(cap[1:])
                else:
                    self.caps.add(cap)
        elif sub == "DEL":
            self.caps.difference_update(params[-1].split())
            return
        elif sub != "NAK":
            return
        if not proto.registered:
            proto.send("CAP", "END")

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
