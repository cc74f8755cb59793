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
:func:`ping_datagram` and :func:`repair_datagram` format them.
"""

from __future__ import annotations

from collections.abc import Callable

from twistchat.wire import Message, encode

__all__ = ["MIN_REGISTER", "CommandWindow", "ping_datagram", "register_datagram",
           "repair_datagram"]

MIN_REGISTER = 1200  # docs/udp-protocol.md, "Registration": the NICK is padded to this


def register_datagram(nick: str, unicast: bool) -> bytes:
    """
    ``NICK`` padded to MIN_REGISTER bytes with a ``pad`` tag (docs, "Registration"):
    a server never answers more bytes than it was sent.  ``unicast``: ask for
    unicast copies instead of broadcasts.
    """
    tags = {"unicast": ""} if unicast else {}
    body = encode(Message("NICK", (nick,), None, tags))
    if tags:
        head = b"@unicast;pad="
        body = body[len(b"@unicast "):]
    else:
        head = b"@pad="
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

    __slots__ = ("data", "first", "last", "tries")

    def __init__(self, data: bytes, now: float) -> None:
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
            self._unacked[self._cseq] = _Sent(data, now)
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
