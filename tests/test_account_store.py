"""
Accounts, registered rooms and read markers in the store (twistchat.store.accounts, issue #14).

Each behaviour is checked on both providers of IAccountStore: the SQLite
store on a real file in the test's directory, and the memory store (which
keeps nothing past its instance, so "survives a restart" is SQLite's alone).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

import twistchat.store.database as database_module
from tests.test_store import V1_SCHEMA_WITHOUT_META
from twistchat.store import (
    AccountFile,
    AccountState,
    IAccountStore,
    IHistoryStore,
    MemoryStore,
    SQLiteStore,
    StoreError,
    open_store,
)
from twistchat.store.records import HistoryRecord

T0 = 1_700_000_000.0

ALICE = {"name": "Alice", "credential": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
         "email": "alice@example.org", "created": T0, "certfps": ["ab" * 32]}
ROOM = {"name": "#Maths", "founder": "alice", "topic": "Fractions \u00bd", "modes": "+nt"}

# The schema of a file written by the code before accounts (schema 1, with meta),
# spelled out so this test keeps meaning the old format when database.py moves on.
V1_SCHEMA = V1_SCHEMA_WITHOUT_META + (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class Providers:
    """Opens SQLite stores on a file of the test's directory, or memory stores; stops them all."""

    def __init__(self, tmp_path, kind):
        self.kind = kind
        self.path = str(tmp_path / "chat.sqlite3")
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.made = []

    def open(self, **kwargs):
        if self.kind == "sqlite":
            store = SQLiteStore(self.path, reactor=reactor, clock=self.clock, **kwargs)
        else:
            store = MemoryStore(clock=self.clock)
        store.start()
        self.made.append(store)
        return store

    async def reopen(self, store):
        """Stopped and opened again on the same file (memory: the same instance, running)."""
        if self.kind == "memory":
            return store
        await store.stop()
        return self.open()


@pytest.fixture(params=["sqlite", "memory"])
def providers(request, tmp_path):
    made = Providers(tmp_path, request.param)
    yield made
    for store in made.made:
        pytest_twisted.blockon(store.stop())
    assert made.clock.getDelayedCalls() == []


@pytest.fixture
def log_events():
    """Every log event emitted during the test."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_both_stores_provide_the_interface(providers):
    """SQLiteStore and MemoryStore provide IAccountStore beside IHistoryStore."""
    store = providers.open()
    assert verifyObject(IAccountStore, store)
    assert verifyObject(IHistoryStore, store)


def test_a_new_store_has_no_accounts(providers):
    """A new file (or memory store) loads an empty AccountState."""
    assert providers.open().load_accounts() == AccountState({}, {}, {})


@pytest_twisted.ensureDeferred
async def test_saved_records_round_trip(providers):
    """What is saved is what is loaded: accounts, rooms, markers, non-ASCII kept."""
    store = providers.open()
    store.save_account("alice", ALICE)
    store.save_room("#maths", ROOM)
    store.save_marker("alice", "#maths", "2026-12-02T14:00:00.000Z")
    store.save_marker("alice", "bob", "2026-12-02T14:01:00.000Z")
    expected = AccountState({"alice": ALICE}, {"#maths": ROOM},
                            {("alice", "#maths"): "2026-12-02T14:00:00.000Z",
                             ("alice", "bob"): "2026-12-02T14:01:00.000Z"})
    assert store.load_accounts() == expected  # queued saves count at once
    store = await providers.reopen(store)
    assert store.load_accounts() == expected


@pytest_twisted.ensureDeferred
async def test_a_later_save_replaces_and_none_deletes(providers):
    """The latest record of a key wins; None drops the key (and an account its markers)."""
    store = providers.open()
    store.save_account("alice", ALICE)
    store.save_account("bob", {"name": "bob"})
    store.save_room("#maths", ROOM)
    store.save_marker("alice", "#maths", "2026-12-02T14:00:00.000Z")
    store.save_marker("bob", "#maths", "2026-12-02T14:00:00.000Z")
    if providers.kind == "sqlite":
        assert await store.flush() is True  # some changes on disk, some still queued
    store.save_account("alice", dict(ALICE, email="new@example.org"))
    store.save_account("bob", None)
    store.save_room("#maths", None)
    store.save_marker("alice", "#maths", "2026-12-02T15:00:00.000Z")
    expected = AccountState({"alice": dict(ALICE, email="new@example.org")}, {},
                            {("alice", "#maths"): "2026-12-02T15:00:00.000Z"})
    assert store.load_accounts() == expected
    store = await providers.reopen(store)
    assert store.load_accounts() == expected
    store.save_marker("alice", "#maths", None)
    store = await providers.reopen(store)
    assert store.load_accounts().markers == {}


@pytest_twisted.ensureDeferred
async def test_a_saved_record_is_a_snapshot(providers):
    """Changing the dict after saving it changes neither what is loaded nor what is written."""
    store = providers.open()
    record = dict(ALICE)
    store.save_account("alice", record)
    record["email"] = "changed@example.org"
    assert store.load_accounts().accounts["alice"]["email"] == ALICE["email"]
    store.load_accounts().accounts["alice"]["email"] = "changed too"  # a copy each time
    store = await providers.reopen(store)
    assert store.load_accounts().accounts["alice"]["email"] == ALICE["email"]


@pytest_twisted.ensureDeferred
async def test_bad_records_are_dropped_without_raising(providers, log_events):
    """A record that is not a JSON object, or a save after stop, is counted and logged once."""
    store = providers.open()
    store.save_account("x", {"bad": object()})
    store.save_account("y", ["not", "a", "dict"])  # type: ignore[arg-type]
    store.save_room("z", {"nan": float("nan")})
    store.save_marker("alice", "#maths", 12)  # type: ignore[arg-type]
    assert store.state_dropped == 4
    failures = [e for e in log_events if e.get("log_failure") is not None]
    assert len(failures) == 1  # once, not four times
    store.save_account("alice", ALICE)
    await store.stop()
    store.save_account("late", {"name": "late"})
    assert store.state_dropped == 5
    store = await providers.reopen(store)
    assert set(store.load_accounts().accounts) == {"alice"}


@pytest_twisted.ensureDeferred
async def test_history_and_accounts_share_the_file(tmp_path):
    """Accounts are written in the history file by the same flush; history is unchanged."""
    path = str(tmp_path / "chat.sqlite3")
    store = SQLiteStore(path, reactor=reactor)
    store.start()
    store.append(HistoryRecord("#a", 1, 1000, "m1", "PRIVMSG", "a!a@h", ("#a", "hi"), {}))
    store.save_account("alice", ALICE)
    assert await store.flush() is True
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM history").fetchone() == (1,)
        (text,) = conn.execute("SELECT record FROM accounts WHERE key = 'alice'").fetchone()
        assert json.loads(text) == ALICE
    finally:
        conn.close()
    await store.stop()


@pytest_twisted.ensureDeferred
async def test_a_failed_write_is_retried_and_newer_changes_win(tmp_path, log_events):
    """While the disk refuses, changes stay queued; the next good flush writes the latest."""
    path = str(tmp_path / "chat.sqlite3")
    store = SQLiteStore(path, reactor=reactor)
    store.start()
    locker = sqlite3.connect(path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        store.save_account("alice", ALICE)
        store.save_account("bob", {"name": "bob"})
        assert await store.flush() is False
        store.save_account("bob", None)  # newer than the queued bob
        assert await store.flush() is False
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert await store.flush() is True
    await store.stop()
    with AccountFile(path) as file:
        assert file.load_accounts().accounts == {"alice": ALICE}
    errors = [e for e in log_events if "writing failed" in str(e.get("log_format", ""))]
    assert len(errors) == 1  # one per outage


def _old_file(path):
    """A schema-1 file as the code before accounts wrote it, with one room's history."""
    conn = sqlite3.connect(path)
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id={database_module.APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO meta VALUES ('epoch', 'e0e0e0e0e0e0e0e0')")
    conn.execute("INSERT INTO history VALUES ('#a', 1, 1000, 'm1', 'PRIVMSG', 'a!a@h', "
                 "'[\"#a\", \"old\"]', NULL)")
    conn.execute("INSERT INTO targets VALUES ('#a', 1, 1000)")
    conn.commit()
    conn.close()


@pytest_twisted.ensureDeferred
async def test_a_schema_1_file_gains_the_account_tables(tmp_path, log_events):
    """A file of the previous schema opens, keeps its history and epoch, and gains accounts."""
    path = str(tmp_path / "old.sqlite3")
    _old_file(path)
    store = SQLiteStore(path, reactor=reactor)
    store.start()
    assert store.epoch() == "e0e0e0e0e0e0e0e0"
    assert store.last_seqs() == {"#a": 1}
    assert [r.params for r in await store.latest("#a", 5)] == [("#a", "old")]
    assert store.load_accounts() == AccountState()
    store.save_account("alice", ALICE)
    await store.stop()
    assert any("upgraded" in str(e.get("log_format", "")) for e in log_events)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"accounts", "rooms", "read_markers", "history", "targets", "meta"} <= tables
    finally:
        conn.close()
    store = SQLiteStore(path, reactor=reactor)
    assert store.load_accounts().accounts == {"alice": ALICE}
    assert store.epoch() == "e0e0e0e0e0e0e0e0"
    await store.stop()


def test_the_tool_migrates_a_schema_1_file_too(tmp_path):
    """AccountFile on an old file adds the tables and leaves the epoch and running mark alone."""
    path = str(tmp_path / "old.sqlite3")
    _old_file(path)
    with AccountFile(path) as file:
        assert file.server_running is False
        file.save_account("alice", ALICE)
        assert file.load_accounts().accounts == {"alice": ALICE}
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        assert dict(conn.execute("SELECT key, value FROM meta")) == {"epoch": "e0e0e0e0e0e0e0e0"}
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_the_tool_beside_a_running_store(tmp_path):
    """AccountFile sees the running mark, writes without taking the server's epoch away."""
    path = str(tmp_path / "chat.sqlite3")
    store = SQLiteStore(path, reactor=reactor)
    store.start()
    epoch = store.epoch()
    with AccountFile(path) as file:
        assert file.server_running is True
        file.save_account("bob", {"name": "bob"})
    await store.stop()
    store = SQLiteStore(path, reactor=reactor)
    assert store.epoch() == epoch  # the tool's visit was not an unclean stop
    assert set(store.load_accounts().accounts) == {"bob"}
    await store.stop()


@pytest.mark.parametrize("opener", ["store", "tool"])
def test_a_newer_schema_is_still_refused(tmp_path, opener):
    """A file of a schema above this code's is refused by the store and the tool alike."""
    path = str(tmp_path / "new.sqlite3")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE x (y)")
    conn.execute(f"PRAGMA application_id={database_module.APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={database_module.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as caught:
        if opener == "store":
            SQLiteStore(path, reactor=reactor)
        else:
            AccountFile(path)
    assert "newer" in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_unreadable_rows_are_skipped_at_load(tmp_path, log_events):
    """A row that is not a JSON object (edited by hand) is left out, with a warning."""
    path = str(tmp_path / "chat.sqlite3")
    with AccountFile(path) as file:
        file.save_account("alice", ALICE)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO accounts VALUES ('bad', '{not json')")
    conn.execute("INSERT INTO rooms VALUES ('#list', '[1, 2]')")
    conn.commit()
    conn.close()
    store = SQLiteStore(path, reactor=reactor)
    try:
        assert store.load_accounts().accounts == {"alice": ALICE}
        assert store.load_accounts().rooms == {}
        assert any("were ignored" in str(e.get("log_format", "")) for e in log_events)
    finally:
        await store.stop()


def test_the_tool_refuses_memory_and_directories(tmp_path):
    """AccountFile(':memory:') and a directory are StoreErrors with a reason."""
    with pytest.raises(StoreError, match="in-memory"):
        AccountFile(":memory:")
    with pytest.raises(StoreError, match="directory"):
        AccountFile(str(tmp_path))


def test_open_store_gives_account_stores():
    """Both values of --db give an IAccountStore."""
    store = open_store(":memory:", reactor=reactor)
    assert IAccountStore.providedBy(store)


@pytest_twisted.ensureDeferred
async def test_reload_reads_the_tools_changes_and_keeps_queued_ones(tmp_path):
    """
    reload_accounts: what another writer (the tool) put in the file is read; a change
    queued here since is kept over the file's, and the queue is written first.
    """
    path = str(tmp_path / "chat.sqlite3")
    store = SQLiteStore(path, reactor=reactor)
    store.start()
    store.save_account("alice", ALICE)
    store.save_marker("alice", "#maths", "t1")
    assert await store.flush() is True
    with AccountFile(path) as file:
        file.save_account("bob", {"name": "bob"})
        file.save_account("alice", None)  # deleted by the tool: its markers go too
        file.save_account("carol", {"name": "carol"})
    store.save_account("carol", {"name": "Carol", "email": "mine@example.org"})  # queued here
    state = await store.reload_accounts()
    assert state.accounts == {"bob": {"name": "bob"},
                              "carol": {"name": "Carol", "email": "mine@example.org"}}
    assert state.markers == {}
    assert store.load_accounts() == state
    await store.stop()
    with AccountFile(path) as file:
        assert file.load_accounts() == state


@pytest_twisted.ensureDeferred
async def test_reload_on_memory_is_the_state_as_it_is(tmp_path):
    """The memory store has nothing else to read: reload answers its state."""
    store = MemoryStore()
    store.save_account("alice", ALICE)
    assert (await store.reload_accounts()).accounts == {"alice": ALICE}
    await store.stop()


@pytest_twisted.ensureDeferred
async def test_reload_after_stop_fails_with_a_store_error(tmp_path):
    """A closed SQLite store cannot re-read: StoreError, the state unchanged."""
    store = SQLiteStore(str(tmp_path / "chat.sqlite3"), reactor=reactor)
    store.start()
    store.save_account("alice", ALICE)
    await store.stop()
    with pytest.raises(StoreError):
        await store.reload_accounts()
    assert set(store.load_accounts().accounts) == {"alice"}
