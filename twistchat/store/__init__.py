"""
History persistence: every room event and private message, by target and sequence number.

test-case-name: tests.test_store

The registry numbers the events of each *target* (a casefolded room name, or
the :func:`dm_key` of a private conversation, both defined in
:mod:`twistchat.core.targets`); the service hands each event to
:meth:`IHistoryStore.append` as a :class:`HistoryRecord`.  The store keeps
them and answers the questions IRCv3 ``draft/chathistory`` asks (LATEST,
BEFORE, AFTER, AROUND, BETWEEN, TARGETS) and the UDP side's gap repair asks
(a range of sequence numbers).  At start-up, :meth:`IHistoryStore.last_seqs`
tells the registry where every target's numbering stands, so numbers keep
rising across restarts (issue #7), even for targets whose history retention
has pruned away entirely, and :meth:`IHistoryStore.epoch` names that numbering
(issue #11): it changes only when numbering starts over (a new file, a
memory store), so the room log can tell a gap from a new log.

One job per module:

* :mod:`~twistchat.store.records`: :class:`HistoryRecord`, the value kept,
  and :func:`record_from_event`;
* :mod:`~twistchat.store.interface`: :class:`IHistoryStore`, the contract
  (with the failure rules), and :class:`StoreError`;
* :mod:`~twistchat.store.windows`: what each question means, on sorted
  lists, shared by both stores and by the merge of the write queue;
* :mod:`~twistchat.store.sqlite`: :class:`SQLiteStore`, the default: one
  SQLite file in WAL mode, written in batches by one thread;
* :mod:`~twistchat.store.database`: that file's schema and SQL, plain
  functions on a connection;
* :mod:`~twistchat.store.memory`: :class:`MemoryStore`, the same answers
  from plain lists, nothing written;
* :mod:`~twistchat.store.accounts`: :class:`IAccountStore` (accounts,
  registered rooms, read markers: issue #14), provided by both stores, its
  :class:`AccountState`, and :class:`AccountFile` for the account tool.

:func:`open_store`, here, picks one from a ``--db`` value.  The rest of the
server imports only from this package, never from its modules.
"""

from __future__ import annotations

from typing import Any

# dm_key and its kin are re-exported: callers imported them from here before
# twistchat.core.targets became their one definition (issue #11).  DM_PREFIX and
# SCHEMA_VERSION stay importable from here too, as before the split.
from twistchat.core.targets import DM_PREFIX, dm_key, dm_parties, is_dm_key  # noqa: F401
from twistchat.store.accounts import AccountFile, AccountState, IAccountStore
from twistchat.store.database import SCHEMA_VERSION  # noqa: F401
from twistchat.store.interface import (
    DEFAULT_MAX_PER_TARGET,
    DEFAULT_PRUNE_INTERVAL,
    IHistoryStore,
    StoreError,
)
from twistchat.store.memory import MemoryStore
from twistchat.store.records import HistoryRecord, record_from_event
from twistchat.store.sqlite import DEFAULT_FLUSH_INTERVAL, SQLiteStore

__all__ = [
    "AccountFile",
    "AccountState",
    "HistoryRecord",
    "IAccountStore",
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

def open_store(
    path: str,
    *,
    reactor: Any = None,
    clock: Any = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    max_per_target: int | None = DEFAULT_MAX_PER_TARGET,
    max_age_days: float | None = None,
    prune_interval: float = DEFAULT_PRUNE_INTERVAL,
    sync: str = "full",
    stop_on_shutdown: bool = True,
) -> SQLiteStore | MemoryStore:
    """
    The store for a ``--db`` value: ``":memory:"`` keeps nothing on disk.

    Either provides IHistoryStore and IAccountStore.

    Raises :class:`StoreError` (one sentence naming the file) if the file
    cannot be used.
    """
    if path == ":memory:":
        return MemoryStore(clock=clock if clock is not None else reactor,
                           max_per_target=max_per_target, max_age_days=max_age_days,
                           prune_interval=prune_interval)
    return SQLiteStore(path, reactor=reactor, clock=clock, flush_interval=flush_interval,
                       max_per_target=max_per_target, max_age_days=max_age_days,
                       prune_interval=prune_interval, sync=sync,
                       stop_on_shutdown=stop_on_shutdown)

