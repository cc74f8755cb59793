"""
The room log without I/O: numbering per target, what is held for repair, epochs, msgids.
"""

from tests.test_registry import joined, make
from twistchat.core.roomlog import LocalRoomLog, new_epoch
from twistchat.core.targets import dm_key
from twistchat.wire import Message


def line(text: str = "x") -> Message:
    return Message("PRIVMSG", ("#r", text), "alice!alice@h")


def filled(n: int, target: str = "#r", **kwargs) -> LocalRoomLog:
    """A log with ``target`` open and ``n`` events appended, texts "1".."n"."""
    log = LocalRoomLog(**kwargs)
    log.open(target)
    for i in range(1, n + 1):
        log.append(target, line(str(i)), 1000 * i)
    return log


def test_numbering_starts_after_last_seqs():
    """A target the store left at 41 goes on at 42; an unknown target starts at 1."""
    log = LocalRoomLog(last_seqs={"#r": 41})
    assert log.latest("#r") == 41
    assert log.append("#r", line(), 0).seq == 42
    assert log.append("#new", line(), 0).seq == 1


def test_numbering_rises_by_one_per_target():
    """Each target has its own numbers, each rising by one per event."""
    log = LocalRoomLog()
    seqs = [(t, log.append(t, line(), 0).seq) for t in ("#a", "#b", "#a", "#a", "#b")]
    assert seqs == [("#a", 1), ("#b", 1), ("#a", 2), ("#a", 3), ("#b", 2)]
    assert (log.latest("#a"), log.latest("#b"), log.latest("#c")) == (3, 2, 0)


def test_dms_are_numbered_separately_and_not_held():
    """A conversation has its own numbering; opening it holds nothing (repair is for rooms)."""
    log = LocalRoomLog()
    key = dm_key("alice", "bob")
    log.open("#r")
    log.open(key)
    log.append("#r", line(), 0)
    assert [log.append(key, line(), 0).seq for _ in range(3)] == [1, 2, 3]
    assert log.latest("#r") == 1
    assert log.held(key, 1, 3, 10) == (4, [])


def test_event_carries_target_time_message_and_tags():
    """append returns the Event it numbered: target, seq, time, message, client tags."""
    log = LocalRoomLog()
    event = log.append("#r", line("hi"), 1234, {"+typing": "active"})
    assert (event.target, event.seq, event.time_ms) == ("#r", 1, 1234)
    assert event.message == line("hi") and dict(event.client_tags) == {"+typing": "active"}


def test_held_returns_the_range_asked_for():
    """held(first, last): the events first..last in order, and the lowest still held."""
    log = filled(10)
    lowest, events = log.held("#r", 3, 6, 100)
    assert lowest == 1
    assert [e.seq for e in events] == [3, 4, 5, 6]
    assert [e.message.params[1] for e in events] == ["3", "4", "5", "6"]


def test_held_stops_at_limit():
    """At most ``limit`` events, the lowest first."""
    log = filled(10)
    assert [e.seq for e in log.held("#r", 2, 10, 3)[1]] == [2, 3, 4]
    assert log.held("#r", 1, 10, 0)[1] == []


def test_held_past_the_latest_is_empty():
    """A range above the latest event holds nothing."""
    log = filled(5)
    assert log.held("#r", 6, 100, 10) == (1, [])


def test_held_lowest_moves_with_the_window():
    """Past ``recent`` events the oldest are let go: lowest rises, a range below it is cut."""
    log = filled(25, recent=10)
    lowest, events = log.held("#r", 1, 20, 100)
    assert lowest == 16
    assert [e.seq for e in events] == [16, 17, 18, 19, 20]


def test_held_window_counts_from_last_seqs():
    """A log that continues at 101 holds from 101 on: lowest is 101, not 1."""
    log = filled(3, last_seqs={"#r": 100})
    assert log.held("#r", 1, 200, 100)[0] == 101
    assert [e.seq for e in log.held("#r", 1, 200, 100)[1]] == [101, 102, 103]


def test_closed_target_holds_nothing():
    """After close, held is empty and lowest is latest + 1; numbering goes on."""
    log = filled(5)
    log.close("#r")
    assert log.held("#r", 1, 5, 10) == (6, [])
    assert log.append("#r", line(), 0).seq == 6
    assert log.held("#r", 1, 10, 10) == (7, [])


def test_unopened_target_holds_nothing():
    """Events of a room never opened are numbered but not held."""
    log = LocalRoomLog()
    log.append("#r", line(), 0)
    assert log.held("#r", 1, 1, 10) == (2, [])


def test_reopened_target_holds_from_the_reopening():
    """open after close holds only events appended since."""
    log = filled(5)
    log.close("#r")
    log.open("#r")
    log.append("#r", line(), 0)
    lowest, events = log.held("#r", 1, 10, 10)
    assert lowest == 6 and [e.seq for e in events] == [6]


def test_open_twice_keeps_what_is_held():
    """open on a target already open does not drop its events."""
    log = filled(3)
    log.open("#r")
    assert len(log.held("#r", 1, 3, 10)[1]) == 3


def test_epoch_given_is_kept():
    """An epoch passed in (the store's) is the epoch of every target."""
    log = LocalRoomLog(epoch="0123456789abcdef")
    assert log.epoch("#r") == log.epoch("#other") == "0123456789abcdef"


def test_epoch_random_when_not_given_and_stable():
    """Without one, each log gets a fresh random epoch (16 hex digits) that does not change."""
    a, b = LocalRoomLog(), LocalRoomLog()
    assert a.epoch("#r") != b.epoch("#r")
    assert len(a.epoch("#r")) == 16 and int(a.epoch("#r"), 16) >= 0
    a.append("#r", line(), 0)
    a.close("#r")
    assert a.epoch("#r") == a.epoch("#x")
    assert len({new_epoch() for _ in range(50)}) == 50


def test_msgids_are_unique_within_and_across_logs():
    """Every event's msgid differs: across targets, and across two logs (restarts)."""
    a, b = LocalRoomLog(), LocalRoomLog()
    ids = [log.append(t, line(), 0).msgid for log in (a, b) for t in ("#r", "#s") * 50]
    assert len(set(ids)) == len(ids) == 200
    assert all(ids)


def test_subscribers_are_called_in_order_for_every_event():
    """Each subscriber gets each appended event, subscribers in the order they subscribed."""
    log = LocalRoomLog()
    calls = []
    log.subscribe(lambda e: calls.append(("first", e.seq)))
    log.append("#r", line(), 0)
    log.subscribe(lambda e: calls.append(("second", e.seq)))
    log.append("#r", line(), 0)
    assert calls == [("first", 1), ("first", 2), ("second", 2)]


def test_targets_lists_every_numbered_target():
    """targets(): every target numbered so far, those from last_seqs included."""
    log = LocalRoomLog(last_seqs={"#old": 3})
    log.append("#r", line(), 0)
    assert set(log.targets()) == {"#old", "#r"}


def test_registry_with_a_given_log_continues_its_numbering():
    """A Registry handed LocalRoomLog(last_seqs=...) numbers its room events from there."""
    log = LocalRoomLog(last_seqs={"#r": 41}, epoch="feedfacefeedface")
    registry, _ = make(log=log)
    assert registry.log is log
    alice, _ = joined(registry, "alice", "#R")
    (delivery,) = registry.message(alice, "PRIVMSG", "#r", "hi")
    assert delivery.payload.seq == 43  # JOIN was 42
    assert registry.latest("#r") == 43 and log.epoch("#r") == "feedfacefeedface"
    assert [e.seq for e in log.held("#r", 1, 100, 10)[1]] == [42, 43]
