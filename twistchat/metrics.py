"""
Counters the front-ends bump, and a twisted.web page that serves them to Prometheus.

test-case-name: tests.test_metrics

The hot paths (a line in, a line out) pay one attribute increment and nothing
else: every counter is a plain ``int`` attribute of a ``__slots__`` object that
the front-end looked up once, when the connection started.  Nothing is
allocated per message; the text is built only when someone scrapes.

Gauges that the registry already knows (registered users, rooms) are read from
it at scrape time, so nobody has to keep them in step.

Who bumps what:

- ``metrics.tcp`` / ``metrics.tls`` / ``metrics.udp`` (:class:`TransportCounters`):
  the IRC protocol (``tcp`` or ``tls``, chosen at connect) and the UDP
  front-end (``udp``): ``connections`` up at connect and down at disconnect,
  ``accepted`` up at connect, ``lines_in`` per line received, ``lines_out``
  per line sent.
- ``drop_<reason>`` (see :data:`DROP_REASONS`): the front-end that drops a
  client or a datagram.
- ``udp_broadcasts``, ``udp_repairs``: the UDP front-end, per room event
  broadcast and per repair request answered.
- ``history_written`` and ``history_write_lag``: the history store, after each
  write: events written, and the seconds between the newest event's server
  time and the moment it was on disk.

The format is Prometheus' text exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/): counters end
in ``_total``; per-second rates are the scraper's job (``rate(...[1m])``).
"""

from __future__ import annotations

import time

from twisted.web import resource, server

__all__ = ["Metrics", "TransportCounters", "MetricsPage", "metrics_site", "DROP_REASONS"]

TRANSPORTS = ("tcp", "tls", "udp")

# reason label -> what it means; Metrics has a ``drop_<reason>`` int per entry.
DROP_REASONS = {
    "flood": "a client sent faster than --flood-rate past --flood-queue (Excess Flood)",
    "sendq": "a client read slower than it was sent to, past --sendq (SendQ exceeded)",
    "ping_timeout": "a client did not answer PING within --ping-timeout",
    "registration_timeout": "a connection did not register within --registration-timeout",
    "per_ip": "a connection was refused: too many from one address (--max-per-ip)",
    "udp_token": "a UDP datagram was refused: missing or wrong session token, or wrong address",
    "udp_expired": "a UDP session stayed silent past its timeout",
    "udp_repair_denied": "a UDP repair asked for a room the session may not read",
}

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class TransportCounters:
    """Counters of one transport; the connection's protocol holds a reference."""

    __slots__ = ("connections", "accepted", "lines_in", "lines_out")

    def __init__(self) -> None:
        self.connections = 0  # open now (a gauge)
        self.accepted = 0  # ever accepted (a counter)
        self.lines_in = 0  # IRC messages (lines) received from clients
        self.lines_out = 0  # IRC messages (lines) sent to clients


class Metrics:
    """
    All counters of one server.

    ``registry`` (optional) supplies the gauges it already knows: registered
    users and rooms.  ``clock`` returns seconds since the epoch (the start time).
    """

    __slots__ = (
        "registry", "started", "tcp", "tls", "udp", "udp_broadcasts", "udp_repairs",
        "history_written", "history_write_lag",
    ) + tuple("drop_" + reason for reason in DROP_REASONS)

    def __init__(self, registry=None, clock=time.time) -> None:
        self.registry = registry
        self.started = clock()
        self.tcp = TransportCounters()
        self.tls = TransportCounters()
        self.udp = TransportCounters()
        self.udp_broadcasts = 0
        self.udp_repairs = 0
        self.history_written = 0
        self.history_write_lag = 0.0  # seconds, as of the last write
        for reason in DROP_REASONS:
            setattr(self, "drop_" + reason, 0)

    def drops(self) -> dict:
        """Drops so far, by reason."""
        return {reason: getattr(self, "drop_" + reason) for reason in DROP_REASONS}

    def render(self) -> str:
        """Every metric in Prometheus text format."""
        out: list = []

        def family(name: str, kind: str, doc: str, samples) -> None:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                out.append(f"{name}{labels} {value}")

        def by_transport(field: str) -> list:
            return [(f'{{transport="{t}"}}', getattr(getattr(self, t), field)) for t in TRANSPORTS]

        family("twistchat_connections", "gauge", "Client connections open now, by transport.",
               by_transport("connections"))
        family("twistchat_connections_accepted_total", "counter",
               "Client connections accepted, by transport.", by_transport("accepted"))
        registry = self.registry
        if registry is not None:
            family("twistchat_registered_users", "gauge", "Users registered (with a nick) now.",
                   [("", registry.user_count())])
            family("twistchat_rooms", "gauge", "Rooms that exist now.",
                   [("", registry.room_count())])
        family("twistchat_messages_in_total", "counter",
               "IRC messages (lines) received from clients, by transport.",
               by_transport("lines_in"))
        family("twistchat_messages_out_total", "counter",
               "IRC messages (lines) sent to clients, by transport.", by_transport("lines_out"))
        family("twistchat_udp_broadcasts_total", "counter", "Room events sent by UDP broadcast.",
               [("", self.udp_broadcasts)])
        family("twistchat_udp_repairs_total", "counter",
               "UDP repair requests (missing sequence ranges) answered.",
               [("", self.udp_repairs)])
        family("twistchat_drops_total", "counter",
               "Clients or datagrams dropped, by reason (DROP_REASONS in twistchat/metrics.py).",
               [(f'{{reason="{r}"}}', n) for r, n in self.drops().items()])
        family("twistchat_history_events_written_total", "counter",
               "Room events written to the history store.", [("", self.history_written)])
        family("twistchat_history_write_lag_seconds", "gauge",
               "Seconds from an event's server time to its history write, at the last write.",
               [("", _number(self.history_write_lag))])
        family("twistchat_start_time_seconds", "gauge",
               "When this server started, in seconds since the epoch.",
               [("", _number(self.started))])
        return "\n".join(out) + "\n"


def _number(value: float) -> str:
    """A float as Prometheus reads it (repr keeps full precision)."""
    return repr(float(value))


class MetricsPage(resource.Resource):
    """``GET /metrics``: the text format, rendered fresh on every scrape."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE)
        return self.metrics.render().encode("utf-8")

    render_HEAD = render_GET


class _QuietSite(server.Site):
    """A Site that writes no access log: a scrape every 15 s is not news for the journal."""

    def log(self, request) -> None:
        pass


def metrics_site(metrics: Metrics) -> server.Site:
    """The web site behind ``--metrics``: ``/metrics``, and 404 for anything else."""
    root = resource.Resource()
    root.putChild(b"metrics", MetricsPage(metrics))
    site = _QuietSite(root)
    site.noisy = False
    site.displayTracebacks = False
    return site
