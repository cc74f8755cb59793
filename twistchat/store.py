"""
History persistence: every room event and private message, by target and sequence number.

test-case-name: tests.test_store

The registry numbers the events of each *target* (a casefolded room name, or
the :func:`dm_key` of a private conversation); the service hands each event to
:meth:`IHistoryStore.append` as a :class:`HistoryRecord`.  This module keeps
them and answers the questions IRCv3 ``draft/chathistory`` asks (LATEST,
BEFORE, AFTER, AROUND, BETWEEN, TARGETS) and the UDP side's gap repair asks
(a range of sequence numbers).  At start-up, :meth:`IHistoryStore.last_seqs`
tells the registry where every target's numbering stands, so numbers keep
rising across restarts (issue #7), even for targets whose history retention
has pruned away entirely.

Two providers of :class:`IHistoryStore`:

* :class:`SQLiteStore`, the default: one SQLite file in WAL mode.  ``append``
  only queues in memory (the chat hot path never waits on a disk); a
  ``LoopingCall`` writes the queue every ``flush_interval`` seconds, as one
  transaction, in a single writer thread that owns the only connection (reads
  run in that thread too, between writes, so they never see half a batch).
  Queries merge the queue into their answer, so a message just sent is in
  history before it reaches the disk.  What a clean :meth:`~SQLiteStore.stop`
  returns from is on disk; an unclean kill loses at most what was queued,
  about one ``flush_interval`` of events.
* :class:`MemoryStore`: the same answers from plain lists, nothing written
  (``--db=:memory:``; also a reference for the SQLite queries in the tests).

:func:`open_store` picks one from a ``--db`` value.

Failure rules (issue #7, "history degrades, chat does not"): a file that cannot
be used at start-up raises :class:`StoreError` with one sentence naming it; a
write that fails while running is logged once, its records stay queued (up to
``max_pending``, oldest dropped beyond, counted in ``dropped``) and are retried
at every flush; ``append`` never raises.

The seam to another backend (e.g. Redis Streams, one stream per target): the
interface speaks only in targets, sequence numbers, times in milliseconds and
msgids, never in SQL or IRC lines.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import Attribute, Interface, implementer

# dm_key and its kin are re-exported: callers imported them from here before
# twistchat.core.targets became their one definition (issue #11).
from twistchat.core.targets import DM_PREFIX, dm_key, dm_parties, is_dm_key  # noqa: F401

__all__ = [
    "HistoryRecord",
    "IHistoryStore",
    "MemoryStore",
    "SQLiteStore",
    "StoreError",
    "dm_key",
    "dm_parties",
    "is_dm_key",
    "open_store",
    "record_from_event",
]

# SQLite INTEGER is a signed 64-bit number; clamp what clients hand us (a UDP
# repair range, a limit) so a huge number is an empty answer, not an error.
_INT_MAX = 2**63 - 1
_INT_MIN = -(2**63) + 1

# Defaults, each overridable by a service flag.
DEFAULT_FLUSH_INTERVAL = 0.2  # seconds: the most an unclean kill can lose
DEFAULT_MAX_PER_TARGET = 100_000  # records kept per room / conversation
DEFAULT_PRUNE_INTERVAL = 60.0  # seconds between retention passes
DEFAULT_MAX_PENDING = 100_000  # records kept in memory while the disk fails
DEFAULT_BUSY_TIMEOUT = 1.0  # seconds SQLite waits on a lock held by another process

# The file's identity: PRAGMA application_id (any 32-bit number; "TwCh") and
# PRAGMA user_version, the schema version this code writes.
APPLICATION_ID = 0x54774368
SCHEMA_VERSION = 1

_NO_TAGS: Mapping[str, str] = MappingProxyType({})
_SEQ = attrgetter("seq")
_TIME = attrgetter("time_ms")


class StoreError(Exception):
    """
    The history store cannot be used; ``str()`` is one sentence naming the file.

    Raised at construction (corrupt, unwritable, foreign or newer file) and
    delivered as the failure of a query that the database could not answer.
    ``path`` is the file, ``reason`` the cause in a few words.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot use history database {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """
    One numbered event of a target's transcript, as the store keeps it.

    ``target`` is a casefolded room name ("#lobby") or a :func:`dm_key`;
    ``seq`` rises strictly per target; ``time_ms`` is server time in UTC
    milliseconds since the epoch; ``msgid`` is the IRCv3 msgid clients saw;
    ``command``, ``source`` (``nick!user@host``) and ``params`` are the IRC
    line as sent; ``tags`` holds only client-only tags to replay
    (``+draft/reply``...), never server tags, which are rebuilt on replay.

    ``params`` is normalised to a tuple and ``tags`` to a read-only mapping,
    so a record is a value that nobody can change after it was queued.
    """

    target: str
    seq: int
    time_ms: int
    msgid: str
    command: str
    source: str
    params: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=lambda: _NO_TAGS, hash=False)

    def __post_init__(self) -> None:
        if type(self.params) is not tuple:
            object.__setattr__(self, "params", tuple(self.params))
        tags = self.tags
        if not tags:
            if tags is not _NO_TAGS:
                object.__setattr__(self, "tags", _NO_TAGS)
        elif type(tags) is not MappingProxyType:
            object.__setattr__(self, "tags", MappingProxyType(dict(tags)))


def record_from_event(event: Any) -> HistoryRecord:
    """
    The record of a registry ``Event`` (``twistchat.events.Event``).

    Duck-typed on ``target``, ``seq``, ``time_ms``, ``msgid``, ``message``
    (``command``, ``source``, ``params``) and ``client_tags``, so this module
    does not import the registry's types.
    """
    message = event.message
    return HistoryRecord(
        event.target, event.seq, event.time_ms, event.msgid,
        message.command, message.source or "", message.params, event.client_tags,
    )


class IHistoryStore(Interface):
    """
    Where room events and private messages are kept, and the questions asked of them.

    Every query answers a ``Deferred`` of records in ascending ``seq`` order,
    including records appended but not yet written.  Sequence bounds are
    exclusive.  A ``limit`` of 0 or less is an empty answer.
    """

    dropped = Attribute("Number of records lost: queue bound hit while writes failed, "
                        "unstorable records, appends after stop().")

    def start() -> Deferred:
        """Start background work (flushing, pruning); fires at once."""

    def stop() -> Deferred:
        """Write everything queued, stop background work and close; idempotent."""

    def last_seqs() -> dict:
        """``{target: last seq}`` for every target ever recorded; synchronous."""

    def append(record: HistoryRecord) -> None:
        """Queue one record; never blocks, never raises."""

    def flush() -> Deferred:
        """Write everything queued now; fires True if it all reached storage."""

    def prune() -> Deferred:
        """Apply the retention limits now; fires with the number of records removed."""

    def latest(target: str, limit: int) -> Deferred:
        """The last ``limit`` records of ``target``."""

    def before(target: str, seq: int, limit: int) -> Deferred:
        """The last ``limit`` records with a sequence number below ``seq``."""

    def after(target: str, seq: int, limit: int) -> Deferred:
        """The first ``limit`` records with a sequence number above ``seq``."""

    def around(target: str, seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records around ``seq``, the one at ``seq`` included."""

    def between(target: str, low_seq: int, high_seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records strictly between two numbers, nearest the first."""

    def seq_for_msgid(target: str, msgid: str) -> Deferred:
        """The sequence number of the record with ``msgid``, or None."""

    def seq_for_time(target: str, time_ms: int, *, after: bool) -> Deferred:
        """First seq with time > ``time_ms`` (``after``) or last with time < it, or None."""

    def targets(*, since_ms=None, until_ms=None, limit, visible=None, dm_party=None) -> Deferred:
        """``[(target, latest time_ms)]`` with activity strictly inside the window."""


# ---------------------------------------------------------------------------
# Query semantics, shared by both stores and by the merge of the write queue.


def _clamp(n: int) -> int:
    """``n`` as an int inside SQLite's INTEGER range."""
    return max(_INT_MIN, min(_INT_MAX, int(n)))


@dataclass(frozen=True, slots=True)
class _Range:
    """
    A window of one target's sequence numbers.

    ``low`` < seq < ``high`` (None: unbounded); ``from_end`` picks the last
    ``limit`` of the window instead of the first.  The answer is ascending.
    """

    target: str
    low: int | None
    high: int | None
    limit: int
    from_end: bool

    @property
    def empty(self) -> bool:
        """True if no record can satisfy this window."""
        return (
            self.limit <= 0
            or (self.low is not None and self.high is not None and self.high - self.low < 2)
        )


def _select(records: list, window: _Range) -> list:
    """The records of ``window`` from ``records``, ascending and unique by seq."""
    if window.empty:
        return []
    lo = 0 if window.low is None else bisect_right(records, window.low, key=_SEQ)
    hi = len(records) if window.high is None else bisect_left(records, window.high, key=_SEQ)
    if hi <= lo:
        return []
    if window.from_end:
        return records[max(lo, hi - window.limit):hi]
    return records[lo:min(hi, lo + window.limit)]


def _around_windows(target: str, seq: int, limit: int) -> tuple[_Range, _Range]:
    """The two windows AROUND draws from: below ``seq``, and from ``seq`` up."""
    return (_Range(target, None, seq, limit, True), _Range(target, seq - 1, None, limit, False))


def _around(records: list, seq: int, limit: int) -> list:
    """
    Up to ``limit`` records around ``seq`` (the record at ``seq`` included).

    The chathistory draft leaves the split to the server.  As Ergo
    (irc/history/queries.go, GenericAround): (limit - 1) // 2 records before
    the pivot, the pivot and the rest after it.  Unlike Ergo, near either end
    of the transcript the other side fills up to ``limit``.
    """
    below, above = _around_windows("", seq, limit)
    lower = _select(records, below)
    upper = _select(records, above)
    n_before = min(len(lower), max((limit - 1) // 2, limit - len(upper)))
    n_after = min(len(upper), limit - n_before)
    return lower[len(lower) - n_before:] + upper[:n_after]


def _between_window(target: str, first: int, second: int, limit: int) -> _Range:
    """
    BETWEEN ``first`` and ``second``, exclusive, in either order.

    chathistory draft: "start from and exclude the first message selector,
    while finishing on and excluding the second - this may be forwards or
    backwards in time", so the ``limit`` records nearest ``first`` are chosen
    (as Ergo's MinMaxAsc); the answer is ascending either way.
    """
    if first <= second:
        return _Range(target, first, second, limit, False)
    return _Range(target, second, first, limit, True)


def _merge(stored: list, pending: list) -> list:
    """
    ``stored`` (ascending) and ``pending`` records as one ascending list, unique by seq.

    A sequence number already stored keeps its stored record, and among queued
    duplicates the first queued wins: the same rule as the INSERT OR IGNORE
    that writes them.
    """
    if not pending:
        return stored
    by_seq = {record.seq: record for record in stored}
    for record in pending:
        by_seq.setdefault(record.seq, record)
    return sorted(by_seq.values(), key=_SEQ)


def _time_pick(candidates: Iterable[tuple[int, int]], after: bool) -> int | None:
    """The seq of the earliest (``after``) or latest ``(time_ms, seq)`` candidate."""
    candidates = list(candidates)
    if not candidates:
        return None
    return (min if after else max)(candidates)[1]


def _target_window(since_ms: int | None, until_ms: int | None) -> tuple[int, int, bool]:
    """
    TARGETS' time window: ``(low, high, ascending)``, bounds exclusive.

    As Ergo (irc/history/queries.go, MinMaxAsc): the window runs from the
    first timestamp to the second, forwards or backwards; ``limit`` keeps the
    targets nearest the first.  Without the first bound, nearest the second.
    """
    if since_ms is not None and until_ms is not None:
        low, high = sorted((since_ms, until_ms))
        ascending = since_ms <= until_ms
    else:
        low, high = since_ms, until_ms
        ascending = since_ms is not None
    # An open side is one past SQLite's range, so every stored time is inside.
    low = _INT_MIN - 1 if low is None else _clamp(low)
    high = _INT_MAX + 1 if high is None else _clamp(high)
    return low, high, ascending


def _visible_filter(
    visible: Iterable[str] | None, dm_party: str | None
) -> Callable[[str], bool]:
    """
    Which targets an asker may list.

    ``visible`` None means every target (an operator's view).  Otherwise a
    target is listed if it is in ``visible``, or if it is a private
    conversation with ``dm_party`` (a casefolded nick) as one of the two.
    """
    if visible is None:
        return lambda target: True
    allowed = frozenset(visible)

    def visible_to_asker(target: str) -> bool:
        if target in allowed:
            return True
        if dm_party is None:
            return False
        parties = dm_parties(target)
        return parties is not None and dm_party in parties

    return visible_to_asker


def _order_targets(latest: Mapping[str, int], ascending: bool, limit: int) -> list:
    """``(target, time)`` pairs by time, the ``limit`` nearest the window's start, ascending."""
    if limit <= 0:
        return []
    ordered = sorted(latest.items(), key=lambda item: (item[1], item[0]))
    return ordered[:limit] if ascending else ordered[max(0, len(ordered) - limit):]


def _latest_in_window(records: Iterable[HistoryRecord], low: int, high: int) -> dict:
    """``{target: latest time}`` of ``records`` with low < time < high."""
    latest: dict = {}
    for record in records:
        if low < record.time_ms < high and record.time_ms > latest.get(record.target, low):
            latest[record.target] = record.time_ms
    return latest


def _daemon_thread(*args: Any, **kwargs: Any) -> threading.Thread:
    """A ``threading.Thread`` that does not keep the process alive."""
    return threading.Thread(*args, daemon=True, **kwargs)


def _observe(d: Deferred) -> Deferred:
    """A new Deferred with the result of ``d``, leaving ``d``'s own result untouched."""
    out: Deferred = Deferred()

    def relay(result):
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)
        return result

    d.addBoth(relay)
    return out


# ---------------------------------------------------------------------------
# SQLite.

# WITHOUT ROWID: the table is clustered on (target, seq), so "the last N of a
# target" is one contiguous read; secondary indexes carry the primary key, so
# (target, time_ms) and (target, msgid) answer with seq without a table lookup.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS history (
        target  TEXT    NOT NULL,
        seq     INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        msgid   TEXT    NOT NULL,
        command TEXT    NOT NULL,
        source  TEXT    NOT NULL,
        params  TEXT    NOT NULL,  -- JSON array of strings
        tags    TEXT,              -- JSON object of client-only tags; NULL if none
        PRIMARY KEY (target, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS history_time ON history (target, time_ms)",
    "CREATE INDEX IF NOT EXISTS history_msgid ON history (target, msgid)",
    # The last seq and time of every target ever written.  Kept apart from
    # history so that pruning never lowers a target's last seq: numbers must
    # not be reused after a restart even when all of a room's history aged out.
    """CREATE TABLE IF NOT EXISTS targets (
        target       TEXT    PRIMARY KEY,
        last_seq     INTEGER NOT NULL,
        last_time_ms INTEGER NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

_COLUMNS = "target, seq, time_ms, msgid, command, source, params, tags"
_INSERT = f"INSERT OR IGNORE INTO history ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT_TARGET = (
    "INSERT INTO targets (target, last_seq, last_time_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (target) DO UPDATE SET "
    "last_seq = max(last_seq, excluded.last_seq), "
    "last_time_ms = max(last_time_ms, excluded.last_time_ms)"
)

# Errors that belong to one record (a value SQLite or JSON cannot hold, see
# _row), not to the database: such a record is skipped so it cannot block the
# rest of its batch forever.
_RECORD_ERRORS = (ValueError, TypeError, OverflowError)

# Rows deleted per transaction when pruning, so that writes and queries
# interleave with a large first prune instead of waiting for all of it.
_PRUNE_CHUNK = 10_000


def _dumps(value: Any) -> str:
    """Compact JSON, UTF-8 text kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _row(record: HistoryRecord) -> tuple:
    """
    The history row of ``record``.

    TypeError or OverflowError if a field is of a type or size SQLite cannot
    hold as this schema says (a caller's bug; the record is then skipped).
    """
    target, seq, time_ms = record.target, record.seq, record.time_ms
    if type(seq) is not int or type(time_ms) is not int:
        raise TypeError("seq and time_ms must be int")
    if not (_INT_MIN <= seq <= _INT_MAX and _INT_MIN <= time_ms <= _INT_MAX):
        raise OverflowError("seq or time_ms beyond 64 bits")
    texts = (target, record.msgid, record.command, record.source)
    if any(type(text) is not str for text in texts):
        raise TypeError("target, msgid, command and source must be str")
    return (
        target, seq, time_ms, record.msgid, record.command, record.source,
        _dumps(record.params), _dumps(dict(record.tags)) if record.tags else None,
    )


def _record(row: tuple) -> HistoryRecord:
    """The record of a history row."""
    target, seq, time_ms, msgid, command, source, params, tags = row
    return HistoryRecord(target, seq, time_ms, msgid, command, source,
                         tuple(json.loads(params)), json.loads(tags) if tags else _NO_TAGS)


def _sql_range(conn: sqlite3.Connection, window: _Range) -> list:
    """The stored records of ``window`` (writer thread)."""
    if window.empty:
        return []
    where, args = "target = ?", [window.target]
    if window.low is not None:
        where += " AND seq > ?"
        args.append(_clamp(window.low))
    if window.high is not None:
        where += " AND seq < ?"
        args.append(_clamp(window.high))
    order = "DESC" if window.from_end else "ASC"
    args.append(_clamp(window.limit))
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM history WHERE {where} ORDER BY seq {order} LIMIT ?", args
    ).fetchall()
    if window.from_end:
        rows.reverse()
    return [_record(row) for row in rows]


def _sql_around(conn: sqlite3.Connection, target: str, seq: int, limit: int) -> list:
    """Every stored record AROUND may pick, ascending (writer thread)."""
    below, above = _around_windows(target, seq, limit)
    return _sql_range(conn, below) + _sql_range(conn, above)


def _sql_msgid(conn: sqlite3.Connection, target: str, msgid: str) -> int | None:
    """The stored seq of ``msgid`` in ``target`` (writer thread)."""
    row = conn.execute(
        "SELECT seq FROM history WHERE target = ? AND msgid = ? LIMIT 1", (target, msgid)
    ).fetchone()
    return row[0] if row else None


def _sql_time(conn: sqlite3.Connection, target: str, time_ms: int, after: bool) -> tuple | None:
    """``(time_ms, seq)`` of the stored record seq_for_time picks (writer thread)."""
    if after:
        sql = ("SELECT time_ms, seq FROM history WHERE target = ? AND time_ms > ? "
               "ORDER BY time_ms ASC, seq ASC LIMIT 1")
    else:
        sql = ("SELECT time_ms, seq FROM history WHERE target = ? AND time_ms < ? "
               "ORDER BY time_ms DESC, seq DESC LIMIT 1")
    return conn.execute(sql, (target, _clamp(time_ms))).fetchone()


def _sql_targets(conn: sqlite3.Connection, low: int, high: int,
                 visible: Callable[[str], bool]) -> dict:
    """``{target: latest stored time in (low, high)}`` for visible targets (writer thread)."""
    low_arg, high_arg = _clamp(low), _clamp(high)
    # The targets table says which targets were active after ``low`` at all;
    # for each, the (target, time_ms) index finds the latest time in the window.
    candidates = [
        target for (target,) in conn.execute(
            "SELECT target FROM targets WHERE last_time_ms > ?", (low_arg,))
        if visible(target)
    ]
    latest = {}
    for target in candidates:
        (time_ms,) = conn.execute(
            "SELECT max(time_ms) FROM history WHERE target = ? AND time_ms > ? AND time_ms < ?",
            (target, low_arg, high_arg),
        ).fetchone()
        if time_ms is not None and low < time_ms < high:
            latest[target] = time_ms
    return latest


@implementer(IHistoryStore)
class SQLiteStore:
    """
    History in one SQLite file (WAL mode), written in batches by one thread.

    ``path`` is opened (created if missing) and checked at construction:
    :class:`StoreError` if it is corrupt, not a database, another program's
    database, written by a newer twistchat, or cannot be written.

    ``reactor`` runs the writer thread's results back into the reactor thread
    (default: the global reactor); ``clock`` drives the flush and prune loops
    and says what "now" is for ``max_age_days`` (default: ``reactor``).
    Retention: at most ``max_per_target`` records per target and none older
    than ``max_age_days`` (None: no limit), applied every ``prune_interval``
    seconds.  ``max_pending`` bounds the queue while writes fail;
    ``busy_timeout`` is how long a write waits for a lock another process holds.
    """

    _log = Logger()

    def __init__(
        self,
        path: str,
        *,
        reactor: Any = None,
        clock: Any = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_per_target: int | None = DEFAULT_MAX_PER_TARGET,
        max_age_days: float | None = None,
        prune_interval: float = DEFAULT_PRUNE_INTERVAL,
        max_pending: int = DEFAULT_MAX_PENDING,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.path = path
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self.flush_interval = flush_interval
        self.max_per_target = max_per_target
        self.max_age_days = max_age_days
        self.prune_interval = prune_interval
        self.max_pending = max(1, max_pending)
        self._busy_timeout = busy_timeout
        #: Records lost: see :class:`IHistoryStore`.
        self.dropped = 0
        #: A twistchat.metrics.Metrics to tell about writes (service.py sets it), or None.
        self.metrics = None
        self._pending: deque = deque()  # queued, oldest first
        self._inflight: list = []  # the batch the writer thread is writing
        self._write_lock = DeferredLock()
        self._failing = False  # a write failed and has not succeeded since
        self._warned_drops = False
        self._warned_bad_append = False
        self._state = "new"  # new -> running -> stopping -> closed
        self._stopped: Deferred | None = None
        self._shutdown_trigger = None
        self._flush_loop = LoopingCall(self._tick)
        self._flush_loop.clock = self._clock
        self._prune_loop = LoopingCall(self._prune_tick)
        self._prune_loop.clock = self._clock
        # One thread owns the connection: every write and read runs there, in
        # submission order (ThreadPool is FIFO), one at a time.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"twistchat-store:{path}")
        # A daemon thread: a process that exits without stop() (an unclean
        # exit: it loses the queue, as a kill would) must not hang on it.
        self._pool.threadFactory = _daemon_thread
        self._conn = self._open()
        self._last_seqs = self._load_last_seqs()

    # -- opening -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A new connection to ``path``; a subclass may override it to tune the connection."""
        # isolation_level=None: no implicit transactions; each batch is an
        # explicit BEGIN IMMEDIATE ... COMMIT.  check_same_thread=False: the
        # connection is made here, then used only by the writer thread.
        return sqlite3.connect(self.path, timeout=self._busy_timeout,
                               isolation_level=None, check_same_thread=False)

    def _open(self) -> sqlite3.Connection:
        """Open, check and (if new) initialise the database; StoreError if unusable."""
        if self.path != ":memory:" and os.path.isdir(self.path):
            raise StoreError(self.path, "it is a directory, not a file")
        conn = None
        try:
            conn = self._connect()
            self._check_identity(conn)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal" and self.path != ":memory:":
                # Some file systems (network mounts) have no shared memory for
                # WAL; SQLite then keeps its rollback journal, which is safe too.
                self._log.warn("History database {path} runs in {mode} journal mode, not WAL",
                               path=self.path, mode=mode)
            # WAL + synchronous=NORMAL: a commit survives the process being
            # killed; only a power loss may undo the last commits.  FULL would
            # fsync every batch.  https://www.sqlite.org/pragma.html#pragma_synchronous
            conn.execute("PRAGMA synchronous=NORMAL")
            # Write something at once, so that a read-only file or directory
            # fails here, with a clear sentence, instead of at the first flush.
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_ms', ?)",
                         (str(int(self._clock.seconds() * 1000)),))
            conn.execute("COMMIT")
        except StoreError:
            self._close_quietly(conn)
            raise
        except sqlite3.Error as exc:
            self._close_quietly(conn)
            raise StoreError(self.path, _explain(exc, self.path)) from None
        return conn

    def _check_identity(self, conn: sqlite3.Connection) -> None:
        """StoreError unless ``conn`` holds a twistchat database this code can read, or nothing."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id != 0 or tables:
                raise StoreError(self.path, "it is an SQLite database of another program, "
                                            "not a twistchat history")
        elif version > SCHEMA_VERSION:
            raise StoreError(self.path, f"it was written by a newer twistchat "
                                        f"(schema {version}, this one reads {SCHEMA_VERSION})")

    @staticmethod
    def _close_quietly(conn: sqlite3.Connection | None) -> None:
        """Close ``conn`` if open, ignoring errors (it is being abandoned)."""
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _load_last_seqs(self) -> dict:
        """``{target: last seq}`` from the targets table (at construction)."""
        try:
            return dict(self._conn.execute("SELECT target, last_seq FROM targets"))
        except sqlite3.Error as exc:
            self._close_quietly(self._conn)
            raise StoreError(self.path, _explain(exc, self.path)) from None

    # -- life cycle --------------------------------------------------------

    def start(self) -> Deferred:
        """Start the writer thread and the flush and prune loops; fires at once."""
        if self._state != "new":
            return succeed(None)
        self._state = "running"
        self._start_pool()
        self._flush_loop.start(self.flush_interval, now=False)
        if self.max_per_target is not None or self.max_age_days is not None:
            self._prune_loop.start(self.prune_interval, now=False)
        # If the reactor stops without the service stopping us first, still
        # write the queue.  "before": only that phase waits for a Deferred.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "before", "shutdown", self.stop)
        return succeed(None)

    def stop(self) -> Deferred:
        """
        Write everything queued, then close the file and end the writer thread.

        Fires when done (never with a failure); records that could not be
        written are logged as lost.  Later calls fire when the first is done.
        """
        if self._stopped is None:
            self._stopped = Deferred.fromCoroutine(self._stop())
        return _observe(self._stopped)

    async def _stop(self) -> None:
        """The body of :meth:`stop`."""
        self._state = "stopping"
        for loop in (self._flush_loop, self._prune_loop):
            if loop.running:
                loop.stop()
        if self._shutdown_trigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except Exception:
                pass  # already fired: this stop() is that trigger
            self._shutdown_trigger = None
        # Appends made while a flush runs are written by the next one.
        while self._pending:
            if not await self.flush():
                break
        # A final flush only fails while the database is failing: log it as lost
        # (the service is stopping, there is no later flush to retry in).
        if self._pending:
            lost = len(self._pending)
            self.dropped += lost
            self._pending.clear()
            self._log.error("History database {path}: {lost} queued records could not be "
                            "written before stopping and are lost", path=self.path, lost=lost)
        try:
            await self._run(self._close_connection)
        except Exception:
            self._log.failure("History database {path}: closing failed", path=self.path)
        self._state = "closed"
        if self._pool.started:
            self._pool.stop()

    def _start_pool(self) -> None:
        """Start the writer thread if it is not running."""
        if not self._pool.started:
            self._pool.start()

    def _run(self, f: Callable, *args: Any) -> Deferred:
        """Run ``f(*args)`` in the writer thread."""
        self._start_pool()
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def _close_connection(self) -> None:
        """Close the connection (writer thread); SQLite checkpoints the WAL into the file."""
        try:
            self._conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        self._conn.close()

    # -- writing -----------------------------------------------------------

    def last_seqs(self) -> dict:
        """
        ``{target: last seq}`` of every target ever recorded, queued records included.

        Synchronous, for the registry at start-up.  Pruning never lowers it.
        """
        return dict(self._last_seqs)

    @property
    def queued(self) -> int:
        """Records appended but not yet known to be written."""
        return len(self._pending) + len(self._inflight)

    def append(self, record: HistoryRecord) -> None:
        """
        Queue ``record`` for the next flush; never blocks, never raises.

        After :meth:`stop` has closed the store, the record is counted in
        ``dropped`` instead.
        """
        try:
            if self._state == "closed":
                self.dropped += 1
                return
            target, seq = record.target, record.seq
            if seq > self._last_seqs.get(target, seq - 1):
                self._last_seqs[target] = seq
            self._pending.append(record)
            if len(self._pending) > self.max_pending:
                self._trim()
        except Exception:
            self.dropped += 1
            if not self._warned_bad_append:
                self._warned_bad_append = True
                self._log.failure("History database {path}: a record could not be queued "
                                  "(logged once)", path=self.path)

    def _trim(self) -> None:
        """Drop the oldest queued records beyond ``max_pending``, counting them."""
        excess = len(self._pending) - self.max_pending
        if excess <= 0:
            return
        for _ in range(excess):
            self._pending.popleft()
        self.dropped += excess
        if not self._warned_drops:
            # Once until a write succeeds again: the count is in the
            # "writing works again" event and in ``dropped``.
            self._warned_drops = True
            self._log.warn(
                "History database {path}: queue full ({max_pending} records); "
                "dropping the oldest queued records until writing works again",
                path=self.path, max_pending=self.max_pending)

    def flush(self) -> Deferred:
        """
        Write everything queued now, in one transaction.

        Fires True once every record queued before the call is stored, False
        if the write failed (the records stay queued for the next flush).
        Never fails.
        """
        return self._write_lock.run(lambda: Deferred.fromCoroutine(self._write_pending()))

    def _tick(self) -> Deferred:
        """The flush loop's call: a flush whose result the loop ignores."""
        return self.flush().addCallback(lambda _: None)

    async def _write_pending(self) -> bool:
        """Hand the queue to the writer thread as one batch; see :meth:`flush`."""
        if not self._pending:
            return True
        if self._state == "closed":
            return False
        batch = list(self._pending)
        self._pending.clear()
        self._inflight = batch
        try:
            rejected = await self._run(self._write_batch, batch)
        except Exception as exc:
            self._inflight = []
            # Back to the front of the queue, ahead of what came in meanwhile.
            self._pending.extendleft(reversed(batch))
            if not self._failing:
                self._failing = True
                # One event per outage, not one per retry: the disk stays full
                # for a while and the flush loop retries every flush_interval.
                if isinstance(exc, sqlite3.Error):
                    self._log.error(
                        "History database {path}: writing failed ({error}); keeping up to "
                        "{max_pending} records in memory and retrying; chat goes on",
                        path=self.path, error=_explain(exc, self.path),
                        max_pending=self.max_pending)
                else:
                    self._log.failure(
                        "History database {path}: writing failed; keeping up to "
                        "{max_pending} records in memory and retrying; chat goes on",
                        Failure(exc), path=self.path, max_pending=self.max_pending)
            self._trim()
            return False
        self._inflight = []
        metrics = self.metrics
        if metrics is not None:
            # How far behind the disk is: the age of the oldest line this batch wrote.
            metrics.history_written += len(batch) - rejected
            metrics.history_write_lag = max(0.0, self._clock.seconds() - batch[0].time_ms / 1000)
        if rejected:
            self.dropped += rejected
            self._log.warn("History database {path}: {rejected} records could not be stored "
                           "and were skipped", path=self.path, rejected=rejected)
        self._warned_drops = False
        if self._failing:
            self._failing = False
            self._log.info("History database {path}: writing works again "
                           "({dropped} records lost so far)", path=self.path, dropped=self.dropped)
        return True

    def _write_batch(self, batch: list) -> int:
        """
        Insert ``batch`` and move the targets' last seqs, in one transaction (writer thread).

        Returns how many records were skipped as unstorable.  Database errors
        (locked, full, I/O) roll back and raise: the batch is retried later.
        """
        conn = self._conn
        rows = []
        last: dict = {}  # target -> (last seq, last time) of this batch
        for record in batch:
            try:
                row = _row(record)
            except _RECORD_ERRORS:
                continue
            rows.append(row)
            target, seq, time_ms = row[0], row[1], row[2]
            known = last.get(target)
            if known is None or seq > known[0] or time_ms > known[1]:
                last[target] = (seq, time_ms) if known is None else (
                    max(seq, known[0]), max(time_ms, known[1]))
        stored = len(rows)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
            except _RECORD_ERRORS:
                # A text SQLite cannot encode (a lone surrogate): insert one by
                # one, skipping the bad ones (rows already in are ignored).
                for row in rows:
                    try:
                        conn.execute(_INSERT, row)
                    except _RECORD_ERRORS:
                        stored -= 1
            conn.executemany(_UPSERT_TARGET, [
                (target, seq, time_ms) for target, (seq, time_ms) in last.items()])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return len(batch) - stored

    # -- pruning -----------------------------------------------------------

    def prune(self) -> Deferred:
        """
        Apply the retention limits to what is stored; fires with the count removed.

        Runs in the writer thread, one target (and at most a few thousand rows)
        per job, so flushes and queries interleave with a large prune.
        """
        return Deferred.fromCoroutine(self._prune())

    def _prune_tick(self) -> Deferred:
        """The prune loop's call: errors are logged and the loop goes on."""
        d = self.prune()
        d.addErrback(lambda f: self._log.failure(
            "History database {path}: pruning failed", f, path=self.path))
        d.addCallback(lambda _: None)
        return d

    async def _prune(self) -> int:
        """The body of :meth:`prune`."""
        keep = self.max_per_target
        cutoff_ms = None
        if self.max_age_days is not None:
            cutoff_ms = int((self._clock.seconds() - self.max_age_days * 86400) * 1000)
        if keep is None and cutoff_ms is None:
            return 0
        removed = 0
        for target in list(self._last_seqs):
            more = True
            while more:
                if self._state in ("stopping", "closed"):
                    return removed
                count, more = await self._run(self._prune_target, target, keep, cutoff_ms)
                removed += count
        if removed:
            self._log.debug("History database {path}: pruned {removed} records",
                            path=self.path, removed=removed)
        return removed

    def _prune_target(self, target: str, keep: int | None,
                      cutoff_ms: int | None) -> tuple[int, bool]:
        """
        Delete the oldest records of ``target`` beyond the limits, one chunk (writer thread).

        Returns ``(removed, more)``.  Records go oldest first, by seq, so what
        remains is always an unbroken tail of the transcript.
        """
        conn = self._conn
        threshold = None  # delete seq <= threshold
        if cutoff_ms is not None:
            row = conn.execute(
                "SELECT seq FROM history WHERE target = ? AND time_ms < ? "
                "ORDER BY time_ms DESC, seq DESC LIMIT 1", (target, _clamp(cutoff_ms))).fetchone()
            if row:
                threshold = row[0]
        lowest, highest = conn.execute(
            "SELECT min(seq), max(seq) FROM history WHERE target = ?", (target,)).fetchone()
        if lowest is None:
            return 0, False
        if keep is not None and highest - lowest + 1 > keep:
            # Only when the seq span exceeds the limit can the count; then the
            # OFFSET walk finds the newest seq to delete.
            row = conn.execute(
                "SELECT seq FROM history WHERE target = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (target, max(0, keep))).fetchone()
            if row and (threshold is None or row[0] > threshold):
                threshold = row[0]
        if threshold is None or threshold < lowest:
            return 0, False
        upto = min(threshold, lowest + _PRUNE_CHUNK - 1)
        try:
            conn.execute("BEGIN IMMEDIATE")
            removed = conn.execute("DELETE FROM history WHERE target = ? AND seq <= ?",
                                   (target, upto)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return removed, upto < threshold

    # -- queries -----------------------------------------------------------

    def _queued_for(self, target: str) -> list:
        """Records of ``target`` not yet known to be written (reactor thread)."""
        return [r for r in chain(self._inflight, self._pending) if r.target == target]

    def _read(self, f: Callable, *args: Any) -> Deferred:
        """Run ``f(connection, *args)`` in the writer thread; database errors become StoreError."""
        if self._state == "closed":
            return fail(StoreError(self.path, "the store is closed"))
        d = self._run(f, self._conn, *args)

        def explain(failure: Failure):
            failure.trap(sqlite3.Error)
            raise StoreError(self.path, _explain(failure.value, self.path))

        return d.addErrback(explain)

    def _range(self, window: _Range) -> Deferred:
        """The records of ``window``, stored and queued."""
        if window.empty:
            return succeed([])
        queued = self._queued_for(window.target)
        d = self._read(_sql_range, window)
        return d.addCallback(lambda stored: _select(_merge(stored, queued), window))

    def latest(self, target: str, limit: int) -> Deferred:
        """The last ``limit`` records of ``target`` (CHATHISTORY LATEST *, history on join)."""
        return self._range(_Range(target, None, None, _clamp(limit), True))

    def before(self, target: str, seq: int, limit: int) -> Deferred:
        """The last ``limit`` records of ``target`` with seq < ``seq`` (CHATHISTORY BEFORE)."""
        return self._range(_Range(target, None, _clamp(seq), _clamp(limit), True))

    def after(self, target: str, seq: int, limit: int) -> Deferred:
        """The first ``limit`` records with seq > ``seq`` (CHATHISTORY AFTER, UDP repair)."""
        return self._range(_Range(target, _clamp(seq), None, _clamp(limit), False))

    def between(self, target: str, low_seq: int, high_seq: int, limit: int) -> Deferred:
        """
        Up to ``limit`` records strictly between two seqs (CHATHISTORY BETWEEN).

        The first bound may be the higher: then the ``limit`` records nearest
        it are chosen.  Ascending either way.
        """
        window = _between_window(target, _clamp(low_seq), _clamp(high_seq), _clamp(limit))
        return self._range(window)

    def around(self, target: str, seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records around ``seq``, that one included (CHATHISTORY AROUND)."""
        seq, limit = _clamp(seq), _clamp(limit)
        if limit <= 0:
            return succeed([])
        queued = self._queued_for(target)
        d = self._read(_sql_around, target, seq, limit)
        return d.addCallback(lambda stored: _around(_merge(stored, queued), seq, limit))

    def seq_for_msgid(self, target: str, msgid: str) -> Deferred:
        """The seq of the record of ``target`` with ``msgid``, or None."""
        for record in self._queued_for(target):
            if record.msgid == msgid:
                return succeed(record.seq)
        return self._read(_sql_msgid, target, msgid)

    def seq_for_time(self, target: str, time_ms: int, *, after: bool) -> Deferred:
        """
        The seq of the first record with time > ``time_ms`` (``after``), else of the last before it.

        "Before" is time < ``time_ms``; None if there is none.  Ties on time
        go to the lower seq (``after``) or the higher one.
        """
        time_ms = _clamp(time_ms)
        if after:
            queued = [(r.time_ms, r.seq) for r in self._queued_for(target) if r.time_ms > time_ms]
        else:
            queued = [(r.time_ms, r.seq) for r in self._queued_for(target) if r.time_ms < time_ms]
        d = self._read(_sql_time, target, time_ms, after)
        return d.addCallback(lambda stored: _time_pick(
            queued + ([tuple(stored)] if stored else []), after))

    def targets(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int,
        visible: Iterable[str] | None = None,
        dm_party: str | None = None,
    ) -> Deferred:
        """
        ``[(target, latest time_ms)]`` of targets active strictly between two times.

        For CHATHISTORY TARGETS.  The time is each target's latest inside
        the window; pairs come ascending by it.  ``since_ms`` may be the later
        bound: the ``limit`` targets nearest ``since_ms`` are kept either way
        (None leaves that side open).  Only targets in ``visible`` and private
        conversations of ``dm_party`` are listed (``visible`` None: all).
        """
        low, high, ascending = _target_window(since_ms, until_ms)
        limit = _clamp(limit)
        if limit <= 0:
            return succeed([])
        allowed = _visible_filter(visible, dm_party)
        queued = {
            target: time_ms
            for target, time_ms in _latest_in_window(
                chain(self._inflight, self._pending), low, high).items()
            if allowed(target)
        }
        d = self._read(_sql_targets, low, high, allowed)

        def merge(stored: dict) -> list:
            for target, time_ms in queued.items():
                if time_ms > stored.get(target, low):
                    stored[target] = time_ms
            return _order_targets(stored, ascending, limit)

        return d.addCallback(merge)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any (SQLite ends some on error by itself)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _explain(exc: BaseException, path: str) -> str:
    """A few words for an sqlite3 error about ``path``, to end a StoreError sentence."""
    text = str(exc)
    if "unable to open database file" in text:
        if os.path.exists(path):
            # SQLite also creates "-wal" and "-shm" files beside the database.
            return "cannot open it for writing (the file or its directory is read-only)"
        return "cannot create the file (does its directory exist, and may this user write there?)"
    known = {
        "file is not a database":
            "the file is not an SQLite database (corrupt, or another kind of file)",
        "attempt to write a readonly database": "the file or its directory is read-only",
        "database is locked": "the database is locked by another process",
        "database or disk is full": "the disk is full",
        "database disk image is malformed": "the file is corrupt",
        "disk I/O error": "disk I/O error",
    }
    for key, reason in known.items():
        if key in text:
            return reason
    return text or type(exc).__name__


# ---------------------------------------------------------------------------
# Memory.


@implementer(IHistoryStore)
class MemoryStore:
    """
    History in memory only: the same answers as :class:`SQLiteStore`, lost at exit.

    For ``--db=:memory:`` (no file, no thread) and as the tests' reference.
    Each target's records are one list sorted by seq; times are assumed to
    rise with seq, as the registry stamps them.  Retention as in SQLiteStore;
    the count limit is applied as records arrive (with a little slack, so
    trimming is amortised), the age limit every ``prune_interval`` seconds.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        clock: Any = None,
        max_per_target: int | None = DEFAULT_MAX_PER_TARGET,
        max_age_days: float | None = None,
        prune_interval: float = DEFAULT_PRUNE_INTERVAL,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self._clock = clock
        self.max_per_target = max_per_target
        self.max_age_days = max_age_days
        self.prune_interval = prune_interval
        #: Records lost: appends after stop() (nothing else loses records here).
        self.dropped = 0
        self._records: dict = {}
        self._last_seqs: dict = {}
        self._closed = False
        self._prune_loop = LoopingCall(self.prune)
        self._prune_loop.clock = clock

    def start(self) -> Deferred:
        """Start the age-pruning loop (if an age limit is set); fires at once."""
        if self.max_age_days is not None and not self._prune_loop.running and not self._closed:
            self._prune_loop.start(self.prune_interval, now=False)
        return succeed(None)

    def stop(self) -> Deferred:
        """Stop the pruning loop; the records stay readable, appends are dropped."""
        if self._prune_loop.running:
            self._prune_loop.stop()
        self._closed = True
        return succeed(None)

    def last_seqs(self) -> dict:
        """``{target: last seq}`` of every target appended since construction."""
        return dict(self._last_seqs)

    def append(self, record: HistoryRecord) -> None:
        """Keep ``record``; never raises.  A seq already held is ignored (first wins)."""
        try:
            if self._closed:
                self.dropped += 1
                return
            target, seq = record.target, record.seq
            records = self._records.get(target)
            if records is None:
                records = self._records[target] = []
            if not records or records[-1].seq < seq:
                records.append(record)
            else:
                at = bisect_left(records, seq, key=_SEQ)
                if at < len(records) and records[at].seq == seq:
                    return
                records.insert(at, record)
            if seq > self._last_seqs.get(target, seq - 1):
                self._last_seqs[target] = seq
            keep = self.max_per_target
            if keep is not None and len(records) > keep + max(1, keep // 8):
                del records[:len(records) - keep]
        except Exception:
            self.dropped += 1

    def flush(self) -> Deferred:
        """Nothing to write; fires True."""
        return succeed(True)

    def prune(self) -> Deferred:
        """Apply both retention limits now; fires with the number of records removed."""
        removed = 0
        cutoff_ms = None
        if self.max_age_days is not None:
            cutoff_ms = int((self._clock.seconds() - self.max_age_days * 86400) * 1000)
        for target, records in list(self._records.items()):
            drop = 0
            if cutoff_ms is not None:
                drop = bisect_left(records, cutoff_ms, key=_TIME)
            if self.max_per_target is not None:
                drop = max(drop, len(records) - self.max_per_target)
            if drop > 0:
                del records[:drop]
                removed += drop
            if not records:
                del self._records[target]
        return succeed(removed)

    def _window(self, window: _Range) -> Deferred:
        """The records of ``window``."""
        return succeed(_select(self._records.get(window.target, []), window))

    def latest(self, target: str, limit: int) -> Deferred:
        """The last ``limit`` records of ``target``."""
        return self._window(_Range(target, None, None, limit, True))

    def before(self, target: str, seq: int, limit: int) -> Deferred:
        """The last ``limit`` records of ``target`` with seq < ``seq``."""
        return self._window(_Range(target, None, seq, limit, True))

    def after(self, target: str, seq: int, limit: int) -> Deferred:
        """The first ``limit`` records of ``target`` with seq > ``seq``."""
        return self._window(_Range(target, seq, None, limit, False))

    def between(self, target: str, low_seq: int, high_seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records strictly between two seqs, nearest the first."""
        return self._window(_between_window(target, low_seq, high_seq, limit))

    def around(self, target: str, seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records around ``seq``, that one included."""
        if limit <= 0:
            return succeed([])
        return succeed(_around(self._records.get(target, []), seq, limit))

    def seq_for_msgid(self, target: str, msgid: str) -> Deferred:
        """The seq of the record of ``target`` with ``msgid``, or None (a linear search)."""
        for record in reversed(self._records.get(target, [])):
            if record.msgid == msgid:
                return succeed(record.seq)
        return succeed(None)

    def seq_for_time(self, target: str, time_ms: int, *, after: bool) -> Deferred:
        """First seq with time > ``time_ms`` (``after``), else last with time < it; or None."""
        records = self._records.get(target, [])
        if after:
            at = bisect_right(records, time_ms, key=_TIME)
            return succeed(records[at].seq if at < len(records) else None)
        at = bisect_left(records, time_ms, key=_TIME)
        return succeed(records[at - 1].seq if at > 0 else None)

    def targets(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int,
        visible: Iterable[str] | None = None,
        dm_party: str | None = None,
    ) -> Deferred:
        """``[(target, latest time_ms)]`` active strictly inside the window; see SQLiteStore."""
        low, high, ascending = _target_window(since_ms, until_ms)
        allowed = _visible_filter(visible, dm_party)
        latest = {}
        for target, records in self._records.items():
            if not allowed(target):
                continue
            at = bisect_left(records, high, key=_TIME)
            if at > 0 and records[at - 1].time_ms > low:
                latest[target] = records[at - 1].time_ms
        return succeed(_order_targets(latest, ascending, limit))


def open_store(
    path: str,
    *,
    reactor: Any = None,
    clock: Any = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    max_per_target: int | None = DEFAULT_MAX_PER_TARGET,
    max_age_days: float | None = None,
    prune_interval: float = DEFAULT_PRUNE_INTERVAL,
) -> IHistoryStore:
    """
    The store for a ``--db`` value: ``":memory:"`` keeps nothing on disk.

    Raises :class:`StoreError` (one sentence naming the file) if the file
    cannot be used.
    """
    if path == ":memory:":
        return MemoryStore(clock=clock if clock is not None else reactor,
                           max_per_target=max_per_target, max_age_days=max_age_days,
                           prune_interval=prune_interval)
    return SQLiteStore(path, reactor=reactor, clock=clock, flush_interval=flush_interval,
                       max_per_target=max_per_target, max_age_days=max_age_days,
                       prune_interval=prune_interval)
