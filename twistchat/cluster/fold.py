"""
The fold: every node runs every input of the cluster's stream through its own core.

test-case-name: tests.test_cluster_fold

The core is a state machine: given the same inputs in the same order, and the
same clock readings, two registries hold the same users, rooms, modes and
numbering, and produce the same events (tests/test_cluster_fold.py shows it).
So the cluster does not split the rules: each node keeps a whole replica.  A
node's own connections send their inputs to the stream (:class:`Replica` is what
the IRC front-end talks to: :meth:`Replica.run` and friends); every node reads
the stream in its one order and applies each entry (:meth:`Replica.apply`) with
the entry's time as the core's clock and the entry's id as the msgid prefix, so
numbers, msgids and ``server-time`` agree everywhere.  Deliveries then go to the
node's own connections only: a user of another node has a :class:`RemoteConn`
that drops what it is handed (its own node delivers to it).

The node where an input came from hands the core's answer back to the
connection that sent it (the front-end renders it in order, labeled), instead
of delivering it here.

Entry fields (bytes): ``k`` kind, ``n`` the sending node's boot id, ``c`` the
connection's number on that node, ``s`` the input's serial on this node (to
find who waits for it), ``t`` the time in ms; by kind: ``c`` connect (``h``
host), ``l`` line (``m`` the line, ``x`` its context), ``h``/``r`` CAP hold and
release, ``q`` quit (``m`` reason), ``d`` a node is dead (``x`` its boot id).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from twistchat.cluster.stream import Entry, InputStream
from twistchat.core import commands
from twistchat.core.events import Delivery, Disconnect, deliver
from twistchat.core.model import User
from twistchat.core.registry import Registry
from twistchat.core.roomlog import LocalRoomLog
from twistchat.wire import Message, encode, format_tags, parse

__all__ = ["FoldClock", "FoldedRoomLog", "RemoteConn", "Replica", "new_boot"]

_log = Logger(namespace="twistchat.cluster")

#: What a user is told when the cluster cannot take a line now.
UNAVAILABLE_TEXT = ("Not sent: the cluster's Redis is unavailable; "
                    "your line was not accepted (try again shortly)")


def new_boot() -> bytes:
    """A node's identity for one run of its process: 12 hex digits."""
    return os.urandom(6).hex().encode()


class FoldClock:
    """
    The core's clock: the entry's time while an entry is applied, else the real one.

    Every node reads the same time for the same entry, so WHOWAS times, topic
    times, rate buckets and ``server-time`` agree.
    """

    def __init__(self, real: Callable[[], float]) -> None:
        self.real = real
        self.fixed: float | None = None

    def __call__(self) -> float:
        return self.fixed if self.fixed is not None else self.real()


class FoldedRoomLog(LocalRoomLog):
    """
    The room log of a replica: msgids made of the entry's id, the same on every node.

    An entry may number several events (a PRIVMSG to two rooms): the counter
    restarts at each entry, so ``<entry id>-<n>`` is unique and agreed.
    """

    def use_epoch(self, epoch: str) -> None:
        """The cluster's epoch (made once in Redis): the numbering every node shares."""
        self._epoch = epoch

    def at(self, entry_id: bytes) -> None:
        """The entry being applied now."""
        self._msgid_prefix = entry_id.decode().replace("-", "") + "x"
        self._msgid_counter = itertools.count(1)


class RemoteConn:
    """The connection of a user on another node: its node delivers to it, not this one."""

    __slots__ = ("node",)

    def __init__(self, node: bytes) -> None:
        self.node = node

    def deliver(self, payload: Any) -> None:
        """Nothing: the user's own node delivers the same payload."""


def _context_field(ctx: commands.Context) -> bytes:
    """A line's context (echo-message, multi-prefix, caps; client tags apart) as bytes."""
    flags = ("e" if ctx.echo else "") + ("m" if ctx.multi_prefix else "")
    return (flags + "|" + " ".join(sorted(ctx.caps))).encode()


def _context_of(field: bytes, tags: bytes) -> commands.Context:
    flags, _, caps = field.decode().partition("|")
    client_tags = None
    if tags:
        client_tags = parse(b"@" + tags + b" PING x").tags
    return commands.Context("e" in flags, "m" in flags, client_tags,
                            frozenset(caps.split()))


class Replica:
    """
    This node's replica of the cluster's core, and its door to the stream.

    ``registry`` must have been built with a :class:`FoldClock` and a
    :class:`FoldedRoomLog`, starting empty: the state is what the stream makes.
    ``on_lost(user, why)`` closes one of this node's connections whose user the
    cluster dropped (its node was declared dead while it was cut off).
    """

    def __init__(self, registry: Registry, clock: FoldClock, log: FoldedRoomLog,
                 stream: InputStream, boot: bytes | None = None) -> None:
        self.registry = registry
        self.clock = clock
        self.log = log
        self.stream = stream
        self.boot = boot if boot is not None else new_boot()
        self._numbers = itertools.count(1)
        self._serials = itertools.count(1)
        self._local: dict[User, bytes] = {}  # this node's users -> their connection number
        self._sessions: dict[tuple[bytes, bytes], User] = {}  # (boot, conn) -> user, every node
        self._waiting: dict[bytes, defer.Deferred] = {}  # serial -> the front-end waiting
        self.reaped: set[bytes] = set()
        self.applied = 0  # entries folded (for /metrics and tests)
        self.refused = 0  # inputs refused while Redis could not take them

    # ------------------------------------------------------ this node's inputs

    def connected(self, user: User, host: str) -> None:
        """A connection of this node's was accepted (``Registry.connect`` ran here)."""
        number = str(next(self._numbers)).encode()
        self._local[user] = number
        self._sessions[(self.boot, number)] = user
        self._send_until_taken({b"k": b"c", b"h": host.encode()}, user)

    def run(self, user: User, message: Message, ctx: commands.Context) -> defer.Deferred:
        """One command line of this node's user; fires with the core's answer to it."""
        tags = format_tags(dict(ctx.client_tags)).encode() if ctx.client_tags else b""
        line = encode(Message(message.command, message.params, message.source,
                               trailing=message.trailing)).rstrip(b"\r\n")
        return self._submit(user, {b"k": b"l", b"m": line, b"x": _context_field(ctx),
                                   b"g": tags})

    def hold(self, user: User) -> defer.Deferred:
        """CAP LS/REQ before registration (``Registry.hold_registration``)."""
        return self._submit(user, {b"k": b"h"})

    def release(self, user: User) -> defer.Deferred:
        """CAP END (``Registry.release_registration``)."""
        return self._submit(user, {b"k": b"r"})

    def quit(self, user: User, reason: str) -> None:
        """This node's user is gone: its QUIT must reach the stream (retried until it does)."""
        if user not in self._local:
            return
        self._send_until_taken({b"k": b"q", b"m": reason.encode()}, user)

    def _fields(self, user: User, fields: Entry) -> Entry:
        fields[b"n"] = self.boot
        fields[b"c"] = self._local[user]
        fields[b"t"] = str(int(self.clock.real() * 1000)).encode()
        return fields

    def _submit(self, user: User, fields: Entry) -> defer.Deferred:
        if user not in self._local:
            return defer.succeed([])
        serial = str(next(self._serials)).encode()
        fields = self._fields(user, fields)
        fields[b"s"] = serial
        waiting: defer.Deferred = defer.Deferred()
        self._waiting[serial] = waiting

        def refused(failure: Any) -> None:
            # Unavailable (not connected, queue full) or Redis's own error: not ordered.
            self._waiting.pop(serial, None)
            self.refused += 1
            waiting.callback([self.registry.reply(user, "NOTICE", UNAVAILABLE_TEXT)])

        self.stream.append(fields).addErrback(refused)
        return waiting

    def _send_until_taken(self, fields: Entry, user: User) -> None:
        """Inputs that must not be lost (connect, quit): retried while Redis is away."""
        self._resend(self._fields(user, fields), 40)

    def _resend(self, fields: Entry, tries: int) -> None:
        def retry(failure: Any) -> None:
            if tries > 1:
                self.stream.reactor.callLater(0.25, self._resend, fields, tries - 1)
            else:
                _log.error("cluster input {kind} never reached Redis", kind=fields[b"k"])

        self.stream.append(fields).addErrback(retry)

    # ------------------------------------------------------------ the fold

    def apply(self, entry_id: bytes, fields: Entry) -> None:
        """Fold one entry of the stream (every node, the same entries, in the same order)."""
        self.applied += 1
        boot = fields.get(b"n", b"")
        kind = fields.get(b"k", b"")
        if kind == b"d":
            self._reap(fields.get(b"x", b""))
            return
        if boot in self.reaped:
            return  # a node declared dead: what it sent after that is not its users' any more
        key = (boot, fields.get(b"c", b""))
        self.clock.fixed = int(fields.get(b"t", b"0")) / 1000
        self.log.at(entry_id)
        try:
            out = self._apply(kind, key, fields)
        except Exception:  # noqa: BLE001 - one bad entry must not stop the fold
            _log.failure("cluster entry {id} failed", id=entry_id)
            out = []
        finally:
            self.clock.fixed = None
        waiting = self._waiting.pop(fields[b"s"], None) \
            if boot == self.boot and b"s" in fields else None
        if waiting is not None:
            waiting.callback(out)  # the connection that sent it renders the answer
        else:
            deliver(out)

    def _apply(self, kind: bytes, key: tuple[bytes, bytes], fields: Entry) -> list[Delivery]:
        registry = self.registry
        if kind == b"c":
            if key[0] != self.boot:
                user = registry.connect(RemoteConn(key[0]), fields[b"h"].decode(),
                                        limited=False)
                assert user is not None
                self._sessions[key] = user
            return []
        user = self._sessions.get(key)
        if user is None:
            return []
        if kind == b"l":
            message = parse(fields[b"m"], max_body=1 << 16)  # its node checked the limits
            ctx = _context_of(fields.get(b"x", b"|"), fields.get(b"g", b""))
            return commands.dispatch(registry, user, message, ctx)
        if kind == b"h":
            registry.hold_registration(user)
            return []
        if kind == b"r":
            return registry.release_registration(user)
        if kind == b"q":
            del self._sessions[key]
            self._local.pop(user, None)
            return registry.quit(user, fields.get(b"m", b"").decode(errors="replace"))
        return []

    def _reap(self, dead: bytes) -> None:
        """A node was declared dead: its users quit, everywhere (this node's too, if it is us)."""
        if dead in self.reaped:
            return
        self.reaped.add(dead)
        out: list[Delivery] = []
        gone = [(key, user) for key, user in self._sessions.items() if key[0] == dead]
        for key, user in gone:
            del self._sessions[key]
            out += self.registry.quit(user, "Node lost")
        deliver(out)
        if dead == self.boot:
            # This node was cut off from Redis longer than the timeout: the others let its
            # users go.  Its connections close, and it starts over under a new identity.
            self.boot = new_boot()
            for _key, user in gone:
                self._local.pop(user, None)
                user.conn.deliver(Disconnect(
                    "This node lost the cluster for too long; reconnect"))
            for waiting in self._waiting.values():
                waiting.callback([])
            self._waiting.clear()
        _log.info("cluster: node {node} reaped, {n} users quit", node=dead, n=len(gone))

    def declare_dead(self, dead: bytes) -> defer.Deferred:
        """Append that ``dead`` is gone (nodes.py decides when); every node folds it."""
        return self.stream.append({b"k": b"d", b"n": self.boot, b"x": dead})
