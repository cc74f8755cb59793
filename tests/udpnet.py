"""
An in-memory UDP network on a ``task.Clock``, for UDP tests without sockets.

Not a test module: ``tests.test_udp`` and ``tests.test_udp_client`` build on it.
:class:`Raw` is a hand-driven client that registers in the two steps of
docs/udp-protocol.md, "Registration" (cookie, then NICK with it); :func:`padded`
and :func:`register_datagrams` build those datagrams for any test that sends
them itself.  Addresses are loopback only (127.0.0.0/8).  Every datagram is delivered by a
``callLater(0)`` (FIFO, never re-entrant), so a test advances the clock to
let the network run, with :meth:`FakeNet.run`.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from twistchat.core.registry import Registry
from twistchat.frontends.udp import MAX_DATAGRAM, MIN_REGISTER, Broadcast, UDPFrontEnd, UDPLimits
from twistchat.wire import parse

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
    """
    A registry, a UDP front-end on 127.0.0.1:6667 and a FakeNet, on one clock.

    ``history`` (a :class:`twistchat.history.History`) is where the front-end
    repairs what the room log no longer holds; None: nowhere.
    """

    def __init__(self, limits: UDPLimits = None, domain: str = "127.0.0.0/8",
                 registry: Registry = None, clock: Clock = None, history=None,
                 authenticator=None, **registry_kw) -> None:
        self.net = FakeNet(clock)
        self.clock = self.net.clock
        if clock is None:
            self.clock.advance(1_800_000_000)
        self.registry = registry or Registry(server_name="srv", clock=self.clock.seconds,
                                             **registry_kw)
        self.limits = limits or UDPLimits(flood_burst=10_000, flood_rate=10_000.0)
        self.broadcast = Broadcast(BROADCAST, 6668, ipaddress.IPv4Network(domain))
        self.front = UDPFrontEnd(self.registry, self.clock, self.broadcast, self.limits,
                                 history=history, authenticator=authenticator)
        self.port = self.net.bind(self.front, "127.0.0.1", 6667)

    def stop(self) -> None:
        """Stop the front-end (its heartbeat loop)."""
        self.port.stopListening()


# ------------------------------------------------------------ raw clients


def padded(line: str, extra_tags: str = "") -> bytes:
    """``line`` with a pad tag, MIN_REGISTER bytes in all (docs, "Registration")."""
    head = b"@" + (extra_tags.encode() + b";" if extra_tags else b"") + b"pad="
    body = b" " + line.encode() + b"\r\n"
    return head + b"x" * (MIN_REGISTER - len(head) - len(body)) + body


def register_datagrams(nick: str, cookie: str | None = None, extra_tags: str = "") -> bytes:
    """The padded NICK of registration step 1 (no ``cookie``) or step 2 (with it)."""
    tags = ";".join(t for t in (f"cookie={cookie}" if cookie else "", extra_tags) if t)
    return padded(f"NICK {nick}", tags)


def parse_reply(data: bytes):
    """A server datagram, parsed with the UDP size limits."""
    return parse(data, max_body=MAX_DATAGRAM + 2, max_tags=MAX_DATAGRAM)


class Raw(DatagramProtocol):
    """A hand-driven UDP client: sends what the test says, records what arrives."""

    def __init__(self, world: UDPWorld, host: str = "127.0.0.1") -> None:
        self.world = world
        self.got: list = []
        self.port = world.net.listen_unicast(self, host)
        self.token = None
        self.cseq = 0
        self.cookie_replies: list = []  # what step 1 of the last register() got

    @property
    def addr(self) -> tuple:
        return (self.port.host, self.port.port)

    def datagramReceived(self, data, addr):
        self.got.append(data)

    def send(self, data: bytes, dst=("127.0.0.1", 6667)) -> None:
        self.port.write(data, dst)
        self.world.net.run(0.01)

    def take(self) -> list:
        """Parsed datagrams received since the last call."""
        got, self.got = self.got, []
        return [parse_reply(d) for d in got]

    def received_bytes(self) -> int:
        return sum(len(d) for d in self.got)

    def ask_cookie(self, nick: str, extra_tags: str = "") -> str | None:
        """Registration step 1: the padded NICK without a cookie; the COOKIE it earns."""
        self.send(register_datagrams(nick, None, extra_tags))
        self.cookie_replies = self.take()
        for m in self.cookie_replies:
            if m.command == "COOKIE":
                return m.params[1]
        return None

    def register(self, nick: str, extra_tags: str = "") -> list:
        """
        Both registration steps; remember the token; return the replies of step 2.

        Where step 1 earned no cookie, its replies are returned instead.
        """
        cookie = self.ask_cookie(nick, extra_tags)
        if cookie is None:
            return self.cookie_replies
        self.send(register_datagrams(nick, cookie, extra_tags))
        replies = self.take()
        for m in replies:
            if m.command == "001":
                self.token = m.tags["token"]
        return replies

    def command(self, line: str) -> list:
        """Send one sequenced command with the token; return the replies."""
        self.cseq += 1
        self.send(f"@token={self.token};cseq={self.cseq} {line}".encode())
        return self.take()


class Listener(DatagramProtocol):
    """Hears the broadcast port."""

    def __init__(self, world: UDPWorld) -> None:
        self.got: list = []
        world.net.listen_broadcast(self, BROADCAST, 6668)

    def datagramReceived(self, data, addr):
        self.got.append(data)

    def events(self) -> list:
        """Room events heard (heartbeats left out), parsed; clears the record."""
        got, self.got = self.got, []
        return [m for m in map(parse_reply, got) if m.command != "HEARTBEAT"]
