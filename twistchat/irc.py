"""
The TCP front-end: the IRC client protocol on a LineReceiver.

test-case-name: tests.test_irc

One :class:`IRCProtocol` per connection.  It frames lines, enforces the
per-connection limits (line length, flood, output queue, registration and ping
timeouts), runs registration and IRCv3 capability negotiation, and hands every
other command to :func:`twistchat.commands.dispatch`.  It holds no chat state:
that is the registry's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from twistchat import commands, history
from twistchat.events import (
    NO_TAGS,
    TAG_CLIENT,
    TAG_MSGID,
    TAG_TIME,
    Event,
    deliver,
    format_server_time,
)
from twistchat.metrics import Metrics
from twistchat.registry import Registry
from twistchat.wire import (
    MAX_BODY,
    MAX_TAGS,
    InvalidUTF8,
    LineTooLong,
    Message,
    WireError,
    encode,
    escape_tag_value,
    parse,
    safe_middle,
)


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
    max_per_ip: int = 16  # connections from one address


# A token, less float rounding (refills are computed from clock differences).
_ONE_TOKEN = 1 - 1e-9

# Seconds between checks of every connection's registration and ping timeouts
# (IRCFactory.sweep); shorter if a timeout is configured shorter than this.
SWEEP_INTERVAL = 1.0

_NO_CAPS: frozenset = frozenset()

# IRCv3 capabilities this front-end offers (https://ircv3.net/specs/extensions/capability-negotiation).
CAPABILITIES = (
    "away-notify", "batch", "draft/chathistory", "draft/event-playback", "echo-message",
    "labeled-response", "message-tags", "multi-prefix", "server-time",
)
# Lines only clients that asked for a capability may see (IRCv3: "MUST NOT send ... unless
# the client has negotiated the capability").
CAP_GATED = {"AWAY": "away-notify", "TAGMSG": "message-tags", "BATCH": "batch"}


class _Pending:
    """A place in the held output where lines still to come (history) will go."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines = None


def _label_tag(label: str) -> bytes:
    """The ``label=...`` tag for a label as parsed (unescaped), escaped again for the wire."""
    return b"label=" + escape_tag_value(label).encode("utf-8")


def _with_tag(data: bytes, tag: bytes) -> bytes:
    """Add one ``key=value`` tag to an encoded line."""
    if data.startswith(b"@"):
        return b"@" + tag + b";" + data[1:]
    return b"@" + tag + b" " + data


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


def _socket_transport(transport):
    """The innermost transport (below TLS), whose buffer holds the unsent bytes."""
    while getattr(transport, "transport", None) is not None:
        transport = transport.transport
    return transport


class IRCProtocol(LineReceiver):
    """One IRC client connection."""

    delimiter = b"\n"  # many clients end lines with a bare LF; a CR before it is stripped
    _log = Logger()

    # An idle connection's memory is the server's cost per user (issue #8: at most
    # 4 KiB per joined connection; a __dict__ with this many keys alone took 1.5 KiB).
    # The first line are attributes Twisted's Protocol and LineReceiver set on
    # instances; any attribute not named here still works, in a __dict__ made on demand.
    __slots__ = (
        "transport", "connected", "factory", "_buffer", "_busyReceiving", "line_mode",
        "registry", "limits", "clock", "counters", "MAX_LENGTH", "user", "host", "caps",
        "tag_view", "context", "cap_negotiating", "password_ok", "pending_nick",
        "pending_user", "closing", "backlog", "_quit_reason", "_capture", "_held", "_label",
        "_label_used", "_batches", "_discarding", "_tokens", "_refilled", "_flood_queue",
        "_drain_call", "_connected_at", "_last_seen", "_ping_sent",
    )

    def __init__(self, factory: IRCFactory) -> None:
        self.transport = None
        self.connected = 0
        self._buffer = b""
        self._busyReceiving = False
        self.line_mode = 1
        self.factory = factory
        self.registry: Registry = factory.registry
        self.limits: ConnectionLimits = factory.limits
        self.clock = factory.clock
        self.counters = factory.metrics.tcp  # this transport's metrics; TLS picks its own at connect
        self.MAX_LENGTH = factory.max_length
        self.user = None
        self.host = "unknown"
        self.caps: frozenset = _NO_CAPS  # replaced, not changed, by CAP REQ
        self.tag_view = NO_TAGS
        self.context = commands.PLAIN
        self.cap_negotiating = False
        self.password_ok = factory.password is None
        self.pending_nick = None
        self.pending_user = None
        self.closing = False
        self.backlog = None  # bytes queued since the transport paused us (None: not paused)
        self._quit_reason = None
        self._capture = None  # output of a labeled command (IRCv3 labeled-response)
        self._held = None  # output held back behind history being fetched
        self._label = None  # the label of the command being handled
        self._label_used = False
        self._batches = 0
        self._discarding = False
        self._tokens = float(self.limits.flood_burst)
        self._refilled = self.clock.seconds()
        self._flood_queue = None  # a deque while lines are held back (made only then)
        self._drain_call = None
        # Timeouts are checked by the factory's sweep (IRCFactory.sweep), not by a
        # DelayedCall per connection and a reset per line.  _last_seen: the last line.
        self._connected_at = self._last_seen = self._refilled
        self._ping_sent = None  # when we sent PING, while waiting for any line back

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.host = getattr(peer, "host", "unknown")
        if not self.factory.admit(self.host):
            self.factory.metrics.drop_per_ip += 1
            self._log.info("refuse {peer}: too many connections from one address", peer=self.host)
            self.transport.write(encode(Message(
                "ERROR", (f"Closing link: {self.host} (Too many connections from your IP)",))))
            self.closing = True
            self.transport.loseConnection()
            return
        self.user = self.registry.connect(self, self.host)
        if ISSLTransport.providedBy(self.transport):
            self.counters = self.factory.metrics.tls
        self.counters.connections += 1
        self.counters.accepted += 1
        socket_transport = _socket_transport(self.transport)
        if hasattr(socket_transport, "bufferSize"):
            socket_transport.bufferSize = self.limits.sendq
        self.transport.registerProducer(_SendQWatch(self), True)
        self.factory.watch(self)
        self._log.info("connect {peer} ({transport})", peer=self.host,
                       transport="tls" if self.counters is self.factory.metrics.tls else "tcp")

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._flood_queue = None
        if self.user is None:
            return
        self.factory.unwatch(self)
        self.counters.connections -= 1
        self.factory.release(self.host)
        user, self.user = self.user, None
        nick = user.nick
        quit_reason = self._quit_reason or _reason_text(reason)
        deliver(self.registry.quit(user, quit_reason))
        self._log.info("disconnect {peer} {nick}: {reason}", peer=self.host, nick=nick,
                       reason=quit_reason)

    def close(self, why: str, quit_reason: str = None) -> None:
        """Send ERROR and close; the user's QUIT says ``quit_reason`` (or ``why``)."""
        if self.closing:
            return
        self.closing = True
        self._quit_reason = quit_reason or why
        self.transport.write(encode(Message("ERROR", (f"Closing link: {self.host} ({why})",))))
        self.transport.loseConnection()

    def sendq_exceeded(self) -> None:
        """The transport's buffer passed the SendQ: drop this slow reader."""
        if self.closing:
            return
        self.closing = True
        self._quit_reason = "SendQ exceeded"
        self.factory.metrics.drop_sendq += 1
        self._log.info("drop {peer}: SendQ exceeded", peer=self.host)
        self.transport.abortConnection()

    # ------------------------------------------------------------------ output

    def deliver(self, payload) -> None:
        """Write one registry payload: an Event (formatted once per tag view) or a Message."""
        if self.closing:
            return
        if type(payload) is Event:
            data = payload.line(self.tag_view)
        else:
            data = self._format(payload)
            if data is None:
                return
        self.counters.lines_out += 1
        if self._capture is not None:
            self._capture.append(data)
        elif self._held is not None:
            self._held.append(data)
        else:
            if self.backlog is not None:
                self._grow_backlog(len(data))
            self.transport.write(data)

    def _format(self, message: Message):
        """Encode a Message for this client: tags it asked for, nothing it did not."""
        needed = CAP_GATED.get(message.command)
        if needed is not None and needed not in self.caps:
            return None
        if self.tag_view & TAG_TIME and message.command.isalpha():
            # server-time on relayed (non-numeric) lines too.
            tags = dict(message.tags) if self.tag_view & TAG_CLIENT else {}
            tags.setdefault("time", format_server_time(int(self.clock.seconds() * 1000)))
            message = Message(message.command, message.params, message.source, tags)
        elif message.tags and not self.tag_view & TAG_CLIENT:
            message = Message(message.command, message.params, message.source)
        return encode(message)

    def _emit(self, data: bytes) -> None:
        """Write a line made outside :meth:`deliver` (labels, history), after any held output."""
        if self._held is not None:
            self._held.append(data)
        elif not self.closing:
            if self.backlog is not None:
                self._grow_backlog(len(data))
            self.transport.write(data)

    def _hold_for(self, lines_deferred) -> None:
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

        def resolved(lines):
            marker.lines = lines

        def failed(failure):
            self._log.failure("history for {peer} failed", failure, peer=self.host)
            marker.lines = []

        lines_deferred.addCallbacks(resolved, failed)
        lines_deferred.addCallback(lambda _: self._release())

    def _release(self) -> None:
        """Write held output up to the first history still being fetched."""
        held = self._held
        if held is None:
            return
        self._held = None
        index = 0
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
        if not self._take_token(now):
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

    def _take_token(self, now: float) -> bool:
        """Token bucket: ``flood_burst`` lines at once, ``flood_rate`` per second after."""
        if self._flood_queue:
            return False  # keep order: held-back lines go first
        self._tokens = min(self.limits.flood_burst,
                           self._tokens + (now - self._refilled) * self.limits.flood_rate)
        self._refilled = now
        if self._tokens >= _ONE_TOKEN:
            self._tokens -= 1
            return True
        return False

    def _schedule_drain(self) -> None:
        if self._drain_call is None or not self._drain_call.active():
            wait = max(0.0, (1 - self._tokens) / self.limits.flood_rate)
            self._drain_call = self.clock.callLater(wait, self._drain)

    def _drain(self) -> None:
        """Run held-back lines as tokens come back."""
        self._drain_call = None
        queue = self._flood_queue
        while queue and not self.closing:
            now = self.clock.seconds()
            self._tokens = min(self.limits.flood_burst,
                               self._tokens + (now - self._refilled) * self.limits.flood_rate)
            self._refilled = now
            if self._tokens < _ONE_TOKEN:
                self._schedule_drain()
                return
            self._tokens -= 1
            self._handle_line(queue.popleft())
        if not queue:
            self._flood_queue = None

    def _handle_line(self, line: bytes) -> None:
        try:
            message = parse(line, max_body=self.limits.max_line, max_tags=self.limits.max_tags)
        except LineTooLong:
            self.numeric("417", "Input line was too long")
            return
        except InvalidUTF8:
            # IRCv3 standard replies: FAIL <command> INVALID_UTF8 (the command is not known).
            self.send("FAIL", "*", "INVALID_UTF8", "Message rejected: it is not valid UTF-8")
            return
        except WireError as e:
            self.send("FAIL", "*", "INVALID_MESSAGE", f"Malformed line: {e}")
            return
        try:
            self.handle(message)
        except Exception:
            # Our own bug: log it, tell the client, keep everyone else going.
            self._log.failure("error handling {verb} from {peer}", verb=message.verb,
                              peer=self.host)
            self.send("FAIL", message.verb, "INTERNAL_ERROR", "The server failed on that command")

    def handle(self, message: Message) -> None:
        """One parsed line: connection-level verbs here, the rest to the command table."""
        label = message.tags.get("label") if "labeled-response" in self.caps else None
        if label is None:
            joined = self._run(message)
        else:
            # IRCv3 labeled-response: collect this command's replies and mark them.
            self._capture, self._label, self._label_used = [], label, False
            try:
                joined = self._run(message)
            finally:
                captured, self._capture, self._label = self._capture, None, None
            if not self._label_used:
                self._emit_labeled(label, captured)
        if joined:
            self._history_on_join(joined)

    def _run(self, message: Message):
        """Run one command; return the keys of rooms it joined (for history on join)."""
        verb = message.verb
        handler = getattr(self, "irc_" + verb, None)
        if handler is not None:
            handler(message.params, message)
        elif not self.user.registered:
            self.numeric("451", "You have not registered")
        else:
            ctx = self.context
            if message.tags and "message-tags" in self.caps:
                client_tags = {k: v for k, v in message.tags.items() if k.startswith("+")}
                if client_tags:
                    ctx = commands.Context(ctx.echo, ctx.multi_prefix, client_tags)
            rooms_before = set(self.user.channels) if verb == "JOIN" else None
            deliver(commands.dispatch(self.registry, self.user, message, ctx))
            if rooms_before is not None:
                return [key for key in self.user.channels if key not in rooms_before]
        return None

    def _emit_labeled(self, label: str, lines: list) -> None:
        """
        The replies to a labeled command: none gets ACK, one gets the label, more a batch.

        https://ircv3.net/specs/extensions/labeled-response
        """
        tag = _label_tag(label)
        server = self.registry.server_name
        if not lines:
            self._emit(_with_tag(encode(Message("ACK", (), server)), tag))
        elif len(lines) == 1:
            self._emit(_with_tag(lines[0], tag))
        else:
            ref = self._batch_ref()
            self._emit(_with_tag(encode(Message("BATCH", ("+" + ref, "labeled-response"), server)), tag))
            batch_tag = b"batch=" + ref.encode()
            for line in lines:
                self._emit(_with_tag(line, batch_tag))
            self._emit(encode(Message("BATCH", ("-" + ref,), server)))

    def _batch_ref(self) -> str:
        self._batches += 1
        return f"b{self._batches}"

    # ---------------------------------------------------------------- history

    def _history_lines(self, target: str, records, batch_type: str = "chathistory",
                       label: str = None) -> list:
        """Encode replayed records, in a batch if the client negotiated ``batch``."""
        server = self.registry.server_name
        ref = self._batch_ref() if "batch" in self.caps else None
        lines = []
        if ref is not None:
            start = encode(Message("BATCH", ("+" + ref, batch_type, target), server))
            lines.append(self._labeled(start, label))
        for record in records:
            lines.append(encode(history.replay_message(record, self.tag_view, ref, server)))
        if ref is not None:
            lines.append(encode(Message("BATCH", ("-" + ref,), server)))
        return lines

    def _replayable(self, records) -> list:
        """Without draft/event-playback, only messages are replayed (as Ergo does)."""
        if "draft/event-playback" in self.caps:
            return list(records)
        return [r for r in records if r.command in history.MESSAGE_COMMANDS]

    def _history_on_join(self, room_keys: list) -> None:
        """
        After a JOIN, the room's last messages to a client that negotiated server-time.

        Sent right after the JOIN's NAMES reply, where Ergo puts it; clients
        without server-time get nothing unexpected.  Only events before the
        JOIN are replayed: later ones reach the client live.
        """
        count = self.factory.history_on_join
        store = self.factory.store
        if not room_keys or not count or store is None or "server-time" not in self.caps:
            return
        for key in room_keys:
            channel = self.registry.channels[key]
            d = store.before(key, channel.seq, min(count * 4, 1000))
            d.addCallback(lambda records, name=channel.name: self._history_lines(
                name, self._replayable(records)[-count:]))
            self._hold_for(d)

    def irc_CHATHISTORY(self, params, message) -> None:
        """IRCv3 draft/chathistory; answered in order with the client's other replies."""
        if not self.user.registered:
            self.numeric("451", "You have not registered")
            return
        store = self.factory.store
        label, self._label_used = self._label, self._label is not None
        if store is None:
            error = history.HistoryError("MESSAGE_ERROR", (params[0] if params else "*").upper(),
                                         text="History is not kept on this server")
            self._hold_for(succeed([self._labeled(encode(error.message(self.registry.server_name)), label)]))
            return
        d = Deferred.fromCoroutine(history.query(
            store, self.registry, self.user, params, self.factory.history_max,
            messages_only="draft/event-playback" not in self.caps))

        def answer(result):
            target, found = result
            if target == "*":
                return self._targets_lines(found, label)
            lines = self._history_lines(target, found, label=label)
            if "batch" not in self.caps:
                lines[:1] = [self._labeled(lines[0], label)] if lines else []
            return lines

        def refused(failure):
            failure.trap(history.HistoryError)
            return [self._labeled(encode(failure.value.message(self.registry.server_name)), label)]

        d.addCallbacks(answer, refused)
        self._hold_for(d)

    def _labeled(self, line: bytes, label: str) -> bytes:
        return _with_tag(line, _label_tag(label)) if label else line

    def _targets_lines(self, found: list, label: str) -> list:
        server = self.registry.server_name
        ref = self._batch_ref() if "batch" in self.caps else None
        lines = []
        if ref is not None:
            lines.append(self._labeled(
                encode(Message("BATCH", ("+" + ref, "draft/chathistory-targets"), server)), label))
        for name, time_ms in found:
            tags = {"batch": ref} if ref else {}
            lines.append(encode(Message("CHATHISTORY", ("TARGETS", name,
                                                        format_server_time(time_ms)), server, tags)))
        if ref is not None:
            lines.append(encode(Message("BATCH", ("-" + ref,), server)))
        return lines

    # ----------------------------------------------------- connection commands

    def irc_PASS(self, params, message) -> None:
        if self.user.registered:
            self.numeric("462", "You may not reregister")
        elif not params:
            self.numeric("461", "PASS", "Not enough parameters")
        else:
            self.password_ok = self.factory.password in (None, params[0])

    def irc_NICK(self, params, message) -> None:
        if self.user.registered:
            deliver(self.registry.change_nick(self.user, params[0] if params else ""))
            return
        errors = self.registry.check_nick(self.user, params[0] if params else "")
        if errors:
            deliver(errors)
            return
        self.pending_nick = params[0]
        self._try_register()

    def irc_USER(self, params, message) -> None:
        if self.user.registered:
            self.numeric("462", "You may not reregister")
            return
        if len(params) < 4:
            self.numeric("461", "USER", "Not enough parameters")
            return
        self.pending_user = (params[0], params[3])
        self._try_register()

    def _try_register(self) -> None:
        if self.pending_nick is None or self.pending_user is None or self.cap_negotiating:
            return
        if not self.password_ok:
            self.numeric("464", "Password incorrect")
            self.close("Bad password")
            return
        out = self.registry.register(self.user, self.pending_nick, *self.pending_user)
        if self.user.registered:
            self.pending_nick = self.pending_user = None
            self._log.info("registered {peer} as {nick}", peer=self.host, nick=self.user.nick)
        else:
            self.pending_nick = None  # 436: the client must choose again
        deliver(out)

    def irc_CAP(self, params, message) -> None:
        """IRCv3 capability negotiation: LS, LIST, REQ (all or nothing), END."""
        sub = params[0].upper() if params else ""
        nick = self.user.nick
        if sub == "LS":
            if not self.user.registered:
                self.cap_negotiating = True
            self.send("CAP", nick, "LS", " ".join(CAPABILITIES))
        elif sub == "LIST":
            self.send("CAP", nick, "LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            if not self.user.registered:
                self.cap_negotiating = True
            wanted = params[1].split() if len(params) > 1 else []
            names = [w.lstrip("-") for w in wanted]
            if not wanted or any(n not in CAPABILITIES for n in names):
                self.send("CAP", nick, "NAK", params[1] if len(params) > 1 else "")
                return
            caps = set(self.caps)
            for w in wanted:
                if w.startswith("-"):
                    caps.discard(w[1:])
                else:
                    caps.add(w)
            self.caps = frozenset(caps)
            self._caps_changed()
            self.send("CAP", nick, "ACK", params[1])
        elif sub == "END":
            if self.cap_negotiating:
                self.cap_negotiating = False
                self._try_register()
        else:
            self.numeric("410", sub or "*", "Invalid CAP command")

    def _caps_changed(self) -> None:
        caps = self.caps
        view = NO_TAGS
        if "server-time" in caps:
            view |= TAG_TIME
        if "message-tags" in caps:
            view |= TAG_MSGID | TAG_CLIENT
        self.tag_view = view
        self.context = commands.Context("echo-message" in caps, "multi-prefix" in caps)

    def irc_PING(self, params, message) -> None:
        if not params:
            self.numeric("409", "No origin specified")
            return
        self.send("PONG", self.registry.server_name, params[0])

    def irc_PONG(self, params, message) -> None:
        pass  # any line already counts as a sign of life (see lineReceived)

    def irc_QUIT(self, params, message) -> None:
        reason = params[0] if params else "Client Quit"
        self.close("Quit: " + reason if params else "Client Quit", reason)

    # ----------------------------------------------------------------- timers

    def check_timeouts(self, now: float) -> None:
        """
        Registration and ping timeouts, called by the factory's sweep (about once a second).

        No line for ``ping_interval``: PING; no line for ``ping_timeout`` after
        that: dropped.  Not registered ``registration_timeout`` after connecting:
        dropped.
        """
        if self.closing:
            return
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


def _reason_text(reason) -> str:
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
    Builds :class:`IRCProtocol` for one registry; counts connections per address.

    One sweep (a LoopingCall, running while there are connections) checks every
    connection's registration and ping timeouts, instead of a DelayedCall per
    connection reset on every line: that saves about 0.8 KiB per idle connection
    and a timer operation per line (issue #8).  Timeouts fire up to one sweep
    interval late.
    """

    def __init__(self, registry: Registry, clock, limits: ConnectionLimits = ConnectionLimits(),
                 password: str = None, store=None, history_on_join: int = 50,
                 history_max: int = 100) -> None:
        self.registry = registry
        self.store = store  # an IHistoryStore, or None: no CHATHISTORY, no history on join
        self.history_on_join = history_on_join
        self.history_max = history_max
        self.clock = clock
        self.limits = limits
        self.password = password
        self.per_ip: dict = {}
        self.metrics = Metrics(registry)  # counters for --metrics; service.py passes the server's
        self.max_length = limits.max_line + limits.max_tags  # LineReceiver.MAX_LENGTH
        self.connections: set = set()  # admitted, not yet lost: what the sweep checks
        self.sweep_interval = min(SWEEP_INTERVAL, limits.registration_timeout,
                                  limits.ping_interval, limits.ping_timeout)
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock

    def buildProtocol(self, addr) -> IRCProtocol:
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

    def sweep(self) -> None:
        """Every connection's timeouts, once per ``sweep_interval``."""
        now = self.clock.seconds()
        for proto in list(self.connections):
            proto.check_timeouts(now)

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host``; False if it has too many already."""
        count = self.per_ip.get(host, 0)
        if count >= self.limits.max_per_ip:
            return False
        self.per_ip[host] = count + 1
        return True

    def release(self, host: str) -> None:
        """A connection from ``host`` ended."""
        count = self.per_ip.get(host, 0) - 1
        if count > 0:
            self.per_ip[host] = count
        else:
            self.per_ip.pop(host, None)
