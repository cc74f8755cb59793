"""
UDP REPAIR from history (issue #12, items 2 and 3): what memory no longer holds.

docs/udp-protocol.md, "Repair": the events of the range, exactly as broadcast,
from memory what the room log still holds there and from history what it does
not (after a restart, or for an old range); only what history no longer has
either is ``FAIL REPAIR GONE``.  In memory (MemoryStore, task.Clock) and, for
a restart, on a real SQLite file.  Each test names one rule in its docstring.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor, task

from tests.memory import MemoryServer
from tests.udpnet import Listener, Raw, UDPWorld, parse_reply
from twistchat.frontends.udp import UDPLimits
from twistchat.history import History
from twistchat.store import MemoryStore, SQLiteStore

LIMITS = UDPLimits(flood_burst=10_000, flood_rate=10_000.0)


class Room:
    """A MemoryServer with a store, a UDP world with History over it, alice in #room."""

    def __init__(self, store, recent: int = 5, limits: UDPLimits = LIMITS) -> None:
        self.tcp = MemoryServer(registry_limits={"recent_history": recent}, store=store)
        self.history = History(store, self.tcp.registry)
        self.world = UDPWorld(registry=self.tcp.registry, clock=self.tcp.clock, limits=limits,
                              history=self.history)
        self.listener = Listener(self.world)
        self.alice = Raw(self.world)
        assert self.alice.register("alice")[0].command == "001"
        self.alice.command("JOIN #room")

    def broadcast(self) -> dict:
        """``{seq: bytes}`` of every room event heard on the broadcast address so far."""
        heard = {}
        for data in self.listener.got:
            m = parse_reply(data)
            if "seq" in m.tags:
                heard[int(m.tags["seq"])] = data
        return heard

    def repair(self, first: int, last: int, room: str = "#room") -> list[bytes]:
        """Send ``REPAIR room first last``; the datagrams that answer it."""
        self.alice.take()
        self.alice.send(f"@token={self.alice.token} REPAIR {room} {first} {last}".encode())
        got, self.alice.got = self.alice.got, []
        return got

    def stop(self) -> None:
        self.world.stop()


def chat(room: Room, count: int) -> None:
    """Events of every kind in #room: messages, a NICK and a QUIT (room-tagged on UDP)."""
    bob = Raw(room.world)
    bob.register("bob")
    bob.command("JOIN #room")
    for i in range(count):
        room.alice.command(f"PRIVMSG #room :m{i}")
    bob.command("NICK robert")
    bob.command("NOTICE #room :n")
    bob.command("QUIT :bye")


def test_repair_below_memory_comes_from_history_as_broadcast():
    """A range the room log's window has moved past: from history, the very bytes broadcast."""
    room = Room(MemoryStore(), recent=5)
    chat(room, 12)
    heard = room.broadcast()
    latest = room.tcp.registry.latest("#room")
    assert latest == 17 and room.tcp.registry.log.held("#room", 1, latest, 99)[0] == 13
    got = room.repair(1, latest)
    assert got == [heard[seq] for seq in range(1, latest + 1)]
    assert any(b"NICK" in d and b"room=#room" in d for d in got)
    assert any(b"QUIT" in d and b"room=#room" in d for d in got)
    room.stop()


def test_repair_straddling_memory_and_history_is_in_order():
    """Part from history, part from memory: one answer, in seq order, each once."""
    room = Room(MemoryStore(), recent=5)
    chat(room, 12)
    heard = room.broadcast()
    got = room.repair(10, 16)
    assert got == [heard[seq] for seq in range(10, 17)]
    room.stop()


def test_only_what_history_no_longer_has_is_gone():
    """History pruned below seq 7: GONE 1..6 (that part only), then 7..12 from history."""
    store = MemoryStore(max_per_target=11)
    room = Room(store, recent=5)
    chat(room, 12)
    store.prune()
    heard = room.broadcast()
    got = room.repair(1, 12)
    fail = parse_reply(got[0])
    assert fail.command == "FAIL" and fail.params[:5] == ("REPAIR", "GONE", "#room", "1", "6")
    assert got[1:] == [heard[seq] for seq in range(7, 13)]
    room.stop()


def test_without_history_the_range_below_memory_is_gone():
    """A front-end with no History answers what memory lacks GONE, as before #12."""
    tcp = MemoryServer(registry_limits={"recent_history": 5})
    w = UDPWorld(registry=tcp.registry, clock=tcp.clock, limits=LIMITS)
    alice = Raw(w)
    alice.register("alice")
    alice.command("JOIN #room")
    for i in range(10):
        alice.command(f"PRIVMSG #room :m{i}")
    alice.take()
    alice.send(f"@token={alice.token} REPAIR #room 2 8".encode())
    got = alice.take()
    assert got[0].params[:5] == ("REPAIR", "GONE", "#room", "2", "6")
    assert [m.tags["seq"] for m in got[1:]] == ["7", "8"]
    w.stop()


def test_history_repair_keeps_the_range_limit():
    """repair_limit bounds a history answer too: the lowest events of the range first."""
    room = Room(MemoryStore(), recent=5,
                limits=UDPLimits(repair_limit=4, flood_burst=10_000, flood_rate=10_000.0))
    chat(room, 12)
    heard = room.broadcast()
    assert room.repair(2, 16) == [heard[seq] for seq in range(2, 6)]
    room.stop()


def test_history_repair_keeps_the_rate_limit():
    """Past repair_burst, a history repair gets nothing more, as a memory one."""
    room = Room(MemoryStore(), recent=5,
                limits=UDPLimits(repair_burst=6, repair_rate=0.001, flood_burst=10_000,
                                 flood_rate=10_000.0))
    chat(room, 12)
    assert len(room.repair(1, 5)) == 5
    assert len(room.repair(1, 5)) == 1
    assert room.repair(1, 5) == []
    room.stop()


def test_history_repair_asks_the_core_who_may_read():
    """A room the session is not in: NOT_ALLOWED, nothing from history either."""
    room = Room(MemoryStore(), recent=5)
    chat(room, 3)
    outsider = Raw(room.world)
    outsider.register("eve")
    outsider.send(f"@token={outsider.token} REPAIR #room 1 5".encode())
    got = outsider.take()
    assert [(m.command, m.params[:2]) for m in got] == [("FAIL", ("REPAIR", "NOT_ALLOWED"))]
    member = room.tcp.registry.find_user("alice")
    eve = room.tcp.registry.find_user("eve")
    assert room.history.range(eve, "#room", 1, 5, 10).result == []
    assert [r.seq for r in room.history.range(member, "#room", 1, 5, 10).result] == \
        [1, 2, 3, 4, 5]
    room.stop()


def test_history_range_bounds():
    """History.range: both ends included, at most limit, lowest first; empty when empty."""
    room = Room(MemoryStore(), recent=5)
    chat(room, 10)
    alice = room.tcp.registry.find_user("alice")
    assert [r.seq for r in room.history.range(alice, "#room", 3, 6, 10).result] == [3, 4, 5, 6]
    assert [r.seq for r in room.history.range(alice, "#room", 3, 60, 2).result] == [3, 4]
    assert room.history.range(alice, "#room", 6, 3, 10).result == []
    assert room.history.range(alice, "#room", 3, 6, 0).result == []
    room.stop()


def test_after_a_restart_in_memory_old_ranges_come_from_the_kept_store():
    """A new registry and front-end over the same store: REPAIR of the old range, as broadcast."""
    store = MemoryStore()
    before = Room(store, recent=1000)
    chat(before, 5)
    heard = before.broadcast()
    before.stop()
    after = Room(store, recent=1000)  # numbering continues: alice's JOIN is seq 11
    assert after.tcp.registry.latest("#room") == 11
    assert after.world.front.boot != before.world.front.boot
    assert after.repair(1, 10) == [heard[seq] for seq in range(1, 11)]
    after.stop()


async def _wait_for(world: UDPWorld, predicate, seconds: float = 5.0) -> bool:
    """
    Let the reactor run until ``predicate()`` (at most ``seconds``).

    The SQLite store answers through the real reactor; the datagrams then
    sent cross the in-memory network on the world's clock, advanced here.
    """
    for _ in range(int(seconds / 0.01)):
        world.clock.advance(0)
        if predicate():
            return True
        await task.deferLater(reactor, 0.01, lambda: None)
    return predicate()


@pytest_twisted.ensureDeferred
async def test_after_a_restart_with_sqlite_old_ranges_come_from_history(tmp_path):
    """SQLite history, the server restarted: REPAIR of a range before it, exactly as broadcast."""
    path = str(tmp_path / "history.sqlite3")
    first = SQLiteStore(path, clock=task.Clock())
    try:
        before = Room(first, recent=1000)
        chat(before, 5)
        heard = before.broadcast()
        before.stop()
        assert await first.flush() is True
    finally:
        await first.stop()
    second = SQLiteStore(path, clock=task.Clock())
    try:
        after = Room(second, recent=1000)
        assert after.tcp.registry.latest("#room") == 11
        alice = after.alice
        alice.take()
        alice.send(f"@token={alice.token} REPAIR #room 1 10".encode())
        assert await _wait_for(after.world, lambda: len(alice.got) >= 10)
        assert alice.got == [heard[seq] for seq in range(1, 11)]
        after.stop()
    finally:
        await second.stop()
