"""
How the IRC front-end closes a connection, on StringTransport and task.Clock (issue #12, item 8).

StringTransport tells the two ends apart: ``loseConnection`` sets ``disconnecting``
(a clean close, which waits for the output to go), ``abortConnection`` sets
``disconnected`` too.  A TLS connection is a StringTransport that provides
ISSLTransport; Twisted's TLS calls ``handshakeCompleted`` when its handshake is done.
tests/test_tls_limits.py shows the same against the real server and real sockets.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import directlyProvides

from tests.memory import MemoryServer
from twistchat.frontends.irc import CLOSE_GRACE

TIMEOUT = 3.0


class _TLSClient:
    """A connection whose transport is TLS; ``handshake``: its handshake has completed."""

    def __init__(self, server: MemoryServer, host: str = "127.0.0.1",
                 handshake: bool = False) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        directlyProvides(self.transport, ISSLTransport)
        self.proto = server.factory.buildProtocol(self.transport.getPeer())
        self.proto.makeConnection(self.transport)
        if handshake:
            self.proto.handshakeCompleted()


def _sweep(server: MemoryServer, seconds: float) -> None:
    """Let the factory's once-a-second sweep run for ``seconds``."""
    for _ in range(int(seconds)):
        server.clock.advance(1)


def test_unfinished_handshake_is_aborted_at_the_registration_timeout():
    """No handshake by --registration-timeout: aborted at once, nothing written."""
    server = MemoryServer(registration_timeout=TIMEOUT)
    client = _TLSClient(server)
    _sweep(server, TIMEOUT)
    assert client.transport.disconnected  # aborted, not waiting for a handshake
    assert client.transport.value() == b""
    assert server.factory.metrics.drop_registration_timeout == 1


def test_finished_handshake_gets_error_then_a_clean_close():
    """Handshake done, no registration: ERROR, the SendQ producer off, a clean close."""
    server = MemoryServer(registration_timeout=TIMEOUT)
    client = _TLSClient(server, handshake=True)
    _sweep(server, TIMEOUT)
    assert b"ERROR :Closing link: 127.0.0.1 (Registration timed out)" in client.transport.value()
    assert client.transport.disconnecting and not client.transport.disconnected
    # Twisted's TLS does not start its shutdown while a producer is registered.
    assert client.transport.producer is None


def test_a_close_that_does_not_finish_is_aborted_after_the_grace():
    """Still not gone CLOSE_GRACE seconds after a clean close: the sweep aborts it."""
    server = MemoryServer(registration_timeout=TIMEOUT)
    client = _TLSClient(server, handshake=True)
    _sweep(server, TIMEOUT)
    assert not client.transport.disconnected
    _sweep(server, CLOSE_GRACE - 1)
    assert not client.transport.disconnected
    _sweep(server, 2)
    assert client.transport.disconnected


def test_a_plaintext_close_that_does_not_finish_is_aborted_too():
    """The same on plain TCP (a peer that reads nothing): ERROR, then an abort after the grace."""
    server = MemoryServer(registration_timeout=TIMEOUT)
    client = server.connect()
    _sweep(server, TIMEOUT)
    assert b"Registration timed out" in client.transport.value()
    assert not client.transport.disconnected
    _sweep(server, CLOSE_GRACE + 1)
    assert client.transport.disconnected


def test_a_close_that_finishes_leaves_no_timer():
    """The peer goes away during the grace: nothing is aborted, no delayed call is left."""
    server = MemoryServer(registration_timeout=TIMEOUT)
    client = _TLSClient(server, handshake=True)
    _sweep(server, TIMEOUT)
    client.proto.connectionLost(None)
    _sweep(server, CLOSE_GRACE + 1)
    assert not client.transport.disconnected
    assert server.clock.getDelayedCalls() == []


def test_unfinished_handshakes_count_towards_max_per_ip():
    """TLS connections count from TCP connect; the one past the limit is aborted, not left open."""
    server = MemoryServer(max_per_ip=2)
    first, second, third = (_TLSClient(server, "127.0.0.5") for _ in range(3))
    assert not first.transport.disconnecting and not second.transport.disconnecting
    assert third.transport.disconnected and third.transport.value() == b""
    assert server.factory.metrics.drop_per_ip == 1


def test_plaintext_refusal_still_says_why():
    """Past the limit on plain TCP the ERROR line still goes out before the close."""
    server = MemoryServer(max_per_ip=1)
    server.connect("127.0.0.5")
    refused = server.connect("127.0.0.5")
    assert b"Too many connections" in refused.transport.value()
    assert refused.transport.disconnecting and not refused.transport.disconnected
