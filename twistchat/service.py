"""
Options and ``makeService`` for ``twistd chat``: one registry, its front-ends.

test-case-name: tests.test_service

``twisted/plugins/chat.py`` names this module (Twisted's ``tap`` pattern, as
``twisted/words/tap.py`` does); everything ``twistd -n chat --help`` prints is
defined here, each option with its default.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from twisted.application import internet, service
from twisted.logger import Logger
from twisted.python import usage

from twistchat.auth import Argon2Hasher, Authenticator
from twistchat.cluster.fold import FoldClock, FoldedRoomLog, RemoteConn, Replica
from twistchat.cluster.nodes import ClusterService
from twistchat.cluster.stream import InputStream, parse_url
from twistchat.core.accounts import Account, AccountDirectory
from twistchat.core.events import Disconnect, deliver
from twistchat.core.operators import load_opers
from twistchat.core.readmarkers import ReadMarkers
from twistchat.core.registry import Limits, Registry
from twistchat.core.roomlog import LocalRoomLog
from twistchat.core.roomreg import RegisteredRoom, RoomDirectory
from twistchat.frontends.irc import ConnectionLimits, IRCFactory
from twistchat.frontends.udp import Broadcast, UDPFrontEnd, UDPLimits, broadcast_domain
from twistchat.frontends.website import is_secure, web_site
from twistchat.history import History
from twistchat.logging_setup import ListenerService, Startup, UDPListenerService
from twistchat.metrics import Metrics, metrics_site
from twistchat.store import AccountState, StoreError, open_store, record_from_event

FRONT_ENDS = ("tcp", "udp")  # every front-end this version has; "both" = all of them


class _AtLeast:
    """
    A usage.Options coercer: ``kind`` (int or float) no lower than ``minimum``.

    ``coerceDoc`` is what ``--help`` shows after the option's text (usage.Options).
    """

    def __init__(self, kind: type, minimum: float, inclusive: bool = True) -> None:
        self.kind = kind
        self.minimum = minimum
        self.inclusive = inclusive
        noun = "A whole number" if kind is int else "A number"
        self.coerceDoc = f"{noun} {'>=' if inclusive else '>'} {minimum}."

    def __call__(self, value: str) -> Any:
        number = self.kind(value)
        if number < self.minimum or (number == self.minimum and not self.inclusive):
            relation = "at least" if self.inclusive else "above"
            raise ValueError(f"must be {relation} {self.minimum}, got {number}")
        return number


_at_least = _AtLeast


_positive_int = _at_least(int, 1)
_positive_float = _at_least(float, 0, inclusive=False)
_non_negative_int = _at_least(int, 0)
_non_negative_float = _at_least(float, 0)


class _BadValue(ValueError):
    """A coercer's ValueError, reworded to name its option: ``--port: invalid literal ...``."""


class _Named:
    """
    Wrap an option's coercer so its ValueError names the option.

    usage.Options turns a coercer's ValueError into "Parameter type enforcement
    failed: ..." and never says which option it was (``CoerceParameter.dispatch``
    in twisted/python/usage.py); this wrapper puts the flag into the message and
    :meth:`Options.parseOptions` shows that message alone (issue #12, item 12).
    """

    def __init__(self, flag: str, coerce: Any) -> None:
        self.flag = flag
        self.coerce = coerce
        self.coerceDoc = getattr(coerce, "coerceDoc", "")  # what --help shows

    def __call__(self, value: str) -> Any:
        try:
            return self.coerce(value)
        except ValueError as e:
            raise _BadValue(f"--{self.flag}: {e}") from None


def _named(parameters: list) -> list:
    """``optParameters`` with every coercer wrapped in :class:`_Named`."""
    return [row[:4] + [_Named(row[0], row[4])] if len(row) > 4 and row[4] else row
            for row in parameters]


# twistd's own default for --pidfile (ServerOptions in twisted/scripts/_twistd_unix.py).
_TWISTD_DEFAULT_PIDFILE = "twistd.pid"

_HELP_HINT = "Run 'twistd -n chat --help' for every option and its default."


# (flag, default, coerce, help, where it goes: "registry" (a Limits field) or "conn"
# (a ConnectionLimits field), field name)
LIMIT_FLAGS = [
    ("max-line", 512, _positive_int,
     "Longest line in bytes, CRLF included, tags excluded (417 above it).", "conn", "max_line"),
    ("max-tags", 8191, _positive_int, "Longest IRCv3 tag section in bytes.", "conn", "max_tags"),
    ("flood-burst", 20, _positive_int,
     "Lines a client may send at once before the rate applies.", "conn", "flood_burst"),
    ("flood-rate", 5.0, _positive_float,
     "Lines per second a client may send after its burst.", "conn", "flood_rate"),
    ("flood-queue", 40, _positive_int,
     "Lines held back from a flooding client before 'Excess Flood'.", "conn", "flood_queue"),
    ("sendq", 262144, _positive_int,
     "Unsent output bytes per client before 'SendQ exceeded'.", "conn", "sendq"),
    ("registration-timeout", 60.0, _positive_float,
     "Seconds a connection may take to register.", "conn", "registration_timeout"),
    ("ping-interval", 120.0, _positive_float,
     "Idle seconds before the server sends PING.", "conn", "ping_interval"),
    ("ping-timeout", 60.0, _positive_float,
     "Seconds to answer the server's PING.", "conn", "ping_timeout"),
    ("max-per-ip", 16, _positive_int,
     "Connections allowed from one address (TCP and UDP together).", "registry", "max_per_ip"),
    ("nicklen", 30, _positive_int, "Longest nick (NICKLEN).", "registry", "nicklen"),
    ("channellen", 50, _positive_int,
     "Longest room name in bytes (CHANNELLEN).", "registry", "channellen"),
    ("topiclen", 390, _positive_int, "Longest topic in bytes (TOPICLEN).", "registry", "topiclen"),
    ("max-channels", 50, _positive_int,
     "Rooms one user may be in (CHANLIMIT).", "registry", "max_channels"),
    ("recent-history", 1000, _positive_int,
     "Events per room kept in memory.", "registry", "recent_history"),
    ("whowas", 1000, _non_negative_int,
     "Nicks let go (quit, nick change) WHOWAS remembers, in all (0: none).", "registry",
     "whowas"),
    ("whowas-per-nick", 5, _positive_int,
     "WHOWAS entries kept for one nick.", "registry", "whowas_per_nick"),
    ("knock-interval", 60.0, _non_negative_float,
     "Seconds between two KNOCKs of one user on one room.", "registry", "knock_interval"),
    ("nick-grace", 30.0, _positive_float,
     "Seconds a user on a nick another account reserves has to log in before it is renamed "
     "Guest<n>.", "registry", "nick_grace"),
    ("register-burst", 3, _non_negative_int,
     "Accounts one address may REGISTER at once (then --register-rate).", "registry",
     "register_burst"),
    ("register-rate", 1 / 60, _non_negative_float,
     "Accounts per second one address may REGISTER after its burst (1/60: one a minute).",
     "registry", "register_rate"),
]


# The UDP front-end (issue #4, docs/udp-protocol.md); flood and per-IP limits are shared with TCP.
UDP_OPTIONS = [
    ["broadcast", None, None,
     "Where room events are broadcast: ADDR or ADDR/PREFIX (default: the "
     "broadcast address of --interface; 127.0.0.1 gives 127.255.255.255)."],
    ["broadcast-port", None, None,
     "UDP port clients listen on for broadcasts (default: --port + 1).", int],
    ["heartbeat", None, 1.0,
     "Seconds between UDP heartbeats (each room's latest seq; the LAN beacon).",
     _positive_float],
    ["udp-session-timeout", None, 60.0,
     "Seconds a silent UDP session lives before it expires (QUIT).", _positive_float],
    ["repair-limit", None, 100, "Events sent back per UDP repair request.", _positive_int],
    ["repair-rate", None, 2000.0, "Repaired events per second per UDP session.", _positive_float],
    ["udp-max-sessions", None, 1024, "UDP sessions at once.", _positive_int],
]


# Several nodes on one Redis (issue #15, docs/cluster.md).
CLUSTER_OPTIONS = [
    ["cluster", None, None,
     "Share rooms, nicks and history with other nodes through this Redis, e.g. "
     "redis://127.0.0.1:6379/0 (default: none, one process with --db)."],
    ["node-name", None, None, "This node's name in the cluster (default: host name and pid)."],
    ["node-timeout", None, 3.0,
     "Seconds without a heartbeat before a node is declared dead and its users quit.",
     _positive_float],
    ["cluster-queue", None, 10000,
     "Lines waiting for Redis at once, past which lines are refused with a NOTICE.",
     _positive_int],
]


class Options(usage.Options):
    """``twistd chat`` options."""

    synopsis = "[options]"
    longdesc = (
        "twistchat: a chat server that speaks the IRC client protocol over TCP. "
        "It listens on 127.0.0.1:6667 unless told otherwise."
    )
    optParameters = [
        ["proto", None, "both", "Front-ends to start: tcp, udp or both (both = every "
                                "front-end this version has: " + ", ".join(FRONT_ENDS) + ")."],
        ["interface", None, "127.0.0.1", "Address to listen on (loopback unless told otherwise)."],
        ["port", None, 6667, "Port of the main listener.", int],
        ["server-name", None, "twistchat.local", "Server name shown to clients."],
        ["network", None, "twistchat", "Network name (ISUPPORT NETWORK)."],
        ["motd", None, None, "File with the message of the day (none: 422)."],
        ["password", None, None, "Server password clients must send with PASS (default: none)."],
        ["opers", None, None, "File of IRC operators, 'name scrypt-hash' a line ('#' comments; "
                              "make a line with: python -m twistchat.operhash NAME). "
                              "Default: none, OPER answers 491."],
        ["db", None, "twistchat.sqlite3", "History database (SQLite file, created if missing); "
                                          ":memory: keeps history in memory only, lost at exit."],
        ["history-on-join", None, 50, "Messages replayed on JOIN to IRCv3 clients with server-time "
                                      "(0: none).", _non_negative_int],
        ["history-max", None, 100, "Most messages one CHATHISTORY request returns "
                                   "(ISUPPORT CHATHISTORY).", _positive_int],
        ["history-per-room", None, 100000, "Messages kept per room or private conversation "
                                           "(0: no limit).", _non_negative_int],
        ["history-days", None, 0.0, "Days history is kept (0: no age limit).", _non_negative_float],
        ["history-sync", None, "full",
         "What a history write survives: full (fsync each write: a power loss loses at most "
         "--history-flush seconds) or normal (no fsync: a killed process loses nothing "
         "written, a power loss may lose the last seconds)."],
        ["history-flush", None, 0.2, "Seconds between history writes: the most an unclean kill "
                                     "can lose.", _positive_float],
        ["metrics", None, None, "Serve Prometheus metrics at /metrics on this endpoint, e.g. "
                                "tcp:9102:interface=127.0.0.1 (default: off)."],
        ["registration", None, "open",
         "Who may register accounts: open (any client, draft/account-registration or "
         "NickServ REGISTER) or closed (only 'python -m twistchat.accounts add'). Accounts "
         "are read from --db at start and on SIGHUP."],
    ] + [[flag, None, default, doc, coerce] for flag, default, coerce, doc, _, _ in LIMIT_FLAGS] \
      + UDP_OPTIONS + CLUSTER_OPTIONS
    optParameters = _named(optParameters)

    optFlags = [
        ["no-default-listener", None,
         "Open no listener from --interface/--port, only the --listen ones (systemd socket "
         "activation: --listen systemd:domain=INET:index=0)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["web"] = []
        self["web-origin"] = []

    def opt_listen(self, description: str) -> None:
        # usage.Options shows this docstring in --help: keep it one line.
        """Add an IRC listener from an endpoint, e.g. tcp:6668:interface=::1 (repeatable)."""
        self["listen"].append(description)

    def opt_web(self, description: str) -> None:
        """Serve the web client and IRC over WebSocket (/socket) on an endpoint (repeatable)."""
        self["web"].append(description)

    def opt_web_origin(self, origin: str) -> None:
        """Another page origin allowed to open /socket, e.g. https://chat.example (repeatable)."""
        self["web-origin"].append(origin.rstrip("/"))

    def parseOptions(self, options: Any = None) -> None:
        """
        Parse ``options``; under twistd, a bad one ends the process with one line.

        twistd answers a UsageError by printing its whole ``--help`` (about 100
        lines) before the line that matters (``app.run`` in
        twisted/application/app.py), so as a twistd subcommand (``self.parent``
        set) a UsageError becomes a SystemExit: that line, a hint, status 1
        (issue #12, item 12).  Used directly, it raises UsageError as usual.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise
            # CoerceParameter raises its UsageError while handling our _BadValue.
            why = e.__context__ if isinstance(e.__context__, _BadValue) else e
            raise SystemExit(f"twistd chat: {why}\n{_HELP_HINT}") from None

    def _no_pid_file_in_the_foreground(self) -> None:
        """
        ``twistd -n chat`` writes no pid file unless ``--pidfile`` names one.

        twistd writes ./twistd.pid even with -n, and refuses to start while
        that file names a live process: a second server in the same directory
        fails with "Another twistd server is running" (checkPID in
        twisted/scripts/_twistd_unix.py) instead of naming the address in use,
        and a start that fails leaves its file behind (SystemExit is not
        caught by ``postApplication``'s ``except Exception``).  In the
        foreground the process is its own handle; daemons keep twistd's
        default (issue #12, item 12; buildbot made the same choice, #3012).
        """
        parent = getattr(self, "parent", None)
        if (parent is not None and parent.get("nodaemon")
                and parent.get("pidfile") == _TWISTD_DEFAULT_PIDFILE):
            # What --pidfile= sets: no check, no file.  (--pidfile=twistd.pid spelled
            # out is indistinguishable from the default; ./twistd.pid is kept.)
            parent["pidfile"] = ""

    def startup(self) -> Startup:
        """Daemon or foreground, and the pid file: what a failed listener must clean up."""
        parent = getattr(self, "parent", None)
        if parent is None:  # makeService called directly (tests): the foreground's way
            return Startup()
        return Startup(daemon=not parent.get("nodaemon"), pidfile=parent.get("pidfile") or "")

    def postOptions(self) -> None:
        self._no_pid_file_in_the_foreground()
        if self["registration"] not in ("open", "closed"):
            raise usage.UsageError(
                f"--registration must be open or closed, not {self['registration']!r}")
        if self["history-sync"] not in ("full", "normal"):
            raise usage.UsageError(
                f"--history-sync must be full or normal, not {self['history-sync']!r}")
        proto = self["proto"]
        if proto not in ("tcp", "udp", "both"):
            raise usage.UsageError(f"--proto must be tcp, udp or both, not {proto!r}")
        if proto == "udp" and "udp" not in FRONT_ENDS:
            raise usage.UsageError("--proto=udp: the UDP front-end is not in this version yet")
        if self["cluster"]:
            if proto == "udp":
                raise usage.UsageError("--cluster serves IRC over TCP; the UDP front-end "
                                       "does not run in a cluster yet (docs/cluster.md)")
            try:
                self["cluster_address"] = parse_url(self["cluster"])
            except ValueError as e:
                raise usage.UsageError(f"--cluster: {e}") from None
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port must be 0-65535, not {self['port']}")
        self["motd_lines"] = None
        if self["motd"]:
            try:
                with open(self["motd"], encoding="utf-8") as f:
                    self["motd_lines"] = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"--motd {self['motd']}: cannot read it ({e})") from None
        self["oper_entries"] = None
        if self["opers"]:
            self["oper_entries"] = _read_opers(self["opers"])
        if proto in ("udp", "both"):
            try:
                self["broadcast_domain"] = broadcast_domain(self["interface"], self["broadcast"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            if self["broadcast-port"] is None:
                self["broadcast-port"] = self["port"] + 1
            if not 0 < self["broadcast-port"] <= 65535:
                raise usage.UsageError(
                    f"--broadcast-port must be 1-65535, not {self['broadcast-port']}")

    def limits(self, where: str) -> dict:
        """The limit flags that configure ``where`` ("registry" or "conn")."""
        return {field: self[flag] for flag, _, _, _, w, field in LIMIT_FLAGS if w == where}


def _read_opers(path: str) -> dict:
    """The entries of ``--opers`` FILE; a UsageError naming the file and the bad line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise usage.UsageError(f"--opers {path}: cannot read it ({e})") from None
    try:
        return load_opers(text)
    except ValueError as e:
        raise usage.UsageError(f"--opers {path}: {e}") from None


# How often users past their --nick-grace on a reserved nick are renamed (so a rename
# comes at most this late).
RESERVATION_CHECK_INTERVAL = 1.0


def reservation_timer(registry: Registry, reactor: Any) -> internet.TimerService:
    """Every RESERVATION_CHECK_INTERVAL: rename who is past its grace (core/reservations.py)."""
    timer = internet.TimerService(
        RESERVATION_CHECK_INTERVAL,
        lambda: deliver(registry.enforce_reservations(reactor.seconds())))
    timer.clock = reactor
    return timer


def _escape_endpoint(text: str) -> str:
    """Escape ':' for an endpoint description (an IPv6 interface address)."""
    return text.replace("\\", "\\\\").replace(":", "\\:")


class StoreService(service.Service):
    """
    Runs the history store with the server: started first, stopped last.

    twistd waits for :meth:`stopService`'s Deferred on SIGTERM, so everything
    acknowledged to clients is on disk before the process exits.
    """

    def __init__(self, store) -> None:
        self.store = store

    def startService(self) -> None:
        super().startService()
        self.store.start()

    def stopService(self):
        super().stopService()
        return self.store.stop()


class ChatService(service.MultiService):
    """The whole server: the store, the core, and its front-ends (``makeService``'s answer)."""

    registry: Registry
    store: Any
    authenticator: Authenticator
    account_state: AccountState  # as loaded at start: the room directory reads its rooms here
    metrics: Metrics
    irc_factory: IRCFactory
    udp: UDPFrontEnd | None = None
    cluster: Any = None  # the ClusterService with --cluster

    def stopService(self) -> Any:
        """
        Stop in an order that loses nothing: users quit first, then listeners, the store last.

        Every user's QUIT is a room event the store must record, so sessions
        end while the UDP port is open and before the store stops; the store
        (the first child) stops last and writes them (issue #12, item 5).
        """
        if self.udp is not None:
            self.udp.shut_down("Server shutting down")
        self.irc_factory.shut_down("Server shutting down")
        return super().stopService()


_log = Logger(namespace="twistchat.service")


class AccountsOnSighup(service.Service):
    """
    SIGHUP re-reads the accounts from ``--db``: what ``python -m twistchat.accounts`` changed.

    The store writes what it has queued, reads its account table again
    (``IAccountStore.reload_accounts``; a change this server made meanwhile
    wins), and the directory is brought to it: accounts added, changed and
    removed, without writing them back.  A user logged in to a removed account
    stays logged in until it disconnects (docs/accounts.md).  With
    ``--db=:memory:`` there is nothing to re-read.
    """

    def __init__(self, store: Any, directory: AccountDirectory, db: str, reactor: Any) -> None:
        self.store = store
        self.directory = directory
        self.db = db
        self.reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        # Signals reach only the main thread: a server run inside the terminal client
        # (clients.ptk --serve, in its reactor thread) has no SIGHUP reload.
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(
                signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))

    def stopService(self) -> Any:
        if hasattr(signal, "SIGHUP") and self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        return super().stopService()

    def reload(self) -> Any:
        """Re-read now; a Deferred of ``(added, changed, removed)`` (logged either way)."""
        d = self.store.reload_accounts()
        d.addCallback(self._apply)
        d.addErrback(lambda f: _log.failure(
            "Accounts: re-reading {db} failed; the accounts stay as they were", f, db=self.db))
        return d

    def _apply(self, state: AccountState) -> tuple[int, int, int]:
        wanted = {account.key: account for account in _accounts_of(state, self.db, quiet=True)}
        added = changed = removed = 0
        saver, self.directory.saver = self.directory.saver, None  # the file has them already
        try:
            for account in self.directory:
                if account.key not in wanted:
                    self.directory.remove(account.name)
                    removed += 1
            for key, account in wanted.items():
                mine = self.directory.find(key)
                if mine is None:
                    self.directory.add(account)
                    added += 1
                elif mine.to_record() != account.to_record():
                    mine.name, mine.credential, mine.email = (
                        account.name, account.credential, account.email)
                    mine.created, mine.certfps = account.created, account.certfps
                    self.directory.changed(mine)
                    changed += 1
        finally:
            self.directory.saver = saver
        _log.info("Accounts: re-read from {db} on SIGHUP: {added} added, {changed} changed, "
                  "{removed} removed, {count} in all", db=self.db, added=added,
                  changed=changed, removed=removed, count=len(self.directory))
        return added, changed, removed


T = TypeVar("T")


def _parsed(records: Mapping[str, Any], parse: Callable[[Any], T], what: str,
            db: str) -> list[T]:
    """``parse`` of each stored record; a record it cannot read is logged and left out."""
    parsed = []
    for key, record in records.items():
        try:
            parsed.append(parse(record))
        except (KeyError, TypeError, ValueError, AttributeError):
            _log.warn("The record of {key!r} in {db} is not {what}; ignored",
                      key=key, db=db, what=what)
    return parsed


def _accounts_of(state: AccountState, db: str, quiet: bool = False) -> list[Account]:
    """The accounts of the stored records (logged: how many)."""
    accounts = _parsed(state.accounts, Account.from_record, "an account", db)
    if not quiet:
        _log.info("Accounts: {count} loaded from {db}", count=len(accounts), db=db)
    return accounts


def _rooms_of(state: AccountState, db: str) -> list[RegisteredRoom]:
    """The registered rooms of the stored records."""
    return _parsed(state.rooms, RegisteredRoom.from_record, "a registered room", db)


def _markers_of(state: AccountState) -> dict[tuple[str, str], int]:
    """Read markers as the core keeps them (ms); the store keeps them as text."""
    return {key: int(value) for key, value in state.markers.items()
            if value is not None and str(value).isdigit()}


def _cluster_node(options: Options, registry: Registry, clock: FoldClock,
                  log: FoldedRoomLog, reactor: Any) -> Replica:
    """This node's replica of the cluster's core, on the stream at ``--cluster``."""
    host, port, db = options["cluster_address"]
    try:
        import txredisapi  # noqa: F401 - only to say what is missing, in one line
    except ImportError:
        raise SystemExit("twistd chat: --cluster needs txredisapi: "
                         "python3 -m pip install 'twistchat[cluster]'") from None
    stream = InputStream(reactor, host, port, db, max_pending=options["cluster-queue"])
    replica = Replica(registry, clock, log, stream)

    def epoch_lost() -> None:
        # Redis lost the stream this node's state was folded from (restarted without
        # its data, flushed): say so to everyone here and stop; a supervisor (systemd's
        # Restart=) starts the node again on what Redis holds now.
        _log.error("cluster: the stream in Redis is not the one folded here (its epoch "
                   "changed: Redis lost its data); stopping")
        for proto in list(_irc_connections(registry)):
            proto.deliver(Disconnect("The cluster lost its state; reconnect"))
        if reactor.running:
            reactor.callLater(0.5, reactor.stop)

    stream.on_epoch_lost = epoch_lost
    return replica


def _irc_connections(registry: Registry) -> list[Any]:
    """Every connection of this node's users (not a remote user's stand-in)."""
    return [user.conn for user in registry.users() if not isinstance(user.conn, RemoteConn)]


def makeService(options: Options, reactor: Any = None) -> ChatService:
    """One store, one core (room log + registry), and the front-ends ``--proto`` asks for."""
    if reactor is None:
        from twisted.internet import reactor
    top = ChatService()
    cluster = options.get("cluster_address")
    try:
        store = open_store(
            # In a cluster the history is what the fold of the stream makes (kept per node).
            ":memory:" if cluster else options["db"], reactor=reactor,
            flush_interval=options["history-flush"],
            sync=options["history-sync"],
            # StoreService stops it, after every user's QUIT (twistd's trigger for the
            # service runs after one the store would register itself: issue #12, item 5).
            stop_on_shutdown=False,
            max_per_target=options["history-per-room"] or None,
            max_age_days=options["history-days"] or None)
    except StoreError as e:
        # One clear line, no traceback (issue #7): twistd prints this and exits 1.
        raise SystemExit(f"twistd chat: {e}") from None
    # Accounts, registered rooms, read markers: read whole now, written back as they change.
    state = store.load_accounts()
    accounts = AccountDirectory(_accounts_of(state, options["db"]),
                                saver=lambda key, account: store.save_account(
                                    key, account.to_record() if account is not None else None))
    rooms = RoomDirectory(_rooms_of(state, options["db"]),
                          saver=lambda key, room: store.save_room(
                              key, room.to_record() if room is not None else None))
    markers = ReadMarkers(_markers_of(state), saver=lambda account, target, time_ms:
                          store.save_marker(account, target, str(time_ms)))
    limits = Limits(**options.limits("registry"))
    # The room log: numbering continues where the store left off, in the store's epoch.
    clock: Callable[[], float] = reactor.seconds
    if cluster:
        clock = FoldClock(reactor.seconds)
        log: LocalRoomLog = FoldedRoomLog(recent=limits.recent_history)
    else:
        log = LocalRoomLog(epoch=store.epoch(), last_seqs=store.last_seqs(),
                           recent=limits.recent_history)
    log.subscribe(lambda event: store.append(record_from_event(event)))
    registry = Registry(
        server_name=options["server-name"],
        network=options["network"],
        limits=limits,
        clock=clock,
        motd=options["motd_lines"],
        log=log,
        password=options["password"],
        opers=options.get("oper_entries"),
        accounts=accounts,
        registration_open=options["registration"] == "open",
        rooms=rooms,
        read_markers=markers,
    )
    authenticator = Authenticator(registry.accounts, Argon2Hasher(reactor), reactor.seconds)
    top.authenticator = authenticator
    top.registry = registry
    top.store = store
    top.account_state = state
    registry.extra_isupport += [f"CHATHISTORY={options['history-max']}",
                                "MSGREFTYPES=msgid,timestamp"]
    StoreService(store).setServiceParent(top)
    replica = None
    if cluster:
        assert isinstance(clock, FoldClock) and isinstance(log, FoldedRoomLog)
        replica = _cluster_node(options, registry, clock, log, reactor)
        replica_service = ClusterService(
            replica, replica.stream, options["node-name"] or f"{socket.gethostname()}-"
            f"{os.getpid()}", reactor, timeout=options["node-timeout"])
        replica_service.setServiceParent(top)
        top.cluster = replica_service
    else:
        reservation_timer(registry, reactor).setServiceParent(top)
        AccountsOnSighup(store, registry.accounts, options["db"], reactor).setServiceParent(top)
    # Counters for --metrics (issue #6); front-ends bump them whether or not anyone scrapes.
    top.metrics = Metrics(registry, clock=reactor.seconds)
    store.metrics = top.metrics
    factory = IRCFactory(registry, reactor, ConnectionLimits(**options.limits("conn")),
                         History(store, registry, options["history-max"],
                                 options["history-on-join"]),
                         top.metrics, authenticator=None if cluster else authenticator,
                         replica=replica)
    top.irc_factory = factory
    startup = options.startup()  # how a port that cannot be had ends the process
    descriptions = [] if options["no-default-listener"] or options["proto"] == "udp" else [
        f"tcp:{options['port']}:interface={_escape_endpoint(options['interface'])}"]
    descriptions += options["listen"]
    # ListenerService: strports.service that logs its address, and fails in one line (#6).
    for description in descriptions:
        listener = ListenerService(description, factory, reactor=reactor, startup=startup)
        listener.setServiceParent(top)
    # The web client and IRC over WebSocket (issue #16): the same IRC factory, framed as
    # WebSocket messages (frontends/websocket.py), so limits and per-address caps are shared.
    for description in options["web"]:
        site = web_site(factory, secure=is_secure(description),
                        allowed_origins=tuple(options["web-origin"]))
        ListenerService(description, site, reactor=reactor, startup=startup).setServiceParent(top)
    if options["metrics"]:
        ListenerService(options["metrics"], metrics_site(top.metrics),
                        reactor, startup=startup).setServiceParent(top)
    if options["proto"] in ("udp", "both") and not cluster:
        address, domain = options["broadcast_domain"]
        conn = options.limits("conn")
        udp_limits = UDPLimits(
            heartbeat=options["heartbeat"], session_timeout=options["udp-session-timeout"],
            repair_limit=options["repair-limit"], repair_rate=options["repair-rate"],
            max_sessions=options["udp-max-sessions"], max_line=conn["max_line"],
            flood_burst=conn["flood_burst"], flood_rate=conn["flood_rate"])
        broadcast = Broadcast(address, options["broadcast-port"], domain)
        top.udp = UDPFrontEnd(registry, reactor, broadcast, udp_limits, top.metrics,
                              History(store, registry, options["history-max"],
                                      options["history-on-join"]), authenticator=authenticator)
        top.udp.noisy = False
        UDPListenerService(options["port"], top.udp, interface=options["interface"],
                           reactor=reactor, startup=startup).setServiceParent(top)
    factory.noisy = False
    return top
