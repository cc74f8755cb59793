"""
The byte side of a TCP chat session: lines in and out, connecting, keeping alive.

test-case-name: tests.test_client_tcp

Kept apart from :class:`~twistchat.client.tcp.TCPChatSession` because none
of it knows chat: the session's state machine gets whole lines and
connection events through callbacks, every failure as one short sentence
(:func:`reason_text`); text to send is cut into lines that fit
(:func:`privmsg_bodies`), and :class:`Keepalive` pings and measures lag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from twistchat.wire import Message, encode

__all__ = ["MAX_LINE", "SEND_LIMIT", "IRCLineProtocol", "Keepalive", "ReportingEndpoint",
           "abort", "privmsg_bodies", "reason_text", "split_utf8", "tls_options"]

# Lines the server relays carry a source and tags and may pass 512 bytes
# (message-tags: tags up to 8191); read them whole, skip anything longer.
MAX_LINE = 16384
# The longest line we send: RFC 1459 2.3, 512 bytes with CRLF.
SEND_LIMIT = 510


def reason_text(reason: Any) -> str:
    """A short sentence for a connection failure or loss."""
    value = getattr(reason, "value", reason)
    if isinstance(value, ierror.ConnectionRefusedError):
        return "connection refused"
    if isinstance(value, ierror.DNSLookupError):
        return "no such host"
    if isinstance(value, (ierror.TimeoutError, ierror.TCPTimedOutError)):
        return "timed out"
    if isinstance(value, ierror.ConnectionDone):
        return "closed by the server"
    if isinstance(value, ierror.ConnectionLost):
        return "connection lost"
    name = type(value).__name__
    if name == "Error" and type(value).__module__.startswith("OpenSSL"):
        return f"TLS failed ({_openssl_detail(value) or 'handshake error'})"
    text = str(value).strip().rstrip(".")
    return (text or name)[:200]


def _openssl_detail(value: Exception) -> str:
    """pyOpenSSL's SSL.Error: a list of (lib, func, reason) tuples."""
    try:
        return "; ".join(str(item[-1]) for item in value.args[0])
    except Exception:
        return str(value)


def tls_options(host: str, insecure: bool, trust_root: str | None) -> Any:
    """Client TLS options: verify ``host`` (against ``trust_root``, a PEM file, if given)."""
    from twisted.internet import ssl

    if insecure:
        # --insecure: encrypt, verify nothing (a test server's self-signed cert).
        return ssl.CertificateOptions(verify=False)
    root = None
    if trust_root:
        with open(trust_root, "rb") as f:
            root = ssl.Certificate.loadPEM(f.read())
    return ssl.optionsForClientTLS(host, trustRoot=root)


class IRCLineProtocol(Protocol):
    """
    Frames the byte stream into lines and hands each to ``on_line``.

    Not a LineReceiver: its default closes the connection on a long line, and
    a server's over-long line must cost us that line only (``on_garbage``).
    """

    def __init__(
        self,
        on_made: Callable[[IRCLineProtocol], None],
        on_line: Callable[[IRCLineProtocol, bytes], None],
        on_garbage: Callable[[str], None],
        on_lost: Callable[[IRCLineProtocol, Failure], None],
    ) -> None:
        self._on_made = on_made
        self._on_line = on_line
        self._on_garbage = on_garbage
        self._on_lost = on_lost
        self._buffer = b""
        self._discarding = False
        self.lost = False
        self.registered = False
        self.ready: defer.Deferred[None] | None = None

    def connectionMade(self) -> None:
        self._on_made(self)

    def dataReceived(self, data: bytes) -> None:
        *lines, rest = (self._buffer + data).split(b"\n")
        skip_first = False
        if self._discarding and lines:
            skip_first = True  # the tail of an over-long line
            self._discarding = False
        if len(rest) > MAX_LINE:
            rest = b""
            if not self._discarding:
                self._discarding = True
                self._on_garbage(f"a line longer than {MAX_LINE} bytes")
        self._buffer = rest
        for index, line in enumerate(lines):
            if self.lost:
                return
            if index == 0 and skip_first:
                continue
            if len(line) > MAX_LINE:
                self._on_garbage(f"a line longer than {MAX_LINE} bytes")
                continue
            self._on_line(self, line)

    def send(self, command: str, *params: str, tags: dict[str, str] | None = None) -> None:
        """Write one line (no-op once the connection is gone)."""
        if self.lost or self.transport is None:
            return
        self.transport.write(encode(Message(command, params, None, tags or {})))

    def write(self, data: bytes) -> None:
        """Write encoded lines (no-op once the connection is gone)."""
        if self.lost or self.transport is None:
            return
        self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self._on_lost(self, reason)


@implementer(IStreamClientEndpoint)
class ReportingEndpoint:
    """An endpoint wrapper that tells the session why a connection attempt failed."""

    def __init__(self, endpoint: IStreamClientEndpoint, on_failure: Callable[[Failure], None]
                 ) -> None:
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, protocolFactory: Any) -> defer.Deferred[Any]:
        """Connect as the wrapped endpoint does; report a failure, then pass it on."""
        d = self._endpoint.connect(protocolFactory)

        def failed(reason: Failure) -> Failure:
            self._on_failure(reason)
            return reason

        return d.addErrback(failed)


def split_utf8(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    out = []
    while data:
        cut = min(limit, len(data))
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        # Prefer a space near the end, so words stay whole.
        space = data.rfind(b" ", max(0, cut - 40), cut)
        if cut < len(data) and space > 0:
            cut = space + 1
        out.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    return [piece for piece in out if piece.strip()]


def privmsg_bodies(target: str, text: str, action: bool,
                   limit: int = SEND_LIMIT) -> list[tuple[str, str]]:
    """
    ``(body, chunk)`` for each PRIVMSG that carries ``text`` to ``target``.

    CR, LF and NUL cannot be in a line: each text line is one message, cut to
    fit ``limit`` bytes with the command; ``body`` is ``chunk`` as sent (a
    CTCP ACTION for ``/me``).
    """
    out = []
    overhead = len(f"PRIVMSG {target} :".encode()) + (9 if action else 0)
    for line in text.replace("\0", "").replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            continue
        for chunk in split_utf8(line, max(limit - overhead, 16)):
            out.append((f"\x01ACTION {chunk}\x01" if action else chunk, chunk))
    return out


class Keepalive:
    """
    PING the server every ``interval`` seconds; its PONG measures ``lag``; no
    PONG for ``timeout`` seconds calls ``on_silent(seconds)`` and drops the link.
    """

    def __init__(self, clock: IReactorTime, interval: float, timeout: float,
                 on_silent: Callable[[int], None]) -> None:
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.on_silent = on_silent
        self.lag: float | None = None
        self._call: LoopingCall | None = None
        self._sent: float | None = None
        self._token: str | None = None

    def start(self, proto: IRCLineProtocol) -> None:
        """Registered on ``proto``: ping now and every ``interval``."""
        call = self._call = LoopingCall(self._ping, proto)
        call.clock = self.clock
        call.start(self.interval, now=True)

    def stop(self) -> None:
        """The connection is gone: no more pings, none outstanding."""
        self._sent = None
        call, self._call = self._call, None
        if call is not None and call.running:
            call.stop()

    def pong(self, token: str) -> None:
        """The server's PONG with ``token``: the round trip is the lag."""
        if self._sent is not None and token == self._token:
            self.lag = max(0.0, self.clock.seconds() - self._sent)
            self._sent = None

    def _ping(self, proto: IRCLineProtocol) -> None:
        if proto.lost:
            return
        now = self.clock.seconds()
        if self._sent is not None and now - self._sent >= self.timeout:
            self.on_silent(int(now - self._sent))
            self._sent = None
            abort(proto)
            return
        if self._sent is None:
            self._sent = now
            self._token = f"lag-{int(now * 1000)}"
            proto.send("PING", self._token)


def abort(proto: IRCLineProtocol) -> None:
    """Drop the connection now (ClientService reconnects)."""
    if proto.transport is not None:
        proto.transport.abortConnection()  # type: ignore[attr-defined]  # a TCP/TLS transport
