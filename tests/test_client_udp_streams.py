"""
Tests for :mod:`twistchat.client.udp_streams`: each event once, in sequence order.

Pure objects: lines are made with :func:`twistchat.wire.parse`; no sockets, no clock.
"""

from __future__ import annotations

from twistchat.client.udp_streams import RoomStream, Streams, holes
from twistchat.wire import Message, parse


def make() -> tuple[Streams, list[tuple[str, str | None]], list[tuple[str | None, int]]]:
    shown: list[tuple[str, str | None]] = []
    gone: list[tuple[str | None, int]] = []
    stats = {"duplicates": 0, "gone": 0, "repairs_asked": 0}

    def show(message: Message, room: RoomStream | None) -> None:
        shown.append((message.params[-1], room.name if room else None))

    streams = Streams(show, lambda nick: nick == "me", lambda: None,
                      lambda room, n: gone.append((room, n)), stats)
    return streams, shown, gone


def room_line(seq: int, text: str, verb: str = "PRIVMSG", nick: str = "bob") -> Message:
    if verb == "JOIN":
        return parse(f"@seq={seq} :{nick}!u@h JOIN #r")
    return parse(f"@seq={seq} :{nick}!u@h PRIVMSG #r :{text}")


def test_room_events_in_seq_order_whatever_the_arrival():
    """Our JOIN starts the stream; later lines come out in seq order, once."""
    streams, shown, _ = make()
    streams.joining("#r")
    for msg in (room_line(3, "b"), room_line(1, "", "JOIN", "me"), room_line(2, "a"),
                room_line(3, "b")):
        streams.room_in(msg)
    assert [text for text, _ in shown] == ["#r", "a", "b"]
    assert streams.stats["duplicates"] == 1


def test_lines_of_rooms_we_are_not_in_are_dropped():
    """No JOIN of ours, no stream: nothing is shown."""
    streams, shown, _ = make()
    streams.room_in(room_line(5, "x"))
    assert shown == []


def test_holes_are_the_missing_ranges():
    """A stream at 1 holding 3 and 6, latest 7: holes 1-2, 4-5 and 7."""
    stream = RoomStream("#r")
    stream.next = 1
    stream.held = {3: parse("PING x"), 6: parse("PING x")}
    stream.latest = 7
    assert holes(stream, limit=100) == [(1, 2), (4, 5), (7, 7)]


def test_repairs_wait_for_reordering_then_ask_once_per_interval():
    """A hole is asked after reorder_delay, and not again within the interval."""
    streams, _, _ = make()
    streams.unicast_in(2, parse("@useq=2 :srv NOTICE me :two"))
    assert streams.repairs(0.0, 0.03, 0.3, 100) == []
    assert streams.repairs(0.05, 0.03, 0.3, 100) == [("*", 1, 1)]
    assert streams.repairs(0.1, 0.03, 0.3, 100) == []
    assert streams.repairs(0.4, 0.03, 0.3, 100) == [("*", 1, 1)]


def test_gone_skips_what_the_server_no_longer_holds():
    """FAIL REPAIR GONE for 1-1: one event lost, the held line 2 is shown."""
    streams, shown, gone = make()
    streams.unicast_in(2, parse("@useq=2 :srv NOTICE me :two"))
    streams.gone(parse(":srv FAIL REPAIR GONE * 1 1 :gone"))
    assert gone == [(None, 1)]
    assert shown == [("two", None)]
