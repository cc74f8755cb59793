"""
Write coalescing per reactor turn (twistchat/frontends/coalesce.py, issue #18).

Real loopback sockets under the real reactor (pytest-twisted): a server whose
protocol writes through a :class:`TurnCoalescer`, and raw or Twisted clients.
What is counted is what the server's transport was asked to do (sends straight
to the socket, registrations for writability, writes handed to TLS); what is
checked is the bytes that arrived, in order.
"""

from __future__ import annotations

import socket
import struct

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import SSL4ClientEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from tests.tlsfiles import make_tls_files
from twistchat.frontends.coalesce import TurnCoalescer, coalescible


class _Server(protocol.Protocol):
    """The server side: records itself and how it was lost."""

    def connectionMade(self) -> None:
        self.factory.made.callback(self)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.factory.lost.callback(reason.value)  # the exception: a Failure would errback


class _ServerFactory(protocol.Factory):
    protocol = _Server

    def __init__(self) -> None:
        self.made: defer.Deferred = defer.Deferred()
        self.lost: defer.Deferred = defer.Deferred()


def _spy(transport) -> dict:
    """Count the socket transport's direct sends and its registrations for writability."""
    counts = {"send": 0, "startWriting": 0}
    send, start = transport.writeSomeData, transport.startWriting

    def counting_send(data):
        counts["send"] += 1
        return send(data)

    def counting_start():
        counts["startWriting"] += 1
        return start()

    transport.writeSomeData = counting_send
    transport.startWriting = counting_start
    return counts


def _within(d: defer.Deferred, seconds: float = 10.0) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


async def _next_turn() -> None:
    await task.deferLater(reactor, 0.0, lambda: None)
    await task.deferLater(reactor, 0.0, lambda: None)


async def _plain_pair(rcvbuf: int | None = None):
    """A listening server, a connected raw client socket and the server's protocol."""
    factory = _ServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.socket()
    if rcvbuf is not None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.setblocking(False)
    client.connect_ex(("127.0.0.1", port.getHost().port))
    server = await _within(factory.made)
    client.setblocking(True)
    client.settimeout(10)
    return port, client, server, factory


def _read_exactly(client: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = client.recv(size - len(got))
        if not chunk:
            break
        got += chunk
    return bytes(got)


async def _read_in_thread(client: socket.socket, size: int) -> bytes:
    from twisted.internet.threads import deferToThread
    return await _within(deferToThread(_read_exactly, client, size), 30)


@pytest_twisted.ensureDeferred
async def test_one_turn_of_writes_leaves_in_one_send_without_registering():
    """Three writes in one turn: one direct send, no epoll registration, bytes in order."""
    port, client, server, _ = await _plain_pair()
    try:
        out = TurnCoalescer(reactor)
        counts = _spy(server.transport)
        for line in (b"one\r\n", b"two\r\n", b"three\r\n"):
            out.write(server.transport, line)
        assert counts == {"send": 0, "startWriting": 0}  # held until the end of the turn
        assert out.pending(server.transport) == len(b"one\r\ntwo\r\nthree\r\n")
        await _next_turn()
        assert counts == {"send": 1, "startWriting": 0}
        assert out.sends == 1 and out.fallbacks == 0
        assert await _read_in_thread(client, 17) == b"one\r\ntwo\r\nthree\r\n"
    finally:
        client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_partial_write_falls_back_to_the_transport_in_order_and_pauses_the_producer():
    """
    A reader with a small buffer: the kernel takes part of the turn's bytes; the rest is
    the transport's (it registers for writability and pauses the SendQ producer past
    ``bufferSize``); later turns queue behind it; every byte arrives, in order.
    """
    port, client, server, _ = await _plain_pair(rcvbuf=4096)
    try:
        out = TurnCoalescer(reactor)
        transport = server.transport
        transport.bufferSize = 64 * 1024

        @implementer(IPushProducer)
        class Watch:
            paused = 0

            def pauseProducing(self):
                self.paused += 1

            def resumeProducing(self):
                pass

            def stopProducing(self):
                pass

        watch = Watch()
        transport.registerProducer(watch, True)
        counts = _spy(transport)
        first = bytes(range(256)) * 4096  # 1 MiB: more than the kernel's buffers hold
        out.write(transport, first)
        await _next_turn()
        assert counts["send"] >= 1 and counts["startWriting"] >= 1, counts
        assert out.fallbacks == 1
        assert watch.paused >= 1  # the SendQ watch sees the backlog as before
        sends_before = out.sends
        second = b"after\r\n"
        out.write(transport, second)
        await _next_turn()
        assert out.sends == sends_before  # the transport still holds bytes: not sent past them
        assert out.fallbacks == 2
        got = await _read_in_thread(client, len(first) + len(second))
        assert got == first + second
    finally:
        client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_connection_lost_mid_flush_is_lost_the_usual_way():
    """
    The peer resets the connection with output held: the flush neither raises nor
    sends to a dead socket twice; the transport reports the loss (connectionLost).
    """
    port, client, server, factory = await _plain_pair()
    try:
        out = TurnCoalescer(reactor)
        transport = server.transport
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST
        for _ in range(3):
            await task.deferLater(reactor, 0.05, lambda: None)  # the RST has arrived
            if factory.lost.called:
                break
        # Whether or not the reactor noticed yet, writing must be safe.
        for _ in range(50):
            out.write(transport, b"x" * 100_000)
        await _next_turn()
        reason = await _within(factory.lost)
        assert reason is not None
        assert not out.pending(transport)
    finally:
        await port.stopListening()


def test_a_write_made_during_a_flush_goes_out_the_next_turn():
    """A write that runs while the turn is flushed (a QUIT from a lost TLS peer) is kept."""
    clock = task.Clock()
    out = TurnCoalescer(clock)
    second = StringTransport()

    seen_during_flush = []

    class Reentrant(StringTransport):
        def write(self, data):
            super().write(data)
            out.write(second, b"quit\r\n")
            seen_during_flush.append((second.value(), out.pending(second)))

    first = Reentrant()
    out.write(first, b"a\r\n")
    out.write(first, b"b\r\n")
    assert first.value() == b""
    clock.advance(0)
    assert first.value() == b"a\r\nb\r\n"  # one write of both
    assert seen_during_flush == [(b"", 6)]  # held for the next turn, not lost or written inside
    assert second.value() == b"quit\r\n"  # task.Clock runs the next turn's call at once
    assert not clock.getDelayedCalls()


def test_flush_one_and_discard():
    """``flush_one`` writes one transport's bytes now (before a close); ``discard`` drops them."""
    clock = task.Clock()
    out = TurnCoalescer(clock)
    kept, dropped = StringTransport(), StringTransport()
    out.write(kept, b"last words\r\n")
    out.write(dropped, b"never\r\n")
    out.flush_one(kept)
    assert kept.value() == b"last words\r\n"
    out.discard(dropped)
    clock.advance(0)
    assert dropped.value() == b""
    assert kept.value() == b"last words\r\n"


def test_only_socket_transports_are_coalesced():
    """Tests' string transports have no reactor turn to flush them: they are written at once."""
    assert not coalescible(StringTransport())


@pytest_twisted.ensureDeferred
async def test_tls_gets_one_write_per_turn(tmp_path):
    """Over TLS the turn's lines reach the TLS layer as one write, and the client reads them."""
    files = make_tls_files(tmp_path / "pki")
    cert = PrivateCertificate.loadPEM(
        files.server_cert.read_text() + files.server_key.read_text())
    factory = _ServerFactory()
    port = reactor.listenSSL(0, factory, cert.options(), interface="127.0.0.1")

    class Client(protocol.Protocol):
        def __init__(self):
            self.data = b""
            self.enough = defer.Deferred()

        def dataReceived(self, data):
            self.data += data
            if self.data.endswith(b"three\r\n") and not self.enough.called:
                self.enough.callback(self.data)

    client = Client()
    endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port,
                                  CertificateOptions(verify=False), timeout=10)
    try:
        await _within(endpoint.connect(protocol.Factory.forProtocol(lambda: client)))
        server = await _within(factory.made)
        tls = server.transport
        assert coalescible(tls)
        writes = []
        real_write = tls.write

        def counting_write(data):
            writes.append(data)
            return real_write(data)

        tls.write = counting_write
        out = TurnCoalescer(reactor)
        for line in (b"one\r\n", b"two\r\n", b"three\r\n"):
            out.write(tls, line)
        assert writes == []
        assert await _within(client.enough) == b"one\r\ntwo\r\nthree\r\n"
        assert writes == [b"one\r\ntwo\r\nthree\r\n"]
    finally:
        if client.transport is not None:
            client.transport.abortConnection()
        await port.stopListening()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
