"""
An in-memory UDP network on a ``task.Clock``, for UDP tests without sockets.

Not a test module: ``tests.test_udp`` and ``tests.test_udp_client`` build on it.
Addresses are loopback only (127.0.0.0/8).  Every datagram is delivered by a
``callLater(0)`` (FIFO, never re-entrant), so a test advances the clock to
let the network run, with :meth:`FakeNet.run`.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from twistchat.core.registry import Registry
from twistchat.frontends.udp import Broadcast, UDPFrontEnd, UDPLimits

BROADCAST = "127.255.255.255"


class FakePort:
    """One bound datagram port: what a DatagramProtocol's transport provides."""

    def __init__(self, net: FakeNet, proto, host: str, port: int) -> None:
        self.net, self.proto, self.host, self.port = net, proto, host, port
        self.sent: list = []  # (data, addr), everything written
        self.listening = True
        self.broadcast_allowed = False

    def write(self, data: bytes, addr) -> None:
        self.sent.append((data, addr))
        self.net.send((self.host, self.port), data, tuple(addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.host, self.port)

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self.broadcast_allowed = enabled

    def stopListening(self) -> None:
        if self.listening:
            self.listening = False
            self.net.unbind(self)
            self.proto.doStop()

    loseConnection = stopListening


class FakeNet:
    """Routes datagrams between :class:`FakePort`s; broadcast to every listener of the address."""

    def __init__(self, clock: Clock = None) -> None:
        self.clock = clock or Clock()
        self.unicast: dict = {}  # (host, port) -> FakePort
        self.broadcast: dict = {}  # (address, port) -> [FakePort]
        self.next_port = 40000
        self.delivered = 0

    # the ``net`` interface of twistchat.client.udp.UDPChatSession
    def listen_unicast(self, proto, interface: str = "") -> FakePort:
        self.next_port += 1
        return self.bind(proto, interface or "127.0.0.1", self.next_port)

    def listen_broadcast(self, proto, address: str, port: int) -> FakePort:
        fake = FakePort(self, proto, address or BROADCAST, port)
        self.broadcast.setdefault((fake.host, port), []).append(fake)
        proto.makeConnection(fake)
        return fake

    def bind(self, proto, host: str, port: int) -> FakePort:
        assert ipaddress.ip_address(host).is_loopback, "tests stay on loopback"
        fake = FakePort(self, proto, host, port)
        self.unicast[(host, port)] = fake
        proto.makeConnection(fake)
        return fake

    def unbind(self, fake: FakePort) -> None:
        if self.unicast.get((fake.host, fake.port)) is fake:
            del self.unicast[(fake.host, fake.port)]
        listeners = self.broadcast.get((fake.host, fake.port), [])
        if fake in listeners:
            listeners.remove(fake)

    def send(self, src: tuple, data: bytes, dst: tuple) -> None:
        assert ipaddress.ip_address(dst[0]).is_loopback, "tests stay on loopback"
        self.clock.callLater(0, self._deliver, src, data, dst)

    def _deliver(self, src, data, dst) -> None:
        targets = list(self.broadcast.get(dst, ()))
        if dst in self.unicast:
            targets.append(self.unicast[dst])
        for fake in targets:
            if fake.listening:
                self.delivered += 1
                fake.proto.datagramReceived(data, src)

    def run(self, seconds: float, step: float = 0.005) -> None:
        """Advance the clock by ``seconds`` in small steps, delivering as it goes."""
        steps = max(int(seconds / step), 1)
        for _ in range(steps):
            self.clock.advance(step)

    def run_until(self, predicate, limit: float = 30.0, step: float = 0.005) -> bool:
        """Advance until ``predicate()`` holds (True) or ``limit`` seconds pass (False)."""
        elapsed = 0.0
        while elapsed < limit:
            if predicate():
                return True
            self.clock.advance(step)
            elapsed += step
        return predicate()


class UDPWorld:
    """A registry, a UDP front-end on 127.0.0.1:6667 and a FakeNet, on one clock."""

    def __init__(self, limits: UDPLimits = None, domain: str = "127.0.0.0/8",
                 registry: Registry = None, clock: Clock = None, **registry_kw) -> None:
        self.net = FakeNet(clock)
        self.clock = self.net.clock
        if clock is None:
            self.clock.advance(1_800_000_000)
        self.registry = registry or Registry(server_name="srv", clock=self.clock.seconds,
                                             **registry_kw)
        self.limits = limits or UDPLimits(flood_burst=10_000, flood_rate=10_000.0)
        self.broadcast = Broadcast(BROADCAST, 6668, ipaddress.IPv4Network(domain))
        self.front = UDPFrontEnd(self.registry, self.clock, self.broadcast, self.limits)
        self.port = self.net.bind(self.front, "127.0.0.1", 6667)

    def stop(self) -> None:
        """Stop the front-end (its heartbeat loop)."""
        self.port.stopListening()
