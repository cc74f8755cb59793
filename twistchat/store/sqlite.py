"""
History in one SQLite file: the queue, the writer thread, retention, and the reads.

test-case-name: tests.test_store

``append`` only queues in memory (the chat hot path never waits on a disk); a
``LoopingCall`` writes the queue every ``flush_interval`` seconds, as one
transaction, in a single writer thread that owns the only connection (reads
run in that thread too, between writes, so they never see half a batch).
Queries merge the queue into their answer (:mod:`twistchat.store.windows`), so
a message just sent is in history before it reaches the disk.  What a clean
:meth:`~SQLiteStore.stop` returns from is on disk; an unclean kill loses at
most what was queued, about one ``flush_interval`` of events.

A write that fails while running (locked, full, I/O error) is logged once per
outage; its records stay queued, up to ``max_pending`` (oldest dropped beyond,
counted in ``dropped``), and are retried at every flush.  What the file holds
and every SQL statement are :mod:`twistchat.store.database`'s.

Accounts, registered rooms and read markers (:class:`IAccountStore`, issue
#14) live in the same file: read whole at construction, each change queued
(the latest per key) and written in the same transaction as the history
batch of the next flush, under the same failure rules.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from twistchat.store import database, windows
from twistchat.store.accounts import AccountSaves, AccountState, IAccountStore, StateChanges
from twistchat.store.interface import (
    DEFAULT_MAX_PER_TARGET,
    DEFAULT_PRUNE_INTERVAL,
    IHistoryStore,
    StoreError,
)
from twistchat.store.records import HistoryRecord
from twistchat.store.windows import Range, clamp

__all__ = ["DEFAULT_BUSY_TIMEOUT", "DEFAULT_FLUSH_INTERVAL", "DEFAULT_MAX_PENDING", "SQLiteStore"]

# Defaults, each overridable by a service flag.
DEFAULT_FLUSH_INTERVAL = 0.2  # seconds: the most an unclean kill can lose
DEFAULT_MAX_PENDING = 100_000  # records kept in memory while the disk fails
DEFAULT_BUSY_TIMEOUT = 1.0  # seconds SQLite waits on a lock held by another process


class _DaemonThread(threading.Thread):
    """A ``threading.Thread`` that does not keep the process alive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


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


@implementer(IHistoryStore, IAccountStore)
class SQLiteStore(AccountSaves):
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
    ``sync`` is ``"full"`` (each batch is fsynced: a power loss loses at most
    the batch not yet written) or ``"normal"`` (no fsync: a killed process
    loses nothing written, a power loss may lose the last seconds).
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
        sync: str = "full",
        stop_on_shutdown: bool = True,
    ) -> None:
        if sync not in database.SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(database.SYNC_MODES)}, not {sync!r}")
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
        self.sync = sync  # what a committed batch survives: database.SYNC_MODES
        # Stop (and write the queue) when the reactor stops, unless a service that
        # stops us itself says so: it may still have records to hand us then.
        self._stop_on_shutdown = stop_on_shutdown
        #: Records lost: see :class:`IHistoryStore`.
        self.dropped = 0
        #: A twistchat.metrics.Metrics to tell about writes (service.py sets it), or None.
        self.metrics: Any = None
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
        self._pool.threadFactory = _DaemonThread
        self._last_seqs: dict = {}
        self._epoch = ""
        #: Account, room and marker changes lost (not JSON, or saved after stop()).
        self.state_dropped = 0
        self._warned_bad_state = False
        self._changes = StateChanges(AccountState())
        self._conn = self._open()

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
            database.check_identity(conn, self.path)
            mode = database.enable_wal(conn, self.sync)
            if mode != "wal" and self.path != ":memory:":
                self._log.warn("History database {path} runs in {mode} journal mode, not WAL",
                               path=self.path, mode=mode)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._epoch = database.initialise(conn, int(self._clock.seconds() * 1000))
            if 0 < version < database.SCHEMA_VERSION:
                self._log.info("History database {path}: schema {old} upgraded to {new}",
                               path=self.path, old=version, new=database.SCHEMA_VERSION)
            self._last_seqs = database.load_last_seqs(conn)
            accounts, rooms, markers, skipped = database.load_state(conn)
            self._changes = StateChanges(AccountState(accounts, rooms, markers))
            if skipped:
                self._log.warn("History database {path}: {skipped} account or room records "
                               "are not JSON objects and were ignored",
                               path=self.path, skipped=skipped)
        except StoreError:
            database.close_quietly(conn)
            raise
        except sqlite3.Error as exc:
            database.close_quietly(conn)
            raise StoreError(self.path, database.explain(exc, self.path)) from None
        return conn

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
        if self._stop_on_shutdown:
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
        while self._pending or self._changes.pending:
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
        if self._changes.pending:
            lost = len(self._changes.take())
            self.state_dropped += lost
            self._log.error("History database {path}: {lost} account, room or read-marker "
                            "changes could not be written before stopping and are lost",
                            path=self.path, lost=lost)
        try:
            # Clean only if every record handed to us is in the file (docs: database.py).
            if self.dropped == 0:
                await self._run(database.mark_stopped, self._conn)
        except Exception:
            self._log.failure("History database {path}: marking a clean stop failed",
                              path=self.path)
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
        database.close(self._conn)

    # -- writing -----------------------------------------------------------

    def last_seqs(self) -> dict:
        """
        ``{target: last seq}`` of every target ever recorded, queued records included.

        Synchronous, for the registry at start-up.  Pruning never lowers it.
        """
        return dict(self._last_seqs)

    def epoch(self) -> str:
        """
        The file's epoch: made when the file was first used, the same at every reopening.

        A new file (or one deleted and made again) has another, as its
        numbering starts over.  Synchronous: read once, at construction.
        """
        return self._epoch

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

    # -- accounts, rooms, read markers (IAccountStore) -------------------------

    def load_accounts(self) -> AccountState:
        """
        Accounts, registered rooms and read markers: the file's, every save since applied.

        Synchronous, for the service at start-up: read at construction.
        """
        return self._changes.snapshot()

    def reload_accounts(self) -> Deferred:
        """
        Write what is queued, then read the account tables again (for SIGHUP).

        Fires with the new :meth:`load_accounts`: the file's state, except that a
        key changed here since the flush keeps that change.  Fails with
        StoreError if the file cannot be read (the state is then unchanged).
        """
        return Deferred.fromCoroutine(self._reload_accounts())

    async def _reload_accounts(self) -> AccountState:
        await self.flush()
        accounts, rooms, markers, skipped = await self._read(database.load_state)
        if skipped:
            self._log.warn("History database {path}: {skipped} account or room records "
                           "are not JSON objects and were ignored",
                           path=self.path, skipped=skipped)
        self._changes.refresh(AccountState(accounts, rooms, markers))
        return self._changes.snapshot()

    def _save_state(self, change: Callable, *args: Any) -> None:
        try:
            if self._state == "closed":
                raise RuntimeError("saved after the store was stopped")
            change(*args)
        except Exception:
            self.state_dropped += 1
            if not self._warned_bad_state:
                self._warned_bad_state = True
                self._log.failure("History database {path}: an account, room or read-marker "
                                  "change could not be queued and is lost (logged once)",
                                  path=self.path)

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
        if not self._pending and not self._changes.pending:
            return True
        if self._state == "closed":
            return False
        batch = list(self._pending)
        self._pending.clear()
        self._inflight = batch
        state = self._changes.take()
        try:
            rejected = await self._run(self._write_batch, batch, state)
        except Exception as exc:
            self._inflight = []
            # Back to the front of the queue, ahead of what came in meanwhile.
            self._pending.extendleft(reversed(batch))
            self._changes.put_back(state)
            if not self._failing:
                self._failing = True
                # One event per outage, not one per retry: the disk stays full
                # for a while and the flush loop retries every flush_interval.
                if isinstance(exc, sqlite3.Error):
                    self._log.error(
                        "History database {path}: writing failed ({error}); keeping up to "
                        "{max_pending} records in memory and retrying; chat goes on",
                        path=self.path, error=database.explain(exc, self.path),
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
        if metrics is not None and batch:
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

    def _write_batch(self, batch: list, state: list | None = None) -> int:
        """Write ``batch`` and ``state`` in one transaction (writer thread); the count skipped."""
        return database.write_batch(self._conn, batch, state)

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
        """One chunk of pruning ``target`` (writer thread): ``(removed, more)``."""
        return database.prune_target(self._conn, target, keep, cutoff_ms)

    # -- queries -----------------------------------------------------------

    def _queued_for(self, target: str) -> list:
        """Records of ``target`` not yet known to be written (reactor thread)."""
        return [r for r in chain(self._inflight, self._pending) if r.target == target]

    def _read(self, f: Callable, *args: Any) -> Deferred:
        """Run ``f(connection, *args)`` in the writer thread; database errors become StoreError."""
        if self._state == "closed":
            return fail(StoreError(self.path, "the store is closed"))
        d = self._run(f, self._conn, *args)

        def explain(failure: Failure) -> Failure:
            if isinstance(failure.value, sqlite3.Error):
                raise StoreError(self.path, database.explain(failure.value, self.path))
            return failure

        return d.addErrback(explain)

    def _range(self, window: Range) -> Deferred:
        """The records of ``window``, stored and queued."""
        if window.empty:
            return succeed([])
        queued = self._queued_for(window.target)
        d = self._read(database.read_range, window)
        return d.addCallback(lambda stored: windows.select(windows.merge(stored, queued), window))

    def latest(self, target: str, limit: int) -> Deferred:
        """The last ``limit`` records of ``target`` (CHATHISTORY LATEST *, history on join)."""
        return self._range(Range(target, None, None, clamp(limit), True))

    def before(self, target: str, seq: int, limit: int) -> Deferred:
        """The last ``limit`` records of ``target`` with seq < ``seq`` (CHATHISTORY BEFORE)."""
        return self._range(Range(target, None, clamp(seq), clamp(limit), True))

    def after(self, target: str, seq: int, limit: int) -> Deferred:
        """The first ``limit`` records with seq > ``seq`` (CHATHISTORY AFTER, UDP repair)."""
        return self._range(Range(target, clamp(seq), None, clamp(limit), False))

    def between(self, target: str, low_seq: int, high_seq: int, limit: int) -> Deferred:
        """
        Up to ``limit`` records strictly between two seqs (CHATHISTORY BETWEEN).

        The first bound may be the higher: then the ``limit`` records nearest
        it are chosen.  Ascending either way.
        """
        window = windows.between_window(target, clamp(low_seq), clamp(high_seq), clamp(limit))
        return self._range(window)

    def around(self, target: str, seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records around ``seq``, that one included (CHATHISTORY AROUND)."""
        seq, limit = clamp(seq), clamp(limit)
        if limit <= 0:
            return succeed([])
        queued = self._queued_for(target)
        d = self._read(database.read_around, target, seq, limit)
        return d.addCallback(
            lambda stored: windows.around(windows.merge(stored, queued), seq, limit))

    def seq_for_msgid(self, target: str, msgid: str) -> Deferred:
        """The seq of the record of ``target`` with ``msgid``, or None."""
        for record in self._queued_for(target):
            if record.msgid == msgid:
                return succeed(record.seq)
        return self._read(database.read_msgid, target, msgid)

    def seq_for_time(self, target: str, time_ms: int, *, after: bool) -> Deferred:
        """
        The seq of the first record with time > ``time_ms`` (``after``), else of the last before it.

        "Before" is time < ``time_ms``; None if there is none.  Ties on time
        go to the lower seq (``after``) or the higher one.
        """
        time_ms = clamp(time_ms)
        if after:
            queued = [(r.time_ms, r.seq) for r in self._queued_for(target) if r.time_ms > time_ms]
        else:
            queued = [(r.time_ms, r.seq) for r in self._queued_for(target) if r.time_ms < time_ms]
        d = self._read(database.read_time, target, time_ms, after)
        return d.addCallback(lambda stored: windows.time_pick(
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
        low, high, ascending = windows.target_window(since_ms, until_ms)
        limit = clamp(limit)
        if limit <= 0:
            return succeed([])
        allowed = windows.visible_filter(visible, dm_party)
        queued = {
            target: time_ms
            for target, time_ms in windows.latest_in_window(
                chain(self._inflight, self._pending), low, high).items()
            if allowed(target)
        }
        d = self._read(database.read_targets, low, high, allowed)

        def merge(stored: dict) -> list:
            for target, time_ms in queued.items():
                if time_ms > stored.get(target, low):
                    stored[target] = time_ms
            return windows.order_targets(stored, ascending, limit)

        return d.addCallback(merge)
