"""
In-memory IRC connections for protocol tests: StringTransport and task.Clock.

Not a test module: ``tests.test_irc`` and others build on it.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twistchat.core.registry import Limits, Registry
from twistchat.frontends.irc import ConnectionLimits, IRCFactory
from twistchat.history import History
from twistchat.store import record_from_event
from twistchat.wire import Message, parse

MAX_RELAYED = 4096


class MemoryServer:
    """A registry and an IRC factory on a fake clock, no sockets."""

    def __init__(self, password=None, motd=None, registry_limits=None, store=None,
                 history_on_join=50, history_max=100, authenticator=None,
                 **conn_limits) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = store
        registry_limits = dict(registry_limits or {})
        if "max_per_ip" in conn_limits:  # one limit over every front-end: the core's
            registry_limits["max_per_ip"] = conn_limits.pop("max_per_ip")
        self.registry = Registry(server_name="srv", clock=self.clock.seconds, motd=motd,
                                 limits=Limits(**registry_limits), password=password,
                                 last_seqs=store.last_seqs() if store else None)
        history = None
        if store is not None:
            self.registry.log.subscribe(lambda e: store.append(record_from_event(e)))
            history = History(store, self.registry, history_max, history_on_join)
        if callable(authenticator):  # made from the registry: accounts(registry)
            authenticator = authenticator(self.registry)
        self.authenticator = authenticator
        self.factory = IRCFactory(self.registry, self.clock, ConnectionLimits(**conn_limits),
                                  history, authenticator=authenticator)

    def connect(self, host: str = "127.0.0.1") -> MemoryClient:
        """A new connection from ``host``."""
        return MemoryClient(self, host)

    def user(self, nick: str, *rooms: str, caps: str = "") -> MemoryClient:
        """A registered client called ``nick``, in ``rooms``, with its output read."""
        client = self.connect()
        if caps:
            client.send(f"CAP REQ :{caps}", "CAP END")
        client.send(f"NICK {nick}", f"USER {nick} 0 * :{nick} Real")
        for room in rooms:
            client.send(f"JOIN {room}")
        client.take()
        return client


class MemoryClient:
    """One connection: send lines in, read parsed lines out."""

    def __init__(self, server: MemoryServer, host: str) -> None:
        self.server = server
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        self.proto = server.factory.buildProtocol(self.transport.getPeer())
        self.proto.makeConnection(self.transport)

    def send(self, *lines) -> None:
        """Feed each line (str or bytes) as the client would send it, with CRLF."""
        for line in lines:
            data = line if isinstance(line, bytes) else line.encode("utf-8")
            self.proto.dataReceived(data + b"\r\n")

    def take(self) -> list:
        """Everything the server wrote since the last call, parsed."""
        data = self.transport.value()
        self.transport.clear()
        # Relayed lines carry a source prefix and may pass 512 bytes: clients read them whole.
        return [parse(line, max_body=MAX_RELAYED) for line in data.split(b"\r\n") if line]

    def take_verbs(self) -> list:
        """Just the commands/numerics written since the last call."""
        return [m.command for m in self.take()]

    def ask(self, *lines) -> list:
        """Send lines, return the replies."""
        self.take()
        self.send(*lines)
        return self.take()

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.disconnected


def numerics(messages) -> list:
    """The three-digit replies among ``messages``."""
    return [m.command for m in messages if m.command.isdigit()]


def first(messages, command: str) -> Message:
    """The first message with ``command``; fails the test if there is none."""
    for m in messages:
        if m.command == command:
            return m
    raise AssertionError(f"no {command} in {[str(m) for m in messages]}")
