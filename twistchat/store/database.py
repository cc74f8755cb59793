"""
The SQLite file: its schema, its identity and epoch, and every SQL statement run on it.

test-case-name: tests.test_store

Plain functions of an ``sqlite3.Connection``, with no Twisted and no state of
their own: :class:`~twistchat.store.sqlite.SQLiteStore` runs them in its one
writer thread (opening at construction, before that thread exists).  Whatever
the file format says lives here, so a change of schema touches one module.

The file says what it is with two pragmas: ``application_id`` (any 32-bit
number; "TwCh") and ``user_version``, the schema version this code writes.  A
``meta`` key/value table holds the store's epoch (issue #11): a random value
made the first time a file is used, kept for the file's life, so that a new
file (whose sequence numbers restart at 1) is told apart from an old one.  A
file of schema version 1 written before the table existed gains it, and an
epoch, the first time it is opened: no version change is needed.

Schema version 2 (issue #14) adds what the server keeps of accounts: the
``accounts``, ``rooms`` (registered rooms) and ``read_markers`` tables
(:mod:`twistchat.store.accounts`).  A version-1 file gains them the first
time this code opens it (:data:`_MIGRATIONS`), its history untouched; from
then on a version-1 server refuses the file as newer, rather than run on it
without the accounts it holds.

The epoch also changes after a run that did not stop cleanly (SIGKILL, power
loss): such a run may have handed out sequence numbers whose events never
reached the file, and the next run hands the same numbers out again for other
events.  A ``running`` key marks a file in use; a clean close removes it; an
opening that finds it draws a new epoch, so no client takes two different
events for one ``(epoch, seq)``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from typing import Any

from twistchat.store.interface import StoreError, new_epoch
from twistchat.store.records import NO_TAGS, HistoryRecord
from twistchat.store.windows import INT_MAX, INT_MIN, Range, around_windows, clamp

__all__ = [
    "APPLICATION_ID", "SCHEMA_VERSION", "SYNC_MODES", "check_identity", "close", "enable_wal",
    "explain",
    "initialise", "load_last_seqs", "load_state", "prepare", "prune_target", "read_around",
    "read_msgid", "read_range", "read_targets", "read_time", "rollback", "server_running",
    "write_batch", "write_state",
]

APPLICATION_ID = 0x54774368
SCHEMA_VERSION = 2

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
    # Key/value facts about the file: "epoch" (made once, never changed) and
    # "opened_ms" (the last start-up).  IF NOT EXISTS, as every statement here,
    # so that opening adds what an older file of the same version lacks.
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Schema 2 (issue #14): accounts, registered rooms and read markers.  Records
# are JSON objects their makers define (core/accounts.py, the room directory);
# keys are casefolded names.  A few hundred rows: read whole at start-up.
_ACCOUNT_TABLES = (
    "CREATE TABLE IF NOT EXISTS accounts (key TEXT PRIMARY KEY, record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rooms (key TEXT PRIMARY KEY, record TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS read_markers (
        account   TEXT NOT NULL,
        target    TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        PRIMARY KEY (account, target)
    ) WITHOUT ROWID""",
)

# What opening a file of each older version runs to bring it to SCHEMA_VERSION,
# in order: {from version: statements}.  Each is idempotent (IF NOT EXISTS).
_MIGRATIONS = {
    1: _ACCOUNT_TABLES,
}

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
    if not (INT_MIN <= seq <= INT_MAX and INT_MIN <= time_ms <= INT_MAX):
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
                         tuple(json.loads(params)), json.loads(tags) if tags else NO_TAGS)


def read_range(conn: sqlite3.Connection, window: Range) -> list:
    """The stored records of ``window`` (writer thread)."""
    if window.empty:
        return []
    where = "target = ?"
    args: list[str | int] = [window.target]
    if window.low is not None:
        where += " AND seq > ?"
        args.append(clamp(window.low))
    if window.high is not None:
        where += " AND seq < ?"
        args.append(clamp(window.high))
    order = "DESC" if window.from_end else "ASC"
    args.append(clamp(window.limit))
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM history WHERE {where} ORDER BY seq {order} LIMIT ?", args
    ).fetchall()
    if window.from_end:
        rows.reverse()
    return [_record(row) for row in rows]


def read_around(conn: sqlite3.Connection, target: str, seq: int, limit: int) -> list:
    """Every stored record AROUND may pick, ascending (writer thread)."""
    below, above = around_windows(target, seq, limit)
    return read_range(conn, below) + read_range(conn, above)


def read_msgid(conn: sqlite3.Connection, target: str, msgid: str) -> int | None:
    """The stored seq of ``msgid`` in ``target`` (writer thread)."""
    row = conn.execute(
        "SELECT seq FROM history WHERE target = ? AND msgid = ? LIMIT 1", (target, msgid)
    ).fetchone()
    return row[0] if row else None


def read_time(conn: sqlite3.Connection, target: str, time_ms: int, after: bool) -> tuple | None:
    """``(time_ms, seq)`` of the stored record seq_for_time picks (writer thread)."""
    if after:
        sql = ("SELECT time_ms, seq FROM history WHERE target = ? AND time_ms > ? "
               "ORDER BY time_ms ASC, seq ASC LIMIT 1")
    else:
        sql = ("SELECT time_ms, seq FROM history WHERE target = ? AND time_ms < ? "
               "ORDER BY time_ms DESC, seq DESC LIMIT 1")
    return conn.execute(sql, (target, clamp(time_ms))).fetchone()


def read_targets(conn: sqlite3.Connection, low: int, high: int,
                 visible: Callable[[str], bool]) -> dict:
    """``{target: latest stored time in (low, high)}`` for visible targets (writer thread)."""
    low_arg, high_arg = clamp(low), clamp(high)
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


# -- opening (at construction, in the reactor thread) ------------------------------


def check_identity(conn: sqlite3.Connection, path: str) -> None:
    """StoreError unless ``conn`` holds a twistchat database this code can read, or nothing."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id != APPLICATION_ID:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != 0 or tables:
            raise StoreError(path, "it is an SQLite database of another program, "
                                   "not a twistchat history")
    elif version > SCHEMA_VERSION:
        raise StoreError(path, f"it was written by a newer twistchat "
                               f"(schema {version}, this one reads {SCHEMA_VERSION})")


# --history-sync: what a committed batch survives (https://www.sqlite.org/pragma.html
# #pragma_synchronous, and "WAL mode" in https://www.sqlite.org/wal.html).
SYNC_MODES = {
    # fsync the WAL at every commit (one per flush interval, 5 a second by default):
    # a power loss or an OS crash loses at most the batch not yet committed.
    "full": "FULL",
    # no fsync at commit: a killed process loses nothing committed, but a power
    # loss or OS crash may undo the commits of the last seconds (issue #12).
    "normal": "NORMAL",
}


def enable_wal(conn: sqlite3.Connection, sync: str = "full") -> str:
    """
    Put the file in WAL mode with ``synchronous`` per ``sync`` (:data:`SYNC_MODES`).

    Returns the journal mode it runs in: some file systems (network mounts)
    have no shared memory for WAL; SQLite then keeps its rollback journal,
    which is safe too: the caller warns.
    """
    mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
    conn.execute(f"PRAGMA synchronous={SYNC_MODES[sync]}")
    return mode.lower()


def initialise(conn: sqlite3.Connection, now_ms: int) -> str:
    """
    Create what is missing of the schema and stamp the file, in one write transaction.

    Returns the file's epoch, made now if the file has none yet (a new file,
    or one written before epochs).  Under BEGIN IMMEDIATE, so two processes
    opening one new file at once agree on it.  Writing at once also makes a
    read-only file or directory fail here, at start-up, with a clear
    sentence, instead of at the first flush.
    """
    conn.execute("BEGIN IMMEDIATE")
    _create_or_migrate(conn)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_ms', ?)",
                 (str(now_ms),))
    unclean = conn.execute("SELECT 1 FROM meta WHERE key = 'running'").fetchone() is not None
    conn.execute(f"INSERT OR {'REPLACE' if unclean else 'IGNORE'} INTO meta (key, value) "
                 "VALUES ('epoch', ?)", (new_epoch(),))
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('running', '1')")
    (epoch,) = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    conn.execute("COMMIT")
    return str(epoch)


def _create_or_migrate(conn: sqlite3.Connection) -> int:
    """
    Bring the file to :data:`SCHEMA_VERSION` inside the caller's transaction.

    A new file gets every table; an older one runs its :data:`_MIGRATIONS`.
    Returns the version the file had (0: new).
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for statement in _SCHEMA:
        conn.execute(statement)
    for step in range(1, SCHEMA_VERSION):
        if version <= step:
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return version


def prepare(conn: sqlite3.Connection) -> int:
    """
    Create or migrate the schema only, for tools (the account tool), in one transaction.

    Unlike :func:`initialise`, it leaves ``meta`` alone: no epoch, no running
    mark, so a tool may use the file while a server runs on it.  Returns the
    version the file had (0: new).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _create_or_migrate(conn)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return version


def server_running(conn: sqlite3.Connection) -> bool:
    """Does the file say a server has it open (or one stopped uncleanly)?"""
    try:
        return conn.execute("SELECT 1 FROM meta WHERE key = 'running'").fetchone() is not None
    except sqlite3.OperationalError:  # no meta table yet
        return False


def mark_stopped(conn: sqlite3.Connection) -> None:
    """A clean stop: everything handed out is in the file, the epoch may stay (writer thread)."""
    conn.execute("DELETE FROM meta WHERE key = 'running'")
    conn.commit()


def load_last_seqs(conn: sqlite3.Connection) -> dict:
    """``{target: last seq}`` from the targets table."""
    return dict(conn.execute("SELECT target, last_seq FROM targets"))


def load_state(conn: sqlite3.Connection) -> tuple[dict, dict, dict, int]:
    """
    ``(accounts, rooms, markers, skipped)``: the account tables, read whole.

    ``accounts`` and ``rooms`` are ``{key: record dict}``, ``markers``
    ``{(account, target): timestamp}``.  A record that is not a JSON object
    (a file edited by hand, a bug) is left out and counted in ``skipped``.
    """
    skipped = 0

    def records(table: str) -> dict:
        nonlocal skipped
        out = {}
        for key, text in conn.execute(f"SELECT key, record FROM {table}"):  # noqa: S608
            try:
                record = json.loads(text)
            except (TypeError, ValueError):
                record = None
            if not isinstance(record, dict) or not isinstance(key, str):
                skipped += 1
                continue
            out[key] = record
        return out

    accounts, rooms = records("accounts"), records("rooms")
    markers = {(str(account), str(target)): str(timestamp) for account, target, timestamp
               in conn.execute("SELECT account, target, timestamp FROM read_markers")}
    return accounts, rooms, markers, skipped


def close(conn: sqlite3.Connection) -> None:
    """Close ``conn`` (writer thread); SQLite checkpoints the WAL into the file."""
    try:
        conn.execute("PRAGMA optimize")
    except sqlite3.Error:
        pass
    conn.close()


def close_quietly(conn: sqlite3.Connection | None) -> None:
    """Close ``conn`` if open, ignoring errors (it is being abandoned)."""
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            pass


# -- writing (writer thread) ---------------------------------------------------------


def write_batch(conn: sqlite3.Connection, batch: list, state: list | None = None) -> int:
    """
    Insert ``batch``, move the targets' last seqs and apply ``state``, in one transaction.

    ``state`` is account changes as :func:`write_state` takes them.  Returns
    how many history records were skipped as unstorable.  Database errors
    (locked, full, I/O) roll back and raise: the batch is retried later.
    """
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
        _apply_state(conn, state or [])
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return len(batch) - stored


def write_state(conn: sqlite3.Connection, changes: list) -> None:
    """
    Apply account changes in one transaction (the account tool; the store uses write_batch).

    ``changes``: ``[(kind, key, value)]`` in order, kind ``"accounts"`` or
    ``"rooms"`` with a str key and a JSON text (None: delete; deleting an
    account deletes its read markers), or ``"markers"`` with an ``(account,
    target)`` key and a timestamp (None: delete).
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        _apply_state(conn, changes)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _apply_state(conn: sqlite3.Connection, changes: list) -> None:
    """The statements of :func:`write_state`, inside the caller's transaction."""
    for kind, key, value in changes:
        if kind == "markers":
            account, target = key
            if value is None:
                conn.execute("DELETE FROM read_markers WHERE account = ? AND target = ?",
                             (account, target))
            else:
                conn.execute("INSERT OR REPLACE INTO read_markers (account, target, timestamp) "
                             "VALUES (?, ?, ?)", (account, target, value))
            continue
        table = {"accounts": "accounts", "rooms": "rooms"}[kind]
        if value is None:
            conn.execute(f"DELETE FROM {table} WHERE key = ?", (key,))  # noqa: S608
            if kind == "accounts":
                conn.execute("DELETE FROM read_markers WHERE account = ?", (key,))
        else:
            conn.execute(f"INSERT OR REPLACE INTO {table} (key, record) VALUES (?, ?)",  # noqa: S608
                         (key, value))


def prune_target(conn: sqlite3.Connection, target: str, keep: int | None,
                 cutoff_ms: int | None) -> tuple[int, bool]:
    """
    Delete the oldest records of ``target`` beyond the limits, one chunk.

    Returns ``(removed, more)``.  Records go oldest first, by seq, so what
    remains is always an unbroken tail of the transcript.
    """
    threshold = None  # delete seq <= threshold
    if cutoff_ms is not None:
        row = conn.execute(
            "SELECT seq FROM history WHERE target = ? AND time_ms < ? "
            "ORDER BY time_ms DESC, seq DESC LIMIT 1", (target, clamp(cutoff_ms))).fetchone()
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
        rollback(conn)
        raise
    return removed, upto < threshold


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any (SQLite ends some on error by itself)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def explain(exc: BaseException, path: str) -> str:
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
