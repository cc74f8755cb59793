"""
The TCP front-end: the IRC client protocol on a LineReceiver.

test-case-name: tests.test_irc

One :class:`IRCProtocol` per connection.  It frames lines, enforces the
per-connection limits (line length, flood, output queue, registration and ping
timeouts), negotiates IRCv3 capabilities (which decide its *view*: which tags
and lines this client is shown, :mod:`twistchat.frontends.ircv3`) and hands
every command to :func:`twistchat.core.commands.dispatch`.  It holds no chat
state and decides no chat rule: registration, who may connect, read history or
speak are the core's.  History reaches it through
:class:`twistchat.history.History`; it never sees the store.  Accounts (issue
#14): SASL, REGISTER and NickServ run in :mod:`twistchat.services`; this module
delivers their answers in order (a password check answers later) and reads the
TLS client certificate for SASL EXTERNAL and NickServ CERT ADD.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHandshakeListener, IPushProducer, ISSLTransport
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from twistchat import history
from twistchat.auth import Authenticator
from twistchat.core import commands, multiline
from twistchat.core.events import Delivery, Disconnect, Event, Gated, deliver
from twistchat.core.ratelimit import TokenBucket
from twistchat.core.registry import Registry, User
from twistchat.frontends import ircv3
from twistchat.frontends.coalesce import TurnCoalescer, coalescible
from twistchat.metrics import Metrics, TransportCounters
from twistchat.services import Answer, Services
from twistchat.services.registration import register_command
from twistchat.services.sasl import Sasl
from twistchat.wire import (
    MAX_BODY,
    MAX_CLIENT_TAGS,
    MAX_TAGS,
    InvalidUTF8,
    LineTooLong,
    Message,
    WireError,
    casefold,
    encode,
    format_tags,
    parse,
    safe_middle,
)

__all__ = ["ConnectionLimits", "IRCFactory", "IRCProtocol"]

# The verbs whose copy to oneself is delivered as well as echoed (echo-message).
_RELAYED = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits of the IRC front-end; each has a service flag."""

    max_line: int = MAX_BODY  # bytes, CRLF included, tags excluded (RFC 1459)
    max_tags: int = MAX_TAGS  # bytes of the IRCv3 tag section
    flood_burst: int = 20  # lines a client may send at once ...
    flood_rate: float = 5.0  # ... then this many per second
    flood_queue: int = 40  # lines held back before "Excess Flood"
    sendq: int = 256 * 1024  # unsent output bytes before "SendQ exceeded"
    registration_timeout: float = 60.0
    ping_interval: float = 120.0  # idle seconds before the server PINGs
    ping_timeout: float = 60.0  # seconds to answer that PING


def certificate_fingerprint(transport: Any) -> str | None:
    """
    SHA-256 of the TLS client certificate on ``transport`` (lower-case hex), or None.

    ``getPeerCertificate()`` (Twisted's ISSLTransport) gives pyOpenSSL's X509,
    or None when the client sent none; plain TCP transports do not have it.
    """
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        cert = get()
    except Exception:  # no handshake yet, or the connection is gone
        return None
    if cert is None:
        return None
    return str(cert.digest("sha256").decode("ascii")).replace(":", "").lower()


# Seconds between checks of every connection's registration and ping timeouts
# (IRCFactory.sweep); shorter if a timeout is configured shorter than this.
SWEEP_INTERVAL = 1.0

# Seconds a closing connection has to flush its ERROR line (and, on TLS, to answer the
# close_notify: Twisted's TLS keeps the socket until the peer sends its own) before the
# sweep aborts it.  A peer that neither reads nor answers would otherwise hold the socket
# forever (issue #12, item 8).  Go's crypto/tls gives a close alert 5 s as well.
CLOSE_GRACE = 5.0


class Replicator(Protocol):
    """
    Where a node of a cluster sends what changes chat state (twistchat/cluster/fold.py).

    Without ``--cluster`` there is none and the front-end calls the registry
    itself; with it, each of these goes through the cluster's stream and the
    answer comes back once every node has it in the same order.
    """

    def connected(self, user: User, host: str) -> None: ...

    def run(self, user: User, message: Message, ctx: commands.Context) -> Deferred: ...

    def hold(self, user: User) -> Deferred: ...

    def release(self, user: User) -> Deferred: ...

    def quit(self, user: User, reason: str) -> None: ...


class _Pending:
    """A place in the held output where lines still to come (history) will go."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[bytes] | None = None


@implementer(IPushProducer)
class _SendQWatch:
    """
    Turns the transport's flow-control signals into the SendQ limit.

    The protocol sets the socket transport's ``bufferSize`` to the SendQ and
    registers this push producer.  The transport pauses it when more than that
    is queued and resumes it once its buffer has drained to the kernel.  A
    reader that keeps up resumes within a reactor turn or two; while paused,
    the protocol allows one more SendQ of output and then drops the reader
    (``ERROR :SendQ exceeded``).  Nobody else waits for it.
    """

    __slots__ = ("proto",)

    def __init__(self, proto: IRCProtocol) -> None:
        self.proto = proto

    def pauseProducing(self) -> None:
        # The transport calls this on every write while its buffer is full.
        if self.proto.backlog is None:
            self.proto.backlog = 0

    def resumeProducing(self) -> None:
        self.proto.backlog = None

    def stopProducing(self) -> None:
        pass


def _socket_transport(transport: Any) -> Any:
    """The innermost transport (below TLS), whose buffer holds the unsent bytes."""
    while getattr(transport, "transport", None) is not None:
        transport = transport.transport
    return transport


@implementer(IHandshakeListener)
class IRCProtocol(LineReceiver):
    """
    One IRC client connection.

    Over TLS, Twisted calls :meth:`connectionMade` at TCP connect, before the
    handshake (so the per-address limit counts unfinished handshakes too), and
    :meth:`handshakeCompleted` once it is done; until then nothing written can
    reach the peer, and :meth:`close` aborts instead of waiting for it.
    """

    delimiter = b"\n"  # many clients end lines with a bare LF; a CR before it is stripped
    _log = Logger()

    # An idle connection's memory is the server's cost per user (issue #8: at most
    # 4 KiB per joined connection; a __dict__ with this many keys alone took 1.5 KiB).
    # The first line are attributes Twisted's Protocol and LineReceiver set on
    # instances; any attribute not named here still works, in a __dict__ made on demand.
    __slots__ = (
        "transport", "connected", "factory", "_buffer", "_busyReceiving", "line_mode",
        "registry", "limits", "clock", "counters", "MAX_LENGTH", "user", "host", "view", "tag_view",
        "closing", "backlog", "_quit_reason", "_capture", "_aside", "_echo_left", "_held",
        "_label", "_label_used", "_batches", "_discarding", "_flood", "_flood_queue",
        "_drain_call", "_awaiting", "_connected_at", "_last_seen", "_ping_sent", "_lost_reason",
        "_handshaking", "_closed_at", "_cap_version", "_multiline", "_sasl", "_out",
    )

    def __init__(self, factory: IRCFactory) -> None:
        self.transport: Any = None
        self.connected = 0
        self._buffer = b""
        self._busyReceiving = False
        self.line_mode = 1
        self.factory = factory
        self.registry: Registry = factory.registry
        self.limits: ConnectionLimits = factory.limits
        self.clock = factory.clock
        # This transport's metrics; TLS picks its own at connect.
        self.counters: TransportCounters = factory.metrics.tcp
        self.MAX_LENGTH = factory.max_length
        self.user: User | None = None
        self.host = "unknown"
        self.view = ircv3.NO_CAPS  # replaced, not changed, by CAP REQ
        self.tag_view = self.view.tags  # the hot path's copy: one lookup per delivery
        self.closing = False
        self.backlog: int | None = None  # bytes queued since the transport paused us
        self._quit_reason: str | None = None
        self._capture: list[bytes] | None = None  # output of a labeled command
        self._aside: list[bytes] = []  # its side effects: a message to oneself, delivered
        self._echo_left = 0  # copies of a message to oneself that are the labeled echo
        self._held: list[Any] | None = None  # output held back behind history being fetched
        self._label: str | None = None  # the label of the command being handled
        self._label_used = False
        self._batches = 0
        self._discarding = False
        now = self.clock.seconds()
        self._flood = TokenBucket(self.limits.flood_burst, self.limits.flood_rate, now)
        self._flood_queue: deque[bytes] | None = None  # lines held back (made only then)
        self._drain_call: Any = None
        # Answers still to come that change who the user is (a login, a registration):
        # later lines wait for them in the flood queue, so they run as the user sent them.
        self._awaiting = 0
        # Timeouts are checked by the factory's sweep (IRCFactory.sweep), not by a
        # DelayedCall per connection and a reset per line.  _last_seen: the last line.
        self._connected_at = self._last_seen = now
        self._ping_sent: float | None = None  # when we sent PING, while waiting for a line
        # Set when the connection is gone while flood control still held some of its
        # lines: they run at the flood rate, then the user quits (issue #12, item 1).
        self._lost_reason: str | None = None
        # True from a TLS connect until its handshake completes: nothing written gets out.
        self._handshaking = False
        self._closed_at: float | None = None  # when close() asked for a clean close
        self._cap_version = 0  # the highest CAP LS version the client sent (302: values)
        self._multiline: multiline.Collector | None = None  # the client's open multiline batch
        self._sasl: Sasl | None = None  # SASL's state, made at the first AUTHENTICATE
        # The factory's per-turn write coalescer, on a socket (None: write at once).
        self._out: TurnCoalescer | None = None

    @property
    def caps(self) -> frozenset[str]:
        """The IRCv3 capabilities this client negotiated."""
        return self.view.caps

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.host = getattr(peer, "host", "unknown")
        # Under TLS this runs at TCP connect, before any ClientHello (Twisted's
        # TLSMemoryBIOProtocol.makeConnection): connections that never finish the
        # handshake count towards the per-address limit like any other.
        self._handshaking = ISSLTransport.providedBy(self.transport)
        self.user = self.registry.connect(self, self.host)
        if self.user is None:
            self.factory.metrics.drop_per_ip += 1
            self._log.info("refuse {peer}: too many connections from one address",
                           peer=self.host)
            self.closing = True
            if self._handshaking:
                # The ERROR could not get out before a handshake that may never come,
                # and this connection is not swept: abort (issue #12, item 8).
                self.transport.abortConnection()
                return
            self.transport.write(encode(Message(
                "ERROR", (f"Closing link: {self.host} (Too many connections from your IP)",))))
            self.transport.loseConnection()
            return
        if self._handshaking:
            self.counters = self.factory.metrics.tls
        self.counters.connections += 1
        self.counters.accepted += 1
        socket_transport = _socket_transport(self.transport)
        if hasattr(socket_transport, "bufferSize"):
            socket_transport.bufferSize = self.limits.sendq
        self.transport.registerProducer(_SendQWatch(self), True)
        if coalescible(self.transport):
            self._out = self.factory.output
        self.factory.watch(self)
        if self.factory.replica is not None:
            self.factory.replica.connected(self.user, self.host)
        self._log.info("connect {peer} ({transport})", peer=self.host,
                       transport="tls" if self.counters is self.factory.metrics.tls else "tcp")

    def handshakeCompleted(self) -> None:
        """The TLS handshake is done (IHandshakeListener): output can reach the peer now."""
        self._handshaking = False

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.user is None:
            return  # refused at connect, or already quit (shut_down)
        self.factory.unwatch(self)
        self.counters.connections -= 1
        if self._out is not None:
            self._out.discard(self.transport)
        self._lost_reason = _reason_text(reason)
        if self._flood_queue and not self.closing:
            # Lines the server received are the sender's words: they still run, at the
            # flood rate, before the user quits (a QUIT among them gives its reason).
            return
        self._quit()

    def _quit(self) -> None:
        """The connection is gone and nothing of it is left to run: the user quits."""
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._flood_queue = None
        if self.user is None:
            return
        user, self.user = self.user, None
        nick = user.nick
        quit_reason = self._quit_reason or self._lost_reason or "Connection closed"
        if self.factory.replica is not None:
            self.factory.replica.quit(user, quit_reason)  # every node's fold quits the user
        else:
            deliver(self.registry.quit(user, quit_reason))
        self._log.info("disconnect {peer} {nick}: {reason}", peer=self.host, nick=nick,
                       reason=quit_reason)

    def close(self, why: str, quit_reason: str | None = None) -> None:
        """
        Send ERROR and close; the user's QUIT says ``quit_reason`` (or ``why``).

        Where the ERROR cannot get out (a TLS handshake not finished: Twisted would
        wait for it forever), abort at once.  Otherwise close cleanly, and the sweep
        aborts the connection if it is still open :data:`CLOSE_GRACE` seconds later
        (issue #12, item 8).
        """
        if self.closing:
            return
        self.closing = True
        self._quit_reason = quit_reason or why
        if self._handshaking:
            self.transport.abortConnection()
            return
        if self._out is not None:
            self._out.flush_one(self.transport)  # what this turn said, then the ERROR
        self.transport.write(encode(Message("ERROR", (f"Closing link: {self.host} ({why})",))))
        # The SendQ watch goes first: while a producer is registered, Twisted's TLS
        # transport never starts its shutdown (TLSMemoryBIOProtocol.loseConnection
        # leaves it to unregisterProducer), and the socket stayed open for good.
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._closed_at = self.clock.seconds()

    def shut_down(self, why: str) -> None:
        """
        The server is stopping: ERROR, and the user quits now (its QUIT is recorded).

        Not when the connection is lost, later: by then the history store has
        stopped (issue #12, item 5).
        """
        if self.user is None:
            return
        if not self.closing:
            self.close(why)
        self.factory.unwatch(self)
        self.counters.connections -= 1
        self._lost_reason = why
        self._quit()

    def sendq_exceeded(self) -> None:
        """The transport's buffer passed the SendQ: drop this slow reader."""
        if self.closing:
            return
        self.closing = True
        self._quit_reason = "SendQ exceeded"
        self.factory.metrics.drop_sendq += 1
        self._log.info("drop {peer}: SendQ exceeded", peer=self.host)
        if self._out is not None:
            self._out.discard(self.transport)
        self.transport.abortConnection()

    # ------------------------------------------------------------------ output

    def deliver(self, payload: Any) -> None:
        """Write one core payload: an Event (formatted once per tag view) or a Message."""
        if self.closing:
            return
        if type(payload) is Event:
            data = payload.line(self.tag_view)
        elif type(payload) is Disconnect:
            self.close(payload.why, payload.quit_reason)
            return
        elif type(payload) is Gated:
            if payload.cap not in self.caps or not self.view.shows(payload.message):
                return
            data = self.view.format(payload.message, int(self.clock.seconds() * 1000))
        elif self.view.shows(payload):
            data = self.view.format(payload, int(self.clock.seconds() * 1000))
        else:
            return
        self.counters.lines_out += 1
        if self._capture is not None:
            if self._side_effect(payload):
                self._aside.append(data)
            else:
                self._capture.append(data)
        elif self._held is not None:
            self._held.append(data)
        else:
            if self.backlog is not None:
                self._grow_backlog(len(data))
            if self._out is None:
                self.transport.write(data)
            else:
                self._out.write(self.transport, data)

    def _side_effect(self, payload: Any) -> bool:
        """
        Is ``payload``, met while a labeled command runs, a side effect and not a reply?

        labeled-response: "When a client sends a message to itself, the server MUST
        NOT include the label tag, except for any echo-message acknowledgment. This
        is because the delivered message is not a response, but a side effect."  The
        core hands a message to oneself over twice with echo-message (the echo first)
        and once without: the copies past the echo are delivered, unlabeled, after
        the labeled response.
        """
        message = payload.message if type(payload) is Event else payload
        user = self.user
        if user is None or message.command not in _RELAYED or not message.params \
                or message.source != user.source or casefold(message.params[0]) != user.key:
            return False
        if self._echo_left:
            self._echo_left -= 1
            return False
        return True

    def _emit(self, data: bytes) -> None:
        """Write a line made outside :meth:`deliver` (labels, history), after any held output."""
        if self._held is not None:
            self._held.append(data)
        elif not self.closing:
            if self.backlog is not None:
                self._grow_backlog(len(data))
            if self._out is None:
                self.transport.write(data)
            else:
                self._out.write(self.transport, data)

    def _hold_for(self, lines_deferred: Deferred) -> None:
        """
        Keep this client's later output back until ``lines_deferred`` gives the lines due first.

        History (on JOIN, CHATHISTORY) comes from the store asynchronously; live
        lines that arrive meanwhile wait behind it, so the client sees history
        then live lines, in order, none twice.
        """
        marker = _Pending()
        if self._held is None:
            self._held = []
        self._held.append(marker)

        def resolved(lines: list[bytes]) -> None:
            marker.lines = lines

        def failed(failure: Failure) -> None:
            self._log.failure("held output (history, accounts) for {peer} failed", failure,
                              peer=self.host)
            marker.lines = []

        lines_deferred.addCallbacks(resolved, failed)
        lines_deferred.addCallback(lambda _: self._release())

    def _release(self) -> None:
        """Write held output up to the first history still being fetched."""
        held = self._held
        if held is None:
            return
        self._held = None
        for index, item in enumerate(held):
            if type(item) is _Pending:
                if item.lines is None:
                    self._held = held[index:]
                    return
                for line in item.lines:
                    self._emit(line)
            else:
                self._emit(item)

    def _grow_backlog(self, size: int) -> None:
        """Count output queued while the transport says it is full; drop past the SendQ."""
        assert self.backlog is not None
        self.backlog += size
        if self.backlog > self.limits.sendq:
            self.sendq_exceeded()

    def send(self, command: str, *params: str) -> None:
        """Send a line from the server to this client (client words echoed safely, as ``*``)."""
        middle = [safe_middle(p) for p in params[:-1]]
        self.deliver(Message(command, (*middle, *params[-1:]), self.registry.server_name))

    def numeric(self, code: str, *params: str) -> None:
        """Send a numeric addressed to this client's nick (or ``*``)."""
        self.send(code, self.user.nick if self.user else "*", *params)

    # ------------------------------------------------------------------- input

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A line over the limit: 417 ERR_INPUTTOOLONG, and the connection lives.

        LineReceiver hands us the over-long line with everything buffered after
        it; skip to the end of that line and go on with the rest.
        """
        if not self._discarding:
            self.numeric("417", "Input line was too long")
        end = line.find(self.delimiter)
        if end < 0:
            self._discarding = True  # the tail of this line is still to come
            return
        self._discarding = False
        rest = line[end + 1:]
        if rest:
            self.clock.callLater(0, self.dataReceived, rest)

    def lineReceived(self, line: bytes) -> None:
        if self._discarding:
            self._discarding = False  # the tail of an over-long line
            return
        if self.closing or self.user is None:
            return
        self.counters.lines_in += 1
        now = self.clock.seconds()
        self._last_seen = now  # any line is a sign of life
        self._ping_sent = None
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return  # RFC 1459 2.3.1: empty messages are silently ignored
        if self._awaiting or self._flood_queue or not (self._multiline_free()
                                                      or self._flood.take(now)):
            # Held back, in order behind the lines already held.
            queue = self._flood_queue
            if queue is None:
                queue = self._flood_queue = deque()
            if len(queue) >= self.limits.flood_queue:
                self._log.info("drop {peer}: Excess Flood", peer=self.host)
                self.factory.metrics.drop_flood += 1
                self.close("Excess Flood")
                return
            queue.append(line)
            self._schedule_drain()
            return
        self._handle_line(line)

    def _schedule_drain(self) -> None:
        if self._awaiting:
            return  # the answer awaited drains the queue when it comes (_resume)
        if self._drain_call is None or not self._drain_call.active():
            self._drain_call = self.clock.callLater(self._flood.wait(), self._drain)

    def _drain(self) -> None:
        """Run held-back lines as tokens come back."""
        self._drain_call = None
        queue = self._flood_queue
        while queue and not self.closing:
            if self._awaiting:
                return  # a line just run awaits its answer; _resume goes on from here
            if not self._flood.take(self.clock.seconds()):
                self._schedule_drain()
                return
            self._handle_line(queue.popleft())
        if not queue:
            self._flood_queue = None
        if self._lost_reason is not None:
            self._quit()  # the last held line of a connection already gone has run

    def _handle_line(self, line: bytes) -> None:
        try:
            message = parse(line, max_body=self.limits.max_line, max_tags=self.limits.max_tags)
        except LineTooLong:
            self.numeric("417", "Input line was too long")
            return
        except InvalidUTF8:
            # ISUPPORT UTF8ONLY (https://ircv3.net/specs/extensions/utf8-only): the line is
            # not relayed; FAIL <command> INVALID_UTF8, a reply that spec defines (so sent
            # to every client, standard-replies or not).
            self.send("FAIL", _verb_of(line), "INVALID_UTF8",
                      "Message rejected: this server accepts only UTF-8")
            return
        except WireError as e:
            self._standard_reply("*", "INVALID_MESSAGE", f"Malformed line: {e}")
            return
        try:
            self.handle(message)
        except Exception:
            # Our own bug: log it, tell the client, keep everyone else going.
            self._log.failure("error handling {verb} from {peer}", verb=message.verb,
                              peer=self.host)
            self._standard_reply(message.verb, "INTERNAL_ERROR",
                                 "The server failed on that command")

    def _standard_reply(self, verb: str, code: str, text: str) -> None:
        """
        A FAIL no other spec defines: to clients with ``standard-replies``, else a NOTICE.

        The standard-replies capability "allows servers to send arbitrary
        standard replies other than ones enabled by a specific specification";
        clients without it get the same text as a server NOTICE, as servers
        told users of such errors before.
        """
        if "standard-replies" in self.caps:
            self.send("FAIL", verb, code, text)
        else:
            self.send("NOTICE", self.user.nick if self.user else "*", text)

    def handle(self, message: Message) -> None:
        """One parsed line: run it, labeled if it carries a label (IRCv3 labeled-response)."""
        if (self._multiline is not None or message.verb == "BATCH") \
                and self._multiline_step(message):
            return
        label = message.tags.get("label") if "labeled-response" in self.caps else None
        if label is None:
            joined = self._run(message)
        else:
            # Collect this command's replies and mark them.
            self._capture, self._label, self._label_used = [], label, False
            self._echo_left = 1 if "echo-message" in self.caps else 0
            try:
                joined = self._run(message)
            finally:
                captured, self._capture, self._label = self._capture, None, None
                aside, self._aside = self._aside, []
            if not self._label_used:
                for line in ircv3.labeled_lines(label, captured or [],
                                                self.registry.server_name, self._batch_ref()):
                    self._emit(line)
            for line in aside:
                self._emit(line)
        if joined:
            self._history_on_join(joined)

    def _run(self, message: Message) -> list[str] | None:
        """Run one command; return the keys of rooms it joined (for history on join)."""
        user = self.user
        assert user is not None
        context = self.view.context
        if message.tags and "message-tags" in self.caps:
            client_tags = {k: v for k, v in message.tags.items() if k.startswith("+")}
            if client_tags and len(format_tags(client_tags).encode()) > MAX_CLIENT_TAGS:
                self.numeric("417", "Input line was too long (client tags)")
                return None
            if client_tags:
                context = commands.Context(context.echo, context.multi_prefix, client_tags,
                                           context.caps)
        services = self.factory.services
        if services is not None and message.verb == "PRIVMSG" and user.registered \
                and services.addressed(message):
            self._services(message)
            return None
        was_registered = user.registered
        before = {key for key, _ in self.registry.rooms_of(user)} \
            if message.verb == "JOIN" else None
        replica = self.factory.replica
        if replica is not None and not self._served_here(message.verb):
            self._replicated(replica.run(user, message, context), was_registered, before)
            return None
        deliver(commands.dispatch(self.registry, user, message, context, self))
        if user.registered and not was_registered:
            self._log.info("registered {peer} as {nick}", peer=self.host, nick=user.nick)
        if before is not None:
            return [key for key, _ in self.registry.rooms_of(user) if key not in before]
        return None

    def _served_here(self, verb: str) -> bool:
        """A local verb this front-end serves itself (CAP, CHATHISTORY): not replicated."""
        command = commands.COMMANDS.get(verb)
        return command is not None and command.local and self.local_handler(verb) is not None

    def _replicated(self, answer: Deferred, was_registered: bool,
                    before: set[str] | None) -> None:
        """
        A command sent to the cluster: its answer is rendered when the fold has run it.

        Later lines wait for it (as for a login), so each runs where the client sent
        it; history on join follows the JOIN's own lines.
        """
        user = self.user

        def then(deliveries: list[Delivery]) -> list[Delivery]:
            if self.user is None or self.closing:
                deliver(deliveries)  # the others' lines still go out; ours cannot
                return []
            if user is not None and user.registered and not was_registered:
                self._log.info("registered {peer} as {nick}", peer=self.host, nick=user.nick)
            if before is not None and user is not None:
                joined = [key for key, _ in self.registry.rooms_of(user) if key not in before]
                if joined:
                    self._history_on_join(joined)
            return deliveries

        # Live lines folded before this command's entry come out before its answer: the
        # answer takes its place in the output when it arrives, not when it was sent.
        label, self._label_used = self._label, self._label is not None
        self._awaiting += 1

        def arrived(deliveries: list[Delivery]) -> None:
            saved, self._label = self._label, label
            try:
                self._answer_later(succeed(deliveries), then)
            finally:
                self._label = saved

        answer.addCallback(arrived)
        answer.addBoth(self._resume)

    def _hold_registration(self, user: User) -> None:
        replica = self.factory.replica
        if replica is not None:
            self._answer_later(replica.hold(user))
        else:
            self.registry.hold_registration(user)

    def _release_registration(self, user: User) -> list[Delivery]:
        replica = self.factory.replica
        if replica is None:
            return self.registry.release_registration(user)
        self._answer_later(replica.release(user))
        return []

    def local_handler(self, verb: str) -> commands.LocalHandler | None:
        """The verbs this front-end serves itself (``commands.COMMANDS``, ``local``)."""
        if verb == "CAP":
            return self._cap
        if verb == "CHATHISTORY":
            return self._chathistory
        if self.factory.authenticator is not None:
            if verb == "AUTHENTICATE":
                return self._authenticate
            if verb == "REGISTER":
                return self._register
            if verb in ("NS", "CS"):
                return self._services
        return None

    def _services(self, message: Message) -> list:
        """A line for a service (``NS ...``, ``PRIVMSG NickServ :...``): answered in order."""
        services, user = self.factory.services, self.user
        assert services is not None and user is not None
        self._answer_later(services.route(user, message, certificate_fingerprint(self.transport)))
        return []

    # --------------------------------------------------------------- accounts

    def _render(self, deliveries: list[Delivery]) -> list[bytes]:
        """
        ``deliveries`` run now; the lines they make for this client, returned, not written.

        Other users' lines go out at once; ours take their place in the held output
        (:meth:`_hold_for`), after what this client was sent before.
        """
        saved = self._capture, self._aside, self._echo_left
        self._capture, self._aside, self._echo_left = [], [], 0
        try:
            deliver(deliveries)
            return self._capture + self._aside
        finally:
            self._capture, self._aside, self._echo_left = saved

    def _answer_later(self, answer: Answer, then: Any = None) -> None:
        """
        Deliver an answer that may come later (a password check), in order, labeled.

        As CHATHISTORY's: this client's later output waits behind it.  ``then``
        (if given) is called with the deliveries first and may add to them.
        """
        label, self._label_used = self._label, self._label is not None
        d = answer if isinstance(answer, Deferred) else succeed(answer)

        def lines(deliveries: list[Delivery]) -> list[bytes]:
            if then is not None:
                deliveries = then(deliveries)
            if self.user is None or self.closing:
                return []
            out = self._render(deliveries)
            if label is not None:
                out = ircv3.labeled_lines(label, out, self.registry.server_name,
                                          self._batch_ref())
            return out

        d.addCallback(lines)
        self._hold_for(d)
        # The lines the client sent after this one run once it is answered (a JOIN or a
        # ChanServ command pipelined after REGISTER must find the user logged in).
        self._awaiting += 1
        d.addBoth(self._resume)

    def _resume(self, _: Any) -> None:
        """An awaited answer came: the lines held meanwhile run, in order."""
        self._awaiting -= 1
        if not self._awaiting and (self._flood_queue or self._lost_reason is not None):
            self._drain()

    def _authenticate(self, message: Message) -> list:
        """
        IRCv3 SASL (:class:`twistchat.services.sasl.Sasl` runs the exchange).

        An answer that comes later (the credentials' check) keeps this client's
        later output behind it, and a CAP END that came meanwhile waits for it.
        """
        user, authenticator = self.user, self.factory.authenticator
        assert user is not None and authenticator is not None
        if self._sasl is None:
            self._sasl = Sasl(self.registry, authenticator, self.host,
                              lambda: certificate_fingerprint(self.transport))
        sasl = self._sasl
        answer = sasl.step(user, message.params[0])
        if isinstance(answer, Deferred):
            self._answer_later(answer, then=lambda out: self._sasl_done(sasl, out))
            return []
        return answer

    def _sasl_done(self, sasl: Sasl, out: list[Delivery]) -> list[Delivery]:
        """The check is over; a CAP END that came meanwhile goes on now."""
        if sasl.end_waiting and self.user is not None:
            sasl.end_waiting = False
            out = out + self.registry.release_registration(self.user)
        return out

    def _register(self, message: Message) -> list:
        """IRCv3 ``REGISTER`` (:func:`twistchat.services.registration.register_command`)."""
        user, authenticator = self.user, self.factory.authenticator
        assert user is not None and authenticator is not None
        self._answer_later(register_command(self.registry, authenticator, user, message.params))
        return []

    # ------------------------------------------------------ draft/multiline

    def _multiline_step(self, message: Message) -> bool:
        """
        A line of a client's ``draft/multiline`` batch: True if it was taken here.

        ``BATCH +ref draft/multiline target`` opens (one batch at a time), each
        ``@batch=ref PRIVMSG`` is collected (:class:`~twistchat.core.multiline.Collector`
        checks the target and the limits), ``BATCH -ref`` hands the combined text
        to the core as one PRIVMSG with the opening's label and client tags, so
        the room's rules and labeled-response apply as to one line.  A broken
        batch gets ``FAIL BATCH <code>``; none of it is delivered, the rest of its
        lines are swallowed.  A line outside the open batch fails it, then runs.
        """
        if multiline.CAP not in self.caps or "batch" not in self.caps:
            return False
        open_batch = self._multiline
        verb, params = message.verb, message.params
        try:
            if verb == "BATCH" and params and params[0][:1] == "+":
                if open_batch is not None:
                    # One at a time: both fail; the new one's lines are swallowed too.
                    self._multiline = multiline.Collector(params[0][1:], "", 0.0, failed=True)
                    raise multiline.Failed("MULTILINE_INVALID",
                                           text="Invalid multiline batch (one at a time)")
                self._multiline = multiline.Collector.open(params, dict(message.tags),
                                                           self.clock.seconds())
                return True
            if verb == "BATCH" and params and params[0][:1] == "-":
                if open_batch is None or params[0][1:] != open_batch.ref:
                    raise multiline.Failed("MULTILINE_INVALID",
                                           text="Invalid multiline batch (not open)")
                self._multiline = None
                if not open_batch.failed:
                    text = open_batch.close()
                    self.handle(Message("PRIVMSG", (open_batch.target, text), None,
                                        open_batch.tags))
                return True
            if open_batch is None:
                return False
            if message.tags.get("batch") != open_batch.ref:
                # "Clients MUST NOT send messages other than PRIVMSG while a multiline
                # batch is open": the batch fails, the line runs as usual.
                if not open_batch.failed:
                    open_batch.failed = True
                    self._multiline_fail(multiline.Failed(
                        "MULTILINE_INVALID", text="Invalid multiline batch (a line outside it)"))
                return False
            if open_batch.failed:
                return True
            if verb != "PRIVMSG" or len(params) < 2:
                raise multiline.Failed("MULTILINE_INVALID",
                                       text="Invalid multiline batch (PRIVMSG only)")
            open_batch.feed(params[0], params[1], multiline.CONCAT_TAG in message.tags)
        except multiline.Failed as failed:
            if self._multiline is not None:
                self._multiline.failed = True
            self._multiline_fail(failed, message.tags.get("label") if verb == "BATCH" else None)
        return True

    def _multiline_free(self) -> bool:
        """
        True while a client batch is open and sound: its lines cost no flood token.

        The batch's ``BATCH +`` paid one; the collector ends it (and so the
        free lines) after at most ``MAX_LINES`` + 1 lines or ``MAX_BYTES`` bytes,
        and a line outside it fails it.  The multiline spec: "clients might send
        an entire batched multiline message all at once".
        """
        open_batch = self._multiline
        return open_batch is not None and not open_batch.failed

    def _multiline_fail(self, failed: multiline.Failed, label: str | None = None) -> None:
        """``FAIL BATCH <code> ...``, with the batch's label (labeled-response) if it had one."""
        if label is None and self._multiline is not None:
            label = self._multiline.tags.get("label")
        if "labeled-response" not in self.caps:
            label = None
        data = self.view.format(failed.message(self.registry.server_name),
                                int(self.clock.seconds() * 1000))
        self._emit(ircv3.label(data, label))

    def _batch_ref(self) -> str:
        self._batches += 1
        return f"b{self._batches}"

    def _new_batch(self) -> str | None:
        """A batch reference for lines that belong together, if the client has ``batch``."""
        return self._batch_ref() if "batch" in self.caps else None

    # ---------------------------------------------------------------- history

    def _history_on_join(self, room_keys: list[str]) -> None:
        """
        After a JOIN, the room's last messages to a client that negotiated server-time.

        Sent right after the JOIN's NAMES reply, where Ergo puts it; clients
        without server-time get nothing unexpected.
        """
        found = self.factory.history
        if found is None or "server-time" not in self.caps or self.user is None:
            return
        messages_only = "draft/event-playback" not in self.caps
        for key in room_keys:
            d = found.on_join(self.user, key, messages_only)
            if d is None:
                continue
            name = self.registry.room_name(key) or key
            # No history, no batch: an empty chathistory batch after a JOIN says nothing.
            d.addCallback(lambda records, name=name: ircv3.history_lines(
                records, name, self.view, self._new_batch(), self.registry.server_name)
                if records else [])
            self._hold_for(d)

    def _chathistory(self, message: Message) -> list:
        """IRCv3 draft/chathistory; answered in order with the client's other replies."""
        params = message.params
        server = self.registry.server_name
        label, self._label_used = self._label, self._label is not None
        found = self.factory.history
        if found is None or self.user is None:
            error = history.HistoryError("MESSAGE_ERROR", (params[0] if params else "*").upper(),
                                         text="History is not kept on this server")
            self._hold_for(succeed([ircv3.label(encode(error.message(server)), label)]))
            return []
        d = found.query(self.user, params, messages_only="draft/event-playback" not in self.caps)

        def answer(result: tuple) -> list[bytes]:
            target, records = result
            if target == "*":
                return ircv3.targets_lines(records, self._new_batch(), server, label)
            return ircv3.history_lines(records, target, self.view, self._new_batch(), server,
                                       label)

        def refused(failure: Failure) -> list[bytes]:
            failure.trap(history.HistoryError)
            error = failure.value
            assert isinstance(error, history.HistoryError)
            return [ircv3.label(encode(error.message(server)), label)]

        d.addCallbacks(answer, refused)
        self._hold_for(d)
        return []

    # --------------------------------------------------- capability negotiation

    def _cap(self, message: Message) -> list:
        """
        IRCv3 capability negotiation: LS [version], LIST, REQ (all or nothing), END.

        ``CAP LS 302`` shows capability values, may answer on several lines, and
        turns on cap-notify (which such a client cannot turn off again).
        """
        params = message.params
        user = self.user
        assert user is not None
        sub = params[0].upper() if params else ""
        nick = user.nick
        if sub == "LS":
            self._hold_registration(user)
            version = params[1] if len(params) > 1 else ""
            if version.isdigit() and int(version) > self._cap_version:
                self._cap_version = int(version)
            if self._cap_version >= 302 and not ircv3.STICKY_302 <= self.caps:
                self._set_caps(self.caps | ircv3.STICKY_302)
            self._cap_reply("LS", ircv3.offer(self._cap_version, self.factory.hidden_caps))
        elif sub == "LIST":
            self._cap_reply("LIST", sorted(self.caps))
        elif sub == "REQ":
            self._hold_registration(user)
            text = params[1] if len(params) > 1 else ""
            wanted = text.split()
            caps = ircv3.requested(self.caps, wanted, self.factory.hidden_caps)
            if caps is not None and self._cap_version >= 302 \
                    and not ircv3.STICKY_302 <= caps:
                caps = None  # a 302 client keeps cap-notify
            if caps is None:
                self.send("CAP", nick, "NAK", text)
            else:
                self._set_caps(caps)
                self.send("CAP", nick, "ACK", text)
        elif sub == "END":
            sasl = self._sasl
            if sasl is not None and sasl.checking:
                sasl.end_waiting = True  # registration waits for the SASL check
                return []
            if sasl is not None and sasl.in_progress and not user.registered:
                # sasl-3.1: registration completed mid-exchange aborts it (906).
                return sasl.abort(user) + self._release_registration(user)
            return self._release_registration(user)
        else:
            self.numeric("410", sub or "*", "Invalid CAP command")
        return []

    def _set_caps(self, caps: frozenset[str]) -> None:
        self.view = ircv3.View.of(caps)
        self.tag_view = self.view.tags

    def _cap_reply(self, sub: str, words: list[str]) -> None:
        nick = self.user.nick if self.user is not None else "*"
        for params in ircv3.cap_lines(nick, sub, words, self._cap_version >= 302):
            self.send("CAP", *params)

    # ----------------------------------------------------------------- timers

    def check_timeouts(self, now: float) -> None:
        """
        Registration and ping timeouts, called by the factory's sweep (about once a second).

        No line for ``ping_interval``: PING; no line for ``ping_timeout`` after
        that: dropped.  Not registered ``registration_timeout`` after connecting:
        dropped.  Closed but still open :data:`CLOSE_GRACE` seconds later: aborted.
        """
        if self.closing:
            if self._closed_at is not None and now - self._closed_at >= CLOSE_GRACE:
                self._closed_at = None
                self._log.info("abort {peer}: still open {grace} s after close",
                               peer=self.host, grace=CLOSE_GRACE)
                self.transport.abortConnection()
            return
        if self.user is None:
            return
        if self._multiline is not None and now - self._multiline.opened >= multiline.TIMEOUT:
            self._multiline = None  # an open batch holds memory: not for ever
            self._multiline_fail(multiline.Failed(
                "MULTILINE_INVALID", text="Invalid multiline batch (timed out)"))
        limits = self.limits
        if not self.user.registered and now - self._connected_at >= limits.registration_timeout:
            self._log.info("drop {peer}: Registration timed out", peer=self.host)
            self.factory.metrics.drop_registration_timeout += 1
            self.close("Registration timed out")
        elif self._ping_sent is not None:
            if now - self._ping_sent >= limits.ping_timeout:
                self._log.info("drop {peer}: Ping timeout", peer=self.host)
                self.factory.metrics.drop_ping_timeout += 1
                self.close(f"Ping timeout: {int(limits.ping_timeout)} seconds", "Ping timeout")
        elif now - self._last_seen >= limits.ping_interval:
            self._ping_sent = now
            self.send("PING", self.registry.server_name)


def _verb_of(line: bytes) -> str:
    """The command of a line that could not be parsed (``*`` if none can be found)."""
    words = line.decode("utf-8", "replace").split()
    while words and words[0][:1] in ("@", ":"):
        words.pop(0)
    verb = words[0].upper() if words else ""
    return verb if verb.isascii() and verb.isalnum() else "*"


def _reason_text(reason: Any) -> str:
    """A short human reason for a lost connection."""
    try:
        text = reason.getErrorMessage()
    except AttributeError:
        return "Connection closed"
    if "cleanly" in text:
        return "Connection closed"
    return text.split(":")[0][:80] if text else "Connection closed"


class IRCFactory(protocol.Factory):
    """
    Builds :class:`IRCProtocol` for one registry.

    ``history`` (a :class:`~twistchat.history.History`, or None: no CHATHISTORY,
    no history on join).  One sweep (a LoopingCall, running while there are
    connections) checks every connection's registration and ping timeouts,
    instead of a DelayedCall per connection reset on every line: that saves
    about 0.8 KiB per idle connection and a timer operation per line (issue #8).
    Timeouts fire up to one sweep interval late.
    """

    def __init__(self, registry: Registry, clock: Any,
                 limits: ConnectionLimits = ConnectionLimits(),
                 history: history.History | None = None,
                 metrics: Metrics | None = None,
                 authenticator: Authenticator | None = None,
                 replica: Replicator | None = None) -> None:
        self.registry = registry
        # With --cluster: what changes chat state goes through the cluster (Replicator).
        self.replica = replica
        self.history = history
        # Accounts (issue #14): SASL, REGISTER and NickServ only with an authenticator.
        self.authenticator = authenticator
        self.services = Services(registry, authenticator) if authenticator is not None else None
        self.hidden_caps = frozenset() if authenticator is not None else ircv3.ACCOUNT_CAPS
        self.clock = clock
        self.limits = limits
        # Counters for --metrics; service.py passes the server's.
        self.metrics = metrics if metrics is not None else Metrics(registry)
        self.max_length = limits.max_line + limits.max_tags  # LineReceiver.MAX_LENGTH
        self.connections: set[IRCProtocol] = set()  # admitted, not yet lost: swept
        # Every connection's output of a reactor turn leaves in one write (issue #18).
        self.output = TurnCoalescer(clock)
        self.sweep_interval = min(SWEEP_INTERVAL, limits.registration_timeout,
                                  limits.ping_interval, limits.ping_timeout)
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock

    def buildProtocol(self, addr: Any) -> IRCProtocol:
        proto = IRCProtocol(self)
        proto.factory = self
        return proto

    def watch(self, proto: IRCProtocol) -> None:
        """Check the timeouts of ``proto`` from now on."""
        self.connections.add(proto)
        if not self._sweeper.running:
            self._sweeper.start(self.sweep_interval, now=False)

    def unwatch(self, proto: IRCProtocol) -> None:
        """``proto`` is gone; the sweep stops with the last connection (no timer left behind)."""
        self.connections.discard(proto)
        if not self.connections and self._sweeper.running:
            self._sweeper.stop()

    def shut_down(self, why: str = "Server shutting down") -> None:
        """Every connection: ERROR, and its user quits now (see IRCProtocol.shut_down)."""
        for proto in list(self.connections):
            proto.shut_down(why)

    def sweep(self) -> None:
        """Every connection's timeouts, once per ``sweep_interval``."""
        now = self.clock.seconds()
        for proto in list(self.connections):
            proto.check_timeouts(now)
