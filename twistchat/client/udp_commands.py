"""
What a UDP chat session sends: the command window, and the datagrams outside it.

test-case-name: tests.test_udp_client, tests.test_udp_e2e, tests.test_client_udp_commands

docs/udp-protocol.md, "Commands": every command we send carries the next
``cseq``; the server runs each once, in order, and its ``ACK <cseq>`` says
how far it got.  Up to ``window`` commands are in flight; each is sent again
after a retransmission timeout taken from the smoothed round trip (TCP's
RFC 6298 estimator, with Karn's rule for ambiguous samples).  No socket and
no clock here: ``write`` sends, times are arguments.

Registration, PING and REPAIR are not numbered; :func:`register_datagram`,
:func:`ping_datagram` and :func:`repair_datagram` format them.  Every other
command goes through the window, so it carries a ``cseq`` (docs, "Reliable
commands": the server refuses a state-changing command without one, issue #12
item 6).  After a server restart the commands not yet acknowledged are kept
and numbered afresh for the new session (:meth:`CommandWindow.requeue`).
"""

from __future__ import annotations

from collections.abc import Callable

from twistchat.wire import Message, casefold, encode

__all__ = ["MIN_REGISTER", "CommandWindow", "ping_datagram", "register_datagram",
           "repair_datagram"]

MIN_REGISTER = 1200  # docs/udp-protocol.md, "Registration": the NICK is padded to this


def register_datagram(nick: str, unicast: bool, cookie: str | None = None) -> bytes:
    """
    ``NICK`` padded to MIN_REGISTER bytes with a ``pad`` tag (docs, "Registration"):
    a server never answers more bytes than it was sent.  ``unicast``: ask for
    unicast copies instead of broadcasts.  ``cookie``: the second step, with
    the ``COOKIE`` the server sent for this address and nick.
    """
    tags = {"cookie": cookie} if cookie else {}
    if unicast:
        tags["unicast"] = ""
    line = encode(Message("NICK", (nick,), None, tags))
    if tags:  # "@cookie=C;unicast NICK n": the pad tag goes last in the tag section
        tag_section, _, body = line.partition(b" ")
        head = tag_section + b";pad="
    else:
        head, body = b"@pad=", line
    pad = MIN_REGISTER - len(head) - 1 - len(body)
    return head + b"x" * max(pad, 1) + b" " + body


def ping_datagram(token: str, now: float) -> bytes:
    """A keepalive PING; its PONG carries ``now`` back (lag) and the latest ``useq``."""
    return encode(Message("PING", (f"{now:.6f}",), None, {"token": token}))


def repair_datagram(token: str, target: str, start: int, end: int) -> bytes:
    """``REPAIR <room or *> <from> <to>``: send the events of that hole again."""
    return encode(Message("REPAIR", (target, str(start), str(end)), None, {"token": token}))


class _Sent:
    """A command sent with its ``cseq`` and not yet acknowledged."""

    __slots__ = ("message", "data", "first", "last", "tries")

    def __init__(self, message: Message, data: bytes, now: float) -> None:
        self.message = message  # kept to number it afresh after a server restart
        self.data = data
        self.first = now  # when first sent: the round trip is measured from here
        self.last = now  # when last sent
        self.tries = 1


class CommandWindow:
    """Commands queued, in flight (sent, not yet ACKed), and the round-trip estimate."""

    def __init__(self, write: Callable[[bytes], None], window: int,
                 stats: dict[str, int]) -> None:
        self.write = write
        self.window = window
        self.stats = stats
        self._cseq = 0
        self._unacked: dict[int, _Sent] = {}  # cseq -> sent, not yet acknowledged
        self._backlog: list[Message] = []  # commands beyond the window, not yet sent
        self._srtt: float | None = None

    @property
    def in_flight(self) -> bool:
        """Whether a command waits for its ACK."""
        return bool(self._unacked)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self._unacked and not self._backlog

    def reset(self) -> None:
        """The session is lost: its commands are not replayed into the next one."""
        self._cseq = 0
        self._unacked.clear()
        self._backlog.clear()

    @property
    def pending(self) -> int:
        """Commands not yet acknowledged: in flight and queued."""
        return len(self._unacked) + len(self._backlog)

    def requeue(self, first: list[Message]) -> None:
        """
        A new session (the server restarted): ``first`` (our rooms' JOINs), then
        every command not yet acknowledged, in order, numbered from ``cseq`` 1
        again (docs, "Restarts": "sends again every command it had not seen
        acknowledged").  A JOIN of a room ``first`` joins already is not sent twice,
        and a PART of a room it does not join is moot (the new session is in none);
        so is an old session's AUTHENTICATE (the new one has an exchange of its own).
        """
        rooms = {casefold(m.params[0]) for m in first if m.command == "JOIN" and m.params}

        def moot(m: Message) -> bool:
            if m.command.upper() == "AUTHENTICATE":
                return True
            if m.command.upper() not in ("JOIN", "PART") or not m.params:
                return False
            in_first = casefold(m.params[0]) in rooms
            return in_first if m.command.upper() == "JOIN" else not in_first

        old = [self._unacked[c].message for c in sorted(self._unacked)] + self._backlog
        again = [m for m in old if not moot(m)]
        self._cseq = 0
        self._unacked.clear()
        self._backlog = list(first) + again

    def queue(self, message: Message) -> None:
        """Queue one command; :meth:`pump` sends it when the window has room."""
        self._backlog.append(message)

    def pump(self, token: str, now: float) -> None:
        """Send queued commands while the window has room."""
        while self._backlog and len(self._unacked) < self.window:
            message = self._backlog.pop(0)
            self._cseq += 1
            data = encode(Message(message.command, message.params, None,
                                  {"token": token, "cseq": str(self._cseq)}))
            self._unacked[self._cseq] = _Sent(message, data, now)
            self.write(data)

    def rto(self) -> float:
        """Retransmission timeout: twice the smoothed round trip, within [30 ms, 1 s]."""
        if self._srtt is None:
            return 0.2
        return min(max(2 * self._srtt + 0.02, 0.03), 1.0)

    def acked(self, upto: int, now: float) -> None:
        """``ACK upto``: the server ran every command up to ``upto``."""
        for cseq in [c for c in self._unacked if c <= upto]:
            sent = self._unacked.pop(cseq)
            # Karn: only unambiguous samples; and only the newest command acked,
            # whose ACK did not wait behind an earlier lost one.
            if sent.tries == 1 and cseq == upto:
                sample = now - sent.first
                self._srtt = sample if self._srtt is None else 0.875 * self._srtt + 0.125 * sample

    def retransmit(self, now: float) -> None:
        """Send again each command whose (backed-off) timeout has passed."""
        rto = self.rto()
        for sent in self._unacked.values():
            if now - sent.last >= rto * min(2 ** (sent.tries - 1), 4):
                sent.last = now
                sent.tries += 1
                self.stats["retransmits"] += 1
                self.write(sent.data)
