"""
The contract every history store keeps: :class:`IHistoryStore` and :class:`StoreError`.

test-case-name: tests.test_store

The interface speaks only in targets, sequence numbers, times in milliseconds
and msgids, never in SQL or IRC lines: that is the seam to another backend
(e.g. Redis Streams, one stream per target).

Failure rules (issue #7, "history degrades, chat does not"): a file that cannot
be used at start-up raises :class:`StoreError` with one sentence naming it; a
write that fails while running is logged once, its records stay queued (up to
a bound, oldest dropped beyond, counted in ``dropped``) and are retried at
every flush; ``append`` never raises.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from twistchat.store.records import HistoryRecord

__all__ = [
    "DEFAULT_MAX_PER_TARGET", "DEFAULT_PRUNE_INTERVAL", "IHistoryStore", "StoreError", "new_epoch",
]

# Retention defaults, the same for every provider; each overridable by a service flag.
DEFAULT_MAX_PER_TARGET = 100_000  # records kept per room / conversation
DEFAULT_PRUNE_INTERVAL = 60.0  # seconds between retention passes


def new_epoch() -> str:
    """
    A fresh epoch: 16 random hex digits.

    64 bits from ``os.urandom``, so two logs never share one by chance (nor by
    a clock set back, as a timestamp could).
    """
    return os.urandom(8).hex()


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


class IHistoryStore(Interface):
    """
    Where room events and private messages are kept, and the questions asked of them.

    Every query answers a ``Deferred`` of records in ascending ``seq`` order,
    including records appended but not yet written.  Sequence bounds are
    exclusive.  A ``limit`` of 0 or less is an empty answer.

    The *epoch* (issue #11) names one numbering of sequence numbers: it changes
    whenever numbering may have restarted, so that a client holding ``(epoch,
    seq)`` can tell "I missed events" (same epoch, a gap) from "this is a new
    log" (another epoch: forget what you hold, seqs start again).  It is one
    opaque string for every target of the store, made by :func:`new_epoch`:

    * SQLiteStore keeps it in the file (its ``meta`` table), made the first
      time the file is used, so a restart on the same file keeps it and a new
      or replaced file (numbering from 1 again) gets another;
    * MemoryStore makes one per instance: its numbering restarts with every
      process.

    Compare epochs for equality only; they have no order.
    """

    dropped = Attribute("Number of records lost: queue bound hit while writes failed, "
                        "unstorable records, appends after stop().")
    metrics = Attribute("A twistchat.metrics.Metrics told about writes (the service sets "
                        "it), or None.")

    def start() -> Deferred:
        """Start background work (flushing, pruning); fires at once."""

    def stop() -> Deferred:
        """Write everything queued, stop background work and close; idempotent."""

    def last_seqs() -> dict:
        """``{target: last seq}`` for every target ever recorded; synchronous."""

    def epoch() -> str:
        """The epoch of this store's numbering (see above); synchronous, never changes."""

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

