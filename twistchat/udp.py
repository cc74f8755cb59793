"""
The UDP front-end: sessions, room broadcast, sequence repair, heartbeat beacon.

test-case-name: tests.test_udp

The wire contract is docs/udp-protocol.md; this module holds to it and the
names below quote it.  In one paragraph: one IRC line per datagram (at most
:data:`MAX_DATAGRAM` bytes); ``NICK`` padded to :data:`MIN_REGISTER` bytes opens
a session and earns a random token; every later datagram carries
``@token=...`` and comes from the same address; room events go out once, by
broadcast, tagged ``seq`` and ``time``; a heartbeat carries each room's latest
``seq`` and doubles as the discovery beacon; clients repair gaps by unicast.

What lives where:

- :class:`UDPFrontEnd` (a ``DatagramProtocol``) owns the session table, the
  broadcast of registry events (a ``registry.listeners`` entry), the heartbeat
  and expiry loop.  It holds no chat state: rules are the registry's, commands
  go through :func:`twistchat.commands.dispatch` as TCP's do.
- :class:`UDPSession` is the ``user.conn`` of a UDP user: the registry's
  replies reach it through ``deliver(payload)`` and go out as numbered unicast
  lines (tag ``useq``), kept a while so the client can repair them too.

Anti-amplification (docs/udp-protocol.md, "Amplification"): a datagram that
does not carry a valid token for its source address never makes the server
send more bytes than it received.  :class:`_Budget` enforces that in one place.

Time comes from ``clock`` (the reactor, or ``task.Clock`` in tests).
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections import deque
from dataclasses import dataclass
from itertools import islice

from twisted.internet import error, protocol, task
from twisted.logger import Logger

from twistchat import commands
from twistchat.events import TAG_SEQ, TAG_TIME, Event, deliver, format_server_time
from twistchat.registry import Registry, casefold
from twistchat.wire import (
    MAX_BODY,
    InvalidUTF8,
    LineTooLong,
    Message,
    WireError,
    encode,
    parse,
)

__all__ = [
    "MAX_DATAGRAM", "MIN_REGISTER", "UDP_VIEW", "Broadcast", "UDPLimits", "UDPFrontEnd",
    "UDPSession", "event_line", "event_tags", "peek_tags", "broadcast_domain", "heartbeat_lines", "parse_heartbeat",
]

# docs/udp-protocol.md, "Datagrams": at most 1200 bytes, a size that crosses any
# path without fragmentation (QUIC makes the same bet, RFC 9000 section 14).
MAX_DATAGRAM = 1200
# "Registration": the NICK that opens a session is padded to at least this many
# bytes, so the 001 that answers it (with the token) never amplifies; QUIC pads
# its Initial packets for the same reason (RFC 9000 section 8.1, 14.1).
MIN_REGISTER = 1200
# "Registration": tokens are 128 random bits, written as 32 hex digits.
TOKEN_BYTES = 16
# Room events carry the room's sequence number and server time, always.
UDP_VIEW = TAG_SEQ | TAG_TIME
HEARTBEAT = "HEARTBEAT"
# Room events whose parameters do not name the room (one per room the user is
# in): on UDP they carry it in a ``room`` tag, the room's casefolded name.
_ROOMLESS = frozenset(("QUIT", "NICK"))
# Room events that change a session's own rooms or name: also in its unicast stream.
_MEMBERSHIP = frozenset(("JOIN", "PART", "NICK", "KICK"))


def event_tags(event: Event) -> dict:
    """The tags a room event carries on UDP: ``seq``, ``time``, and ``room`` where needed."""
    tags = event.tags_for(UDP_VIEW)
    if event.message.command in _ROOMLESS and event.is_room_event:
        tags["room"] = event.target
    return tags


def event_line(event: Event) -> bytes:
    """The datagram of a room event, as broadcast and as sent again on repair."""
    message = event.message
    if message.command not in _ROOMLESS:
        return event.line(UDP_VIEW)  # formatted once, shared by broadcast and repairs
    return encode(Message(message.command, message.params, message.source, event_tags(event)))


@dataclass(frozen=True)
class UDPLimits:
    """Limits of the UDP front-end; the ones with a service flag say so."""

    heartbeat: float = 1.0  # --heartbeat: seconds between heartbeats (and expiry checks)
    session_timeout: float = 60.0  # --udp-session-timeout: silence before a session expires
    pending_timeout: float = 10.0  # a session that never used its token expires sooner
    repair_limit: int = 100  # --repair-limit: events answered per repair request
    repair_rate: float = 2000.0  # --repair-rate: events per second per session, after ...
    repair_burst: int = 1000  # ... this many at once
    max_sessions: int = 1024  # --udp-max-sessions
    max_per_ip: int = 16  # --max-per-ip (shared with TCP)
    max_line: int = MAX_BODY  # --max-line (shared with TCP): body bytes, CRLF included
    flood_burst: int = 20  # --flood-burst (shared with TCP)
    flood_rate: float = 5.0  # --flood-rate (shared with TCP)
    window: int = 64  # sequenced datagrams held out of order per session
    unicast_kept: int = 256  # numbered unicast lines kept per session for repair


@dataclass(frozen=True)
class Broadcast:
    """Where room events go (``address``, ``port``) and which peers hear them (``domain``)."""

    address: str
    port: int
    domain: ipaddress.IPv4Network

    def reaches(self, host: str) -> bool:
        """True if a client at ``host`` hears our broadcasts (same subnet)."""
        try:
            return ipaddress.ip_address(host) in self.domain
        except ValueError:
            return False


# ---------------------------------------------------------------- networking


def _local_ipv4_interfaces() -> list:
    """Every local interface's primary IPv4 address and netmask (Linux ioctls)."""
    import fcntl
    import struct

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                addr = fcntl.ioctl(probe.fileno(), 0x8915, request)[20:24]  # SIOCGIFADDR
                mask = fcntl.ioctl(probe.fileno(), 0x891B, request)[20:24]  # SIOCGIFNETMASK
            except OSError:
                continue
            found.append(ipaddress.IPv4Interface(
                f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}"))
    return found


def broadcast_domain(interface: str, broadcast: str | None = None,
                     interfaces=None) -> tuple:
    """
    ``(broadcast address, domain network)`` for a server bound to ``interface``.

    ``broadcast`` is ``--broadcast``: ``ADDR`` or ``ADDR/PREFIX``.  Without it,
    the broadcast address of the interface the server is bound to (127.0.0.1:
    127.255.255.255).  Raise ValueError when it cannot be known (the wildcard
    address, an address no interface has): the caller asks for --broadcast.
    """
    if interfaces is None:
        try:
            interfaces = _local_ipv4_interfaces()
        except (ImportError, OSError):
            interfaces = []
    if broadcast:
        if "/" in broadcast:
            net = ipaddress.IPv4Network(broadcast, strict=False)
            return broadcast.split("/")[0], net
        addr = ipaddress.IPv4Address(broadcast)
        if addr.is_loopback:
            return broadcast, ipaddress.IPv4Network("127.0.0.0/8")
        for iface in interfaces:
            if iface.network.broadcast_address == addr:
                return broadcast, iface.network
        try:
            bound = ipaddress.IPv4Address(interface)
        except ValueError:
            bound = None
        for iface in interfaces:
            if bound is not None and iface.ip == bound:
                return broadcast, iface.network
        raise ValueError(f"no local interface has broadcast address {broadcast}; "
                         "give it with its prefix, e.g. --broadcast=10.0.0.255/24")
    try:
        bound = ipaddress.IPv4Address(interface)
    except ValueError:
        raise ValueError(f"--interface {interface!r} is not an IPv4 address; give --broadcast")
    if bound.is_loopback:
        return "127.255.255.255", ipaddress.IPv4Network("127.0.0.0/8")
    if bound.is_unspecified:
        raise ValueError("--interface=0.0.0.0 listens on every interface: "
                         "say where to broadcast with --broadcast=ADDR[/PREFIX]")
    for iface in interfaces:
        if iface.ip == bound:
            return str(iface.network.broadcast_address), iface.network
    raise ValueError(f"no local interface has address {interface}; give --broadcast")


# ------------------------------------------------------------------ the wire


def peek_tags(data: bytes) -> tuple:
    """
    ``(token, cseq)`` from a datagram's tag section, read as bytes.

    Read before UTF-8 decoding, so that a session's malformed line still gets
    its (full-size) error reply and its acknowledgement.  Either is None when
    absent; ``cseq`` is None when it is not a decimal number.
    """
    if data[:1] != b"@":
        return None, None
    end = data.find(b" ")
    section = data[1:end] if end > 0 else data[1:]
    token = cseq = None
    for item in section.split(b";"):
        key, _, value = item.partition(b"=")
        if key == b"token":
            token = value.decode("ascii", "replace")
        elif key == b"cseq":
            if value.isdigit() and len(value) < 19:
                cseq = int(value)
    return token, cseq


def heartbeat_lines(server_name: str, network: str, port: int, rooms: list,
                    time_ms: int) -> list:
    """
    The heartbeat datagrams: ``:server HEARTBEAT network port :#a:12 #b:7``.

    ``rooms`` is a list of ``(name, latest seq)``.  Split into as many
    datagrams as it takes to stay within :data:`MAX_DATAGRAM`; always at
    least one, since the heartbeat is also the discovery beacon.
    """
    tags = {"time": format_server_time(time_ms)}
    head = encode(Message(HEARTBEAT, (network, str(port), "x"), server_name, tags))
    room = MAX_DATAGRAM - len(head)
    out, chunk, size = [], [], 0
    for name, seq in rooms:
        entry = f"{name}:{seq}"
        length = len(entry.encode("utf-8")) + 1
        if chunk and size + length > room:
            out.append(" ".join(chunk))
            chunk, size = [], 0
        chunk.append(entry)
        size += length
    if chunk or not out:
        out.append(" ".join(chunk))
    return [encode(Message(HEARTBEAT, (network, str(port), text), server_name, tags))
            for text in out]


def parse_heartbeat(message: Message) -> dict:
    """``{room: latest seq}`` from a parsed HEARTBEAT (rooms as the server spells them)."""
    rooms = {}
    if len(message.params) >= 3:
        for entry in message.params[2].split():
            name, _, seq = entry.rpartition(":")
            if name and seq.isdigit():
                rooms[name] = int(seq)
    return rooms


# ------------------------------------------------------------------ sessions


class _Budget:
    """
    Bytes the server may still send in answer to an unverified datagram.

    docs/udp-protocol.md, "Amplification": never more than it received.
    """

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def take(self, size: int) -> bool:
        if size > self.left:
            self.left = 0  # nothing after a line that did not fit: keep replies in order
            return False
        self.left -= size
        return True


class UDPSession:
    """
    One registered UDP client: its token, its address, its numbered unicast stream.

    ``user.conn`` of a UDP user.  Lines the registry hands it (replies, private
    messages) go out by unicast with a ``useq`` tag, one more per line, and are
    kept (:attr:`UDPLimits.unicast_kept`) so the client can ask again for any it
    missed.  Room events it ignores: the broadcast carries them, except its own
    JOIN, PART, NICK and KICK, which also join its unicast stream so the client
    learns exactly where its view of a room begins and ends.
    """

    # The registry hands room lines only to members that need them one by one; the
    # broadcast carries them to UDP sessions (unicast copies are the broadcaster's job).
    room_lines_by_broadcast = True

    __slots__ = (
        "front", "token", "addr", "user", "unicast", "validated", "closed", "last_heard",
        "next_cseq", "held", "useq", "kept", "budget", "tokens", "refilled",
        "repair_tokens", "repair_refilled",
    )

    def __init__(self, front: UDPFrontEnd, token: str, addr: tuple, unicast: bool,
                 now: float) -> None:
        self.front = front
        self.token = token
        self.addr = addr
        self.user = None
        self.unicast = unicast  # outside the broadcast domain: room events by unicast too
        self.validated = False  # has sent a datagram with its token (its address is proven)
        self.closed = False
        self.last_heard = now
        self.next_cseq = 1  # the next sequenced command to run
        self.held: dict = {}  # cseq -> datagram, arrived early
        self.useq = 0  # last numbered unicast line sent
        self.kept: deque = deque(maxlen=front.limits.unicast_kept)  # (useq, bytes)
        self.budget: _Budget | None = None  # set while answering an unverified NICK
        self.tokens = float(front.limits.flood_burst)
        self.refilled = now
        self.repair_tokens = float(front.limits.repair_burst)
        self.repair_refilled = now

    # The registry's output for this user.
    def deliver(self, payload) -> None:
        """Send one registry payload to this client (see the class docstring)."""
        if self.closed:
            return
        if type(payload) is Event:
            if payload.target[:1] in "#&":  # a room event: the broadcast carries it ...
                message = payload.message
                if message.command not in _MEMBERSHIP or not self._own_membership(message):
                    return  # ... except our own JOIN/PART/NICK/KICK (hot path: one set lookup)
            tags = event_tags(payload)
            message = payload.message
        else:
            message = payload
            if message.command == "AWAY":
                return  # away-notify is for IRCv3 clients that ask; UDP clients do not
            tags = dict(message.tags) if message.tags else {}
            if message.command == "001":
                tags.update(self.front.session_tags(self))
        self.useq += 1
        tags["useq"] = str(self.useq)
        data = encode(Message(message.command, message.params, message.source, tags))
        self.kept.append((self.useq, data))
        self.front.send_unicast(self, data)

    def _own_membership(self, message: Message) -> bool:
        """True for room events that change which rooms this user is in (or its name)."""
        verb = message.command
        if verb == "KICK":
            return len(message.params) > 1 and casefold(message.params[1]) == self.user.key
        if verb in ("JOIN", "PART", "NICK") and message.source:
            nick = message.source.split("!", 1)[0]
            # NICK: the event's source is the old nick; the user already has the new one.
            if verb == "NICK":
                return casefold(message.params[0]) == self.user.key if message.params else False
            return casefold(nick) == self.user.key
        return False

    def take_token(self, now: float) -> bool:
        """Flood control: a token bucket of ``flood_burst`` lines, ``flood_rate`` per second."""
        limits = self.front.limits
        self.tokens = min(limits.flood_burst,
                          self.tokens + (now - self.refilled) * limits.flood_rate)
        self.refilled = now
        if self.tokens >= 1 - 1e-9:
            self.tokens -= 1
            return True
        return False

    def take_repair(self, wanted: int, now: float) -> int:
        """How many of ``wanted`` repair events the rate limit allows now."""
        limits = self.front.limits
        self.repair_tokens = min(limits.repair_burst, self.repair_tokens
                                 + (now - self.repair_refilled) * limits.repair_rate)
        self.repair_refilled = now
        allowed = min(wanted, int(self.repair_tokens + 1e-9))
        self.repair_tokens -= allowed
        return max(allowed, 0)

    def __repr__(self) -> str:
        return f"<UDPSession {self.user.nick if self.user else '*'} {self.addr}>"


# ----------------------------------------------------------------- front-end


class UDPFrontEnd(protocol.DatagramProtocol):
    """
    The UDP server: one socket for unicast in and out, broadcast out.

    ``clock`` provides ``seconds()`` and ``callLater`` (the reactor, or a
    ``task.Clock``); ``broadcast`` says where room events go; ``metrics`` is
    the server's :class:`~twistchat.metrics.Metrics` (optional).
    """

    _log = Logger()

    def __init__(self, registry: Registry, clock, broadcast: Broadcast,
                 limits: UDPLimits = UDPLimits(), metrics=None) -> None:
        self.registry = registry
        self.clock = clock
        self.broadcast = broadcast
        self.limits = limits
        self.metrics = metrics
        self.sessions: dict = {}  # token -> UDPSession
        self.by_addr: dict = {}  # (host, port) -> UDPSession
        self.per_ip: dict = {}  # host -> number of sessions
        # Rooms whose events are broadcast (those with a UDP member), recomputed
        # after each membership event: key -> (any member hears broadcast,
        # sessions that need unicast copies).
        self._audience: dict = {}
        self._stale: set = set()
        self._loop: task.LoopingCall | None = None
        self.port = 0
        registry.listeners.append(self.on_event)

    # ------------------------------------------------------------ lifecycle

    def startProtocol(self) -> None:
        self.transport.setBroadcastAllowed(True)
        self.port = self.transport.getHost().port
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.clock
        self._loop.start(self.limits.heartbeat, now=True)
        self._log.info("udp on port {port}, broadcast to {addr}:{bport} (domain {domain})",
                       port=self.port, addr=self.broadcast.address, bport=self.broadcast.port,
                       domain=str(self.broadcast.domain))

    def stopProtocol(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def session_tags(self, session: UDPSession) -> dict:
        """The tags of the 001 that opens ``session`` (docs/udp-protocol.md, "Registration")."""
        tags = {
            "token": session.token,
            "broadcast": f"{self.broadcast.address}:{self.broadcast.port}",
            "timeout": f"{self.limits.session_timeout:g}",
            "heartbeat": f"{self.limits.heartbeat:g}",
        }
        if session.unicast:
            tags["unicast"] = ""
        return tags

    # --------------------------------------------------------------- output

    def _write(self, data: bytes, addr: tuple) -> None:
        try:
            self.transport.write(data, addr)
        except (OSError, error.MessageLengthError) as e:
            # A full socket buffer or an unreachable peer loses one datagram, as
            # the network may; the client repairs it.
            self._log.debug("udp send to {addr} failed: {error}", addr=addr, error=e)

    def send_unicast(self, session: UDPSession, data: bytes) -> None:
        """Send ``data`` to ``session`` alone (within its budget, while it has one)."""
        if session.budget is not None and not session.budget.take(len(data)):
            return  # kept, numbered: the client repairs it once it uses its token
        if self.metrics is not None:
            self.metrics.udp.lines_out += 1
        self._write(data, session.addr)

    def _reply(self, addr: tuple, budget: _Budget | None, command: str, *params: str,
               nick: str = "*") -> None:
        """An unnumbered server line to ``addr`` (an error for a datagram we could not run)."""
        data = encode(Message(command, (nick, *params) if command.isdigit() else params,
                              self.registry.server_name))
        if budget is not None and not budget.take(len(data)):
            return
        self._write(data, addr)

    def on_event(self, event: Event) -> None:
        """
        ``registry.listeners`` entry: broadcast one room event, once.

        Only rooms with a UDP member are broadcast: a room of TCP users alone
        stays off the LAN.  Members outside the broadcast domain get a unicast copy.
        """
        if not event.is_room_event:
            return
        key = event.target
        audience = self._audience.get(key)
        if audience is None or key in self._stale:
            audience = self._recount(key)
        verb = event.message.command
        if verb == "JOIN":
            audience = self._recount(key)  # the joiner is a member already
        elif verb in ("PART", "KICK", "QUIT"):
            self._stale.add(key)  # the leaver is still a member: count again next time
        heard, copies = audience
        if not heard and not copies:
            return
        data = event_line(event)
        if heard:
            self._write(data, (self.broadcast.address, self.broadcast.port))
            if self.metrics is not None:
                self.metrics.udp_broadcasts += 1
        for session in copies:
            self._write(data, session.addr)

    def _recount(self, key: str) -> tuple:
        """Who hears room ``key``: (any member in the broadcast domain, unicast sessions)."""
        self._stale.discard(key)
        channel = self.registry.channels.get(key)
        if channel is None:
            self._audience.pop(key, None)
            return False, []
        heard, copies = False, []
        for member in channel.members:
            conn = member.conn
            if type(conn) is UDPSession and not conn.closed:
                if conn.unicast:
                    copies.append(conn)
                else:
                    heard = True
        self._audience[key] = audience = (heard, copies)
        return audience

    # ---------------------------------------------------------------- input

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        """One datagram from anyone: route it by its token (docs/udp-protocol.md)."""
        try:
            self._received(data, addr)
        except Exception:
            # Our own bug: log it; the next datagram is served as usual.
            self._log.failure("error handling a datagram from {addr}", addr=addr)

    def _received(self, data: bytes, addr: tuple) -> None:
        if self.metrics is not None:
            self.metrics.udp.lines_in += 1
        token, cseq = peek_tags(data)
        session = self.sessions.get(token) if token is not None else None
        verified = session is not None and session.addr == addr
        if token is not None and not verified:
            # A wrong or stale token, or a right one from another address:
            # dropped without a word (no reply to an unproven address).
            self._drop("udp_token")
            return
        if not verified:
            if len(data) > MAX_DATAGRAM:
                self._reply(addr, _Budget(len(data)), "417", "Input line was too long")
            else:
                self._unregistered(data, addr)
            return
        if len(data) > MAX_DATAGRAM:
            data = data[:MAX_DATAGRAM + 1]  # still too long (417 when run); held small
        now = self.clock.seconds()
        session.last_heard = now
        if not session.validated:
            session.validated = True
            session.budget = None
        if cseq is None:
            self._unsequenced(session, data, now)
        else:
            self._sequenced(session, cseq, data, now)

    def _drop(self, reason: str) -> None:
        if self.metrics is not None:
            name = "drop_" + reason
            setattr(self.metrics, name, getattr(self.metrics, name) + 1)

    def _parse(self, data: bytes, addr: tuple, budget: _Budget | None,
               nick: str = "*", reply=None) -> Message | None:
        """Parse one datagram's line; on error, answer it (417 / FAIL) and return None."""
        if reply is None:
            def reply(command, *params):
                self._reply(addr, budget, command, *params, nick=nick)
        try:
            if len(data) > MAX_DATAGRAM:
                raise LineTooLong()
            return parse(data, max_body=self.limits.max_line, max_tags=MAX_DATAGRAM)
        except LineTooLong:
            reply("417", "Input line was too long")
        except InvalidUTF8:
            reply("FAIL", "*", "INVALID_UTF8", "Message rejected: it is not valid UTF-8")
        except WireError as e:
            reply("FAIL", "*", "INVALID_MESSAGE", f"Malformed line: {e}")
        return None

    # ------------------------------------------------------------ registration

    def _unregistered(self, data: bytes, addr: tuple) -> None:
        """A datagram without a token: only a padded NICK opens a session."""
        budget = _Budget(len(data))
        message = self._parse(data, addr, budget)
        if message is None:
            return
        if message.verb != "NICK":
            self._drop("udp_token")
            return  # docs: "anything else is dropped"
        if len(data) < MIN_REGISTER:
            self._reply(addr, budget, "FAIL", "NICK", "NEED_PADDING",
                        f"Pad NICK to {MIN_REGISTER} bytes")
            return
        nick = message.params[0] if message.params else ""
        host = addr[0]
        existing = self.by_addr.get(addr)
        if existing is not None:
            if not existing.validated and casefold(nick) == existing.user.key:
                # The client did not get our 001: the same answer again.
                for _, line in list(existing.kept):
                    if budget.take(len(line)):
                        self._write(line, addr)
                return
            self._reply(addr, budget, "FAIL", "NICK", "ADDRESS_IN_USE",
                        "This address already has a session")
            return
        if (len(self.sessions) >= self.limits.max_sessions
                or self.per_ip.get(host, 0) >= self.limits.max_per_ip):
            self._reply(addr, budget, "FAIL", "NICK", "TOO_MANY_SESSIONS",
                        "Too many sessions, try later")
            return
        token = secrets.token_hex(TOKEN_BYTES)
        now = self.clock.seconds()
        unicast = "unicast" in message.tags or not self.broadcast.reaches(host)
        session = UDPSession(self, token, addr, unicast, now)
        session.budget = budget
        user = self.registry.connect(session, host)
        errors = self.registry.check_nick(user, nick)
        out = errors or self.registry.register(user, nick, nick, nick)
        if not user.registered:
            self.registry.quit(user)
            for delivery in out:
                data = encode(delivery.payload)
                if budget.take(len(data)):
                    self._write(data, addr)
            return
        session.user = user
        self.sessions[token] = session
        self.by_addr[addr] = session
        self.per_ip[host] = self.per_ip.get(host, 0) + 1
        if self.metrics is not None:
            self.metrics.udp.connections += 1
            self.metrics.udp.accepted += 1
        self._log.info("udp session {nick} from {addr}{how}", nick=nick, addr=addr,
                       how=" (unicast)" if unicast else "")
        deliver(out)

    # ------------------------------------------------------------- commands

    def _ack(self, session: UDPSession) -> None:
        """``ACK <last cseq run> <last useq sent>``: unnumbered (docs, "Reliable commands")."""
        data = encode(Message("ACK", (str(session.next_cseq - 1), str(session.useq)),
                              self.registry.server_name))
        self._write(data, session.addr)

    def _sequenced(self, session: UDPSession, cseq: int, data: bytes, now: float) -> None:
        """Run sequenced commands once each, in ``cseq`` order; acknowledge."""
        if session.next_cseq <= cseq < session.next_cseq + self.limits.window:
            session.held[cseq] = data
        held = session.held
        while session.next_cseq in held and not session.closed:
            if not session.take_token(now):
                break  # flood: unacknowledged, the client sends it again later
            line = held.pop(session.next_cseq)
            session.next_cseq += 1
            self._run(session, line)
        self._ack(session)  # after a QUIT too: the client stops sending it

    def _unsequenced(self, session: UDPSession, data: bytes, now: float) -> None:
        message = self._parse(data, session.addr, None,
                              reply=lambda *a: self._numbered(session, *a))
        if message is None:
            return
        verb = message.verb
        if verb == "PING":
            if session.take_repair(1, now):
                param = message.params[0] if message.params else self.registry.server_name
                self._write(encode(Message("PONG", (self.registry.server_name, param),
                                           self.registry.server_name,
                                           {"latest": str(session.useq)})), session.addr)
        elif verb == "REPAIR":
            self._repair(session, message, now)
        elif session.take_token(now):
            self._command(session, message)

    def _numbered(self, session: UDPSession, command: str, *params: str) -> None:
        """A server line in ``session``'s numbered unicast stream."""
        if command.isdigit():
            params = (session.user.nick, *params)
        session.deliver(Message(command, params, self.registry.server_name))

    def _run(self, session: UDPSession, data: bytes) -> None:
        message = self._parse(data, session.addr, None,
                              reply=lambda *a: self._numbered(session, *a))
        if message is not None:
            self._command(session, message)

    def _command(self, session: UDPSession, message: Message) -> None:
        """One command of a registered session: session verbs here, the rest dispatched."""
        verb = message.verb
        try:
            if verb == "QUIT":
                reason = message.params[0] if message.params else "Client Quit"
                self.close_session(session, reason)
            elif verb in ("PING", "REPAIR"):
                self._unsequenced_verb(session, message)
            elif verb in ("USER", "PASS"):
                self._numbered(session, "462", "You may not reregister")
            elif verb in ("CAP", "PONG"):
                pass  # UDP sessions have every tag they need: nothing to negotiate
            else:
                # echo: a private message comes back to its sender in its own
                # numbered stream, so the client shows it in order, once.
                deliver(commands.dispatch(self.registry, session.user, message, _ECHO))
        except Exception:
            self._log.failure("error handling {verb} from {addr}", verb=verb, addr=session.addr)
            self._numbered(session, "FAIL", verb, "INTERNAL_ERROR",
                           "The server failed on that command")

    def _unsequenced_verb(self, session: UDPSession, message: Message) -> None:
        now = self.clock.seconds()
        if message.verb == "REPAIR":
            self._repair(session, message, now)
        else:
            param = message.params[0] if message.params else self.registry.server_name
            self._numbered(session, "PONG", self.registry.server_name, param)

    # --------------------------------------------------------------- repair

    def _repair(self, session: UDPSession, message: Message, now: float) -> None:
        """
        ``REPAIR <room or *> <from> <to>``: send what is still held of that range.

        At most ``repair_limit`` lines per request, and ``repair_rate`` lines a
        second per session; a range no longer held is answered ``FAIL REPAIR GONE``.
        """
        p = message.params
        if len(p) < 3 or not p[1].isdigit() or not p[2].isdigit() or int(p[1]) > int(p[2]) \
                or int(p[1]) < 1:
            self._numbered(session, "FAIL", "REPAIR", "INVALID_PARAMS",
                           "REPAIR <room or *> <from> <to>")
            return
        target, first, last = p[0], int(p[1]), int(p[2])
        wanted = min(last - first + 1, self.limits.repair_limit)
        allowed = session.take_repair(wanted, now)
        if not allowed:
            return  # over the rate: the client asks again later
        if self.metrics is not None:
            self.metrics.udp_repairs += 1
        if target == "*":
            kept = session.kept
            lowest = kept[0][0] if kept else session.useq + 1
            lines = [line for useq, line in kept if first <= useq <= last][:allowed]
        else:
            channel = self.registry.find_channel(target)
            user = session.user
            if channel is None or (user not in channel.members
                                   and (channel.invite_only or channel.password is not None)):
                self._numbered(session, "FAIL", "REPAIR", "NOT_ALLOWED", target,
                               "No such room, or not yours to read")
                return
            recent = channel.recent
            lowest = recent[0].seq if recent else channel.seq + 1
            start = max(first, lowest) - lowest
            lines = [event_line(event)
                     for event in islice(recent, start, start + allowed)
                     if event.seq <= last]
            target = channel.name
        if first < lowest:
            gone_to = min(last, lowest - 1)
            self._write(encode(Message("FAIL", ("REPAIR", "GONE", target, str(first),
                                                str(gone_to), "No longer held"),
                                       self.registry.server_name)), session.addr)
        for line in lines:
            self._write(line, session.addr)

    # ------------------------------------------------------- heartbeat, expiry

    def tick(self) -> None:
        """Every ``heartbeat`` seconds: the heartbeat/beacon, then expire silent sessions."""
        try:
            self._heartbeat()
            self._expire()
        except Exception:
            self._log.failure("udp heartbeat failed")

    def _heartbeat(self) -> None:
        rooms = {}
        for session in self.sessions.values():
            if session.user is not None and not session.unicast:
                for channel in session.user.channels.values():
                    rooms[channel.key] = channel
        listed = [(c.name, c.seq) for c in rooms.values()]
        lines = heartbeat_lines(self.registry.server_name, self.registry.network, self.port,
                                listed, int(self.clock.seconds() * 1000))
        for line in lines:
            self._write(line, (self.broadcast.address, self.broadcast.port))
        # Sessions outside the broadcast domain hear their own rooms' heartbeat by unicast.
        for session in self.sessions.values():
            if session.unicast and session.validated and session.user.channels:
                own = [(c.name, c.seq) for c in session.user.channels.values()]
                for line in heartbeat_lines(self.registry.server_name, self.registry.network,
                                            self.port, own, int(self.clock.seconds() * 1000)):
                    self._write(line, session.addr)

    def _expire(self) -> None:
        now = self.clock.seconds()
        for session in list(self.sessions.values()):
            limit = (self.limits.session_timeout if session.validated
                     else min(self.limits.pending_timeout, self.limits.session_timeout))
            if now - session.last_heard > limit:
                self._drop("udp_expired")
                self.close_session(session, "Session timed out")

    def close_session(self, session: UDPSession, reason: str) -> None:
        """End ``session``: free its token and nick, QUIT to its rooms."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.token, None)
        if self.by_addr.get(session.addr) is session:
            del self.by_addr[session.addr]
        host = session.addr[0]
        count = self.per_ip.get(host, 0) - 1
        if count > 0:
            self.per_ip[host] = count
        else:
            self.per_ip.pop(host, None)
        if self.metrics is not None:
            self.metrics.udp.connections -= 1
        self._log.info("udp session {nick} from {addr} ends: {reason}",
                       nick=session.user.nick, addr=session.addr, reason=reason)
        deliver(self.registry.quit(session.user, reason))


_ECHO = commands.Context(echo=True)
