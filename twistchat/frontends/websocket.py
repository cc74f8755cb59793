"""
IRC over WebSocket (the IRCv3 WebSocket specification): the IRC front-end, framed as messages.

test-case-name: tests.test_websocket

A browser cannot open a TCP socket, but it can open a WebSocket.  This module
is the thinnest adapter between the two: every WebSocket connection runs one
:class:`~twistchat.frontends.irc.IRCProtocol`, the very one a TCP client gets,
so the command table, the limits, flood control, the SendQ, capabilities and
history are the same code.  Only the framing differs:

* in: one WebSocket message is one IRC line (a trailing CR LF is tolerated and
  stripped), handed to ``IRCProtocol.lineReceived``; a message longer than the
  line limit is answered 417 as TCP answers an over-long line;
* out: what the IRC protocol writes (CR LF terminated lines) is split into one
  message per line, without the CR LF (:class:`_MessageTransport`).

Subprotocols: ``binary.ircv3.net`` (binary messages) and ``text.ircv3.net``
(text messages, UTF-8), the client's preference first; a client that asks for
neither gets text.  A text message that is not UTF-8 fails the connection with
close code 1007 (RFC 6455 section 8.1, which the IRCv3 spec defers to; autobahn
checks it as frames arrive).  The ``Origin`` header must be the page's own origin
(or one of ``--web-origin``): a page elsewhere cannot chat on a visitor's behalf.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistchat.frontends.irc import IRCFactory, IRCProtocol

__all__ = ["SUBPROTOCOLS", "IRCWebSocketFactory", "IRCWebSocketProtocol", "origin_allowed"]

BINARY = "binary.ircv3.net"
TEXT = "text.ircv3.net"
SUBPROTOCOLS = (BINARY, TEXT)


def _origin_of(url: str) -> tuple[str, str] | None:
    """``(scheme, host[:port])`` of an origin or URL, lower-cased, default ports left out."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return scheme, host


def origin_allowed(origin: str | None, host: str, secure: bool,
                   allowed: tuple[str, ...] = ()) -> bool:
    """
    May a page of ``origin`` open this WebSocket (``Host: host``, over TLS if ``secure``)?

    No Origin header: not a browser (browsers always send it on a WebSocket), so
    no page can be acting for a visitor; allowed.  Otherwise the origin must be
    the server's own (the scheme of this connection and the Host it was asked
    for), or one of ``allowed`` (``--web-origin``, e.g. ``https://chat.example``;
    ``*`` allows any).
    """
    if origin is None or origin == "":
        return True
    if "*" in allowed:
        return True
    theirs = _origin_of(origin)
    if theirs is None:
        return False
    own = _origin_of(f"{'https' if secure else 'http'}://{host}")
    if theirs == own:
        return True
    return any(theirs == _origin_of(url) for url in allowed)


class _MessageTransport:
    """
    What the IRC protocol sees as its transport: lines written become WebSocket messages.

    Everything else (the peer's address, flow control for the SendQ, closing)
    goes to the WebSocket connection or the socket below it, so the SendQ
    watch of :class:`IRCProtocol` sees the real socket buffer: a tab that stops
    reading is dropped as a TCP client is.
    """

    __slots__ = ("ws", "transport")

    def __init__(self, ws: IRCWebSocketProtocol) -> None:
        self.ws = ws
        self.transport: Any = ws.transport  # the socket (or TLS) below: _socket_transport walks it

    def write(self, data: bytes) -> None:
        ws = self.ws
        binary = ws.binary
        for line in data.split(b"\r\n"):
            if not line:
                continue
            if not binary:
                # A text message must be UTF-8 (a browser fails the connection otherwise).
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    line = line.decode("utf-8", "replace").encode("utf-8")
            ws.sendMessage(line, binary)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        # twisted.web's HTTPChannel registered itself on this socket before the
        # upgrade; the WebSocket took the socket over, so the SendQ watch replaces it.
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()

    def loseConnection(self) -> None:
        """A clean close: the WebSocket closing handshake (1000) after the ERROR line."""
        self.ws.sendClose(1000)

    def abortConnection(self) -> None:
        self.ws.dropConnection(abort=True)


class IRCWebSocketProtocol(WebSocketServerProtocol):
    """One browser (or other WebSocket) client: a WebSocket around an :class:`IRCProtocol`."""

    _log = Logger()
    factory: IRCWebSocketFactory

    irc: IRCProtocol | None = None
    binary = False  # binary.ircv3.net negotiated: send binary messages

    def onConnect(self, request: Any) -> str | None:
        """The opening handshake: the Origin check, then the subprotocol, client's order first."""
        headers = request.headers
        origin = headers.get("origin")
        secure = self.factory.isSecure
        if not origin_allowed(origin, headers.get("host", ""), secure,
                              self.factory.allowed_origins):
            self._log.info("refuse WebSocket from {peer}: Origin {origin!r} not allowed",
                           peer=request.peer, origin=origin)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "Origin not allowed")
        for wanted in request.protocols:
            if wanted in SUBPROTOCOLS:
                self.binary = wanted == BINARY
                return str(wanted)
        return None  # neither: text messages, no Sec-WebSocket-Protocol (the spec's MAY)

    def onOpen(self) -> None:
        irc = self.factory.irc.buildProtocol(None)
        self.irc = irc
        irc.makeConnection(_MessageTransport(self))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        irc = self.irc
        if irc is None:
            return
        if payload.endswith(b"\n"):
            payload = payload[:-1]
        if payload.endswith(b"\r"):
            payload = payload[:-1]
        if len(payload) + 2 > irc.MAX_LENGTH:
            # As LineReceiver does for TCP: 417, and the connection lives.
            if not irc.closing and irc.user is not None:
                irc.numeric("417", "Input line was too long")
            return
        if b"\n" in payload or b"\r" in payload or b"\0" in payload:
            # One line per message: a message holding several is not one we can trust.
            if not irc.closing and irc.user is not None:
                irc.send("FAIL", "*", "INVALID_MESSAGE", "One IRC line per WebSocket message")
            return
        irc.lineReceived(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        irc, self.irc = self.irc, None
        if irc is not None:
            why = "Connection closed cleanly" if code in (None, 1000, 1001) \
                else f"WebSocket closed ({code})"
            irc.connectionLost(Failure(ConnectionError(why)))


class IRCWebSocketFactory(WebSocketServerFactory):
    """
    Builds :class:`IRCWebSocketProtocol`; each wraps a protocol of the one ``irc`` factory.

    Sharing the IRC factory shares its registry (the per-address cap counts TCP
    and WebSocket connections together), its limits, history and sweep.
    ``url``: ``ws://host:port/socket`` or ``wss://...`` (autobahn wants one;
    only its scheme matters here, for the Origin check).  Messages larger than
    eight lines fail the connection (1009) before they are buffered whole;
    smaller over-long ones are answered 417.
    """

    protocol = IRCWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, irc: IRCFactory, url: str = "ws://127.0.0.1/socket",
                 allowed_origins: tuple[str, ...] = ()) -> None:
        super().__init__(url, protocols=list(SUBPROTOCOLS))
        self.irc = irc
        self.allowed_origins = tuple(allowed_origins)
        biggest = 8 * irc.max_length
        self.setProtocolOptions(
            maxMessagePayloadSize=biggest, maxFramePayloadSize=biggest,
            # The IRC protocol's own PING and ping timeout watch liveness, as for TCP.
            autoPingInterval=0, openHandshakeTimeout=30, closeHandshakeTimeout=5,
            # A protocol error (1007: a text message not UTF-8) is sent as a close frame
            # the client can read, not a silent drop of the TCP connection.
            failByDrop=False,
            perMessageCompressionAccept=lambda offers: None)
        self.noisy = False
