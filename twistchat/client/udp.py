"""
The UDP provider of :class:`~twistchat.client.interfaces.IChatSession`.

test-case-name: tests.test_udp_client

One :class:`UDPChatSession` talks to one server over the wire contract in
docs/udp-protocol.md.  It keeps three ordered streams and gives the program
each event once, in order, whatever the network lost, doubled or reordered:

- **rooms**: every room event carries the room's ``seq``; a room's stream
  starts at our own JOIN and ends at our own PART (or KICK).  Events come by
  broadcast (one listening socket on the broadcast port, ``SO_REUSEADDR`` so
  several clients share a host), by unicast copy, or as repair replies;
- **our unicast stream**: replies and private messages, numbered ``useq``;
- **our commands**: numbered ``cseq``, sent in a window, sent again until the
  server's ``ACK`` says it ran them (it runs each once, in order).

Gaps show up as a missing number below one we hold, or below the latest one
a heartbeat (rooms) or an ACK/PONG (unicast stream) announces; after a short
wait for reordered datagrams, the session asks ``REPAIR`` for each hole.

Sockets are reached through a small ``net`` object (:class:`ReactorNet` on a
real reactor) and time through ``reactor`` (``callLater``/``seconds``), so the
whole session runs in memory in tests.  :class:`FaultInjector` sits between
the session and its sockets to lose, duplicate and reorder datagrams, seeded.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

from twisted.internet import defer, protocol
from twisted.logger import Logger
from zope.interface import implementer

from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent, IChatSession, is_room
from twistchat.events import parse_server_time
from twistchat.wire import Message, WireError, casefold, encode, format_message, parse

__all__ = ["UDPChatSession", "ReactorNet", "FaultInjector", "discover", "DEFAULT_PORT"]

DEFAULT_PORT = 6667
MAX_DATAGRAM = 1200  # docs/udp-protocol.md, "Datagrams"
MIN_REGISTER = 1200  # docs/udp-protocol.md, "Registration": the NICK is padded to this
SEND_LIMIT = 510  # body bytes the server accepts (RFC 1459, CRLF excluded)
_ROOM_VERBS = frozenset(("JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "KICK", "MODE", "QUIT",
                         "NICK"))


# ------------------------------------------------------------------ sockets


class _Receiver(protocol.DatagramProtocol):
    """Hands every datagram of one socket to a callback."""

    def __init__(self, callback: Callable) -> None:
        self.callback = callback

    def datagramReceived(self, data: bytes, addr) -> None:
        self.callback(data, addr)


class ReactorNet:
    """Real sockets: a unicast socket, and a broadcast listener that others may share."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor

    def listen_unicast(self, proto, interface: str = ""):
        """An ephemeral UDP port for talking to the server."""
        return self.reactor.listenUDP(0, proto, interface=interface, maxPacketSize=65535)

    def listen_broadcast(self, proto, address: str, port: int):
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

    def __init__(self, clock, seed: int = 0, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, max_delay: float = 0.02) -> None:
        self.clock = clock
        self.random = random.Random(seed)
        self.loss, self.duplicate, self.reorder, self.max_delay = loss, duplicate, reorder, max_delay
        self.passed = self.dropped = self.doubled = self.delayed = 0

    def __call__(self, data: bytes, addr, forward: Callable) -> None:
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


# ------------------------------------------------------------------ streams


class _Room:
    """One room's stream: events in ``seq`` order from our JOIN to our PART."""

    __slots__ = ("name", "key", "next", "held", "latest", "asked", "hole_since")

    def __init__(self, name: str) -> None:
        self.name = name
        self.key = casefold(name)
        self.next: int | None = None  # unknown until our own JOIN arrives
        self.held: dict = {}  # seq -> Message, not yet shown
        self.latest = 0  # the highest seq the server said exists
        self.asked: dict = {}  # hole start -> when we last asked
        self.hole_since: float | None = None


class _Unicast:
    """Our numbered unicast stream (``useq``)."""

    __slots__ = ("next", "held", "latest", "asked", "hole_since", "key")

    def __init__(self) -> None:
        self.key = "*"
        self.next = 1
        self.held: dict = {}
        self.latest = 0
        self.asked: dict = {}
        self.hole_since: float | None = None


def _holes(stream, limit: int, most: int = 8) -> list:
    """Missing ``(from, to)`` ranges of ``stream``, at most ``most``, each at most ``limit``."""
    if stream.next is None:
        return []
    top = max(stream.latest, max(stream.held) if stream.held else 0)
    out = []
    seq = stream.next
    held = stream.held
    while seq <= top and len(out) < most:
        if seq in held:
            seq += 1
            continue
        start = seq
        while seq <= top and seq not in held and seq - start < limit:
            seq += 1
        out.append((start, seq - 1))
    return out


# ------------------------------------------------------------------ session


@implementer(IChatSession)
class UDPChatSession:
    """
    A chat session over UDP (docs/udp-protocol.md).

    ``host``/``port``: the server's unicast address (``host`` None: found by
    its beacon).  ``rooms`` are joined once registered, and again after the
    session is lost and registered anew.  ``net``: socket factory
    (default :class:`ReactorNet`).  ``fault_in``/``fault_out``: optional
    :class:`FaultInjector` on received and sent datagrams.  ``unicast``: ask the
    server for unicast copies instead of listening for broadcasts.
    """

    transport_name = "udp"
    _log = Logger()

    def __init__(self, host: str | None, port: int = DEFAULT_PORT, nick: str = "guest",
                 rooms=(), reactor=None, net=None, fault_in=None, fault_out=None,
                 unicast: bool = False, interface: str = "", window: int = 32,
                 reorder_delay: float = 0.03, repair_limit: int = 100,
                 register_timeout: float = 10.0, broadcast_port: int | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.net = net or ReactorNet(reactor)
        self.host, self.port = host, port
        # host None: find the server by its beacon on this port (docs, "Heartbeat and beacon").
        self.broadcast_port = broadcast_port or port + 1
        self._autojoin: list = list(rooms)  # joined again after a new registration
        self._reconnects = 0
        self.nick = self.wanted_nick = nick
        self.state = I.CONNECTING
        self.rooms: list = []
        self.lag: float | None = None
        self.fault_in, self.fault_out = fault_in, fault_out
        self.unicast = unicast
        self.interface = interface
        self.window = window
        self.reorder_delay = reorder_delay
        self.repair_limit = repair_limit
        self.register_timeout = register_timeout
        self.token: str | None = None
        self.server_timeout = 60.0
        self.broadcast_addr: tuple | None = None
        self._handler: Callable | None = None
        self._queued: list = []  # events before a handler was set
        self._server: tuple | None = None  # (ip, port) the server sends from
        self._uport = self._bport = None
        self._started: defer.Deferred | None = None
        self._closed: defer.Deferred | None = None
        self._timers: dict = {}
        self._register_tries = 0
        self._alt = 0
        self._cseq = 0
        self._unacked: dict = {}  # cseq -> [data, first sent, last sent, tries]
        self._backlog: list = []  # commands beyond the window, not yet sent
        self._srtt: float | None = None
        self._unicast = _Unicast()
        self._room: dict = {}  # key -> _Room
        self._names: dict = {}  # key -> names so far (353)
        self._last_heard = 0.0
        # Counters a test or the UI may read.
        self.stats = {"repairs_asked": 0, "retransmits": 0, "duplicates": 0, "datagrams": 0,
                      "gone": 0}

    # ---------------------------------------------------------------- API

    def set_handler(self, handler: Callable) -> None:
        """Call ``handler(ChatEvent)`` for each event, in order, each once."""
        self._handler = handler
        queued, self._queued = self._queued, []
        for event in queued:
            handler(event)

    def start(self) -> defer.Deferred:
        """Register; the Deferred fires with this session once REGISTERED."""
        if self._started is None:
            self._started = defer.Deferred()
            self._set_state(I.CONNECTING)
            if self.host:
                self._open()
            else:
                self._discover()
        return self._started

    def _discover(self) -> None:
        def found(result):
            self.host, self.port = result[0], result[1]
            self._emit(ChatEvent(I.INFO, text=f"found {result[2]} at {self.host}:{self.port}",
                                 time_ms=int(self._now() * 1000)))
            self._open()

        d = discover(self.reactor, self.broadcast_port, "", self.register_timeout, self.net)
        d.addCallbacks(found, lambda f: self._fail(f"no server found: {f.getErrorMessage()}"))

    def join(self, room: str) -> None:
        """Join ``room``: its stream starts at our JOIN event."""
        key = casefold(room)
        if key not in self._room:
            self._room[key] = _Room(room)
        if key not in {casefold(r) for r in self._autojoin}:
            self._autojoin.append(room)
        self._command("JOIN", room)

    def part(self, room: str, reason: str = "") -> None:
        """Leave ``room``: its stream ends at our PART event."""
        self._autojoin = [r for r in self._autojoin if casefold(r) != casefold(room)]
        self._command("PART", room, *((reason,) if reason else ()))

    def say(self, target: str, text: str) -> None:
        """PRIVMSG ``text`` to a room or a nick (split to fit a line)."""
        for chunk in _split(text, SEND_LIMIT - len(f"PRIVMSG {target} :".encode()) - 2):
            self._command("PRIVMSG", target, chunk)

    def action(self, target: str, text: str) -> None:
        """A /me action (CTCP ACTION)."""
        self._command("PRIVMSG", target, f"\x01ACTION {text}\x01")

    def set_nick(self, nick: str) -> None:
        """Ask for a new nick; ``nick`` changes when the server's NICK event arrives."""
        self._command("NICK", nick)

    def topic(self, room: str, text: str | None = None) -> None:
        """Query or set a room's topic."""
        self._command("TOPIC", room, *(() if text is None else (text,)))

    def names(self, room: str) -> None:
        """Ask for the member list of ``room`` (a NAMES event answers)."""
        self._command("NAMES", room)

    def who(self, mask: str) -> None:
        """Ask WHO ``mask`` (INFO events answer)."""
        self._command("WHO", mask)

    def send_line(self, line: str) -> None:
        """Send one raw IRC line, reliably and in order with the rest."""
        message = parse(line)
        self._command(message.command, *message.params)

    def close(self, reason: str = "Client Quit") -> defer.Deferred:
        """QUIT (acknowledged, or given up on after a second), then stop listening."""
        if self._closed is not None:
            return self._closed
        self._closed = defer.Deferred()
        if self.token is not None and self.state == I.REGISTERED:
            self._command("QUIT", reason)
            self._later("close", 1.0, self._finish_close)
        else:
            self._finish_close()
        return self._closed

    # ----------------------------------------------------------- plumbing

    def _later(self, name: str, delay: float, fn, *args) -> None:
        """One named timer at a time; replaced if set again."""
        old = self._timers.pop(name, None)
        if old is not None and old.active():
            old.cancel()
        self._timers[name] = self.reactor.callLater(delay, fn, *args)

    def _cancel_timers(self) -> None:
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()

    def _now(self) -> float:
        return self.reactor.seconds()

    def _emit(self, event: ChatEvent) -> None:
        if self._handler is None:
            self._queued.append(event)
            return
        try:
            self._handler(event)
        except Exception:
            self._log.failure("chat event handler failed on {event!r}", event=event)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._emit(ChatEvent(I.STATE, text=state, time_ms=int(self._now() * 1000)))

    def _open(self) -> None:
        try:
            addr = socket.gethostbyname(self.host)
        except OSError as e:
            self._fail(f"cannot resolve {self.host}: {e}")
            return
        self._server = (addr, self.port)
        if self._uport is None:
            self._uport = self.net.listen_unicast(_Receiver(self._received), self.interface)
        self._register_tries = 0
        self._register_started = self._now()
        self._send_register()

    def _fail(self, text: str) -> None:
        self._emit(ChatEvent(I.ERROR, text=text, time_ms=int(self._now() * 1000)))
        if self._started is not None and not self._started.called:
            d, self._started = self._started, None
            self._cancel_timers()
            self._set_state(I.DISCONNECTED)
            d.errback(ConnectionError(text))

    def _write(self, data: bytes) -> None:
        if self._uport is None:
            return
        if self.fault_out is not None:
            self.fault_out(data, self._server, self._uport_write)
        else:
            self._uport_write(data, self._server)

    def _uport_write(self, data: bytes, addr) -> None:
        if self._uport is None:
            return
        try:
            self._uport.write(data, addr)
        except Exception as e:  # a full buffer loses one datagram, as the network may
            self._log.debug("udp send failed: {error}", error=e)

    # ------------------------------------------------------- registration

    def _send_register(self) -> None:
        """A NICK padded to MIN_REGISTER bytes (docs, "Registration"); sent again until answered."""
        if self.token is not None or self.state == I.CLOSED:
            return
        if self._now() - self._register_started > self.register_timeout:
            if self._started is not None and self._started.called:
                self._reconnects += 1  # a lost session: keep trying, with backoff
                self._later("reconnect", min(2.0 ** self._reconnects, 30.0), self._reregister)
                return
            self._fail(f"no answer from {self.host}:{self.port} (UDP)")
            return
        tags = {"unicast": ""} if self.unicast else {}
        body = encode(Message("NICK", (self.wanted_nick,), None, tags))
        if tags:
            head = b"@unicast;pad="
            body = body[len(b"@unicast "):]
        else:
            head = b"@pad="
        pad = MIN_REGISTER - len(head) - 1 - len(body)
        self._write(head + b"x" * max(pad, 1) + b" " + body)
        self._register_tries += 1
        self._later("register", min(0.25 * 2 ** (self._register_tries - 1), 2.0),
                    self._send_register)

    def _registered(self, message: Message) -> None:
        tags = message.tags
        self.token = tags.get("token")
        if not self.token:
            self._fail("the server's 001 has no token")
            return
        timer = self._timers.pop("register", None)
        if timer is not None and timer.active():
            timer.cancel()
        if len(message.params) > 0:
            self.nick = message.params[0]
        try:
            self.server_timeout = float(tags.get("timeout", "60"))
        except ValueError:
            pass
        host, _, port = tags.get("broadcast", "").rpartition(":")
        if "unicast" not in tags and host and port.isdigit() and self._bport is None:
            self.broadcast_addr = (host, int(port))
            try:
                self._bport = self.net.listen_broadcast(_Receiver(self._received), host, int(port))
            except OSError as e:
                self._emit(ChatEvent(I.ERROR, text=f"cannot listen for broadcasts on "
                                                   f"{host}:{port}: {e}"))
        self._last_heard = self._now()
        self._reconnects = 0
        self._keepalive()  # proves our address at once, and tells us the latest useq
        self._set_state(I.REGISTERED)
        for room in list(self._autojoin):
            self.join(room)
        self._pump()
        if self._started is not None and not self._started.called:
            self._started.callback(self)

    def _keepalive(self) -> None:
        if self.token is None or self.state == I.CLOSED:
            return
        if self._now() - self._last_heard > self.server_timeout:
            self._lost()
            return
        self._write(encode(Message("PING", (f"{self._now():.6f}",), None,
                                   {"token": self.token})))
        self._later("keepalive", max(min(self.server_timeout / 4, 10.0), 0.05), self._keepalive)

    def _lost(self) -> None:
        """The server stopped answering: our session is gone.  Register anew, with backoff."""
        self._emit(ChatEvent(I.ERROR, text="the server is silent: session lost",
                             time_ms=int(self._now() * 1000)))
        self._cancel_timers()
        self.token = None
        self._cseq = 0
        self._unacked.clear()
        self._backlog.clear()  # commands of the old session: not replayed into the new one
        self._unicast = _Unicast()
        self._room.clear()
        self.rooms = []
        if self._bport is not None:
            self._bport.stopListening()
            self._bport = None
        self._set_state(I.DISCONNECTED)
        self._reconnects += 1
        self._later("reconnect", min(2.0 ** (self._reconnects - 1), 30.0), self._reregister)

    def _reregister(self) -> None:
        if self.state == I.CLOSED or self._closed is not None:
            return
        self._set_state(I.CONNECTING)
        self.nick = self.wanted_nick
        self._alt = 0
        self._register_tries = 0
        self._register_started = self._now()
        self._send_register()

    # ------------------------------------------------------- commands out

    def _command(self, command: str, *params: str) -> None:
        """Queue one command; it is sent with the next ``cseq`` and resent until ACKed."""
        if self.state == I.CLOSED:
            return
        self._backlog.append(Message(command, params))
        self._pump()

    def _pump(self) -> None:
        if self.token is None:
            return
        while self._backlog and len(self._unacked) < self.window:
            message = self._backlog.pop(0)
            self._cseq += 1
            data = encode(Message(message.command, message.params, None,
                                  {"token": self.token, "cseq": str(self._cseq)}))
            now = self._now()
            self._unacked[self._cseq] = [data, now, now, 1]
            self._write(data)
        self._schedule_tick()

    def _rto(self) -> float:
        """Retransmission timeout: twice the smoothed round trip, within [30 ms, 1 s]."""
        if self._srtt is None:
            return 0.2
        return min(max(2 * self._srtt + 0.02, 0.03), 1.0)

    def _acked(self, upto: int) -> None:
        now = self._now()
        for cseq in [c for c in self._unacked if c <= upto]:
            data, first, last, tries = self._unacked.pop(cseq)
            # Karn: only unambiguous samples; and only the newest command acked,
            # whose ACK did not wait behind an earlier lost one.
            if tries == 1 and cseq == upto:
                sample = now - first
                self._srtt = sample if self._srtt is None else 0.875 * self._srtt + 0.125 * sample
        self._pump()
        if self._closed is not None and not self._unacked and not self._backlog:
            self._finish_close()

    # --------------------------------------------------------- datagrams in

    def _received(self, data: bytes, addr) -> None:
        if self.fault_in is not None:
            self.fault_in(data, addr, self._datagram)
        else:
            self._datagram(data, addr)

    def _datagram(self, data: bytes, addr) -> None:
        if self.state == I.CLOSED:
            return
        if self._server is not None and tuple(addr[:2]) != self._server:
            return  # only our server's datagrams: another host may broadcast on this port
        self.stats["datagrams"] += 1
        try:
            message = parse(data, max_body=MAX_DATAGRAM + 2, max_tags=MAX_DATAGRAM)
        except WireError:
            self._emit(ChatEvent(I.ERROR, text="a datagram from the server is not IRC",
                                 time_ms=int(self._now() * 1000)))
            return
        if "useq" in message.tags or message.command in ("ACK", "PONG"):
            # Only answers to our token prove the session lives (heartbeats do not).
            self._last_heard = self._now()
        try:
            self._route(message)
        except Exception:
            self._log.failure("error handling {line}", line=data[:200])
            self._emit(ChatEvent(I.ERROR, text="internal error handling a server line",
                                 time_ms=int(self._now() * 1000), message=message))

    def _route(self, message: Message) -> None:
        tags = message.tags
        verb = message.verb
        if "useq" in tags:
            if self.token is None and message.command == "001":
                self._registered(message)
            self._stream_in(self._unicast, _int(tags["useq"]), message)
        elif "seq" in tags and verb in _ROOM_VERBS:
            self._room_in(message)
        elif verb == "ACK":
            if len(message.params) >= 2:
                self._note_latest(self._unicast, _int(message.params[1]))
                self._acked(_int(message.params[0]))
        elif verb == "PONG":
            self._note_latest(self._unicast, _int(tags.get("latest", "0")))
            try:
                self.lag = max(self._now() - float(message.params[-1]), 0.0)
            except (ValueError, IndexError):
                pass
        elif verb == "HEARTBEAT":
            self._heartbeat(message)
        elif verb == "FAIL" and message.params[:2] == ("REPAIR", "GONE"):
            self._gone(message)
        elif self.token is None and message.command in ("433", "432", "436"):
            self._nick_refused(message)
        elif self.token is None and message.command == "FAIL":
            self._fail(message.params[-1] if message.params else "registration refused")
        else:
            self._show(message)  # unnumbered server lines (errors to unsequenced datagrams)

    def _nick_refused(self, message: Message) -> None:
        """Registration: the nick is taken or invalid: try ``nick_``, then give up."""
        if message.command == "433" and self._alt < 3:
            self._alt += 1
            self.wanted_nick = self.wanted_nick + "_"
            self._register_tries = 0
            self._send_register()
            return
        self._fail(" ".join(message.params[1:]) or "nick refused")

    def _heartbeat(self, message: Message) -> None:
        if len(message.params) < 3:
            return
        for entry in message.params[2].split():
            name, _, seq = entry.rpartition(":")
            room = self._room.get(casefold(name))
            if room is not None and seq.isdigit():
                self._note_latest(room, int(seq))

    def _note_latest(self, stream, latest: int) -> None:
        if latest > stream.latest:
            stream.latest = latest
            self._schedule_tick()

    def _gone(self, message: Message) -> None:
        """``FAIL REPAIR GONE <room> <from> <to>``: the server no longer holds them: skip."""
        p = message.params
        if len(p) < 5:
            return
        stream = self._unicast if p[2] == "*" else self._room.get(casefold(p[2]))
        if stream is None or stream.next is None:
            return
        first, last = _int(p[3]), _int(p[4])
        if first <= stream.next <= last:
            lost = last - stream.next + 1
            self.stats["gone"] += lost
            room = None if p[2] == "*" else stream.name
            self._emit(ChatEvent(I.ERROR, room=room, text=f"{lost} events lost (no longer held)",
                                 time_ms=int(self._now() * 1000)))
            stream.next = last + 1
            for seq in [s for s in stream.held if s < stream.next]:
                del stream.held[seq]
            self._drain(stream)

    # -------------------------------------------------------------- streams

    def _stream_in(self, stream, seq: int, message: Message) -> None:
        if seq < 1:
            return
        if seq < stream.next or seq in stream.held:
            self.stats["duplicates"] += 1
            return
        stream.held[seq] = message
        self._drain(stream)

    def _room_key(self, message: Message) -> str | None:
        room = message.tags.get("room")
        if room:
            return casefold(room)
        if message.params and is_room(message.params[0]):
            return casefold(message.params[0])
        return None

    def _room_in(self, message: Message) -> None:
        key = self._room_key(message)
        if key is None:
            return
        seq = _int(message.tags.get("seq", "0"))
        room = self._room.get(key)
        if room is None:
            if message.verb == "JOIN" and self._is_me(_nick(message)):
                room = self._room[key] = _Room(message.params[0])
            else:
                return  # a room we are not in
        if room.next is None:
            if message.verb == "JOIN" and self._is_me(_nick(message)):
                room.next = seq
                room.name = message.params[0]
                for old in [s for s in room.held if s < seq]:
                    del room.held[old]
            elif seq in room.held:
                self.stats["duplicates"] += 1
                return
            else:
                if len(room.held) < 4096:
                    room.held[seq] = message
                return
        if seq < room.next or seq in room.held:
            self.stats["duplicates"] += 1
            return
        room.held[seq] = message
        self._drain(room)

    def _drain(self, stream) -> None:
        """Show every held line that is next in its stream."""
        while stream.next is not None and stream.next in stream.held:
            message = stream.held.pop(stream.next)
            stream.asked.pop(stream.next, None)
            stream.next += 1
            if stream is self._unicast:
                if "seq" in message.tags and self._room_key(message) is not None \
                        and message.verb in _ROOM_VERBS:
                    self._room_in(message)  # our own JOIN/PART/NICK/KICK: the room's stream
                else:
                    self._show(message)
            else:
                self._show(message, stream)
                if stream.key not in self._room:
                    return  # we left: the rest is not ours
        stream.hole_since = None if not stream.held else stream.hole_since
        self._schedule_tick()

    # ---------------------------------------------------------------- ticks

    def _schedule_tick(self) -> None:
        if "tick" in self._timers and self._timers["tick"].active():
            return
        if self._unacked or self._needs_repair():
            self._later("tick", 0.01, self._tick)

    def _needs_repair(self) -> bool:
        streams = [self._unicast, *self._room.values()]
        for s in streams:
            if s.next is not None and (s.held or s.latest >= s.next):
                return True
        return False

    def _tick(self) -> None:
        """Resend unacknowledged commands, ask for holes, watch the server's silence."""
        self._timers.pop("tick", None)
        if self.state == I.CLOSED or self.token is None:
            return
        now = self._now()
        rto = self._rto()
        for entry in self._unacked.values():
            if now - entry[2] >= rto * min(2 ** (entry[3] - 1), 4):
                entry[2] = now
                entry[3] += 1
                self.stats["retransmits"] += 1
                self._write(entry[0])
        for stream in [self._unicast, *self._room.values()]:
            holes = _holes(stream, self.repair_limit)
            if not holes:
                stream.hole_since = None
                stream.asked.clear()
                continue
            if stream.hole_since is None:
                stream.hole_since = now
            if now - stream.hole_since < self.reorder_delay:
                continue
            target = "*" if stream is self._unicast else stream.name
            for start, end in holes:
                if now - stream.asked.get(start, -1e9) >= min(max(rto, 0.05), 0.3):
                    stream.asked[start] = now
                    self.stats["repairs_asked"] += 1
                    self._write(encode(Message("REPAIR", (target, str(start), str(end)), None,
                                               {"token": self.token})))
        if now - self._last_heard > self.server_timeout:
            self._lost()
            return
        self._schedule_tick()

    # ----------------------------------------------------------------- close

    def _finish_close(self) -> None:
        if self.state == I.CLOSED:
            return
        self._cancel_timers()
        for port in (self._uport, self._bport):
            if port is not None:
                port.stopListening()
        self._uport = self._bport = None
        self._set_state(I.CLOSED)
        if self._closed is None:
            self._closed = defer.Deferred()
        if not self._closed.called:
            self._closed.callback(None)

    # ------------------------------------------------- lines to ChatEvents

    def _is_me(self, nick: str) -> bool:
        return bool(nick) and casefold(nick) == casefold(self.nick)

    def _show(self, message: Message, room: _Room | None = None) -> None:
        """Turn one in-order server line into ChatEvents."""
        tags = message.tags
        time_ms = _time_ms(tags.get("time")) or int(self._now() * 1000)
        seq = _int(tags["seq"]) if room is not None and "seq" in tags else None
        verb = message.verb
        nick = _nick(message)
        own = self._is_me(nick)
        p = message.params
        room_name = room.name if room is not None else None
        kw = dict(nick=nick or None, time_ms=time_ms, seq=seq, own=own, message=message)
        if verb in ("PRIVMSG", "NOTICE") and len(p) >= 2:
            text = p[1]
            kind = I.NOTICE if verb == "NOTICE" else I.MESSAGE
            if text.startswith("\x01ACTION ") and verb == "PRIVMSG":
                kind, text = I.ACTION, text[8:].rstrip("\x01")
            if room_name is None:
                if message.source is None or "!" not in message.source:
                    target = None
                else:
                    target = p[0] if own else nick
                room_name = target
                if room is None and "seq" in tags:
                    kw["seq"] = _int(tags["seq"])
            self._emit(ChatEvent(kind, room=room_name, text=text, **kw))
        elif verb == "JOIN" and p:
            if own and room is not None and room.name not in self.rooms:
                self.rooms.append(room.name)
            self._emit(ChatEvent(I.JOIN, room=room_name or p[0], **kw))
        elif verb == "PART" and p:
            if own:
                self._left(p[0])
            self._emit(ChatEvent(I.PART, room=room_name or p[0],
                                 text=p[1] if len(p) > 1 else "", **kw))
        elif verb == "KICK" and len(p) >= 2:
            if self._is_me(p[1]):
                self._left(p[0])
            kw["own"] = self._is_me(p[1])
            self._emit(ChatEvent(I.KICK, room=room_name or p[0],
                                 text=f"{p[1]} {p[2] if len(p) > 2 else ''}".rstrip(), **kw))
        elif verb == "QUIT":
            self._emit(ChatEvent(I.QUIT, room=room_name, text=p[0] if p else "", **kw))
        elif verb == "NICK" and p:
            if own:
                self.nick = self.wanted_nick = p[0]
            self._emit(ChatEvent(I.NICK, room=room_name, text=p[0], **kw))
        elif verb == "TOPIC" and p:
            self._emit(ChatEvent(I.TOPIC, room=room_name or p[0],
                                 text=p[1] if len(p) > 1 else "", **kw))
        elif verb == "MODE" and len(p) >= 2:
            self._emit(ChatEvent(I.MODE, room=room_name if is_room(p[0]) else None,
                                 text=" ".join(p[1:]), **kw))
        elif verb == "FAIL":
            self._emit(ChatEvent(I.ERROR, text=p[-1] if p else "FAIL", time_ms=time_ms,
                                 message=message))
        elif verb == "ERROR":
            self._emit(ChatEvent(I.ERROR, text=f"Server: {p[-1] if p else ''}",
                                 time_ms=time_ms, message=message))
        elif message.command.isdigit():
            self._numeric(message, time_ms)
        else:
            self._emit(ChatEvent(I.INFO, text=format_message(message), time_ms=time_ms,
                                 message=message))

    def _left(self, name: str) -> None:
        key = casefold(name)
        self.rooms = [r for r in self.rooms if casefold(r) != key]
        self._room.pop(key, None)

    def _numeric(self, message: Message, time_ms: int) -> None:
        code, p = message.command, message.params
        if code in ("004", "005", "333", "329"):
            return
        if code == "353" and len(p) >= 4:
            self._names.setdefault(casefold(p[2]), []).extend(p[3].split())
            return
        if code == "366" and len(p) >= 2:
            names = tuple(self._names.pop(casefold(p[1]), ()))
            self._emit(ChatEvent(I.NAMES, room=p[1], names=names, time_ms=time_ms,
                                 message=message))
            return
        if code == "332" and len(p) >= 3:
            self._emit(ChatEvent(I.TOPIC, room=p[1], text=p[2], time_ms=time_ms, message=message))
            return
        if code[0] in "45" and code != "422":
            detail = list(p[1:-1])
            text = (" ".join(detail) + ": " if detail else "") + (p[-1] if len(p) > 1 else code)
            room = p[1] if len(p) > 2 and is_room(p[1]) else None
            if code in ("403", "405", "471", "473", "474", "475") and room is not None:
                r = self._room.get(casefold(room))
                if r is not None and r.next is None:
                    del self._room[casefold(room)]  # the JOIN failed: stop collecting
            self._emit(ChatEvent(I.ERROR, room=room, text=text, time_ms=time_ms, message=message))
            return
        text = p[-1] if len(p) < 2 or code in ("001", "265", "266", "422") else " ".join(p[1:])
        self._emit(ChatEvent(I.INFO, text=text, time_ms=time_ms, message=message))


# ----------------------------------------------------------------- helpers


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _nick(message: Message) -> str:
    return message.source.split("!", 1)[0] if message.source else ""


def _time_ms(text: str | None) -> int:
    if not text:
        return 0
    try:
        return parse_server_time(text)
    except ValueError:
        return 0


def _split(text: str, limit: int) -> list:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, never splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    out = []
    while data:
        piece = data[:limit]
        while piece and (piece[-1] & 0xC0) == 0x80 and len(piece) < len(data):
            piece = piece[:-1]  # do not cut inside a character
        text_piece = piece.decode("utf-8", "ignore")
        out.append(text_piece)
        data = data[len(text_piece.encode("utf-8")):]
    return out


def discover(reactor=None, broadcast_port: int = DEFAULT_PORT + 1, address: str = "",
             timeout: float = 5.0, net=None) -> defer.Deferred:
    """
    Find a server by its heartbeat beacon (docs/udp-protocol.md, "Heartbeat").

    Listens on ``address:broadcast_port`` (``""``: every interface) and fires
    with ``(host, port, server_name, network)`` from the first HEARTBEAT heard,
    or fails with ``TimeoutError`` after ``timeout`` seconds.
    """
    if reactor is None:
        from twisted.internet import reactor
    net = net or ReactorNet(reactor)
    result = defer.Deferred()
    state = {}

    def heard(data, addr):
        if result.called:
            return
        try:
            message = parse(data, max_body=MAX_DATAGRAM + 2, max_tags=MAX_DATAGRAM)
        except WireError:
            return
        if message.verb != "HEARTBEAT" or len(message.params) < 2 or not message.params[1].isdigit():
            return
        finish((addr[0], int(message.params[1]), message.source, message.params[0]))

    def finish(value):
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

    state["port"] = net.listen_broadcast(_Receiver(heard), address, broadcast_port)
    state["timer"] = reactor.callLater(
        timeout, lambda: finish(TimeoutError(f"no beacon on port {broadcast_port} in {timeout} s")))
    return result
