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
- with ``sasl=Credentials(account, password)``, a SASL PLAIN login on every
  connection before ``CAP END`` (:mod:`.sasl`, issue #14); its outcome is one
  INFO or ERROR event, and a failed login leaves the session connected
  without an account;
- TLS with certificate verification (``tls=True``), or without
  (``insecure=True``: a self-signed test server);
- CTCP ACTION for ``/me``; CTCP VERSION and PING answered.

Nothing a server sends makes it raise: lines that are not IRC become one
ERROR event each, and a bug of ours handling a line is logged and reported
the same way, with the connection left alive.  No prompt_toolkit here.

This module is the connection's state machine (connect, register, ping,
reconnect, close) and the public API.  Its helpers each have one job:
:mod:`.tcp_link` frames bytes into lines, :mod:`.tcp_register` negotiates
capabilities and the nick, :mod:`.tcp_events` turns lines into events and
:mod:`.tcp_order` shows room events once and in order across reconnects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent, IChatSession
from twistchat.client.sasl import Credentials, SaslStep
from twistchat.client.tcp_events import IRCEvents, Rooms
from twistchat.client.tcp_link import (
    MAX_LINE,
    IRCLineProtocol,
    Keepalive,
    ReportingEndpoint,
    abort,
    privmsg_bodies,
    reason_text,
    tls_options,
)
from twistchat.client.tcp_order import RoomOrder
from twistchat.client.tcp_register import WANTED_CAPS, Registration
from twistchat.wire import Message, WireError, encode, parse, sanitize_nick

__all__ = ["TCPChatSession", "DEFAULT_PORT", "WANTED_CAPS"]

DEFAULT_PORT = 6667


@implementer(IChatSession)
class TCPChatSession:
    """
    A chat session over IRC on TCP or TLS, with reconnection.

    ``reactor`` is the clock and network (the global reactor if None);
    ``endpoint`` overrides the one built from host/port/TLS (tests);
    ``trust_root`` is a PEM file of certificates to trust instead of the
    platform's; ``retry`` is ``backoffPolicy``'s keyword arguments;
    ``sasl``: log in to this account on every connection (never logged).
    """

    transport_name = "tcp"
    _log = Logger()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        nick: str = "guest",
        rooms: Iterable[str] = ("#lobby",),
        *,
        reactor: Any = None,
        tls: bool = False,
        insecure: bool = False,
        trust_root: str | None = None,
        username: str | None = None,
        realname: str = "twistchat user",
        password: str | None = None,
        endpoint: IStreamClientEndpoint | None = None,
        retry: dict[str, Any] | None = None,
        ping_interval: float = 30.0,
        ping_timeout: float = 60.0,
        register_timeout: float = 30.0,
        quit_timeout: float = 1.0,
        history_limit: int = 100,
        hold_timeout: float = 5.0,
        sasl: Credentials | None = None,
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
        self.isupport: dict[str, str] = {}
        self.server_name: str | None = None
        self.register_timeout = register_timeout
        self.quit_timeout = quit_timeout
        self._handler: Callable[[ChatEvent], None] = lambda event: None
        self._rooms = Rooms(rooms)
        self.account: str | None = None  # the account the server says we are logged in to
        self._registration = Registration(sasl, self._sasl_step)
        self._order = RoomOrder(reactor, self._emit, hold_timeout=hold_timeout,
                                history_limit=history_limit)
        self._events = IRCEvents(self, self._rooms, self._order, self._emit, self._now_ms)
        self._proto: IRCLineProtocol | None = None
        self._closing = False
        self._started: list[defer.Deferred[TCPChatSession]] = []  # fired on first 001
        self._ever_registered = False
        self._failures = 0  # connection attempts in a row that did not reach 001
        self._last_failure_text: str | None = None
        self._keepalive = Keepalive(reactor, ping_interval, ping_timeout, self._silent)
        self._register_call: IDelayedCall | None = None
        self._quit_call: IDelayedCall | None = None
        self._stopping = False
        self._close_waiters: list[defer.Deferred[None]] = []

        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, host, port, timeout=10)
            if tls:
                endpoint = wrapClientTLS(tls_options(host, insecure, trust_root), endpoint)
        policy = backoffPolicy(**(retry or {}))
        factory = Factory.forProtocol(lambda: IRCLineProtocol(
            self._connection_made, self._line_received, self._garbage, self._connection_lost))
        factory.noisy = False
        # The policy counts our failures, not ClientService's: a connection the
        # server closes during registration is a failure too (see _prepare).
        self._service = ClientService(
            ReportingEndpoint(endpoint, self._connect_failed), factory,
            retryPolicy=lambda attempt: policy(max(1, self._failures)),
            clock=reactor, prepareConnection=self._prepare)

    @property
    def rooms(self) -> list[str]:
        """The rooms we are in, in join order."""
        return self._rooms.joined

    @property
    def lag(self) -> float | None:
        """The last measured round trip to the server in seconds, or None."""
        return self._keepalive.lag

    @property
    def caps(self) -> set[str]:
        """The IRCv3 capabilities the server acknowledged on this connection."""
        return self._registration.caps

    # ------------------------------------------------------------- public API

    def set_handler(self, handler: Callable[[ChatEvent], None]) -> None:
        """Call ``handler(ChatEvent)`` for each event (reactor thread)."""
        self._handler = handler

    def start(self) -> defer.Deferred[TCPChatSession]:
        """Connect, and keep reconnecting until :meth:`close`; fires on the first 001."""
        d: defer.Deferred[TCPChatSession] = defer.Deferred()
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
        self._rooms.wish(room)
        self._send_registered("JOIN", room)

    def part(self, room: str, reason: str = "") -> None:
        """Leave ``room``."""
        self._rooms.unwish(room)
        self._send_registered("PART", room, *((reason,) if reason else ()))

    def say(self, target: str, text: str) -> None:
        """PRIVMSG ``text`` to a room or nick, split into lines the server accepts."""
        self._privmsg(target, text, action=False)

    def action(self, target: str, text: str) -> None:
        """``/me``: a CTCP ACTION."""
        self._privmsg(target, text, action=True)

    def set_nick(self, nick: str) -> None:
        """Ask for ``nick`` (the server answers NICK, or 432/433)."""
        self.wanted_nick = nick
        proto = self._registered_proto()
        if proto is None:
            self.nick = nick
        else:
            proto.send("NICK", nick)

    def topic(self, room: str, text: str | None = None) -> None:
        """Query (None) or set a room's topic."""
        self._send_registered("TOPIC", room, *(() if text is None else (text,)))

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
            self._error(f"Not sent: {e}")
            return
        proto.write(data)

    def close(self, reason: str = "Client Quit") -> defer.Deferred[None]:
        """
        QUIT, stop reconnecting, disconnect; fires once closed (at most
        ``quit_timeout`` and a moment).
        """
        waiter: defer.Deferred[None] = defer.Deferred()
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
        self._order.release_all()
        d = self._service.stopService() if self._service.running else defer.succeed(None)

        def done(_: object) -> None:
            self._set_state(I.CLOSED)
            started, self._started = self._started, []
            for waiting in started:
                waiting.errback(defer.CancelledError("closed before registration"))
            waiters, self._close_waiters = self._close_waiters, []
            for waiter in waiters:
                waiter.callback(None)

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

    def _registered_proto(self) -> IRCLineProtocol | None:
        proto = self._proto
        if proto is None or proto.lost or not proto.registered:
            return None
        return proto

    def _error(self, text: str) -> None:
        self._emit(ChatEvent(I.ERROR, text=text, time_ms=self._now_ms()))

    def _retrying(self, text: str) -> None:
        """One line per kind of failure, not one per attempt."""
        if text != self._last_failure_text:
            self._last_failure_text = text
            self._error(text + " Retrying.")

    def _not_connected(self) -> None:
        self._error("Not connected: not sent.")

    def _send_registered(self, command: str, *params: str) -> None:
        proto = self._registered_proto()
        if proto is None:
            if command not in ("JOIN", "PART"):  # remembered in Rooms.want, sent on (re)connect
                self._not_connected()
            return
        try:
            proto.send(command, *params)
        except ValueError as e:  # a parameter that cannot be written (space, empty, CR)
            self._error(f"Not sent: {e}")

    def _privmsg(self, target: str, text: str, action: bool) -> None:
        proto = self._registered_proto()
        if proto is None:
            self._not_connected()
            return
        if not target or " " in target or target[0] == ":":
            self._error(f"Not sent: bad target {target!r}")
            return
        for body, chunk in privmsg_bodies(target, text, action):
            proto.send("PRIVMSG", target, body)
            if "echo-message" not in self.caps:
                # Without echo-message the server never shows us our line: show it here.
                self._emit(ChatEvent(I.ACTION if action else I.MESSAGE, room=target,
                                     nick=self.nick, text=chunk, time_ms=self._now_ms(),
                                     own=True))

    # ----------------------------------------------------------- connection

    def _connect_failed(self, reason: Failure) -> None:
        self._failures += 1
        text = f"Cannot connect to {self.host}:{self.port}: {reason_text(reason)}."
        if self._closing:
            return
        self._retrying(text)
        self._set_state(I.DISCONNECTED)

    def _connection_made(self, proto: IRCLineProtocol) -> None:
        self._proto = proto
        self._set_state(I.CONNECTING)

    def _prepare(self, proxy: object) -> defer.Deferred[None]:
        """
        ClientService's prepareConnection: register (CAP, NICK, USER), fire on 001.

        Twisted's ClientService has no transition for a connection lost while
        prepareConnection is pending (automat raises NoTransition inside
        connectionLost, logged as an unhandled error).  So a registration cut
        short fires this Deferred anyway, and ClientService sees an ordinary
        disconnect; ``_failures`` keeps the backoff growing meanwhile.
        """
        proto = self._proto  # ClientService hands us its proxy; we keep the protocol
        assert proto is not None, "prepareConnection comes after connectionMade"
        d: defer.Deferred[None] = defer.Deferred()
        proto.ready = d
        self.isupport = {}
        self._order.new_connection()
        self._registration.begin(proto, self.wanted_nick, self.username, self.realname,
                                 self.password)
        self._register_call = self.reactor.callLater(self.register_timeout,
                                                     self._register_timed_out, proto)
        return d

    def _register_timed_out(self, proto: IRCLineProtocol) -> None:
        self._register_call = None
        if not proto.registered and not proto.lost:
            self._error("The server did not finish registration; reconnecting.")
            abort(proto)

    def _connection_lost(self, proto: IRCLineProtocol, reason: Failure) -> None:
        if proto is self._proto:
            self._proto = None
            self.account = None
        self._stop_timers()
        self._order.release_all()
        self._events.reset()
        if proto.ready is not None and not proto.ready.called:
            self._failures += 1
            if not self._closing:
                text = (f"Connection to {self.host}:{self.port} {reason_text(reason)} "
                        "before registration.")
                self._retrying(text)
            proto.ready.callback(None)  # see _prepare
        elif not self._closing:
            self._error(f"Disconnected: {reason_text(reason)}. Reconnecting.")
        if self._closing:
            self.reactor.callLater(0, self._finish_close)
        else:
            self._set_state(I.DISCONNECTED)

    def _stop_timers(self) -> None:
        self._keepalive.stop()
        register, self._register_call = self._register_call, None
        if register is not None and register.active():
            register.cancel()

    def _registered(self, proto: IRCLineProtocol, msg: Message) -> None:
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
        self._keepalive.start(proto)
        if proto.ready is not None and not proto.ready.called:
            proto.ready.callback(None)
        started, self._started = self._started, []
        for d in started:
            d.callback(self)

    def _rejoin(self, proto: IRCLineProtocol, reconnect: bool) -> None:
        """Join our rooms again; after a reconnect, fill each one's gap from history."""
        history = "draft/chathistory" in self.caps or "CHATHISTORY" in self.isupport
        self._order.rejoining()
        for key, room in list(self._rooms.want.items()):
            if reconnect and history:
                self._order.expect_history(key, hold="batch" in self.caps)
            proto.send("JOIN", room)

    def _silent(self, seconds: int) -> None:
        self._error(f"No answer from the server for {seconds} s; reconnecting.")

    # ----------------------------------------------------------- lines in

    def _garbage(self, what: str) -> None:
        self._error(f"Ignored {what} from the server.")

    def _line_received(self, proto: IRCLineProtocol, line: bytes) -> None:
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

    def _dispatch(self, proto: IRCLineProtocol, msg: Message) -> None:
        """The connection's own lines here; the rest become events (:mod:`.tcp_events`)."""
        if self._order.collect(msg):
            return  # in a batch: dispatched when the batch ends
        handler = self._CONNECTION_LINES.get(msg.verb)
        if handler is not None:
            handler(self, proto, msg)
        else:
            self._events.handle(proto, msg)

    def _irc_PING(self, proto: IRCLineProtocol, msg: Message) -> None:
        proto.send("PONG", msg.params[0] if msg.params else (self.server_name or "twistchat"))

    def _irc_PONG(self, proto: IRCLineProtocol, msg: Message) -> None:
        self._keepalive.pong(msg.params[-1] if msg.params else "")

    def _irc_CAP(self, proto: IRCLineProtocol, msg: Message) -> None:
        self._registration.on_cap(proto, msg)

    def _sasl_line(self, proto: IRCLineProtocol, msg: Message) -> None:
        """``AUTHENTICATE``, 900-908: our login's, else shown as any line."""
        if msg.command == "900" and len(msg.params) > 2:
            self.account = msg.params[2]
        elif msg.command == "901":
            self.account = None
        if not self._registration.on_sasl(proto, msg):
            self._events.handle(proto, msg)

    def _sasl_step(self, step: SaslStep) -> None:
        """The login's outcome: one line (INFO logged in, ERROR not)."""
        if step.text is not None:
            kind = I.INFO if step.ok else I.ERROR
            self._emit(ChatEvent(kind, text=step.text, time_ms=self._now_ms()))

    def _irc_ERROR(self, proto: IRCLineProtocol, msg: Message) -> None:
        if self._closing:
            return
        text = msg.params[-1] if msg.params else "closing"
        self._emit(ChatEvent(I.ERROR, text=f"Server: {text}", time_ms=self._events.time_ms(msg),
                             message=msg))

    def _irc_BATCH(self, proto: IRCLineProtocol, msg: Message) -> None:
        self._order.batch(proto, msg, self._dispatch)

    def _rpl_welcome(self, proto: IRCLineProtocol, msg: Message) -> None:
        """001: registered; the welcome text is shown too."""
        self._registered(proto, msg)
        self._events.handle(proto, msg)

    def _rpl_isupport(self, proto: IRCLineProtocol, msg: Message) -> None:
        """005 RPL_ISUPPORT: ``KEY=value`` tokens (``-KEY`` kept as given)."""
        for token in msg.params[1:-1]:
            key, _, value = token.partition("=")
            self.isupport[key.lstrip("-")] = value

    def _nick_refused(self, proto: IRCLineProtocol, msg: Message) -> None:
        """432, 433, 436: during registration, try another nick; later, an error line."""
        if proto.registered:
            self._events.handle(proto, msg)
            return
        candidate = self._registration.alternative_nick(self.wanted_nick, self.isupport)
        if candidate is None:
            if proto.transport is not None:
                proto.transport.loseConnection()
            return
        self.nick = candidate
        proto.send("NICK", candidate)

    _CONNECTION_LINES: dict[str, Callable[[TCPChatSession, IRCLineProtocol, Message], None]] = {
        "PING": _irc_PING,
        "PONG": _irc_PONG,
        "CAP": _irc_CAP,
        "ERROR": _irc_ERROR,
        "BATCH": _irc_BATCH,
        "001": _rpl_welcome,
        "005": _rpl_isupport,
        "432": _nick_refused,
        "433": _nick_refused,
        "436": _nick_refused,
        "AUTHENTICATE": _sasl_line,
        "900": _sasl_line,
        "901": _sasl_line,
        "902": _sasl_line,
        "903": _sasl_line,
        "904": _sasl_line,
        "905": _sasl_line,
        "906": _sasl_line,
        "907": _sasl_line,
        "908": _sasl_line,
    }

