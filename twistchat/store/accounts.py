"""
What the server keeps of accounts, registered rooms and read markers: :class:`IAccountStore`.

test-case-name: tests.test_account_store

Accounts are few (a school, a team: hundreds) and every one is needed at once
(the core asks "who owns this nick?" without waiting), so the whole state is
read once, synchronously, at start-up (:meth:`IAccountStore.load_accounts`, as
``last_seqs()`` is) and afterwards only written: each change, as it happens,
is queued and written by the store's own writer (the SQLite store's writer
thread, in the same transaction as the history batch of that flush).  A clean
stop (SIGTERM) writes the queue before the file is closed.

The store keeps *records*: JSON-ready dicts whose content belongs to their
makers (``Account.to_record()`` in :mod:`twistchat.core.accounts`, the room
directory's records); it never looks inside.  Writes follow the history
store's failure rules (:mod:`twistchat.store.interface`): they never block and
never raise; a record that is not JSON is skipped and logged once; a write the
disk refuses is logged once per outage and retried at every flush.

Keys are the makers' (the casefolded account or room name).  Changes to one
key coalesce: only the latest reaches the file, which is all a restart needs.
Dropping an account drops its read markers with it, so a name registered again
later does not inherit someone else's "read up to" times.

The standalone :class:`AccountFile` is for tools (``python -m
twistchat.accounts``): the same tables and SQL, each change committed at
once, without touching the running-server marks a live server keeps in the
file (its epoch and "running" flag).

Design: docs/accounts.md (issue #14).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zope.interface import Attribute, Interface

from twistchat.store import database
from twistchat.store.interface import StoreError

__all__ = ["ACCOUNTS", "AccountFile", "AccountSaves", "AccountState", "IAccountStore", "MARKERS",
           "ROOMS", "StateChanges", "encode_record", "read_state"]

# The kinds of state change, one table each (database.py has the tables).
ACCOUNTS, ROOMS, MARKERS = "accounts", "rooms", "markers"


@dataclass(frozen=True)
class AccountState:
    """
    Everything kept of accounts, as read at start-up.

    ``accounts``: ``{account key: record}``; ``rooms``: ``{room key: record}``
    (registered rooms); ``markers``: ``{(account key, target): timestamp}``
    (IRCv3 ``draft/read-marker`` times, as the core gave them).
    """

    accounts: dict[str, dict] = field(default_factory=dict)
    rooms: dict[str, dict] = field(default_factory=dict)
    markers: dict[tuple[str, str], str] = field(default_factory=dict)


class IAccountStore(Interface):
    """
    Where accounts, registered rooms and read markers outlive the process.

    Provided by both history stores (SQLite: the same file as history;
    memory: for ``--db=:memory:``, lost at exit).  Every save returns None at
    once, never raises, and is on disk after a clean :meth:`stop`
    (``IHistoryStore.stop``).
    """

    state_dropped = Attribute("Number of account, room or marker changes lost: not JSON, "
                              "or saved after stop().")

    def load_accounts() -> AccountState:
        """The state as of now (the file's, with every save since applied); synchronous."""

    def save_account(key: str, record: dict | None) -> None:
        """Keep ``record`` as account ``key``'s (None: drop it and its markers)."""

    def save_room(key: str, record: dict | None) -> None:
        """Keep ``record`` as registered room ``key``'s (None: drop it)."""

    def save_marker(account_key: str, target: str, timestamp: str | None) -> None:
        """Account ``account_key`` has read ``target`` up to ``timestamp`` (None: forget it)."""

    def reload_accounts() -> Any:
        """
        A Deferred of the state read again from storage, for a running server (SIGHUP).

        Everything queued is written first; a key with a change queued since keeps
        that change (this process's news wins over the file's).  The memory store
        has nothing else to read: its state as it is.
        """


def encode_record(record: Any) -> str:
    """
    ``record`` as the JSON text the file keeps; TypeError or ValueError if it is not JSON.

    Encoded when saved (in the caller's thread): the text is a snapshot, so a
    caller that changes the dict afterwards does not change what is written.
    """
    if not isinstance(record, dict):
        raise TypeError(f"a record is a dict, not {type(record).__name__}")
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class StateChanges:
    """
    Queued changes, the latest per key, in first-change order; plus the state they lead to.

    Shared by both stores: ``mirror`` is what :meth:`IAccountStore.load_accounts`
    answers, ``pending`` what the next flush writes: ``{(kind, key): json or
    None}`` where ``key`` is a str, or ``(account, target)`` for markers.
    """

    def __init__(self, state: AccountState) -> None:
        self.accounts = dict(state.accounts)
        self.rooms = dict(state.rooms)
        self.markers = dict(state.markers)
        self.pending: dict[tuple[str, Any], str | None] = {}

    def snapshot(self) -> AccountState:
        """The state with every change applied (copies: the caller may keep them)."""
        return AccountState({k: json.loads(json.dumps(v)) for k, v in self.accounts.items()},
                            {k: json.loads(json.dumps(v)) for k, v in self.rooms.items()},
                            dict(self.markers))

    def account(self, key: str, record: dict | None) -> None:
        """Account ``key`` is now ``record`` (None: gone, with its markers)."""
        if record is None:
            self.accounts.pop(key, None)
            self.pending[(ACCOUNTS, key)] = None
            for marker in [m for m in self.markers if m[0] == key]:
                del self.markers[marker]
                self.pending.pop((MARKERS, marker), None)  # the cascade in the file drops it
            return
        text = encode_record(record)
        self.accounts[key] = json.loads(text)
        self.pending[(ACCOUNTS, key)] = text

    def room(self, key: str, record: dict | None) -> None:
        """Room ``key`` is now ``record`` (None: no longer registered)."""
        if record is None:
            self.rooms.pop(key, None)
            self.pending[(ROOMS, key)] = None
            return
        text = encode_record(record)
        self.rooms[key] = json.loads(text)
        self.pending[(ROOMS, key)] = text

    def marker(self, account_key: str, target: str, timestamp: str | None) -> None:
        """The read marker of ``(account_key, target)`` is now ``timestamp``."""
        if timestamp is not None and not isinstance(timestamp, str):
            raise TypeError(f"a marker's timestamp is a str, not {type(timestamp).__name__}")
        if not isinstance(account_key, str) or not isinstance(target, str):
            raise TypeError("a marker's account and target are str")
        key = (account_key, target)
        if timestamp is None:
            self.markers.pop(key, None)
        else:
            self.markers[key] = timestamp
        self.pending[(MARKERS, key)] = timestamp

    def refresh(self, state: AccountState) -> None:
        """The file's ``state`` becomes the mirror, except where a change is still queued."""
        held = set(self.pending)
        accounts, rooms, markers = dict(state.accounts), dict(state.rooms), dict(state.markers)
        for table, kind in ((accounts, ACCOUNTS), (rooms, ROOMS)):
            mine = self.accounts if kind == ACCOUNTS else self.rooms
            for (change_kind, key) in held:
                if change_kind == kind:
                    if key in mine:
                        table[key] = mine[key]
                    else:
                        table.pop(key, None)
        for (change_kind, key) in held:
            if change_kind == MARKERS:
                if key in self.markers:
                    markers[key] = self.markers[key]
                else:
                    markers.pop(key, None)
            elif change_kind == ACCOUNTS and key not in accounts:  # deleted here: so its markers
                for marker in [m for m in markers if m[0] == key]:
                    del markers[marker]
        self.accounts, self.rooms, self.markers = accounts, rooms, markers

    def take(self) -> list[tuple[str, Any, str | None]]:
        """The queued changes as ``[(kind, key, value)]``, emptying the queue."""
        batch = [(kind, key, value) for (kind, key), value in self.pending.items()]
        self.pending.clear()
        return batch

    def put_back(self, batch: list[tuple[str, Any, str | None]]) -> None:
        """A batch that failed to write, queued again unless a newer change replaced it."""
        newer = self.pending
        self.pending = {(kind, key): value for kind, key, value in batch}
        for change, value in newer.items():
            self.pending.pop(change, None)
            self.pending[change] = value


class AccountSaves:
    """
    IAccountStore's three saves, for a store that keeps a :class:`StateChanges`.

    The store gives ``_changes`` and ``_save_state(change, *args)``, which runs
    one change (or counts and logs it once when it cannot be kept); every save
    goes through it, so none ever raises.
    """

    _changes: StateChanges
    _save_state: Callable[..., None]  # each store's own

    def save_account(self, key: str, record: dict | None) -> None:
        """Keep account ``key``'s record (None: drop it and its markers); never raises."""
        self._save_state(self._changes.account, key, record)

    def save_room(self, key: str, record: dict | None) -> None:
        """Keep registered room ``key``'s record (None: drop it); never raises."""
        self._save_state(self._changes.room, key, record)

    def save_marker(self, account_key: str, target: str, timestamp: str | None) -> None:
        """Keep a read marker (None: drop it); never raises."""
        self._save_state(self._changes.marker, account_key, target, timestamp)


def read_state(conn: sqlite3.Connection, path: str) -> tuple[AccountState, int]:
    """``(the file's state, records skipped as unreadable)``; StoreError if it cannot be read."""
    try:
        accounts, rooms, markers, skipped = database.load_state(conn)
    except sqlite3.Error as exc:
        raise StoreError(path, database.explain(exc, path)) from None
    return AccountState(accounts, rooms, markers), skipped


class AccountFile:
    """
    The account tables of a twistchat SQLite file, for tools: read and write now.

    Opens (or creates) ``path`` as the server would, checks it is a twistchat
    file this code can read (:class:`StoreError` otherwise: another program's,
    a newer twistchat's), adds the account tables to an older file, and leaves
    the file's epoch and running mark alone, so it may be used while a server
    runs on the file (that server reads accounts at its start).
    """

    def __init__(self, path: str, busy_timeout: float = 5.0) -> None:
        if path == ":memory:":
            raise StoreError(path, "an in-memory database keeps no accounts between runs")
        if os.path.isdir(path):
            raise StoreError(path, "it is a directory, not a file")
        self.path = path
        conn = None
        try:
            conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
            database.check_identity(conn, path)
            database.enable_wal(conn)
            database.prepare(conn)
            self.server_running = database.server_running(conn)
        except StoreError:
            database.close_quietly(conn)
            raise
        except sqlite3.Error as exc:
            database.close_quietly(conn)
            raise StoreError(path, database.explain(exc, path)) from None
        self._conn = conn

    def load_accounts(self) -> AccountState:
        """Every account, room and marker in the file (unreadable records left out)."""
        return read_state(self._conn, self.path)[0]

    def save_account(self, key: str, record: dict | None) -> None:
        """Write account ``key`` (None: delete it and its markers) now."""
        value = None if record is None else encode_record(record)
        self._do(database.write_state, [(ACCOUNTS, key, value)])

    def close(self) -> None:
        """Close the file."""
        database.close_quietly(self._conn)

    def _do(self, f: Any, *args: Any) -> Any:
        try:
            return f(self._conn, *args)
        except sqlite3.Error as exc:
            raise StoreError(self.path, database.explain(exc, self.path)) from None

    def __enter__(self) -> AccountFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
