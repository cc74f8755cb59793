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

Registration takes two steps (docs/udp-protocol.md, "Registration"): the
padded NICK, answered ``COOKIE <nick> <cookie>``; the padded NICK again with
``cookie=``, answered by the 001.  A server that answers the first NICK with
its 001 (before issue #12) is served as well.

Restarts (docs, "Restarts"; issue #12 item 2): the heartbeat comes every
``heartbeat`` seconds (the 001 says how often).  When it stops, the session
PINGs; no heartbeat for 3 intervals and no answer either: DISCONNECTED
("reconnecting", the STATE the TCP session emits).  Commands typed meanwhile
are queued (at most ``max_queued``).  It keeps PINGing with the old token and
registers again: the old session answering means it lived (nothing lost); a
new 001 (or a heartbeat with another ``boot``, which restarts this at once)
means a new session: rooms joined again, commands not acknowledged sent
again, each room's gap repaired from the last seq shown (:mod:`.udp_streams`).

Accounts (issue #14): with ``sasl=Credentials(...)`` every new session (the
first, and each one after a restart) starts with the SASL PLAIN exchange of
:mod:`.sasl` in numbered commands, before its JOINs (docs/udp-protocol.md,
"Accounts": the same AUTHENTICATE lines and 900-908 as on TCP, without CAP).
Its outcome is one INFO or ERROR event; a failed login chats on without an
account.

This module is the session's state machine (registration, keepalive, a
silent or restarted server, close).  The rest has a
module each: :mod:`.udp_net` (sockets, faults, discovery),
:mod:`.udp_commands` (the command window), :mod:`.udp_streams` (order,
holes, repair) and :mod:`.udp_events` (lines to events).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent, IChatSession
from twistchat.client.sasl import Credentials, SaslLogin
from twistchat.client.udp_commands import (
    CommandWindow,
    ping_datagram,
    register_datagram,
    repair_datagram,
)
from twistchat.client.udp_events import UDPEvents
from twistchat.client.udp_net import (
    DEFAULT_PORT,
    MAX_DATAGRAM,
    Beacon,
    FaultInjector,
    ReactorNet,
    Receiver,
    discover,
)
from twistchat.client.udp_parts import Parts
from twistchat.client.udp_streams import ROOM_VERBS, Streams
from twistchat.wire import Message, WireError, casefold, encode, parse

__all__ = ["UDPChatSession", "ReactorNet", "FaultInjector", "discover", "DEFAULT_PORT"]

SEND_LIMIT = 510  # body bytes the server accepts (RFC 1459, CRLF excluded)
# FAIL NICK BAD_COOKIE in a row before a first registration gives up (an expired cookie
# needs one more try; more means the server and we do not agree on our address).
MAX_BAD_COOKIES = 5


@implementer(IChatSession)
class UDPChatSession:
    """
    A chat session over UDP (docs/udp-protocol.md).

    ``host``/``port``: the server's unicast address (``host`` None: found by
    its beacon).  ``rooms`` are joined once registered, and again after the
    session is lost and registered anew.  ``net``: socket factory
    (default :class:`ReactorNet`).  ``fault_in``/``fault_out``: optional
    :class:`FaultInjector` on received and sent datagrams.  ``unicast``: ask the
    server for unicast copies instead of listening for broadcasts.  ``sasl``:
    log in to this account in every new session (the password is never logged).
    """

    transport_name = "udp"
    _log = Logger()

    def __init__(self, host: str | None, port: int = DEFAULT_PORT, nick: str = "guest",
                 rooms: Iterable[str] = (), reactor: Any = None, net: Any = None,
                 fault_in: FaultInjector | None = None, fault_out: FaultInjector | None = None,
                 unicast: bool = False, interface: str = "", window: int = 32,
                 reorder_delay: float = 0.03, repair_limit: int = 100,
                 register_timeout: float = 10.0, broadcast_port: int | None = None,
                 history_on_join: int = 50, max_queued: int = 1000,
                 sasl: Credentials | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.net = net or ReactorNet(reactor)
        self.host, self.port = host, port
        # host None: find the server by its beacon on this port (docs, "Heartbeat and beacon").
        self.broadcast_port = broadcast_port or port + 1
        self._autojoin: list[str] = list(rooms)  # joined again after a new registration
        self.nick = self.wanted_nick = nick
        self.state = I.CONNECTING
        self.rooms: list[str] = []
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
        # Restarts (docs, "Restarts"): the server's heartbeat interval and boot id (from the
        # 001 and the heartbeat), when we last heard a heartbeat, since when an answer is
        # owed (a PING or command without PONG/ACK), the old token while we reconnect.
        self.heartbeat = 1.0
        self.max_queued = max_queued  # commands kept while reconnecting; more are refused
        self._boot: str | None = None
        self._last_beat: float | None = None
        self._owed_since: float | None = None
        self._last_probe = 0.0
        self._old_token: str | None = None
        self._down_since: float | None = None
        self._told_queued = False
        self._ever_registered = False
        self.credentials = sasl
        self.account: str | None = None  # the account the server says we are logged in to
        self._login: SaslLogin | None = None  # this session's login (with credentials)
        self._cookie: str | None = None  # the COOKIE of the registration under way
        self._bad_cookies = 0
        self.broadcast_addr: tuple[str, int] | None = None
        self._handler: Callable[[ChatEvent], None] | None = None
        self._queued: list[ChatEvent] = []  # events before a handler was set
        self._server: tuple[str, int] | None = None  # (ip, port) the server sends from
        self._uport: Any = None
        self._bport: Any = None
        self._started: defer.Deferred[UDPChatSession] | None = None
        self._closed: defer.Deferred[None] | None = None
        self._timers: dict[str, IDelayedCall] = {}
        self._register_tries = 0
        self._register_started = 0.0
        self._alt = 0
        self._last_heard = 0.0
        self._boot_heard: str | None = None  # the boot of the last heartbeat heard
        # Counters a test or the UI may read.
        self.stats = {"repairs_asked": 0, "retransmits": 0, "duplicates": 0, "datagrams": 0,
                      "gone": 0}
        self._parts = Parts()
        self._streams = Streams(self._show, self._is_me, self._schedule_tick, self._gone,
                                self.stats, history_on_join)
        self._events = UDPEvents(self, self._streams, self._emit, self._now_ms, self._command)
        self._commands = CommandWindow(self._write_owed, window, self.stats)

    # ---------------------------------------------------------------- API

    def set_handler(self, handler: Callable[[ChatEvent], None]) -> None:
        """Call ``handler(ChatEvent)`` for each event, in order, each once."""
        self._handler = handler
        queued, self._queued = self._queued, []
        for event in queued:
            handler(event)

    def start(self) -> defer.Deferred[UDPChatSession]:
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
        def found(result: Beacon) -> None:
            self.host, self.port = result[0], result[1]
            self._emit(ChatEvent(I.INFO, text=f"found {result[2]} at {self.host}:{self.port}",
                                 time_ms=self._now_ms()))
            self._open()

        d = discover(self.reactor, self.broadcast_port, "", self.register_timeout, self.net)
        d.addCallbacks(found, lambda f: self._fail(f"no server found: {f.getErrorMessage()}"))

    def join(self, room: str) -> None:
        """Join ``room``: its stream starts at our JOIN event."""
        key = casefold(room)
        self._streams.joining(room)
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
        """Send one raw IRC line, reliably and in order with the rest; ERROR if it is not one."""
        try:
            message = parse(line)
        except WireError as e:
            self._emit(ChatEvent(I.ERROR, text=f"Not sent: {e}", time_ms=self._now_ms()))
            return
        self._command(message.command, *message.params)

    def close(self, reason: str = "Client Quit") -> defer.Deferred[None]:
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

    def _later(self, name: str, delay: float, fn: Callable[..., object], *args: object) -> None:
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
        return float(self.reactor.seconds())

    def _now_ms(self) -> int:
        return int(self._now() * 1000)

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
            self._emit(ChatEvent(I.STATE, text=state, time_ms=self._now_ms()))

    def _open(self) -> None:
        try:
            addr = socket.gethostbyname(self.host or "")
        except OSError as e:
            self._fail(f"cannot resolve {self.host}: {e}")
            return
        self._server = (addr, self.port)
        if self._uport is None:
            self._uport = self.net.listen_unicast(Receiver(self._received), self.interface)
        self._register_tries = 0
        self._register_started = self._now()
        self._send_register()

    def _fail(self, text: str) -> None:
        self._emit(ChatEvent(I.ERROR, text=text, time_ms=self._now_ms()))
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

    def _write_owed(self, data: bytes) -> None:
        """Send a datagram the server answers (a command, a PING): an answer is owed."""
        if self._owed_since is None:
            self._owed_since = self._now()
        self._write(data)

    def _uport_write(self, data: bytes, addr: Any) -> None:
        if self._uport is None:
            return
        try:
            self._uport.write(data, addr)
        except Exception as e:  # a full buffer loses one datagram, as the network may
            self._log.debug("udp send failed: {error}", error=e)

    # ------------------------------------------------------- registration

    def _send_register(self) -> None:
        """
        Ask to register (:func:`.register_datagram`, with the cookie once we
        have one); sent again until answered, the wait doubling up to 2 s.
        """
        if self.token is not None or self.state == I.CLOSED:
            return
        if not self._ever_registered and \
                self._now() - self._register_started > self.register_timeout:
            self._fail(f"no answer from {self.host}:{self.port} (UDP)")
            return
        self._write(register_datagram(self.wanted_nick, self.unicast, self._cookie))
        if self._old_token is not None:
            self._probe(self._old_token)  # the old session may live: its answer says so
        self._register_tries += 1
        self._later("register", min(0.25 * 2 ** (self._register_tries - 1), 2.0),
                    self._send_register)

    def _register_again(self, delay: float = 0.0) -> None:
        """Start the registration over (a new cookie) after ``delay``."""
        self._cookie = None
        self._register_tries = 0
        self._register_started = self._now()
        if delay > 0:
            self._later("register", delay, self._send_register)
        else:
            self._send_register()

    def _got_cookie(self, message: Message) -> None:
        """``COOKIE <nick> <cookie>``: our address is proven; send the NICK with it."""
        p = message.params
        if len(p) < 2 or casefold(p[0]) != casefold(self.wanted_nick):
            return  # for a nick we no longer ask for
        if p[1] == self._cookie:
            return  # the answer to a repeated first step: the second is on its way
        self._cookie = p[1]
        if self.state == I.DISCONNECTED:
            self._set_state(I.CONNECTING)
        self._register_tries = 0
        self._send_register()

    def _refused(self, message: Message) -> None:
        """A FAIL before our 001 (docs, "Registration", errors)."""
        code = message.params[1] if len(message.params) > 1 else ""
        if code == "BAD_COOKIE":
            # Expired, or not for this address and nick: step 1 again, a few times.
            self._bad_cookies += 1
            if self._bad_cookies > MAX_BAD_COOKIES and not self._ever_registered:
                self._fail("the server refused our registration cookie "
                           f"{self._bad_cookies} times")
                return
            self._register_again(min(0.25 * 2 ** (self._bad_cookies - 1), 4.0))
            return
        if code == "ADDRESS_IN_USE" and self._old_token is not None:
            self._resume()  # that session is ours: it outlived the silence
            return
        text = message.params[-1] if message.params else "registration refused"
        if not self._ever_registered:
            self._fail(text)
        elif self._down_since is not None:
            self._emit(ChatEvent(I.ERROR, text=text, time_ms=self._now_ms()))
            self._down_since = None  # once per outage; the registration goes on retrying

    def _registered(self, message: Message) -> None:
        tags = message.tags
        token = tags.get("token")
        if not token:
            self._fail("the server's 001 has no token")
            return
        self.token = token
        timer = self._timers.pop("register", None)
        if timer is not None and timer.active():
            timer.cancel()
        if len(message.params) > 0:
            self.nick = message.params[0]
        try:
            self.server_timeout = float(tags.get("timeout", "60"))
        except ValueError:
            pass
        try:
            self.heartbeat = max(float(tags.get("heartbeat", "1")), 0.05)
        except ValueError:
            pass
        self._boot = tags.get("boot") or self._boot_heard
        host, _, port = tags.get("broadcast", "").rpartition(":")
        if "unicast" not in tags and host and port.isdigit() and self._bport is None:
            self.broadcast_addr = (host, int(port))
            try:
                self._bport = self.net.listen_broadcast(Receiver(self._received), host,
                                                        int(port))
            except OSError as e:
                self._emit(ChatEvent(I.ERROR, text=f"cannot listen for broadcasts on "
                                                   f"{host}:{port}: {e}"))
        again = self._ever_registered
        self._ever_registered = True
        self._old_token = None
        self._cookie = None
        self._bad_cookies = 0
        self._down_since = None
        self._heard()
        if self.state == I.DISCONNECTED:
            self._set_state(I.CONNECTING)  # as the TCP session: connecting, then registered
        self._set_state(I.REGISTERED)
        # Log in first, so the JOINs already carry the account (extended-join, founder ops).
        login: list[Message] = []
        self.account = None
        self._login = None
        if self.credentials is not None:
            self._login = SaslLogin(self.credentials)
            login = [Message("AUTHENTICATE", self._login.start())]
        if again:
            # A new session (docs, "Restarts"): our rooms first, then what was not acknowledged.
            self._streams.new_session()
            wanted = {casefold(room) for room in self._autojoin}
            for key in [k for k in self._streams.rooms if k not in wanted]:
                self._streams.left(key)  # parted meanwhile: nothing more to show
            self.rooms = []
            for room in self._autojoin:
                self._streams.joining(room)
            self._commands.requeue(login + [Message("JOIN", (room,)) for room in self._autojoin])
        else:
            for message in login:
                self._command(message.command, *message.params)
            for room in list(self._autojoin):
                self.join(room)
        self._keepalive()  # proves our address at once, and tells us the latest useq
        self._pump()
        self._later("watch", self._watch_interval(), self._watch)
        if self._started is not None and not self._started.called:
            self._started.callback(self)

    def _keepalive(self) -> None:
        if self.token is None or self.state == I.CLOSED:
            return
        self._write_owed(ping_datagram(self.token, self._now()))
        self._later("keepalive", max(min(self.server_timeout / 4, 10.0), 0.05), self._keepalive)

    # ---------------------------------------------------- silence, restarts

    def _heard(self) -> None:
        """An answer to our token (ACK, PONG, a numbered line): the session lives."""
        self._last_heard = self._now()
        self._owed_since = None

    def _probe(self, token: str) -> None:
        self._last_probe = self._now()
        self._write_owed(ping_datagram(token, self._now()))

    def _watch_interval(self) -> float:
        return max(self.heartbeat / 4, 0.02)

    def _watch(self) -> None:
        """
        Every quarter heartbeat: PING when the heartbeat is late or an answer is
        owed; reconnect when the server is silent for 3 intervals (docs, "Restarts").
        """
        if self.token is None or self.state != I.REGISTERED:
            return
        now, beat = self._now(), self.heartbeat
        owed = now - self._owed_since if self._owed_since is not None else 0.0
        # Silence: neither a heartbeat nor an answer (a unicast session with no room hears
        # no heartbeat: its PINGs, one per interval then, tell instead).
        quiet = now - max(self._last_beat or 0.0, self._last_heard)
        if (quiet > 1.2 * beat or owed > beat) and now - self._last_probe >= beat / 4:
            self._probe(self.token)
        if (quiet > 3 * beat and owed > 1.5 * beat) or owed > 3 * beat:
            self._reconnecting(f"No answer from the server for {max(quiet, owed):.0f} s; "
                               "reconnecting.")
            return
        self._later("watch", self._watch_interval(), self._watch)

    def _reconnecting(self, text: str) -> None:
        """The server is silent (or restarted): keep what we have, register again."""
        self._emit(ChatEvent(I.ERROR, text=text, time_ms=self._now_ms()))
        for name in ("tick", "keepalive", "watch"):
            timer = self._timers.pop(name, None)
            if timer is not None and timer.active():
                timer.cancel()
        self._old_token, self.token = self.token, None
        self._owed_since = None
        self._down_since = self._now()
        self._told_queued = False
        self._streams.suspend()
        self._set_state(I.DISCONNECTED)
        self.nick = self.wanted_nick
        self._alt = 0
        self._register_again()

    def _resume(self) -> None:
        """The old session answered after all: go on with it, nothing lost."""
        if self._old_token is None:
            return
        self.token, self._old_token = self._old_token, None
        timer = self._timers.pop("register", None)
        if timer is not None and timer.active():
            timer.cancel()
        self._cookie = None
        self._down_since = None
        self._heard()
        self._set_state(I.REGISTERED)
        self._keepalive()
        self._pump()
        self._later("watch", self._watch_interval(), self._watch)

    def _heartbeat(self, message: Message) -> None:
        """A heartbeat from our server: it runs; another ``boot``: it restarted."""
        self._last_beat = self._now()
        boot = message.tags.get("boot") or None
        if boot is not None:
            self._boot_heard = boot
        if boot is not None and self._boot is not None and boot != self._boot:
            self._boot = boot
            if self.token is not None:
                self._reconnecting("The server restarted; reconnecting.")
            self._old_token = None  # that session is gone: asking it is no use
        if self.token is None and self._ever_registered and self.state == I.DISCONNECTED:
            self._set_state(I.CONNECTING)  # the server is back: register now
            self._register_again()
        self._streams.heartbeat(message)

    # ------------------------------------------------------- commands out

    def _command(self, command: str, *params: str) -> None:
        """Queue one command; it is sent with the next ``cseq`` and resent until ACKed."""
        if self.state == I.CLOSED:
            return
        message = Message(command, params)
        try:
            encode(message)
        except ValueError as e:
            # Refused here, not when its turn comes: a cseq that never reaches
            # the server would hold back every command after it.
            self._emit(ChatEvent(I.ERROR, text=f"Not sent: {e}", time_ms=self._now_ms()))
            return
        if self.token is None and self._ever_registered:
            if self._commands.pending >= self.max_queued:
                self._emit(ChatEvent(I.ERROR, text=f"Not sent: {self._commands.pending} "
                                     "commands already wait for the server",
                                     time_ms=self._now_ms()))
                return
            if not self._told_queued:
                self._told_queued = True
                self._emit(ChatEvent(I.INFO, text="Reconnecting: sent once the server "
                                     "is back.", time_ms=self._now_ms()))
        self._commands.queue(message)
        self._pump()

    def _pump(self) -> None:
        if self.token is None:
            return
        self._commands.pump(self.token, self._now())
        self._schedule_tick()

    def _acked(self, upto: int) -> None:
        self._commands.acked(upto, self._now())
        self._pump()
        if self._closed is not None and self._commands.idle:
            self._finish_close()

    # --------------------------------------------------------- datagrams in

    def _received(self, data: bytes, addr: Any) -> None:
        if self.fault_in is not None:
            self.fault_in(data, addr, self._datagram)
        else:
            self._datagram(data, addr)

    def _datagram(self, data: bytes, addr: Any) -> None:
        if self.state == I.CLOSED:
            return
        if self._server is not None and tuple(addr[:2]) != self._server:
            return  # only our server's datagrams: another host may broadcast on this port
        self.stats["datagrams"] += 1
        try:
            message = parse(data, max_body=MAX_DATAGRAM + 2, max_tags=MAX_DATAGRAM)
        except WireError:
            self._emit(ChatEvent(I.ERROR, text="a datagram from the server is not IRC",
                                 time_ms=self._now_ms()))
            return
        if "useq" in message.tags or message.command in ("ACK", "PONG"):
            # Only answers to our token prove the session lives (heartbeats do not).
            if self.token is None and self._old_token is not None \
                    and message.command in ("ACK", "PONG"):
                # Only the old session answers our PINGs before a new 001: it lived.
                self._resume()
            self._heard()
        try:
            self._route(message)
        except Exception:
            self._log.failure("error handling {line}", line=data[:200])
            self._emit(ChatEvent(I.ERROR, text="internal error handling a server line",
                                 time_ms=self._now_ms(), message=message))

    def _route(self, message: Message) -> None:
        tags = message.tags
        verb = message.verb
        if "useq" in tags:
            if self.token is None and message.command == "001":
                self._registered(message)
            self._streams.unicast_in(_int(tags["useq"]), message)
        elif "seq" in tags and verb in ROOM_VERBS:
            whole = self._parts.add(message)  # a multi-line message: all its parts first
            if whole is not None:
                self._streams.room_in(whole)
        elif verb == "ACK":
            if len(message.params) >= 2:
                self._streams.note_latest(self._streams.unicast, _int(message.params[1]))
                self._acked(_int(message.params[0]))
        elif verb == "PONG":
            self._streams.note_latest(self._streams.unicast, _int(tags.get("latest", "0")))
            try:
                self.lag = max(self._now() - float(message.params[-1]), 0.0)
            except (ValueError, IndexError):
                pass
        elif verb == "HEARTBEAT":
            self._heartbeat(message)
        elif verb == "FAIL" and message.params[:2] == ("REPAIR", "GONE"):
            self._streams.gone(message)
        elif self.token is None and verb == "COOKIE":
            self._got_cookie(message)
        elif self.token is None and message.command in ("433", "432", "436"):
            self._nick_refused(message)
        elif self.token is None and message.command == "FAIL":
            self._refused(message)
        else:
            self._show(message)  # unnumbered server lines (errors to unsequenced datagrams)

    def _nick_refused(self, message: Message) -> None:
        """Registration: the nick is taken or invalid: try ``nick_``, then give up."""
        if message.command == "433" and self._alt < 3:
            self._alt += 1
            self.wanted_nick = self.wanted_nick + "_"
            self._register_again()  # a cookie is for one nick
            return
        self._fail(" ".join(message.params[1:]) or "nick refused")

    def _gone(self, room: str | None, lost: int) -> None:
        self._emit(ChatEvent(I.ERROR, room=room, text=f"{lost} events lost (no longer held)",
                             time_ms=self._now_ms()))

    def _show(self, message: Message, room: Any = None) -> None:
        if room is None and self._sasl_line(message):
            return
        self._events.show(message, room)

    def _sasl_line(self, message: Message) -> bool:
        """``AUTHENTICATE`` and 900-908 of our login: answered and reported here."""
        code = message.command
        if code == "900" and len(message.params) > 2:
            self.account = message.params[2]
        elif code == "901":
            self.account = None
        login = self._login
        step = login.on_message(message) if login is not None else None
        if step is None:
            return False
        for chunk in step.send:
            self._command("AUTHENTICATE", chunk)
        if step.text is not None:
            self._emit(ChatEvent(I.INFO if step.ok else I.ERROR, text=step.text,
                                 time_ms=self._now_ms()))
        return True

    def _is_me(self, nick: str) -> bool:
        return self._events.is_me(nick)

    # ---------------------------------------------------------------- ticks

    def _schedule_tick(self) -> None:
        if "tick" in self._timers and self._timers["tick"].active():
            return
        if self._commands.in_flight or self._streams.needs_repair():
            self._later("tick", 0.01, self._tick)

    def _tick(self) -> None:
        """Resend unacknowledged commands, ask for holes, watch the server's silence."""
        self._timers.pop("tick", None)
        if self.state == I.CLOSED or self.token is None:
            return
        now = self._now()
        self._commands.retransmit(now)
        rto = self._commands.rto()
        token = self.token
        for target, start, end in self._streams.repairs(now, self.reorder_delay,
                                                        min(max(rto, 0.05), 0.3),
                                                        self.repair_limit):
            self._write(repair_datagram(token, target, start, end))
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


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _split(text: str, limit: int) -> list[str]:
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
