"""
History in memory only, for ``--db=:memory:`` and as the tests' reference.

test-case-name: tests.test_store

The same answers as :class:`~twistchat.store.sqlite.SQLiteStore` from one
sorted list of records per target, with the query semantics of
:mod:`twistchat.store.windows`; nothing is written, no thread is started, and
everything is lost at exit.  So numbering restarts with every instance, and
each instance has an epoch of its own.  Accounts, rooms and read markers
(:class:`IAccountStore`) are kept the same way: an instance starts with none.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from twistchat.store import windows
from twistchat.store.accounts import AccountSaves, AccountState, IAccountStore, StateChanges
from twistchat.store.interface import (
    DEFAULT_MAX_PER_TARGET,
    DEFAULT_PRUNE_INTERVAL,
    IHistoryStore,
    new_epoch,
)
from twistchat.store.records import HistoryRecord
from twistchat.store.windows import BY_SEQ, BY_TIME, Range

__all__ = ["MemoryStore"]


@implementer(IHistoryStore, IAccountStore)
class MemoryStore(AccountSaves):
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
        self.metrics: Any = None  # the interface's; nothing is written, so nothing is told
        self._records: dict = {}
        self._last_seqs: dict = {}
        self._closed = False
        # Nothing outlives the instance, so its numbering starts over with it.
        self._epoch = new_epoch()
        self._prune_loop = LoopingCall(self.prune)
        self._prune_loop.clock = clock
        #: Account, room and marker changes lost (not JSON, or saved after stop()).
        self.state_dropped = 0
        self._changes = StateChanges(AccountState())

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

    def epoch(self) -> str:
        """This instance's epoch, made at construction: no two MemoryStores share one."""
        return self._epoch

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
                at = bisect_left(records, seq, key=BY_SEQ)
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

    def load_accounts(self) -> AccountState:
        """Accounts, rooms and markers saved to this instance (none at first)."""
        return self._changes.snapshot()

    def reload_accounts(self) -> Deferred:
        """Nothing is stored elsewhere: the state as it is."""
        return succeed(self._changes.snapshot())

    def _save_state(self, change: Any, *args: Any) -> None:
        try:
            if self._closed:
                raise RuntimeError("saved after the store was stopped")
            change(*args)
            self._changes.take()  # nothing to write: the mirror is the whole store
        except Exception:
            if not self.state_dropped:
                self._log.failure("Memory store: an account, room or read-marker change "
                                  "could not be kept (logged once)")
            self.state_dropped += 1

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
                drop = bisect_left(records, cutoff_ms, key=BY_TIME)
            if self.max_per_target is not None:
                drop = max(drop, len(records) - self.max_per_target)
            if drop > 0:
                del records[:drop]
                removed += drop
            if not records:
                del self._records[target]
        return succeed(removed)

    def _window(self, window: Range) -> Deferred:
        """The records of ``window``."""
        return succeed(windows.select(self._records.get(window.target, []), window))

    def latest(self, target: str, limit: int) -> Deferred:
        """The last ``limit`` records of ``target``."""
        return self._window(Range(target, None, None, limit, True))

    def before(self, target: str, seq: int, limit: int) -> Deferred:
        """The last ``limit`` records of ``target`` with seq < ``seq``."""
        return self._window(Range(target, None, seq, limit, True))

    def after(self, target: str, seq: int, limit: int) -> Deferred:
        """The first ``limit`` records of ``target`` with seq > ``seq``."""
        return self._window(Range(target, seq, None, limit, False))

    def between(self, target: str, low_seq: int, high_seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records strictly between two seqs, nearest the first."""
        return self._window(windows.between_window(target, low_seq, high_seq, limit))

    def around(self, target: str, seq: int, limit: int) -> Deferred:
        """Up to ``limit`` records around ``seq``, that one included."""
        if limit <= 0:
            return succeed([])
        return succeed(windows.around(self._records.get(target, []), seq, limit))

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
            at = bisect_right(records, time_ms, key=BY_TIME)
            return succeed(records[at].seq if at < len(records) else None)
        at = bisect_left(records, time_ms, key=BY_TIME)
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
        low, high, ascending = windows.target_window(since_ms, until_ms)
        allowed = windows.visible_filter(visible, dm_party)
        latest = {}
        for target, records in self._records.items():
            if not allowed(target):
                continue
            at = bisect_left(records, high, key=BY_TIME)
            if at > 0 and records[at - 1].time_ms > low:
                latest[target] = records[at - 1].time_ms
        return succeed(windows.order_targets(latest, ascending, limit))
