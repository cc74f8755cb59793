"""
Tests for twistchat.store: history in SQLite (and in memory), issue #7.

Real SQLite files in pytest's ``tmp_path``, never mocks.  The flush and prune
loops run on a ``task.Clock`` (nothing happens until a test advances it, and
every test ends with no delayed call left); the writer thread is real and
reports back through the running reactor (pytest-twisted).

The query tests run one corpus of a few hundred records through every way a
record can be held: written and still open, written and reopened, only
queued, half and half, and the MemoryStore; the answers must not differ.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

import twistchat.store.database as database_module
from twistchat.store import (
    HistoryRecord,
    IHistoryStore,
    MemoryStore,
    SQLiteStore,
    StoreError,
    dm_key,
    dm_parties,
    is_dm_key,
    open_store,
    record_from_event,
)

T0 = 1_700_000_000_000  # server time of the corpus, ms since the epoch
DAY_MS = 86_400_000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AB = dm_key("alice", "bob")
AC = dm_key("carol", "alice")


def rec(target, seq, time_ms=None, *, command="PRIVMSG", text=None, tags=None, msgid=None):
    """A record of ``target``; its msgid names target and seq unless given."""
    return HistoryRecord(
        target=target,
        seq=seq,
        time_ms=T0 + seq * 1000 if time_ms is None else time_ms,
        msgid=msgid or f"{target}/{seq}",
        command=command,
        source="alice!a@127.0.0.1",
        params=(target, f"message {seq}" if text is None else text),
        tags=tags or {},
    )


def seqs(records):
    """The sequence numbers of ``records``, in the order given."""
    return [r.seq for r in records]


def corpus():
    """
    A few hundred records in two rooms and two private conversations.

    #lobby: seqs 1..300, two records per second (time ties: seq 2k and 2k+1
    share a time), last at T0+150 s.  #other: 50, last at T0+250 s.
    alice/bob: 40, last at T0+140 s.  alice/carol: 10, last at T0+310 s.
    """
    records = [rec("#lobby", s, T0 + (s // 2) * 1000) for s in range(1, 301)]
    records += [rec("#other", s, T0 + 200_000 + s * 1000) for s in range(1, 51)]
    records += [rec(AB, s, T0 + 100_000 + s * 1000) for s in range(1, 41)]
    records += [rec(AC, s, T0 + 300_000 + s * 1000) for s in range(1, 11)]
    # Interleave targets as a live server would.
    records.sort(key=lambda r: (r.time_ms, r.target, r.seq))
    return records


class Stores:
    """Makes SQLite stores on one task.Clock and stops them all at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.clock = task.Clock()
        self.clock.advance(T0 / 1000 + 3600)
        self.made = []

    def path(self, name="history.sqlite3"):
        """A database path in the test's directory."""
        return str(self.tmp_path / name)

    def open(self, path=None, cls=SQLiteStore, **kwargs):
        """A started store on ``path`` (default: the test's one file)."""
        store = cls(path or self.path(), reactor=reactor, clock=self.clock, **kwargs)
        store.start()
        self.made.append(store)
        return store

    async def reopen(self, store, **kwargs):
        """Stop ``store`` and open its file again."""
        await store.stop()
        return self.open(store.path, **kwargs)

    def close_all(self):
        """Stop every store made; no loop may leave a delayed call behind."""
        for store in self.made:
            pytest_twisted.blockon(store.stop())
        assert self.clock.getDelayedCalls() == []


@pytest.fixture
def stores(tmp_path):
    """A :class:`Stores` for the test; checks no delayed calls remain."""
    made = Stores(tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def log_events():
    """Every log event of twistchat.store emitted during the test."""
    events = []

    def observe(event):
        # A subclass's Logger is named after the subclass (TinyDiskStore here).
        if event.get("log_namespace", "").startswith(("twistchat.store", __name__)):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


def levels(events):
    """The level names of log events."""
    return [e["log_level"].name for e in events]


# --- the query corpus, held every way --------------------------------------

MODES = ["flushed", "reopened", "queued", "mixed", "memory"]


@pytest.fixture(params=MODES)
def history(request, stores):
    """The corpus in a store, held as the parameter says."""
    records = corpus()
    mode = request.param
    if mode == "memory":
        store = MemoryStore(clock=stores.clock)
        store.start()
        stores.made.append(store)
    else:
        store = stores.open()
    half = len(records) // 2
    for i, record in enumerate(records):
        store.append(record)
        if mode == "mixed" and i == half:
            assert pytest_twisted.blockon(store.flush()) is True
    if mode in ("flushed", "reopened"):
        assert pytest_twisted.blockon(store.flush()) is True
        assert store.queued == 0
    if mode == "reopened":
        pytest_twisted.blockon(store.stop())
        store = stores.open(store.path)
    if mode == "queued":
        assert store.queued == len(records)
    return store


@pytest_twisted.ensureDeferred
async def test_latest(history):
    """LATEST: the last N of a target, ascending; all of it if N is large."""
    assert seqs(await history.latest("#lobby", 5)) == [296, 297, 298, 299, 300]
    assert seqs(await history.latest("#other", 1000)) == list(range(1, 51))
    assert await history.latest("#lobby", 0) == []
    assert await history.latest("#nowhere", 10) == []


@pytest_twisted.ensureDeferred
async def test_latest_returns_whole_records(history):
    """Queried records equal what was appended, field by field."""
    expected = [r for r in corpus() if r.target == "#other"][-3:]
    assert await history.latest("#other", 3) == expected


@pytest_twisted.ensureDeferred
async def test_before_and_after(history):
    """BEFORE and AFTER exclude their bound and pick the records nearest it."""
    assert seqs(await history.before("#lobby", 100, 3)) == [97, 98, 99]
    assert seqs(await history.before("#lobby", 3, 10)) == [1, 2]
    assert seqs(await history.after("#lobby", 100, 3)) == [101, 102, 103]
    assert seqs(await history.after("#lobby", 298, 10)) == [299, 300]
    assert await history.after("#lobby", 300, 10) == []
    assert await history.before("#lobby", 1, 10) == []


@pytest_twisted.ensureDeferred
async def test_bounds_beyond_sqlite_integers(history):
    """Numbers far outside 64 bits (a client's repair range) are no error."""
    assert seqs(await history.after("#lobby", -(2**80), 2)) == [1, 2]
    assert seqs(await history.before("#lobby", 2**80, 2)) == [299, 300]
    assert seqs(await history.latest("#lobby", 2**80))[-1] == 300


@pytest_twisted.ensureDeferred
async def test_between_either_order(history):
    """BETWEEN excludes both bounds; N nearest the first bound, ascending either way."""
    assert seqs(await history.between("#lobby", 10, 20, 100)) == list(range(11, 20))
    assert seqs(await history.between("#lobby", 10, 20, 3)) == [11, 12, 13]
    assert seqs(await history.between("#lobby", 20, 10, 3)) == [17, 18, 19]
    assert await history.between("#lobby", 10, 11, 5) == []
    assert await history.between("#lobby", 10, 10, 5) == []


@pytest_twisted.ensureDeferred
async def test_around(history):
    """AROUND: (N-1)//2 before the pivot, the pivot, the rest after; ends fill from one side."""
    assert seqs(await history.around("#lobby", 150, 10)) == list(range(146, 156))
    assert seqs(await history.around("#lobby", 150, 11)) == list(range(145, 156))
    assert seqs(await history.around("#lobby", 2, 10)) == list(range(1, 11))
    assert seqs(await history.around("#lobby", 300, 10)) == list(range(291, 301))
    assert seqs(await history.around("#lobby", 1000, 4)) == [297, 298, 299, 300]
    assert seqs(await history.around("#lobby", 150, 1)) == [150]
    assert await history.around("#lobby", 150, 0) == []
    assert seqs(await history.around("#other", 25, 1000)) == list(range(1, 51))


@pytest_twisted.ensureDeferred
async def test_seq_for_msgid(history):
    """A msgid maps to its seq, only within its own target."""
    assert await history.seq_for_msgid("#lobby", "#lobby/123") == 123
    assert await history.seq_for_msgid("#lobby", "#lobby/300") == 300
    assert await history.seq_for_msgid("#other", "#lobby/123") is None
    assert await history.seq_for_msgid("#lobby", "no-such-id") is None


@pytest_twisted.ensureDeferred
async def test_seq_for_time(history):
    """First seq after a time, last seq before it; ties on time resolved by seq."""
    # #lobby: seq 2k and 2k+1 share time T0 + k s.
    assert await history.seq_for_time("#lobby", T0 + 1000, after=True) == 4
    assert await history.seq_for_time("#lobby", T0 + 1000, after=False) == 1
    assert await history.seq_for_time("#lobby", T0 + 1500, after=True) == 4
    assert await history.seq_for_time("#lobby", T0 + 1500, after=False) == 3
    assert await history.seq_for_time("#lobby", 0, after=True) == 1
    assert await history.seq_for_time("#lobby", T0, after=False) is None
    assert await history.seq_for_time("#lobby", T0 + 150_000, after=True) is None
    assert await history.seq_for_time("#lobby", T0 + 10**9, after=False) == 300


@pytest_twisted.ensureDeferred
async def test_targets(history):
    """TARGETS: visible targets with their latest time inside the window, ascending."""
    everything = dict(since_ms=T0, until_ms=T0 + 10**9, limit=10)
    assert await history.targets(**everything) == [
        (AB, T0 + 140_000), ("#lobby", T0 + 150_000), ("#other", T0 + 250_000), (AC, T0 + 310_000),
    ]
    # The time is the latest *inside* the window (exclusive bounds).
    assert await history.targets(since_ms=T0, until_ms=T0 + 145_000, limit=10) == [
        (AB, T0 + 140_000), ("#lobby", T0 + 144_000),
    ]
    assert await history.targets(since_ms=T0 + 310_000, until_ms=T0 + 10**9, limit=10) == []
    assert await history.targets(since_ms=T0 + 309_999, until_ms=T0 + 10**9, limit=10) == [
        (AC, T0 + 310_000),
    ]
    # Forwards: the N nearest the first bound; backwards: nearest the first bound too.
    assert await history.targets(since_ms=T0, until_ms=T0 + 10**9, limit=2) == [
        (AB, T0 + 140_000), ("#lobby", T0 + 150_000),
    ]
    assert await history.targets(since_ms=T0 + 10**9, until_ms=T0, limit=2) == [
        ("#other", T0 + 250_000), (AC, T0 + 310_000),
    ]
    # Only an upper bound: the N latest before it.
    assert await history.targets(until_ms=T0 + 200_000, limit=1) == [("#lobby", T0 + 150_000)]
    assert await history.targets(**{**everything, "limit": 0}) == []


@pytest_twisted.ensureDeferred
async def test_targets_visibility(history):
    """TARGETS lists the rooms the asker may see and only the asker's own conversations."""
    assert await history.targets(**_all_time(), visible={"#lobby"}, dm_party="alice") == [
        (AB, T0 + 140_000), ("#lobby", T0 + 150_000), (AC, T0 + 310_000),
    ]
    assert await history.targets(**_all_time(), visible={"#other"}, dm_party="bob") == [
        (AB, T0 + 140_000), ("#other", T0 + 250_000),
    ]
    assert await history.targets(**_all_time(), visible=set(), dm_party="dave") == []
    assert await history.targets(**_all_time(), visible={"#lobby"}) == [("#lobby", T0 + 150_000)]


def _all_time():
    """TARGETS arguments covering the whole corpus."""
    return dict(since_ms=0, until_ms=T0 + 10**9, limit=100)


@pytest_twisted.ensureDeferred
async def test_dm_found_only_by_its_key(history):
    """A private conversation is stored under dm_key, never under either nick."""
    assert seqs(await history.latest(dm_key("bob", "alice"), 3)) == [38, 39, 40]
    assert seqs(await history.latest("~dm:alice:carol", 100)) == list(range(1, 11))
    for other in ("alice", "bob", "carol", "~dm:alice", "~dm:bob:alice", "#lobby"):
        found = await history.latest(other, 1000)
        assert all(r.target == other for r in found)
        assert not any(is_dm_key(r.target) for r in found)
    assert await history.seq_for_msgid(AC, f"{AB}/5") is None


def test_last_seqs_of_corpus(history):
    """last_seqs: every target's last number, however the records are held."""
    assert history.last_seqs() == {"#lobby": 300, "#other": 50, AB: 40, AC: 10}


# --- the record and its keys ------------------------------------------------


def test_dm_key():
    """dm_key sorts the two nicks, so either party computes the same key."""
    assert dm_key("bob", "alice") == dm_key("alice", "bob") == "~dm:alice:bob"
    assert dm_key("zed", "zed") == "~dm:zed:zed"
    assert dm_parties(dm_key("b{", "a|")) == ("a|", "b{")
    assert dm_parties("#lobby") is None
    assert is_dm_key(AB) and not is_dm_key("#lobby")


def test_record_is_an_immutable_value():
    """params become a tuple and tags a read-only copy: equal records, whatever was passed."""
    tags = {"+draft/reply": "abc"}
    made = HistoryRecord("#a", 1, T0, "m", "PRIVMSG", "a!b@c", ["#a", "hi"], tags)
    tags["+draft/reply"] = "changed"
    assert made == HistoryRecord("#a", 1, T0, "m", "PRIVMSG", "a!b@c", ("#a", "hi"),
                                 {"+draft/reply": "abc"})
    assert made.params == ("#a", "hi")
    with pytest.raises(TypeError):
        made.tags["+x"] = "y"
    assert HistoryRecord("#a", 1, T0, "m", "JOIN", "a!b@c", ("#a",)).tags == {}
    assert hash(made) == hash(HistoryRecord("#a", 1, T0, "m", "PRIVMSG", "a!b@c", ("#a", "hi")))


def test_record_from_event():
    """A registry Event becomes a record with its number, time, msgid, line and client tags."""
    from twistchat.core.events import Event
    from twistchat.wire import Message

    event = Event("#a", 7, T0, "abc1", Message("PRIVMSG", ("#a", "hi"), "al!a@h"), {"+x": "1"})
    assert record_from_event(event) == HistoryRecord(
        "#a", 7, T0, "abc1", "PRIVMSG", "al!a@h", ("#a", "hi"), {"+x": "1"})


def test_open_store_picks_the_provider(stores):
    """--db=:memory: gives the MemoryStore, a path the SQLiteStore; both provide IHistoryStore."""
    memory = open_store(":memory:", clock=stores.clock)
    on_disk = open_store(stores.path(), reactor=reactor, clock=stores.clock)
    stores.made += [memory, on_disk]
    assert isinstance(memory, MemoryStore) and isinstance(on_disk, SQLiteStore)
    assert verifyObject(IHistoryStore, memory) and verifyObject(IHistoryStore, on_disk)


# --- epochs ---------------------------------------------------------------------

# The version-1 schema as files were written before the meta table (and with it
# the epoch) existed: history, its indexes and targets, nothing else.
V1_SCHEMA_WITHOUT_META = (
    """CREATE TABLE history (
        target TEXT NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL,
        msgid TEXT NOT NULL, command TEXT NOT NULL, source TEXT NOT NULL,
        params TEXT NOT NULL, tags TEXT, PRIMARY KEY (target, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX history_time ON history (target, time_ms)",
    "CREATE INDEX history_msgid ON history (target, msgid)",
    """CREATE TABLE targets (
        target TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_time_ms INTEGER NOT NULL
    )""",
)


@pytest_twisted.ensureDeferred
async def test_epoch_is_kept_in_the_file(stores):
    """The same file reopened gives the same epoch, whatever was written in between."""
    store = stores.open()
    epoch = store.epoch()
    assert isinstance(epoch, str) and epoch
    store.append(rec("#a", 1))
    assert await store.flush() is True
    store = await stores.reopen(store)
    assert store.epoch() == epoch
    store = await stores.reopen(store)
    assert store.epoch() == epoch


@pytest_twisted.ensureDeferred
async def test_new_file_gets_a_new_epoch(stores):
    """Another file, or the same path made anew, restarts numbering: a different epoch."""
    first = stores.open()
    other = stores.open(stores.path("other.sqlite3"))
    assert first.epoch() != other.epoch()
    epoch = first.epoch()
    await first.stop()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(first.path + suffix):
            os.remove(first.path + suffix)
    again = stores.open(first.path)
    assert again.last_seqs() == {}
    assert again.epoch() not in (epoch, other.epoch())


def test_memory_store_epoch_is_per_instance(stores):
    """Every MemoryStore numbers from scratch, so each has its own epoch, fixed for its life."""
    one, two = MemoryStore(clock=stores.clock), open_store(":memory:", clock=stores.clock)
    stores.made += [one, two]
    assert one.epoch() != two.epoch()
    assert one.epoch() == one.epoch() and one.epoch()
    one.append(rec("#a", 1))
    assert one.epoch() == one.epoch()


@pytest_twisted.ensureDeferred
async def test_version_1_file_without_meta_gets_an_epoch_and_keeps_it(stores):
    """
    A schema-1 file from before the meta table opens as before, then has an epoch for good.

    The file is made the old way, with sqlite3 alone: its records and last
    seqs are all there, the meta table is added, and the epoch it is given on
    the first opening is the one every later opening reads.
    """
    path = stores.path()
    conn = sqlite3.connect(path)
    for statement in V1_SCHEMA_WITHOUT_META:
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id={database_module.APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    conn.executemany(
        "INSERT INTO history VALUES (?, ?, ?, ?, 'PRIVMSG', 'alice!a@h', ?, NULL)",
        [("#a", seq, T0 + seq, f"m{seq}", f'["#a", "old {seq}"]') for seq in (1, 2, 3)])
    conn.execute("INSERT INTO targets VALUES ('#a', 3, ?)", (T0 + 3,))
    conn.commit()
    conn.close()

    store = stores.open()
    epoch = store.epoch()
    assert epoch
    assert store.last_seqs() == {"#a": 3}
    assert [r.params for r in await store.latest("#a", 10)] == [
        ("#a", "old 1"), ("#a", "old 2"), ("#a", "old 3")]
    store = await stores.reopen(store)
    assert store.epoch() == epoch
    await store.stop()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (database_module.SCHEMA_VERSION,)
        assert conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone() == (epoch,)
    finally:
        conn.close()


# --- durability ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_reopen_gives_back_the_same_records(stores):
    """Appended, flushed, reopened: equal records (tags, non-ASCII, odd params) and last_seqs."""
    records = [
        rec("#a", 1, tags={"+draft/reply": "x;y z\\", "+typing": ""}),
        rec("#a", 2, text="naïve ☃ 日本語 \x01ACTION waves\x01"),
        HistoryRecord("#a", 3, T0, "id3", "TOPIC", "op!o@h", ("#a", "")),
        HistoryRecord("#a", 4, T0, "id4", "QUIT", "bob!b@h", ()),
        HistoryRecord("#a", 5, T0, "id5", "MODE", "op!o@h", ("#a", "+o-v", "x", "y")),
        rec(AB, 7, text="private"),
    ]
    store = stores.open()
    for record in records:
        store.append(record)
    assert store.last_seqs() == {"#a": 5, AB: 7}
    assert await store.flush() is True
    store = await stores.reopen(store)
    assert store.last_seqs() == {"#a": 5, AB: 7}
    assert await store.latest("#a", 10) == records[:5]
    assert await store.latest(AB, 10) == records[5:]


@pytest_twisted.ensureDeferred
async def test_file_is_in_wal_mode(stores):
    """The database runs in WAL mode, so readers never block the writer."""
    store = stores.open()
    store.append(rec("#a", 1))
    await store.flush()
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT count(*) FROM history").fetchone()[0] == 1
    finally:
        other.close()


@pytest_twisted.ensureDeferred
async def test_flush_loop_writes_in_the_background(stores):
    """The LoopingCall writes the queue every flush_interval, without anyone calling flush()."""
    store = stores.open(flush_interval=0.5)
    for seq in range(1, 21):
        store.append(rec("#a", seq))
    stores.clock.advance(0.4)
    assert store.queued == 20
    stores.clock.advance(0.1)
    for _ in range(500):  # the write is in the writer thread; wait for it, bounded
        if store.queued == 0:
            break
        await task.deferLater(reactor, 0.01)
    assert store.queued == 0
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("SELECT max(seq) FROM history").fetchone()[0] == 20
    finally:
        other.close()


@pytest_twisted.ensureDeferred
async def test_stop_writes_what_was_queued(stores):
    """A clean stop() leaves every appended record on disk; then no delayed call remains."""
    store = stores.open()
    for seq in range(1, 51):
        store.append(rec("#a", seq))
    await store.stop()
    assert stores.clock.getDelayedCalls() == []
    store = stores.open()
    assert seqs(await store.latest("#a", 100)) == list(range(1, 51))
    assert store.last_seqs() == {"#a": 50}


@pytest_twisted.ensureDeferred
async def test_stop_is_idempotent_and_later_appends_are_dropped(stores):
    """stop() twice is fine; append() after it raises nothing and counts the record dropped."""
    store = stores.open()
    first, second = store.stop(), store.stop()
    await first
    await second
    await store.stop()
    store.append(rec("#a", 1))
    assert store.dropped == 1
    with pytest.raises(StoreError):
        await store.latest("#a", 1)


def test_unclean_exit_keeps_what_was_flushed(tmp_path):
    """
    A process killed without stop() loses only what was still queued.

    The child flushes ten records, queues five more and exits at once: the
    file holds the ten, and last_seqs says 10 (README: "at most the last
    flush interval").
    """
    path = str(tmp_path / "killed.sqlite3")
    child = textwrap.dedent("""
        import os, sys
        from twisted.internet import task
        from twisted.internet.defer import Deferred
        from twistchat.store import HistoryRecord, SQLiteStore

        def record(seq):
            return HistoryRecord("#a", seq, seq, f"m{seq}", "PRIVMSG", "a!a@h", ("#a", "x"))

        async def main(reactor):
            store = SQLiteStore(sys.argv[1], reactor=reactor)
            store.start()
            for seq in range(1, 11):
                store.append(record(seq))
            assert await store.flush()
            for seq in range(11, 16):
                store.append(record(seq))
            os._exit(0)

        task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
    """)
    subprocess.run([sys.executable, "-c", child, path], cwd=REPO, check=True, timeout=30,
                   env={**os.environ, "PYTHONPATH": REPO})
    conn = sqlite3.connect(path)
    try:
        assert [s for (s,) in conn.execute("SELECT seq FROM history ORDER BY seq")] == \
            list(range(1, 11))
        assert conn.execute("SELECT last_seq FROM targets").fetchall() == [(10,)]
    finally:
        conn.close()


def test_reactor_shutdown_writes_the_queue(tmp_path):
    """
    A reactor that stops without anyone calling stop() still gets the queue written.

    The store's own before-shutdown trigger flushes and closes; the child
    process then exits by itself (the writer thread holds nothing up).
    """
    path = str(tmp_path / "shutdown.sqlite3")
    child = textwrap.dedent("""
        import sys
        from twisted.internet import defer, task
        from twistchat.store import HistoryRecord, SQLiteStore

        def main(reactor):
            store = SQLiteStore(sys.argv[1], reactor=reactor)
            store.start()
            for seq in range(1, 8):
                store.append(HistoryRecord("#a", seq, seq, f"m{seq}", "JOIN", "a!a@h", ("#a",)))
            return defer.succeed(None)  # ends react(): reactor.stop(), no store.stop()

        task.react(main)
    """)
    subprocess.run([sys.executable, "-c", child, path], cwd=REPO, check=True, timeout=30,
                   env={**os.environ, "PYTHONPATH": REPO})
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*), max(seq) FROM history").fetchone() == (7, 7)
    finally:
        conn.close()


# --- files that cannot be used ---------------------------------------------------


def _one_sentence_naming(error, path):
    """The StoreError names the file in one line."""
    text = str(error)
    assert path in text
    assert "\n" not in text
    assert error.path == path


@pytest.mark.parametrize("content", [
    b"this is not a database, just text\n" * 200,
    b"SQLite format 3\x00" + bytes(range(256)) * 20,
])
def test_corrupt_file_is_a_clear_error(tmp_path, content):
    """Garbage bytes (with or without the SQLite header) raise StoreError naming the file."""
    path = str(tmp_path / "corrupt.sqlite3")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path, reactor=reactor, clock=task.Clock())
    _one_sentence_naming(caught.value, path)
    assert "not an SQLite database" in str(caught.value)
    with open(path, "rb") as f:
        assert f.read() == content  # left as it was


def test_other_programs_database_is_refused(tmp_path):
    """An SQLite file of another program is not taken over."""
    path = str(tmp_path / "other.sqlite3")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path, reactor=reactor, clock=task.Clock())
    _one_sentence_naming(caught.value, path)
    assert "another program" in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_newer_schema_is_refused(stores):
    """A file written by a newer schema version is refused rather than misread."""
    await stores.open().stop()
    conn = sqlite3.connect(stores.path())
    conn.execute(f"PRAGMA user_version={database_module.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError) as caught:
        SQLiteStore(stores.path(), reactor=reactor, clock=stores.clock)
    _one_sentence_naming(caught.value, stores.path())
    assert "newer" in str(caught.value)


@pytest.mark.parametrize("where", ["missing-dir", "under-a-file", "a-directory"])
def test_unwritable_path_is_a_clear_error(tmp_path, where):
    """A path that cannot be created or opened raises StoreError naming it."""
    (tmp_path / "plain-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    path = str({
        "missing-dir": tmp_path / "no" / "such" / "dir" / "h.sqlite3",
        "under-a-file": tmp_path / "plain-file" / "h.sqlite3",
        "a-directory": tmp_path / "a-dir",
    }[where])
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path, reactor=reactor, clock=task.Clock())
    _one_sentence_naming(caught.value, path)
    if where != "a-directory":
        assert "cannot create the file" in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_read_only_file_is_a_clear_error(stores):
    """
    An existing history file that cannot be written is refused at start-up.

    As a normal user the file is made read-only.  Root writes such files
    anyway, so then a child process remounts the test's directory read-only
    in a mount namespace of its own (nothing outside the child sees it).
    """
    await stores.open().stop()
    path = stores.path()
    if os.geteuid() != 0:
        os.chmod(path, 0o444)
        with pytest.raises(StoreError) as caught:
            SQLiteStore(path, reactor=reactor, clock=task.Clock())
        _one_sentence_naming(caught.value, path)
        assert "read-only" in str(caught.value)
        return
    if shutil.which("unshare") is None:
        pytest.skip("root, and no unshare(1) to make a read-only mount")
    child = textwrap.dedent("""
        import sys
        from twisted.internet import task
        from twistchat.store import SQLiteStore, StoreError
        try:
            SQLiteStore(sys.argv[1], clock=task.Clock())
        except StoreError as error:
            print(error)
    """)
    directory = str(stores.tmp_path)
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" || exit 97\n' \
             'exec "$2" -c "$3" "$4"'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         directory, sys.executable, child, path],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": REPO})
    if result.returncode == 97 or "unshare:" in result.stderr:
        pytest.skip(f"cannot make a read-only mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message.startswith(f"cannot use history database {path}: ")
    assert message.endswith("read-only)") and "\n" not in message


# --- failures while running -------------------------------------------------------


class Locker:
    """Another connection holding the write lock, as a second process could."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self):
        """Give the lock back."""
        self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest_twisted.ensureDeferred
async def test_failed_write_keeps_records_and_logs_once(stores, log_events):
    """
    A locked database: flush fails quietly, records stay queued and visible,
    one error event is logged for the whole outage, and they are written once
    the lock is gone.
    """
    store = stores.open(busy_timeout=0.05)
    locker = Locker(store.path)
    try:
        for seq in range(1, 4):
            store.append(rec("#a", seq))
        assert await store.flush() is False
        store.append(rec("#a", 4))
        assert await store.flush() is False
        stores.clock.advance(store.flush_interval)  # the loop retries too, and keeps going
        assert await store.flush() is False
        assert store.queued == 4
        assert seqs(await store.latest("#a", 10)) == [1, 2, 3, 4]
        assert levels(log_events) == ["error"]
        assert "locked" in log_events[0]["error"]
    finally:
        locker.release()
    assert await store.flush() is True
    assert store.queued == 0 and store.dropped == 0
    assert levels(log_events) == ["error", "info"]
    store = await stores.reopen(store)
    assert seqs(await store.latest("#a", 10)) == [1, 2, 3, 4]


@pytest_twisted.ensureDeferred
async def test_queue_bound_drops_oldest_while_failing(stores):
    """While writes fail the queue keeps max_pending records, dropping (and counting) the oldest."""
    store = stores.open(busy_timeout=0.05, max_pending=5)
    locker = Locker(store.path)
    try:
        for seq in range(1, 4):
            store.append(rec("#a", seq))
        assert await store.flush() is False
        for seq in range(4, 9):
            store.append(rec("#a", seq))
        assert store.dropped == 3
        assert seqs(await store.latest("#a", 10)) == [4, 5, 6, 7, 8]
    finally:
        locker.release()
    assert await store.flush() is True
    store = await stores.reopen(store)
    assert seqs(await store.latest("#a", 10)) == [4, 5, 6, 7, 8]
    assert store.last_seqs() == {"#a": 8}


class TinyDiskStore(SQLiteStore):
    """A store whose database may not grow past a few pages: a real SQLITE_FULL."""

    def _connect(self):
        """The usual connection, capped at 16 pages of 4 KiB."""
        conn = super()._connect()
        conn.execute("PRAGMA max_page_count=16")
        return conn


@pytest_twisted.ensureDeferred
async def test_disk_full_degrades_history_not_chat(stores, log_events):
    """A full disk: appends go on, queries still answer from memory, one error is logged."""
    store = stores.open(cls=TinyDiskStore)
    for seq in range(1, 201):
        store.append(rec("#a", seq, text="x" * 400))
    assert await store.flush() is False
    for seq in range(201, 211):
        store.append(rec("#a", seq))
    assert await store.flush() is False
    assert seqs(await store.latest("#a", 3)) == [208, 209, 210]
    assert store.queued == 210
    assert levels(log_events) == ["error"]
    assert "disk is full" in log_events[0]["error"]
    # On stop, what could not be written is reported lost, once.
    await store.stop()
    assert store.dropped == 210
    assert levels(log_events) == ["error", "error"]


@pytest_twisted.ensureDeferred
async def test_append_never_raises(stores, log_events):
    """Malformed appends are counted, not raised; an unstorable record does not block its batch."""
    store = stores.open()
    store.append(None)
    store.append(object())
    assert store.dropped == 2
    store.append(rec("#a", 1))
    store.append(HistoryRecord("#a", 2, T0, "m2", "PRIVMSG", "a!b@c", ("#a", object())))
    store.append(rec("#a", 3))
    store.append(rec("#a", 4, text="lone surrogate \udcff"))
    store.append(rec("#b", 2**64))
    assert await store.flush() is True
    assert store.dropped == 5
    store = await stores.reopen(store)
    assert seqs(await store.latest("#a", 10)) == [1, 3]
    # Number 4 was used (and stays used); #b's was never storable.
    assert store.last_seqs() == {"#a": 4}
    assert levels(log_events) == ["critical", "warn"]  # the bad append, the skipped record


@pytest_twisted.ensureDeferred
async def test_duplicate_seq_keeps_the_first(stores):
    """A (target, seq) already held is ignored, stored or queued, rather than failing the batch."""
    store = stores.open()
    store.append(rec("#a", 1, text="first"))
    await store.flush()
    store.append(rec("#a", 1, text="second"))
    store.append(rec("#a", 2, text="two"))
    store.append(rec("#a", 2, text="two again"))
    assert [r.params[1] for r in await store.latest("#a", 10)] == ["first", "two"]
    assert await store.flush() is True
    assert [r.params[1] for r in await store.latest("#a", 10)] == ["first", "two"]


# --- retention -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_prune_by_count(stores):
    """max_per_target keeps the newest N of each target; other targets are untouched."""
    store = stores.open(max_per_target=50)
    for seq in range(1, 121):
        store.append(rec("#big", seq))
    for seq in range(1, 11):
        store.append(rec("#small", seq))
    await store.flush()
    assert await store.prune() == 70
    assert seqs(await store.latest("#big", 1000)) == list(range(71, 121))
    assert seqs(await store.latest("#small", 1000)) == list(range(1, 11))
    assert await store.prune() == 0


@pytest_twisted.ensureDeferred
async def test_prune_deletes_in_chunks(stores, monkeypatch):
    """A large prune runs as several small transactions and still removes everything it should."""
    monkeypatch.setattr(database_module, "_PRUNE_CHUNK", 7)
    store = stores.open(max_per_target=10)
    for seq in range(1, 101):
        store.append(rec("#a", seq))
    await store.flush()
    assert await store.prune() == 90
    assert seqs(await store.latest("#a", 1000)) == list(range(91, 101))


@pytest_twisted.ensureDeferred
async def test_prune_by_age_in_the_background(stores):
    """The prune loop removes records older than max_age_days, on its own, every prune_interval."""
    now_ms = int(stores.clock.seconds() * 1000)
    store = stores.open(max_per_target=None, max_age_days=2, prune_interval=30)
    for seq in range(1, 11):  # one record a day, the last one an hour ago
        store.append(rec("#a", seq, now_ms - (10 - seq) * DAY_MS - 3_600_000))
    await store.flush()
    stores.clock.advance(30)
    for _ in range(500):  # the loop's prune runs in the writer thread; wait, bounded
        remaining = seqs(await store.latest("#a", 100))
        if len(remaining) < 10:
            break
        await task.deferLater(reactor, 0.01)
    # Kept: the records younger than two days (1 h and 1 d 1 h old); 2 d 1 h old is gone.
    assert remaining == [9, 10]


@pytest_twisted.ensureDeferred
async def test_last_seqs_survive_pruning(stores):
    """Pruning everything of a target does not lower its last seq, even after a restart."""
    store = stores.open(max_per_target=None, max_age_days=1)
    for seq in range(1, 6):
        store.append(rec("#old", seq, T0 - 30 * DAY_MS))
    await store.flush()
    assert await store.prune() == 5
    store = await stores.reopen(store, max_per_target=None, max_age_days=1)
    assert await store.latest("#old", 10) == []
    assert store.last_seqs() == {"#old": 5}


@pytest_twisted.ensureDeferred
async def test_memory_store_retention(stores):
    """MemoryStore applies the same count and age limits."""
    clock = stores.clock
    now_ms = int(clock.seconds() * 1000)
    store = MemoryStore(clock=clock, max_per_target=20, max_age_days=1)
    store.start()
    stores.made.append(store)
    for seq in range(1, 41):
        store.append(rec("#a", seq, now_ms - (40 - seq) * 3_600_000))  # hourly
    await store.prune()
    assert seqs(await store.latest("#a", 100)) == list(range(21, 41))
    clock.advance(10 * 3600)  # ten hours on, records 21..25 are more than a day old
    assert seqs(await store.latest("#a", 100)) == list(range(26, 41))  # by the prune loop
    assert await store.prune() == 0
    assert store.last_seqs() == {"#a": 40}


@pytest_twisted.ensureDeferred
async def test_epoch_changes_after_a_run_that_did_not_stop_cleanly(stores):
    """
    A run killed before stop() may have numbered events it never wrote: a new epoch.

    The file is left as SIGKILL leaves it (the connection dropped, no clean
    stop); the next opening draws a new epoch, and a clean stop after that
    keeps it for the opening after.
    """
    store = stores.open()
    killed_epoch = store.epoch()
    store.append(rec("#a", 1))
    assert await store.flush() is True
    # What SIGKILL leaves: the file as last flushed, and no clean stop.
    for loop in (store._flush_loop, store._prune_loop):
        if loop.running:
            loop.stop()
    if store._shutdown_trigger is not None:
        store._reactor.removeSystemEventTrigger(store._shutdown_trigger)
    store._pool.stop()
    store._conn.close()
    stores.made.remove(store)
    after_kill = stores.open(store.path)
    assert after_kill.last_seqs() == {"#a": 1}
    assert after_kill.epoch() != killed_epoch
    after_clean_stop = await stores.reopen(after_kill)
    assert after_clean_stop.epoch() == after_kill.epoch()


@pytest.mark.parametrize("sync, pragma", [("full", 2), ("normal", 1)])
def test_sync_setting_is_what_the_connection_runs_with(stores, sync, pragma):
    """--history-sync: FULL (2) fsyncs every batch, NORMAL (1) does not (issue #12, item 4)."""
    store = stores.open(sync=sync)
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == pragma


def test_sync_defaults_to_full_and_refuses_nonsense(stores):
    """The default keeps the README's promise through a power loss; a typo is refused."""
    assert stores.open().sync == "full"
    with pytest.raises(ValueError, match="full, normal"):
        SQLiteStore(stores.path("x.sqlite3"), reactor=reactor, sync="sometimes")
