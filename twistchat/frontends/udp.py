"""
The UDP front-end: sessions, room broadcast, sequence repair, heartbeat beacon.

test-case-name: tests.test_udp, tests.test_udp_cookie, tests.test_udp_cseq, tests.test_udp_repair

The wire contract is docs/udp-protocol.md; this module holds to it and the
names below quote it.  In one paragraph: one IRC line per datagram (at most
:data:`MAX_DATAGRAM` bytes); ``NICK`` padded to :data:`MIN_REGISTER` bytes earns
an address cookie (nothing kept), the same NICK with that cookie opens a
session and earns a random token; every later datagram carries
``@token=...`` and comes from the same address, every command but PING, REPAIR
and QUIT a ``cseq``; room events go out once, by
broadcast, tagged ``seq`` and ``time``; a heartbeat carries each room's latest
``seq`` and doubles as the discovery beacon; clients repair gaps by unicast.

What lives where:

- :class:`UDPFrontEnd` (a ``DatagramProtocol``) owns the session table, the
  broadcast of registry events (a ``registry.listeners`` entry), the heartbeat
  and expiry loop.  It holds no chat state: rules are the registry's, commands
  go through :func:`twistchat.core.commands.dispatch` as TCP's do.
- :class:`UDPSession` is the ``user.conn`` of a UDP user: the registry's
  replies reach it through ``deliver(payload)`` and go out as numbered unicast
  lines (tag ``useq``), kept a while so the client can repair them too.

Anti-amplification (docs/udp-protocol.md, "Amplification"): a datagram that
does not carry a valid token for its source address never makes the server
send more bytes than it received.  :class:`_Budget` enforces that in one place.
Address proof (issue #12, items 7 and 11): until a NICK brings back the cookie
its address was sent, the front-end keeps nothing at all for it.

Time comes from ``clock`` (the reactor, or ``task.Clock`` in tests).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import error, protocol, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twistchat.auth import Authenticator
from twistchat.core import commands
from twistchat.core.events import Disconnect, Event, Gated, deliver, is_multiline
from twistchat.core.ratelimit import TokenBucket
from twistchat.core.registry import Registry, User
from twistchat.frontends.udpwire import (
    BOOT_BYTES,
    COOKIE_INTERVAL,
    MAX_DATAGRAM,
    MEMBERSHIP,
    MIN_REGISTER,
    TOKEN_BYTES,
    UDP_VIEW,
    Broadcast,
    address_cookie,
    broadcast_domain,
    cookie_valid,
    event_datagrams,
    event_line,
    event_tags,
    heartbeat_lines,
    multiline_parts,
    parse_heartbeat,
    peek_tags,
    record_datagrams,
)
from twistchat.history import History
from twistchat.metrics import Metrics
from twistchat.services import Answer, Services
from twistchat.services.registration import register_command
from twistchat.services.sasl import Sasl
from twistchat.wire import (
    MAX_BODY,
    InvalidUTF8,
    LineTooLong,
    Message,
    WireError,
    casefold,
    encode,
    is_decimal,
    parse,
    safe_middle,
)

__all__ = [
    "MAX_DATAGRAM", "MIN_REGISTER", "UDP_VIEW", "Broadcast", "UDPFrontEnd", "UDPLimits",
    "UDPSession", "broadcast_domain", "event_line", "event_tags", "heartbeat_lines",
    "parse_heartbeat", "peek_tags",
]

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
    max_line: int = MAX_BODY  # --max-line (shared with TCP): body bytes, CRLF included
    flood_burst: int = 20  # --flood-burst (shared with TCP)
    flood_rate: float = 5.0  # --flood-rate (shared with TCP)
    window: int = 64  # sequenced datagrams held out of order per session
    unicast_kept: int = 256  # numbered unicast lines kept per session for repair


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

    __slots__ = (
        "front", "token", "addr", "user", "unicast", "validated", "closed", "last_heard",
        "next_cseq", "held", "useq", "kept", "budget", "flood", "repairs", "sasl",
    )

    def __init__(self, front: UDPFrontEnd, token: str, addr: tuple, unicast: bool,
                 now: float) -> None:
        self.front = front
        self.token = token
        self.addr = addr
        self.user: User | None = None  # set once the registration succeeded
        self.unicast = unicast  # outside the broadcast domain: room events by unicast too
        self.validated = False  # has sent a datagram with its token (its address is proven)
        self.closed = False
        self.last_heard = now
        self.next_cseq = 1  # the next sequenced command to run
        self.held: dict = {}  # cseq -> datagram, arrived early
        self.useq = 0  # last numbered unicast line sent
        self.kept: deque = deque(maxlen=front.limits.unicast_kept)  # (useq, bytes)
        self.budget: _Budget | None = None  # set while answering an unverified NICK
        limits = front.limits
        self.flood = TokenBucket(limits.flood_burst, limits.flood_rate, now)
        self.repairs = TokenBucket(limits.repair_burst, limits.repair_rate, now)
        self.sasl: Sasl | None = None  # SASL's state, made at the first AUTHENTICATE

    # The core's output for this user.
    def deliver(self, payload: Any) -> None:
        """Send one core payload to this client (see the class docstring)."""
        if self.closed:
            return
        if type(payload) is Disconnect:
            self.front.close_session(self, payload.quit_reason or payload.why)
            return
        if type(payload) is Gated:
            return  # a capability's notification: UDP sessions negotiate none
        if type(payload) is Event:
            if payload.target[:1] in "#&":  # a room event: the broadcast carries it ...
                message = payload.message
                if message.command not in MEMBERSHIP or not self._own_membership(message):
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
        if is_multiline(message):
            # A multi-line private message: one numbered line per piece (part=i/n).
            for data in multiline_parts(message, tags):
                self.useq += 1
                data = b"@useq=%d;" % self.useq + data[1:]  # the parts always have tags
                self.kept.append((self.useq, data))
                self.front.send_unicast(self, data)
            return
        self.useq += 1
        tags["useq"] = str(self.useq)
        data = encode(dataclasses.replace(message, tags=tags))  # keeps Message.trailing
        self.kept.append((self.useq, data))
        self.front.send_unicast(self, data)

    def _own_membership(self, message: Message) -> bool:
        """True for room events that change which rooms this user is in (or its name)."""
        if self.user is None:
            return False
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

    def local_handler(self, verb: str) -> commands.LocalHandler | None:
        """The local verbs of a UDP session (``commands.COMMANDS``): REPAIR, and CAP."""
        if verb == "REPAIR":
            return self._repair
        if verb == "CAP":
            return _nothing  # UDP sessions have every tag they need: nothing to negotiate
        if self.front.services is not None:
            if verb in ("NS", "CS"):
                return lambda message: self.front.to_services(self, message)
            if verb == "AUTHENTICATE":
                return self._authenticate
            if verb == "REGISTER":
                return self._register
        return None

    def _authenticate(self, message: Message) -> list:
        """SASL PLAIN after the session opened (no TLS here: EXTERNAL always fails)."""
        services, user = self.front.services, self.user
        assert services is not None and user is not None
        if self.sasl is None:
            self.sasl = Sasl(self.front.registry, services.authenticator, user.address,
                             lambda: None)
        return self.front.answer_later(self.sasl.step(user, message.params[0]))

    def _register(self, message: Message) -> list:
        """IRCv3 REGISTER (:func:`twistchat.services.registration.register_command`)."""
        services, user = self.front.services, self.user
        assert services is not None and user is not None
        return self.front.answer_later(register_command(
            self.front.registry, services.authenticator, user, message.params))

    def _repair(self, message: Message) -> list:
        self.front.repair(self, message, self.front.clock.seconds())
        return []

    def take_token(self, now: float) -> bool:
        """Flood control: ``flood_burst`` lines at once, ``flood_rate`` per second."""
        return self.flood.take(now)

    def take_repair(self, wanted: int, now: float) -> int:
        """How many of ``wanted`` repair events the rate limit allows now."""
        return self.repairs.take_up_to(wanted, now)

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

    def __init__(self, registry: Registry, clock: Any, broadcast: Broadcast,
                 limits: UDPLimits = UDPLimits(), metrics: Metrics | None = None,
                 history: History | None = None,
                 authenticator: Authenticator | None = None) -> None:
        self.registry = registry
        # Accounts (issue #14): NickServ (PRIVMSG NickServ, NS) only with an authenticator.
        self.services = Services(registry, authenticator) if authenticator is not None else None
        self.clock = clock
        self.broadcast = broadcast
        self.limits = limits
        self.metrics = metrics
        # Where REPAIR finds what the room log no longer holds in memory (None: nowhere,
        # such a range is GONE).  docs/udp-protocol.md, "Repair".
        self.history = history
        # docs/udp-protocol.md, "Registration" and "Restarts": the address-cookie
        # secret and the boot id are drawn anew by every front-end, that is at
        # every server start; neither is ever written anywhere.
        self._cookie_secret = secrets.token_bytes(32)
        self.boot = secrets.token_hex(BOOT_BYTES)
        self.sessions: dict[str, UDPSession] = {}  # token -> session
        self.by_addr: dict[tuple[str, int], UDPSession] = {}  # (host, port) -> session
        # Rooms whose events are broadcast (those with a UDP member), recomputed
        # after each membership event: key -> (any member hears broadcast,
        # sessions that need unicast copies).
        self._audience: dict = {}
        self._stale: set = set()
        self._loop: task.LoopingCall | None = None
        self.port = 0
        registry.log.subscribe(self.on_event)

    # ------------------------------------------------------------ lifecycle

    def startProtocol(self) -> None:
        assert self.transport is not None
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
            "boot": self.boot,
            "broadcast": f"{self.broadcast.address}:{self.broadcast.port}",
            "timeout": f"{self.limits.session_timeout:g}",
            "heartbeat": f"{self.limits.heartbeat:g}",
        }
        if session.unicast:
            tags["unicast"] = ""
        return tags

    # --------------------------------------------------------------- output

    def _write(self, data: bytes, addr: tuple) -> None:
        if self.transport is None:
            return  # the port is closed (shutting down): nothing can be sent any more
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
        datagrams = event_datagrams(event)  # one, or one per line of a multi-line message
        for data in datagrams:
            if heard:
                self._write(data, (self.broadcast.address, self.broadcast.port))
                if self.metrics is not None:
                    self.metrics.udp_broadcasts += 1
            for session in copies:
                self._write(data, session.addr)

    def _recount(self, key: str) -> tuple:
        """Who hears room ``key``: (any member in the broadcast domain, unicast sessions)."""
        self._stale.discard(key)
        heard, copies = False, []
        for member in self.registry.audience(key):
            conn = member.conn
            if type(conn) is UDPSession and not conn.closed:
                if conn.unicast:
                    copies.append(conn)
                else:
                    heard = True
        audience = (heard, copies)
        if heard or copies:
            self._audience[key] = audience
        else:
            self._audience.pop(key, None)
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
        if token is not None and (session is None or session.addr != addr):
            # A wrong or stale token, or a right one from another address:
            # dropped without a word (no reply to an unproven address).
            self._drop("udp_token")
            return
        if session is None:
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
        """
        A datagram without a token: only a padded NICK gets an answer.

        docs/udp-protocol.md, "Registration": without a ``cookie`` tag, the
        answer is the address cookie and nothing is kept; with one that
        verifies, the session opens.  Everything else is dropped.
        """
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
        if "cookie" not in message.tags:
            self._send_cookie(addr, nick, budget)
        elif not self._cookie_ok(addr, nick, message.tags["cookie"]):
            # Forged, expired, another address or nick: start again at step 1.
            self._reply(addr, budget, "FAIL", "NICK", "BAD_COOKIE", safe_middle(nick))
        elif not self._answer_again(addr, nick, budget):
            self._open_session(message, nick, addr, budget)

    def cookie(self, addr: tuple, nick: str) -> str:
        """The address cookie ``addr`` gets now for ``nick`` (docs, "Registration", step 1)."""
        interval = int(self.clock.seconds() // COOKIE_INTERVAL)
        return address_cookie(self._cookie_secret, addr[0], addr[1], nick, interval)

    def _send_cookie(self, addr: tuple, nick: str, budget: _Budget) -> None:
        """
        Step 1: ``:<server> COOKIE <nick> <cookie>``, and nothing kept.

        The whole cost of a datagram from a forged address is this one HMAC and
        a reply smaller than it (issue #12, items 7 and 11): no session, no
        user, no entry in any table, so a flood of them takes no nick and
        fills no session slot.
        """
        if not nick:
            self._reply(addr, budget, "431", "No nickname given")
            return
        self._reply(addr, budget, "COOKIE", safe_middle(nick), self.cookie(addr, nick))

    def _cookie_ok(self, addr: tuple, nick: str, cookie: str) -> bool:
        return cookie_valid(self._cookie_secret, addr[0], addr[1], nick, cookie,
                            self.clock.seconds())

    def _answer_again(self, addr: tuple, nick: str, budget: _Budget) -> bool:
        """
        A step-2 NICK (its cookie verified) from an address that has a session: True.

        The client did not get our 001 and sends the same NICK again: the
        session has not used its token yet, so it gets the same lines, within
        the budget.  Anything else from that address is ``ADDRESS_IN_USE``.
        False when the address has no session: the caller opens one.
        """
        existing = self.by_addr.get(addr)
        if existing is None:
            return False
        if (not existing.validated and existing.user is not None
                and casefold(nick) == existing.user.key):
            for _, line in list(existing.kept):
                if budget.take(len(line)):
                    self._write(line, addr)
        else:
            self._reply(addr, budget, "FAIL", "NICK", "ADDRESS_IN_USE",
                        "This address already has a session")
        return True

    def _open_session(self, message: Message, nick: str, addr: tuple,
                      budget: _Budget) -> None:
        """Step 2, the cookie verified: the registration IRC's NICK + USER (+ PASS) make."""
        if len(self.sessions) >= self.limits.max_sessions:
            self._reply(addr, budget, "FAIL", "NICK", "TOO_MANY_SESSIONS",
                        "Too many sessions, try later")
            return
        host = addr[0]
        unicast = "unicast" in message.tags or not self.broadcast.reaches(host)
        session = UDPSession(self, secrets.token_hex(TOKEN_BYTES), addr, unicast,
                             self.clock.seconds())
        session.budget = budget
        # Room lines reach UDP sessions by broadcast (or the copies on_event sends).
        user = self.registry.connect(session, host, by_broadcast=True)
        if user is None:  # the per-address limit, over every front-end
            self._reply(addr, budget, "FAIL", "NICK", "TOO_MANY_SESSIONS",
                        "Too many sessions, try later")
            return
        # The same registration as IRC's NICK + USER (+ PASS, as the ``password`` tag).
        out = self.registry.offer_password(user, message.tags["password"]) \
            if "password" in message.tags else []
        out += self.registry.offer_user(user, nick, nick)
        out += self.registry.offer_nick(user, nick)
        if not user.registered:
            self._refuse(user, out, addr, budget)
            return
        session.user = user
        self.sessions[session.token] = session
        self.by_addr[addr] = session
        if self.metrics is not None:
            self.metrics.udp.connections += 1
            self.metrics.udp.accepted += 1
        self._log.info("udp session {nick} from {addr}{how}", nick=nick, addr=addr,
                       how=" (unicast)" if unicast else "")
        deliver(out)

    def _refuse(self, user: User, out: list, addr: tuple, budget: _Budget) -> None:
        """The registration failed (433, 432, 464 ...): the refusal, and the user forgotten."""
        self.registry.quit(user)
        for delivery in out:
            if isinstance(delivery.payload, Message):  # the refusal, not the Disconnect
                data = encode(delivery.payload)
                if budget.take(len(data)):
                    self._write(data, addr)

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
            self.repair(session, message, now)
        elif not session.take_token(now):
            return  # flood: dropped, as a sequenced command past the rate waits
        elif verb in UNSEQUENCED:
            self._command(session, message)
        else:
            # Issue #12, item 6: a command without cseq could run once per copy
            # (a duplicate from the network, a replay from this address): none runs.
            self._numbered(session, "FAIL", safe_middle(verb), "NEED_CSEQ", "Send it with a cseq")

    def _numbered(self, session: UDPSession, command: str, *params: str) -> None:
        """A server line in ``session``'s numbered unicast stream."""
        if command.isdigit():
            params = (session.user.nick if session.user is not None else "*", *params)
        session.deliver(Message(command, params, self.registry.server_name))

    def _run(self, session: UDPSession, data: bytes) -> None:
        message = self._parse(data, session.addr, None,
                              reply=lambda *a: self._numbered(session, *a))
        if message is not None:
            self._command(session, message)

    def _command(self, session: UDPSession, message: Message) -> None:
        """One command of a registered session, through the command table."""
        assert session.user is not None
        try:
            if self.services is not None and message.verb == "PRIVMSG" \
                    and self.services.addressed(message):
                deliver(self.to_services(session, message))
                return
            # echo: a private message comes back to its sender in its own
            # numbered stream, so the client shows it in order, once.
            deliver(commands.dispatch(self.registry, session.user, message, _ECHO, session))
        except Exception:
            self._log.failure("error handling {verb} from {addr}", verb=message.verb,
                              addr=session.addr)
            self._numbered(session, "FAIL", message.verb, "INTERNAL_ERROR",
                           "The server failed on that command")

    def to_services(self, session: UDPSession, message: Message) -> list:
        """A line for a service: its answer delivered when it comes (a password check)."""
        services = self.services
        assert services is not None and session.user is not None
        return self.answer_later(services.route(session.user, message))

    def answer_later(self, answer: Answer) -> list:
        """
        Deliveries now, or when a Deferred of them fires (the account's password check).

        Returned now, for the command table to deliver; a later answer goes out
        when it comes, in the session's numbered stream like any other line.
        """
        if not isinstance(answer, Deferred):
            return answer
        answer.addCallback(deliver).addErrback(
            lambda f: self._log.failure("an account answer failed", f))
        return []

    # --------------------------------------------------------------- repair

    def repair(self, session: UDPSession, message: Message, now: float) -> None:
        """
        ``REPAIR <room or *> <from> <to>``: send that range again, exactly as broadcast.

        A room's events only to a session that may read the room (the core's
        ``can_read``: its members), a session's own numbered lines (``*``) only
        to itself.  At most ``repair_limit`` lines per request, and
        ``repair_rate`` lines a second per session.  What the room log still
        holds comes from memory, the part below it from history
        (:meth:`_repair_room`); only what neither holds is answered
        ``FAIL REPAIR GONE``.
        """
        p = message.params
        if len(p) < 3 or not is_decimal(p[1]) or not is_decimal(p[2]) or int(p[1]) > int(p[2]) \
                or int(p[1]) < 1:
            self._numbered(session, "FAIL", "REPAIR", "INVALID_PARAMS",
                           "REPAIR <room or *> <from> <to>")
            return
        target, first, last = p[0], int(p[1]), int(p[2])
        key = casefold(target)
        assert session.user is not None
        if target != "*" and not self.registry.can_read(session.user, key):
            self._drop("udp_repair_denied")
            self._numbered(session, "FAIL", "REPAIR", "NOT_ALLOWED", target,
                           "No such room, or not yours to read")
            return
        allowed = session.take_repair(min(last - first + 1, self.limits.repair_limit), now)
        if not allowed:
            return  # over the rate: the client asks again later
        if self.metrics is not None:
            self.metrics.udp_repairs += 1
        if target == "*":
            lowest, lines = self._own_lines(session, first, last, allowed)
            self._send_repair(session, "*", first, last, lowest, lines)
        else:
            self._repair_room(session, key, self.registry.room_name(key) or target, first,
                              last, allowed)

    def _repair_room(self, session: UDPSession, key: str, name: str, first: int, last: int,
                     allowed: int) -> None:
        """
        Room ``key``'s events ``first``..``last`` (at most ``allowed``), from memory and history.

        ``registry.log.held`` gives what memory still holds and where that
        begins (``lowest``); the part of the range below it is asked of
        history (issue #12, items 2 and 3: after a restart, or for an old
        range).  The answer goes out when history has answered, oldest first,
        the history part before the memory part.
        """
        lowest, events = self.registry.log.held(key, first, last, allowed)
        held = [data for event in events for data in event_datagrams(event)]
        if first >= lowest or self.history is None or session.user is None:
            self._send_repair(session, name, first, last, lowest, held)
            return
        below = min(last, lowest - 1)
        d = self.history.range(session.user, key, first, below, allowed)

        def answer(records: list) -> None:
            # What history holds of first..below; a part below its oldest record is gone.
            start = records[0].seq if records else below + 1
            lines = [data for record in records for data in record_datagrams(record)] + held
            self._send_repair(session, name, first, last, start, lines[:allowed])

        def failed(failure: Any) -> None:
            # History degrades, chat does not (issue #7): send what memory holds;
            # the client asks again for the rest.
            self._log.failure("repair of {key} from history failed", failure, key=key)
            self._send_repair(session, name, lowest, last, lowest, held)

        d.addCallbacks(answer, failed)
        d.addErrback(lambda failure: self._log.failure("udp repair failed", failure))

    def _send_repair(self, session: UDPSession, target: str, first: int, last: int,
                     lowest: int, lines: list[bytes]) -> None:
        """One repair's answer: ``FAIL REPAIR GONE`` for ``first``..``lowest-1``, then lines."""
        if session.closed:
            return  # the session ended while history was read
        if first < lowest:
            gone_to = min(last, lowest - 1)
            self._write(encode(Message("FAIL", ("REPAIR", "GONE", target, str(first),
                                                str(gone_to), "No longer held"),
                                       self.registry.server_name)), session.addr)
        for line in lines:
            self._write(line, session.addr)

    @staticmethod
    def _own_lines(session: UDPSession, first: int, last: int,
                   allowed: int) -> tuple[int, list[bytes]]:
        """``(lowest useq kept, lines)``: ``session``'s own numbered lines in the range."""
        kept = session.kept
        lowest = kept[0][0] if kept else session.useq + 1
        return lowest, [line for useq, line in kept if first <= useq <= last][:allowed]

    # ------------------------------------------------------- heartbeat, expiry

    def tick(self) -> None:
        """Every ``heartbeat`` seconds: the heartbeat/beacon, then expire silent sessions."""
        try:
            self._heartbeat()
            self._expire()
        except Exception:
            self._log.failure("udp heartbeat failed")

    def _heartbeat(self) -> None:
        broadcast: dict[str, str] = {}  # key -> name of rooms with a member hearing broadcasts
        for session in self.sessions.values():
            if session.user is not None and not session.unicast:
                broadcast.update(self.registry.rooms_of(session.user))
        now_ms = int(self.clock.seconds() * 1000)
        for line in self._heartbeat_lines(broadcast.items(), now_ms):
            self._write(line, (self.broadcast.address, self.broadcast.port))
        # Sessions outside the broadcast domain hear their own rooms' heartbeat by unicast.
        for session in self.sessions.values():
            if session.unicast and session.validated and session.user is not None:
                own = self.registry.rooms_of(session.user)
                if own:
                    for line in self._heartbeat_lines(own, now_ms):
                        self._write(line, session.addr)

    def _heartbeat_lines(self, rooms: Iterable[tuple[str, str]], now_ms: int) -> list[bytes]:
        """The heartbeat for ``[(key, name)]``: each room's latest seq and epoch."""
        log = self.registry.log
        listed = [(name, log.latest(key), log.epoch(key)) for key, name in rooms]
        return heartbeat_lines(self.registry.server_name, self.registry.network, self.port,
                               listed, now_ms, log.epoch(""), boot=self.boot)

    def _expire(self) -> None:
        now = self.clock.seconds()
        for session in list(self.sessions.values()):
            limit = (self.limits.session_timeout if session.validated
                     else min(self.limits.pending_timeout, self.limits.session_timeout))
            if now - session.last_heard > limit:
                self._drop("udp_expired")
                self.close_session(session, "Session timed out")

    def shut_down(self, reason: str = "Server shutting down") -> None:
        """The server is stopping: every session ends now, its QUIT recorded and sent."""
        for session in list(self.sessions.values()):
            self.close_session(session, reason)

    def close_session(self, session: UDPSession, reason: str) -> None:
        """End ``session``: free its token and nick, QUIT to its rooms."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.token, None)
        if self.by_addr.get(session.addr) is session:
            del self.by_addr[session.addr]
        if self.metrics is not None:
            self.metrics.udp.connections -= 1
        user = session.user
        assert user is not None  # sessions are kept only once registered
        self._log.info("udp session {nick} from {addr} ends: {reason}",
                       nick=user.nick, addr=session.addr, reason=reason)
        deliver(self.registry.quit(user, reason))


# UDP sessions negotiate no capabilities but have SASL's and REGISTER's verbs (where the
# front-end has accounts; otherwise those verbs are unknown: 421).
_ECHO = commands.Context(echo=True,
                         caps=frozenset({"sasl", "draft/account-registration"}))
# docs/udp-protocol.md, "Reliable commands": the verbs that may come without a
# cseq, since running them twice changes nothing (PING and REPAIR are answered
# before the command table; QUIT ends the session whichever copy comes first).
UNSEQUENCED = frozenset(("PING", "REPAIR", "QUIT"))


def _nothing(message: Message) -> list:
    return []
