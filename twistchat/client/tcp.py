"""
The TCP provider of :class:`~twistchat.client.interfaces.IChatSession`: IRC over TCP (or TLS).

test-case-name: tests.test_client_tcp

One :class:`TCPChatSession` keeps one connection to one server alive with
Twisted's ``ClientService`` (``backoffPolicy``; ``prepareConnection`` runs
registration, NICK/USER up to 001), and turns every server line into
:class:`~twistchat.client.interfaces.ChatEvent` values, in the server's order.

What it does beyond plain RFC 1459 (issue #5):

- IRCv3 capability negotiation (``CAP LS 302``): asks for ``server-time``,
  ``echo-message``, ``message-tags``, ``batch``, ``multi-prefix`` and
  ``draft/chathistory`` when the server offers them;
- a nick taken at registration (433) gets ``_`` appended, then digits;
- PING/PONG both ways; our own PINGs measure ``lag`` and drop a dead link;
- after a reconnect it rejoins its rooms and, where the server offers
  ``draft/chathistory`` (https://ircv3.net/specs/extensions/chathistory),
  asks ``CHATHISTORY AFTER`` the last message it saw, so the transcript has
  no hole; ``msgid`` tags keep it free of duplicates;
- TLS with certificate verification (``tls=True``), or without
  (``insecure=True``: a self-signed test server);
- CTCP ACTION for ``/me``; CTCP VERSION and PING answered.

Nothing a server sends makes it raise: lines that are not IRC become one
ERROR event each, and a bug of ours handling a line is logged and reported
the same way, with the connection left alive.  No prompt_toolkit here.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent, IChatSession, is_room
from twistchat.events import parse_server_time
from twistchat.wire import (
    Message,
    WireError,
    casefold,
    encode,
    is_valid_nick,
    parse,
    sanitize_nick,
    split_source,
)

__all__ = ["TCPChatSession", "DEFAULT_PORT"]

DEFAULT_PORT = 6667

# Capabilities we use when offered (https://ircv3.net/specs/extensions/capability-negotiation).
WANTED_CAPS = ("server-time", "echo-message", "message-tags", "batch", "multi-prefix",
               "draft/chathistory")

# Lines the server relays carry a source and tags and may pass 512 bytes
# (message-tags: tags up to 8191); read them whole, skip anything longer.
MAX_LINE = 16384
# The longest line we send: RFC 1459 2.3, 512 bytes with CRLF.
SEND_LIMIT = 510
# Messages remembered per room to drop the duplicates history replays.
SEEN_MSGIDS = 4096

def _reason_text(reason) -> str:
    """A short sentence for a connection failure or loss."""
    value = getattr(reason, "value", reason)
    if isinstance(value, ierror.ConnectionRefusedError):
        return "connection refused"
    if isinstance(value, ierror.DNSLookupError):
        return "no such host"
    if isinstance(value, (ierror.TimeoutError, ierror.TCPTimedOutError)):
        return "timed out"
    if isinstance(value, ierror.ConnectionDone):
        return "closed by the server"
    if isinstance(value, ierror.ConnectionLost):
        return "connection lost"
    name = type(value).__name__
    if name == "Error" and type(value).__module__.startswith("OpenSSL"):
        # pyOpenSSL's SSL.Error: a list of (lib, func, reason) tuples.
        try:
            detail = "; ".join(str(item[-1]) for item in value.args[0])
        except Exception:
            detail = str(value)
        return f"TLS failed ({detail or 'handshake error'})"
    text = str(value).strip().rstrip(".")
    return (text or name)[:200]


class _IRCClientProtocol(Protocol):
    """
    Frames the byte stream into lines and hands each to the session.

    Not a LineReceiver: its default closes the connection on a long line, and
    a server's over-long line must cost us that line only.
    """

    def __init__(self, session: TCPChatSession) -> None:
        self.session = session
        self._buffer = b""
        self._discarding = False
        self.lost = False
        self.registered = False
        self.ready: defer.Deferred | None = None

    def connectionMade(self) -> None:
        self.session._connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        *lines, rest = (self._buffer + data).split(b"\n")
        if self._discarding and lines:
            lines[0] = None  # the tail of an over-long line
            self._discarding = False
        if len(rest) > MAX_LINE:
            rest = b""
            if not self._discarding:
                self._discarding = True
                self.session._garbage("a line longer than %d bytes" % MAX_LINE)
        self._buffer = rest
        for line in lines:
            if self.lost:
                return
            if line is None:
                continue
            if len(line) > MAX_LINE:
                self.session._garbage("a line longer than %d bytes" % MAX_LINE)
                continue
            self.session._line_received(self, line)

    def send(self, command: str, *params: str, tags: dict | None = None) -> None:
        """Write one line (no-op once the connection is gone)."""
        if self.lost or self.transport is None:
            return
        self.transport.write(encode(Message(command, params, None, tags or {})))

    def connectionLost(self, reason) -> None:
        self.lost = True
        self.session._connection_lost(self, reason)


class _ReportingEndpoint:
    """An endpoint wrapper that tells the session why a connection attempt failed."""

    def __init__(self, endpoint, on_failure: Callable) -> None:
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, factory):
        d = self._endpoint.connect(factory)

        def failed(reason):
            self._on_failure(reason)
            return reason

        return d.addErrback(failed)


@implementer(IChatSession)
class TCPChatSession:
    """
    A chat session over IRC on TCP or TLS, with reconnection.

    ``reactor`` is the clock and network (the global reactor if None);
    ``endpoint`` overrides the one built from host/port/TLS (tests);
    ``trust_root`` is a PEM file of certificates to trust instead of the
    platform's; ``retry`` is ``backoffPolicy``'s keyword arguments.
    """

    transport_name = "tcp"
    _log = Logger()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        nick: str = "guest",
        rooms=("#lobby",),
        *,
        reactor=None,
        tls: bool = False,
        insecure: bool = False,
        trust_root: str | None = None,
        username: str | None = None,
        realname: str = "twistchat user",
        password: str | None = None,
        endpoint=None,
        retry: dict | None = None,
        ping_interval: float = 30.0,
        ping_timeout: float = 60.0,
        register_timeout: float = 30.0,
        quit_timeout: float = 1.0,
        history_limit: int = 100,
        hold_timeout: float = 5.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.host = host
        self.port = port
        self.tls = tls
        self.nick = nick
        self.wanted_nick = nick
        self.username = username or sanitize_nick(nick, 16)
        self.realname = realname
        self.password = password
        self.state = I.CONNECTING
        self.rooms: list = []
        self.lag: float | None = None
        self.caps: set = set()
        self.isupport: dict = {}
        self.server_name: str | None = None
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.register_timeout = register_timeout
        self.quit_timeout = quit_timeout
        self.history_limit = history_limit
        self.hold_timeout = hold_timeout
        self._handler: Callable = lambda event: None
        self._want: dict = {}  # casefolded room -> name, in join order: rejoined on reconnect
        for room in rooms:
            self._want.setdefault(casefold(room), room)
        self._proto: _IRCClientProtocol | None = None
        self._closing = False
        self._started: list = []  # Deferreds of start(), fired on first 001
        self._ever_registered = False
        self._failures = 0  # connection attempts in a row that did not reach 001
        self._last_failure_text: str | None = None
        self._last: dict = {}  # casefolded room -> (msgid or None, server-time text or None)
        self._seen: dict = {}  # casefolded room -> (deque, set) of msgids shown
        self._batches: dict = {}  # batch id -> [type, params, [messages]]
        self._holding: dict = {}  # casefolded room -> [events] held until history arrives
        self._hold_calls: dict = {}
        self._history_batches: dict = {}  # batch id -> casefolded room
        self._names: dict = {}  # casefolded room -> [names] while 353s arrive
        self._cap_ls: list = []
        self._alt_nicks = 0
        self._ping_call = None
        self._ping_sent: float | None = None
        self._ping_token: str | None = None
        self._register_call = None
        self._quit_call = None
        self._stopping = False
        self._close_waiters: list = []
        self._want_history: set = set()  # casefolded rooms to fill from history once rejoined
        self._replaying = False  # dispatching lines from a history batch

        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, host, port, timeout=10)
            if tls:
                endpoint = wrapClientTLS(self._tls_options(host, insecure, trust_root), endpoint)
        policy = backoffPolicy(**(retry or {}))
        factory = Factory.forProtocol(lambda: _IRCClientProtocol(self))
        factory.noisy = False
        # The policy counts our failures, not ClientService's: a connection the
        # server closes during registration is a failure too (see _prepare).
        self._service = ClientService(
            _ReportingEndpoint(endpoint, self._connect_failed), factory,
            retryPolicy=lambda attempt: policy(max(1, self._failures)),
            clock=reactor, prepareConnection=self._prepare)

    @staticmethod
    def _tls_options(host: str, insecure: bool, trust_root: str | None):
        from twisted.internet import ssl

        if insecure:
            # --insecure: encrypt, verify nothing (a test server's self-signed cert).
            return ssl.CertificateOptions(verify=False)
        root = None
        if trust_root:
            with open(trust_root, "rb") as f:
                root = ssl.Certificate.loadPEM(f.read())
        return ssl.optionsForClientTLS(host, trustRoot=root)

    # ------------------------------------------------------------- public API

    def set_handler(self, handler) -> None:
        """Call ``handler(ChatEvent)`` for each event (reactor thread)."""
        self._handler = handler

    def start(self) -> defer.Deferred:
        """Connect, and keep reconnecting until :meth:`close`; fires on the first 001."""
        d = defer.Deferred()
        if self._ever_registered:
            d.callback(self)
            return d
        self._started.append(d)
        if not self._service.running:
            self._set_state(I.CONNECTING)
            self._service.startService()
        return d

    def join(self, room: str) -> None:
        """Join ``room``; it is rejoined after every reconnect until parted."""
        self._want.setdefault(casefold(room), room)
        self._send_registered("JOIN", room)

    def part(self, room: str, reason: str = "") -> None:
        """Leave ``room``."""
        self._want.pop(casefold(room), None)
        if reason:
            self._send_registered("PART", room, reason)
        else:
            self._send_registered("PART", room)

    def say(self, target: str, text: str) -> None:
        """PRIVMSG ``text`` to a room or nick, split into lines the server accepts."""
        self._privmsg(target, text, action=False)

    def action(self, target: str, text: str) -> None:
        """``/me``: a CTCP ACTION."""
        self._privmsg(target, text, action=True)

    def set_nick(self, nick: str) -> None:
        """Ask for ``nick`` (the server answers NICK, or 432/433)."""
        self.wanted_nick = nick
        if self._registered_proto() is None:
            self.nick = nick
        else:
            self._proto.send("NICK", nick)

    def topic(self, room: str, text: str | None = None) -> None:
        """Query (None) or set a room's topic."""
        if text is None:
            self._send_registered("TOPIC", room)
        else:
            self._send_registered("TOPIC", room, text)

    def names(self, room: str) -> None:
        """Ask for the member list of ``room`` (a NAMES event answers)."""
        self._send_registered("NAMES", room)

    def who(self, mask: str) -> None:
        """WHO ``mask`` (INFO events answer)."""
        self._send_registered("WHO", mask)

    def send_line(self, line: str) -> None:
        """Send one raw line; an ERROR event if it is not one IRC line."""
        proto = self._registered_proto()
        if proto is None:
            self._not_connected()
            return
        try:
            message = parse(line)
            data = encode(message)
        except (WireError, ValueError) as e:
            self._emit(ChatEvent(I.ERROR, text=f"Not sent: {e}", time_ms=self._now_ms()))
            return
        proto.transport.write(data)

    def close(self, reason: str = "Client Quit") -> defer.Deferred:
        """QUIT, stop reconnecting, disconnect; fires once closed (at most ``quit_timeout`` + a moment)."""
        waiter = defer.Deferred()
        if self.state == I.CLOSED:
            waiter.callback(None)
            return waiter
        self._close_waiters.append(waiter)
        if self._closing:
            return waiter
        self._closing = True
        proto = self._proto
        if proto is not None and not proto.lost:
            proto.send("QUIT", reason)
            # Let the server read QUIT and close first, so it records our reason.
            self._quit_call = self.reactor.callLater(self.quit_timeout, self._finish_close)
        else:
            self._finish_close()
        return waiter

    # ----------------------------------------------------------- internals

    def _finish_close(self) -> None:
        if self._quit_call is not None and self._quit_call.active():
            self._quit_call.cancel()
        self._quit_call = None
        if not self._closing or self._stopping:
            return
        self._stopping = True
        self._stop_timers()
        for room in list(self._hold_calls):
            self._release(room)
        d = self._service.stopService() if self._service.running else defer.succeed(None)

        def done(_):
            self._set_state(I.CLOSED)
            started, self._started = self._started, []
            for waiting in started:
                waiting.errback(defer.CancelledError("closed before registration"))
            waiters, self._close_waiters = self._close_waiters, []
            for waiting in waiters:
                waiting.callback(None)

        d.addBoth(done)

    def _now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def _emit(self, event: ChatEvent) -> None:
        try:
            self._handler(event)
        except Exception:
            self._log.failure("event handler failed on {event!r}", event=event)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._emit(ChatEvent(I.STATE, text=state, time_ms=self._now_ms()))

    def _registered_proto(self) -> _IRCClientProtocol | None:
        proto = self._proto
        if proto is None or proto.lost or not proto.registered:
            return None
        return proto

    def _not_connected(self) -> None:
        self._emit(ChatEvent(I.ERROR, text="Not connected: not sent.", time_ms=self._now_ms()))

    def _send_registered(self, command: str, *params: str) -> None:
        proto = self._registered_proto()
        if proto is None:
            if command not in ("JOIN", "PART"):  # remembered in _want, sent on (re)connect
                self._not_connected()
            return
        try:
            proto.send(command, *params)
        except ValueError as e:  # a parameter that cannot be written (space, empty, CR)
            self._emit(ChatEvent(I.ERROR, text=f"Not sent: {e}", time_ms=self._now_ms()))

    def _privmsg(self, target: str, text: str, action: bool) -> None:
        proto = self._registered_proto()
        if proto is None:
            self._not_connected()
            return
        if not target or " " in target or target[0] == ":":
            self._emit(ChatEvent(I.ERROR, text=f"Not sent: bad target {target!r}",
                                 time_ms=self._now_ms()))
            return
        # CR, LF and NUL cannot be in a line: each text line is one message.
        for line in text.replace("\0", "").replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if not line:
                continue
            overhead = len(f"PRIVMSG {target} :".encode()) + (9 if action else 0)
            for chunk in _split_utf8(line, max(SEND_LIMIT - overhead, 16)):
                body = f"\x01ACTION {chunk}\x01" if action else chunk
                proto.send("PRIVMSG", target, body)
                if "echo-message" not in self.caps:
                    # Without echo-message the server never shows us our line: show it here.
                    room = target
                    self._emit(ChatEvent(I.ACTION if action else I.MESSAGE, room=room,
                                         nick=self.nick, text=chunk, time_ms=self._now_ms(),
                                         own=True))

    # ----------------------------------------------------------- connection

    def _connect_failed(self, reason) -> None:
        self._failures += 1
        text = f"Cannot connect to {self.host}:{self.port}: {_reason_text(reason)}."
        if self._closing:
            return
        if text != self._last_failure_text:
            self._last_failure_text = text
            self._emit(ChatEvent(I.ERROR, text=text + " Retrying.", time_ms=self._now_ms()))
        self._set_state(I.DISCONNECTED)

    def _connection_made(self, proto: _IRCClientProtocol) -> None:
        self._proto = proto
        self._set_state(I.CONNECTING)

    def _prepare(self, proto) -> defer.Deferred:
        """
        ClientService's prepareConnection: register (CAP, NICK, USER), fire on 001.

        Twisted's ClientService has no transition for a connection lost while
        prepareConnection is pending (automat raises NoTransition inside
        connectionLost, logged as an unhandled error).  So a registration cut
        short fires this Deferred anyway, and ClientService sees an ordinary
        disconnect; ``_failures`` keeps the backoff growing meanwhile.
        """
        proto = self._proto  # ClientService hands us its proxy; we keep the protocol
        d = proto.ready = defer.Deferred()
        self.caps = set()
        self.isupport = {}
        self._batches.clear()
        self._cap_ls = []
        self._alt_nicks = 0
        try:
            if self.password:
                proto.send("PASS", self.password)
            proto.send("CAP", "LS", "302")
            proto.send("NICK", self.wanted_nick if is_valid_nick(self.wanted_nick) else "guest")
            proto.send("USER", self.username, "0", "*", self.realname)
        except ValueError:
            proto.send("NICK", "guest")
            proto.send("USER", "guest", "0", "*", "twistchat user")
        self._register_call = self.reactor.callLater(self.register_timeout, self._register_timed_out,
                                                    proto)
        return d

    def _register_timed_out(self, proto) -> None:
        self._register_call = None
        if not proto.registered and not proto.lost:
            self._emit(ChatEvent(I.ERROR, text="The server did not finish registration; reconnecting.",
                                 time_ms=self._now_ms()))
            proto.transport.abortConnection()

    def _connection_lost(self, proto: _IRCClientProtocol, reason) -> None:
        if proto is self._proto:
            self._proto = None
        self._stop_timers()
        for room in list(self._hold_calls):
            self._release(room)
        self._names.clear()
        if proto.ready is not None and not proto.ready.called:
            self._failures += 1
            if not self._closing:
                text = (f"Connection to {self.host}:{self.port} {_reason_text(reason)} "
                        "before registration.")
                if text != self._last_failure_text:
                    self._last_failure_text = text
                    self._emit(ChatEvent(I.ERROR, text=text + " Retrying.", time_ms=self._now_ms()))
            proto.ready.callback(None)  # see _prepare
        elif not self._closing:
            self._emit(ChatEvent(I.ERROR, text=f"Disconnected: {_reason_text(reason)}. Reconnecting.",
                                 time_ms=self._now_ms()))
        if self._closing:
            self.reactor.callLater(0, self._finish_close)
        else:
            self._set_state(I.DISCONNECTED)

    def _stop_timers(self) -> None:
        self._ping_sent = None
        for name in ("_ping_call", "_register_call"):
            call = getattr(self, name)
            setattr(self, name, None)
            if call is None:
                continue
            if hasattr(call, "running"):
                if call.running:
                    call.stop()
            elif call.active():
                call.cancel()

    def _registered(self, proto: _IRCClientProtocol, msg: Message) -> None:
        """001: we may chat.  Rejoin, start pinging, tell whoever waits."""
        proto.registered = True
        if self._register_call is not None and self._register_call.active():
            self._register_call.cancel()
        self._register_call = None
        self._failures = 0
        self._last_failure_text = None
        if msg.params:
            self.nick = msg.params[0]
        self.server_name = msg.source
        reconnect = self._ever_registered
        self._ever_registered = True
        self._set_state(I.REGISTERED)
        self._rejoin(proto, reconnect)
        self._ping_call = LoopingCall(self._ping, proto)
        self._ping_call.clock = self.reactor
        self._ping_call.start(self.ping_interval, now=True)
        if proto.ready is not None and not proto.ready.called:
            proto.ready.callback(None)
        started, self._started = self._started, []
        for d in started:
            d.callback(self)

    def _rejoin(self, proto, reconnect: bool) -> None:
        history = "draft/chathistory" in self.caps or "CHATHISTORY" in self.isupport
        self._want_history.clear()
        for key, room in list(self._want.items()):
            if reconnect and history and key in self._last:
                self._want_history.add(key)
                if "batch" in self.caps:
                    # Hold this room's lines (our JOIN first) until the gap is
                    # filled, so the transcript keeps the server's order.
                    self._holding[key] = []
                    self._hold_calls[key] = self.reactor.callLater(self.hold_timeout,
                                                                   self._release, key)
            proto.send("JOIN", room)

    def _ping(self, proto) -> None:
        if proto.lost:
            return
        now = self.reactor.seconds()
        if self._ping_sent is not None and now - self._ping_sent >= self.ping_timeout:
            self._emit(ChatEvent(I.ERROR, text=f"No answer from the server for {int(now - self._ping_sent)} s; "
                                 "reconnecting.", time_ms=self._now_ms()))
            self._ping_sent = None
            proto.transport.abortConnection()
            return
        if self._ping_sent is None:
            self._ping_sent = now
            self._ping_token = f"lag-{int(now * 1000)}"
            proto.send("PING", self._ping_token)

    # ----------------------------------------------------------- lines in

    def _garbage(self, what: str) -> None:
        self._emit(ChatEvent(I.ERROR, text=f"Ignored {what} from the server.", time_ms=self._now_ms()))

    def _line_received(self, proto: _IRCClientProtocol, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        try:
            msg = parse(line, max_body=MAX_LINE + 2, max_tags=MAX_LINE)
        except WireError as e:
            self._garbage(f"an invalid line ({e})")
            return
        try:
            self._dispatch(proto, msg)
        except Exception:
            self._log.failure("handling {line!r}", line=line)
            self._garbage(f"a {msg.verb} line it could not handle")

    def _dispatch(self, proto, msg: Message) -> None:
        batch = msg.tags.get("batch")
        if batch and batch in self._batches and msg.verb != "BATCH":
            self._batches[batch][2].append(msg)
            return
        handler = getattr(self, "_irc_" + msg.verb, None)
        if handler is not None:
            handler(proto, msg)
        elif msg.verb.isdigit():
            self._numeric(proto, msg)
        else:
            self._emit(ChatEvent(I.INFO, text=" ".join((msg.command,) + msg.params),
                                 time_ms=self._time_ms(msg), message=msg))

    def _time_ms(self, msg: Message) -> int:
        stamp = msg.tags.get("time")
        if stamp:
            try:
                return parse_server_time(stamp)
            except ValueError:
                pass
        return self._now_ms()

    def _nick_of(self, msg: Message) -> str:
        return split_source(msg.source)[0] if msg.source else ""

    def _is_me(self, nick: str) -> bool:
        return bool(nick) and casefold(nick) == casefold(self.nick)

    def _chantypes(self) -> str:
        return self.isupport.get("CHANTYPES") or "#&"

    def _room_event(self, msg: Message, event: ChatEvent) -> None:
        """Emit a room's event once: hold it while history is due, drop a msgid seen before."""
        key = casefold(event.room) if event.room else None
        if key is not None and key in self._holding:
            self._holding[key].append((msg, event))
            return
        self._show(key, msg, event)

    def _show(self, key, msg: Message, event: ChatEvent) -> None:
        msgid = msg.tags.get("msgid")
        if key is not None:
            if msgid:
                seen = self._seen.get(key)
                if seen is None:
                    seen = self._seen[key] = (deque(maxlen=SEEN_MSGIDS), set())
                order, ids = seen
                if msgid in ids:
                    return
                if len(order) == order.maxlen:
                    ids.discard(order[0])
                order.append(msgid)
                ids.add(msgid)
            if msgid or "time" in msg.tags:
                self._last[key] = (msgid, msg.tags.get("time"))
        self._emit(event)

    def _release(self, key) -> None:
        """History came (or did not in time): show what was held, in order."""
        call = self._hold_calls.pop(key, None)
        if call is not None and call.active():
            call.cancel()
        for msg, event in self._holding.pop(key, []):
            self._show(key, msg, event)

    # ----------------------------------------------------------- commands

    def _irc_PING(self, proto, msg: Message) -> None:
        proto.send("PONG", msg.params[0] if msg.params else (self.server_name or "twistchat"))

    def _irc_PONG(self, proto, msg: Message) -> None:
        token = msg.params[-1] if msg.params else ""
        if self._ping_sent is not None and token == self._ping_token:
            self.lag = max(0.0, self.reactor.seconds() - self._ping_sent)
            self._ping_sent = None

    def _irc_CAP(self, proto, msg: Message) -> None:
        params = msg.params
        if len(params) < 2:
            return
        sub = params[1].upper()
        if sub == "LS":
            more = len(params) > 3 and params[2] == "*"
            self._cap_ls += params[-1].split()
            if more:
                return
            offered = {item.partition("=")[0] for item in self._cap_ls}
            self._cap_ls = []
            wanted = [c for c in WANTED_CAPS if c in offered]
            if wanted and not proto.registered:
                proto.send("CAP", "REQ", " ".join(wanted))
            elif not proto.registered:
                proto.send("CAP", "END")
        elif sub == "ACK":
            for cap in params[-1].split():
                if cap.startswith("-"):
                    self.caps.discard(cap[1:])
                else:
                    self.caps.add(cap)
            if not proto.registered:
                proto.send("CAP", "END")
        elif sub == "NAK":
            if not proto.registered:
                proto.send("CAP", "END")
        elif sub == "DEL":
            for cap in params[-1].split():
                self.caps.discard(cap)

    def _irc_ERROR(self, proto, msg: Message) -> None:
        if self._closing:
            return
        text = msg.params[-1] if msg.params else "closing"
        self._emit(ChatEvent(I.ERROR, text=f"Server: {text}", time_ms=self._time_ms(msg), message=msg))

    def _irc_PRIVMSG(self, proto, msg: Message, notice: bool = False) -> None:
        if len(msg.params) < 2:
            return
        target, text = msg.params[0], msg.params[1]
        nick = self._nick_of(msg)
        own = self._is_me(nick)
        bare = target.lstrip("@+%~&") if target[:1] in "@+%~" else target  # STATUSMSG
        if is_room(bare, self._chantypes()):
            room = bare
        elif not msg.source or "!" not in msg.source:
            room = None  # from the server itself (our server's users are all nick!user@host)
        else:
            room = target if own else nick
        kind = I.NOTICE if notice else I.MESSAGE
        if text.startswith("\x01"):
            body = text[1:-1] if text.endswith("\x01") and len(text) > 1 else text[1:]
            verb, _, arg = body.partition(" ")
            verb = verb.upper()
            if verb == "ACTION" and not notice:
                kind, text = I.ACTION, arg
            elif notice:
                text = f"CTCP {verb} reply: {arg}"
            else:
                if not own and self._is_me(target) and verb in ("VERSION", "PING"):
                    reply = "twistchat" if verb == "VERSION" else arg
                    try:
                        proto.send("NOTICE", nick, f"\x01{verb} {reply}\x01")
                    except ValueError:
                        pass
                self._emit(ChatEvent(I.INFO, room=None, nick=nick, text=f"CTCP {verb} from {nick}",
                                     time_ms=self._time_ms(msg), message=msg))
                return
        event = ChatEvent(kind, room=room, nick=nick or None, text=text, time_ms=self._time_ms(msg),
                          own=own, message=msg)
        if room is None:
            self._emit(event)
        else:
            self._room_event(msg, event)

    def _irc_NOTICE(self, proto, msg: Message) -> None:
        self._irc_PRIVMSG(proto, msg, notice=True)

    def _irc_JOIN(self, proto, msg: Message) -> None:
        if not msg.params:
            return
        room = msg.params[0]
        nick = self._nick_of(msg)
        own = self._is_me(nick)
        key = casefold(room)
        if own and not self._replaying:
            if key not in {casefold(r) for r in self.rooms}:
                self.rooms.append(room)
            self._want[key] = room
            if key in self._want_history:
                self._want_history.discard(key)
                self._ask_history(proto, room, key)
        self._room_event(msg, ChatEvent(I.JOIN, room=room, nick=nick, time_ms=self._time_ms(msg),
                                        own=own, message=msg))

    def _ask_history(self, proto, room: str, key: str) -> None:
        msgid, stamp = self._last.get(key, (None, None))
        if msgid:
            ref = f"msgid={msgid}"
        elif stamp:
            ref = f"timestamp={stamp}"
        else:
            self._release(key)
            return
        limit = self.history_limit
        try:
            limit = min(limit, int(self.isupport.get("CHATHISTORY") or limit) or limit)
        except ValueError:
            pass
        proto.send("CHATHISTORY", "AFTER", room, ref, str(limit))

    def _leave(self, room: str) -> None:
        key = casefold(room)
        self.rooms = [r for r in self.rooms if casefold(r) != key]
        self._want.pop(key, None)

    def _irc_PART(self, proto, msg: Message) -> None:
        if not msg.params:
            return
        room = msg.params[0]
        nick = self._nick_of(msg)
        own = self._is_me(nick)
        if own and not self._replaying:
            self._leave(room)
        self._room_event(msg, ChatEvent(I.PART, room=room, nick=nick,
                                        text=msg.params[1] if len(msg.params) > 1 else "",
                                        time_ms=self._time_ms(msg), own=own, message=msg))

    def _irc_KICK(self, proto, msg: Message) -> None:
        if len(msg.params) < 2:
            return
        room, victim = msg.params[0], msg.params[1]
        reason = msg.params[2] if len(msg.params) > 2 else ""
        if self._is_me(victim) and not self._replaying:
            self._leave(room)
        self._room_event(msg, ChatEvent(I.KICK, room=room, nick=self._nick_of(msg),
                                        text=f"{victim} {reason}".rstrip(), time_ms=self._time_ms(msg),
                                        own=self._is_me(victim), message=msg))

    def _irc_QUIT(self, proto, msg: Message) -> None:
        nick = self._nick_of(msg)
        self._emit(ChatEvent(I.QUIT, nick=nick, text=msg.params[0] if msg.params else "",
                             time_ms=self._time_ms(msg), own=self._is_me(nick), message=msg))

    def _irc_NICK(self, proto, msg: Message) -> None:
        if not msg.params:
            return
        old, new = self._nick_of(msg), msg.params[0]
        own = self._is_me(old)
        if own and not self._replaying:
            self.nick = self.wanted_nick = new
        self._emit(ChatEvent(I.NICK, nick=old, text=new, time_ms=self._time_ms(msg), own=own,
                             message=msg))

    def _irc_TOPIC(self, proto, msg: Message) -> None:
        if not msg.params:
            return
        nick = self._nick_of(msg)
        self._room_event(msg, ChatEvent(I.TOPIC, room=msg.params[0], nick=nick,
                                        text=msg.params[1] if len(msg.params) > 1 else "",
                                        time_ms=self._time_ms(msg), own=self._is_me(nick),
                                        message=msg))

    def _irc_MODE(self, proto, msg: Message) -> None:
        if len(msg.params) < 2:
            return
        target = msg.params[0]
        room = target if is_room(target, self._chantypes()) else None
        event = ChatEvent(I.MODE, room=room, nick=self._nick_of(msg), text=" ".join(msg.params[1:]),
                          time_ms=self._time_ms(msg), message=msg)
        if room is None:
            self._emit(event)
        else:
            self._room_event(msg, event)

    def _irc_BATCH(self, proto, msg: Message) -> None:
        if not msg.params:
            return
        ref = msg.params[0]
        if ref.startswith("+"):
            self._batches[ref[1:]] = [msg.params[1] if len(msg.params) > 1 else "",
                                      msg.params[2:], []]
        elif ref.startswith("-"):
            batch = self._batches.pop(ref[1:], None)
            if batch is None:
                return
            kind, params, lines = batch
            for line in lines:
                line = Message(line.command, line.params, line.source,
                               {k: v for k, v in line.tags.items() if k != "batch"})
                self._dispatch_history(proto, line)
            if kind in ("chathistory", "draft/chathistory") and params:
                key = casefold(params[0])
                if key in self._holding:
                    self._release(key)

    def _dispatch_history(self, proto, msg: Message) -> None:
        """A line replayed from history: shown like a live one, never held again."""
        verb = msg.verb
        if verb in ("PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "TOPIC", "MODE"):
            room = msg.params[0] if msg.params else ""
            key = casefold(room)
            held = self._holding.pop(key, None)
            self._replaying = True
            try:
                self._dispatch(proto, msg)
            finally:
                self._replaying = False
                if held is not None:
                    self._holding[key] = held
        # Other lines in a history batch (QUIT, NICK) describe the past: not replayed.

    def _irc_FAIL(self, proto, msg: Message) -> None:
        # IRCv3 standard replies: FAIL <command> <code> [<context>...] <description>
        if msg.params and msg.params[0].upper() == "CHATHISTORY":
            for key in list(self._holding):
                self._release(key)
        self._emit(ChatEvent(I.ERROR, text=msg.params[-1] if msg.params else "FAIL",
                             time_ms=self._time_ms(msg), message=msg))

    def _irc_WARN(self, proto, msg: Message) -> None:
        self._emit(ChatEvent(I.INFO, text=msg.params[-1] if msg.params else "WARN",
                             time_ms=self._time_ms(msg), message=msg))

    _irc_NOTE = _irc_WARN

    # ----------------------------------------------------------- numerics

    def _numeric(self, proto, msg: Message) -> None:
        code = msg.command
        params = msg.params
        time_ms = self._time_ms(msg)
        if code == "001":
            self._registered(proto, msg)
        elif code == "005":
            for token in params[1:-1]:
                key, _, value = token.partition("=")
                self.isupport[key.lstrip("-")] = value
            return
        elif code in ("433", "432", "436") and not proto.registered:
            self._alternative_nick(proto, params[1] if len(params) > 2 else self.wanted_nick)
            return
        elif code == "353" and len(params) >= 4:
            self._names.setdefault(casefold(params[2]), []).extend(params[3].split())
            return
        elif code == "366" and len(params) >= 2:
            room = params[1]
            names = tuple(self._names.pop(casefold(room), ()))
            self._emit(ChatEvent(I.NAMES, room=room, names=names, time_ms=time_ms, message=msg))
            return
        elif code in ("332",) and len(params) >= 3:
            self._emit(ChatEvent(I.TOPIC, room=params[1], text=params[2], time_ms=time_ms,
                                 message=msg))
            return
        elif code == "352" and len(params) >= 8:
            room = params[1] if is_room(params[1], self._chantypes()) else None
            _, _, realname = params[7].partition(" ")
            self._emit(ChatEvent(I.INFO, room=room, nick=params[5],
                                 text=f"{params[5]} ({params[2]}@{params[3]}) {params[6]} {realname}".rstrip(),
                                 time_ms=time_ms, message=msg))
            return
        elif code in ("004", "333", "329"):
            return
        if code[0] in "45" and code != "422":
            if code in ("403", "405", "471", "473", "474", "475") and len(params) >= 2:
                # A room we cannot join: stop trying it after every reconnect.
                self._want.pop(casefold(params[1]), None)
                self._holding.pop(casefold(params[1]), None)
            detail = [p for p in params[1:-1]]
            text = (" ".join(detail) + ": " if detail else "") + (params[-1] if len(params) > 1 else code)
            room = params[1] if len(params) > 2 and is_room(params[1], self._chantypes()) else None
            self._emit(ChatEvent(I.ERROR, room=room, text=text, time_ms=time_ms, message=msg))
            return
        if code in ("265", "266", "422") or len(params) < 2:
            text = params[-1] if params else code
        else:
            text = " ".join(params[1:])
        room = None
        if code in ("315", "331", "324") and len(params) >= 2 and is_room(params[1], self._chantypes()):
            room = params[1]
            text = " ".join(params[2:])
        self._emit(ChatEvent(I.INFO, room=room, text=text, time_ms=time_ms, message=msg))

    def _alternative_nick(self, proto, taken: str) -> None:
        """Registration: ``taken`` is refused; try ``nick_``, ``nick__``, then digits."""
        self._alt_nicks += 1
        base = sanitize_nick(self.wanted_nick)
        nicklen = 30
        try:
            nicklen = int(self.isupport.get("NICKLEN") or 30)
        except ValueError:
            pass
        if self._alt_nicks <= 2:
            candidate = (base[: nicklen - self._alt_nicks] + "_" * self._alt_nicks)
        else:
            digits = str(random.randint(100, 99999))
            candidate = base[: nicklen - len(digits)] + digits
        if self._alt_nicks > 20:
            proto.transport.loseConnection()
            return
        self.nick = candidate
        proto.send("NICK", candidate)


def _split_utf8(text: str, limit: int) -> list:
    """Cut ``text`` into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    out = []
    while data:
        cut = min(limit, len(data))
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        # Prefer a space near the end, so words stay whole.
        space = data.rfind(b" ", max(0, cut - 40), cut)
        if cut < len(data) and space > 0:
            cut = space + 1
        out.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    return [piece for piece in out if piece.strip()]
