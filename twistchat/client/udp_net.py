"""
The sockets of a UDP chat session, and the faults a test puts between them.

test-case-name: tests.test_udp_client, tests.test_udp_e2e

Apart from :class:`~twistchat.client.udp.UDPChatSession` so the session
never touches a socket: it is given a ``net`` (:class:`ReactorNet` on a real
reactor, a fake in memory in tests), and :class:`FaultInjector` loses,
duplicates and reorders datagrams, seeded, on the way in or out.
:func:`discover` finds a server by its beacon (docs/udp-protocol.md,
"Heartbeat and beacon").
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTime

from twistchat.wire import WireError, parse

__all__ = ["DEFAULT_PORT", "MAX_DATAGRAM", "FaultInjector", "ReactorNet", "Receiver", "discover"]

DEFAULT_PORT = 6667
MAX_DATAGRAM = 1200  # docs/udp-protocol.md, "Datagrams"


class Receiver(protocol.DatagramProtocol):
    """Hands every datagram of one socket to a callback."""

    def __init__(self, callback: Callable[[bytes, Any], None]) -> None:
        self.callback = callback

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        data = datagram
        self.callback(data, addr)


class ReactorNet:
    """Real sockets: a unicast socket, and a broadcast listener that others may share."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def listen_unicast(self, proto: protocol.DatagramProtocol, interface: str = "") -> Any:
        """An ephemeral UDP port for talking to the server."""
        return self.reactor.listenUDP(0, proto, interface=interface, maxPacketSize=65535)

    def listen_broadcast(self, proto: protocol.DatagramProtocol, address: str, port: int) -> Any:
        """
        Listen on ``address:port`` with ``SO_REUSEADDR``: every socket bound
        so gets its own copy of each broadcast, so clients can share a host.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.setblocking(False)
            return self.reactor.adoptDatagramPort(sock.fileno(), socket.AF_INET, proto,
                                                  maxPacketSize=65535)
        finally:
            sock.close()  # adoptDatagramPort holds its own duplicate of the descriptor


class FaultInjector:
    """
    A seeded fault layer: loses, duplicates and delays (so reorders) datagrams.

    ``injector(data, addr, forward)`` calls ``forward(data, addr)`` zero, one
    or two times, now or up to ``max_delay`` seconds later on ``clock``.
    """

    def __init__(self, clock: IReactorTime, seed: int = 0, loss: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, max_delay: float = 0.02) -> None:
        self.clock = clock
        self.random = random.Random(seed)
        self.loss, self.duplicate = loss, duplicate
        self.reorder, self.max_delay = reorder, max_delay
        self.passed = self.dropped = self.doubled = self.delayed = 0

    def __call__(self, data: bytes, addr: Any, forward: Callable[[bytes, Any], None]) -> None:
        rand = self.random.random
        if rand() < self.loss:
            self.dropped += 1
            return
        copies = 1
        if rand() < self.duplicate:
            copies = 2
            self.doubled += 1
        for _ in range(copies):
            self.passed += 1
            if rand() < self.reorder:
                self.delayed += 1
                self.clock.callLater(self.random.uniform(0, self.max_delay), forward, data, addr)
            else:
                forward(data, addr)



# A beacon heard: (host, port, server name, network name).
Beacon = tuple[str, int, "str | None", str]


def discover(reactor: Any = None, broadcast_port: int = DEFAULT_PORT + 1, address: str = "",
             timeout: float = 5.0, net: Any = None) -> defer.Deferred[Beacon]:
    """
    Find a server by its heartbeat beacon (docs/udp-protocol.md, "Heartbeat").

    Listens on ``address:broadcast_port`` (``""``: every interface) and fires
    with ``(host, port, server_name, network)`` from the first HEARTBEAT heard,
    or fails with ``TimeoutError`` after ``timeout`` seconds.
    """
    if reactor is None:
        from twisted.internet import reactor
    net = net or ReactorNet(reactor)
    result: defer.Deferred[Beacon] = defer.Deferred()
    state: dict[str, Any] = {}

    def heard(data: bytes, addr: Any) -> None:
        if result.called:
            return
        try:
            message = parse(data, max_body=MAX_DATAGRAM + 2, max_tags=MAX_DATAGRAM)
        except WireError:
            return
        params = message.params
        if message.verb != "HEARTBEAT" or len(params) < 2 or not params[1].isdigit():
            return
        finish((addr[0], int(params[1]), message.source, params[0]))

    def finish(value: Beacon | Exception) -> None:
        call = state.pop("timer", None)
        if call is not None and call.active():
            call.cancel()
        port = state.pop("port", None)
        if port is not None:
            port.stopListening()
        if isinstance(value, Exception):
            result.errback(value)
        else:
            result.callback(value)

    state["port"] = net.listen_broadcast(Receiver(heard), address, broadcast_port)
    state["timer"] = reactor.callLater(
        timeout, lambda: finish(TimeoutError(f"no beacon on port {broadcast_port} in {timeout} s")))
    return result
