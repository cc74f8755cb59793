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


def make_room(history_on_join: int = 50):
    """Streams with our JOIN of #r at seq 10 arrived; what was shown, as (seq, text)."""
    shown: list[tuple[int, str]] = []
    stats = {"duplicates": 0, "gone": 0, "repairs_asked": 0}

    def show(message: Message, room: RoomStream | None) -> None:
        shown.append((int(message.tags.get("seq", "0")), message.params[-1]))

    streams = Streams(show, lambda nick: nick == "me", lambda: None, lambda room, n: None,
                      stats, history_on_join)
    return streams, shown


def beat(epoch: str, *rooms: str) -> Message:
    return parse(f"@epoch={epoch} :srv HEARTBEAT net 6667 :{' '.join(rooms)}")


def test_history_on_join_asks_for_the_50_before_and_shows_messages_first():
    """JOIN at 60: REPAIR 10-59; its messages come before the JOIN, in order, once."""
    streams, shown = make_room()
    streams.joining("#r")
    streams.room_in(room_line(60, "", "JOIN", "me"))
    assert shown == []  # the JOIN waits for what came before it
    assert streams.repairs(0.0, 0.03, 0.3, 100) == [("#r", 10, 59)]
    streams.room_in(room_line(61, "live"))
    for seq in range(59, 9, -1):  # answers in any order, a JOIN among them
        streams.room_in(room_line(seq, "", "JOIN", "carol") if seq == 30 else
                        room_line(seq, f"old {seq}"))
    texts = [text for _, text in shown]
    assert texts == [f"old {s}" for s in range(10, 60) if s != 30] + ["#r", "live"]
    streams.room_in(room_line(42, "old 42"))  # a late duplicate of an answer
    assert len(shown) == len(texts)


def test_history_on_join_shows_what_came_when_the_rest_never_does():
    """Answers lost or GONE: after BACKFILL_WAIT the JOIN is shown with what arrived."""
    streams, shown = make_room()
    streams.joining("#r")
    streams.room_in(room_line(5, "", "JOIN", "me"))
    assert streams.repairs(0.0, 0.03, 0.3, 100) == [("#r", 1, 4)]
    streams.room_in(room_line(3, "three"))
    assert streams.repairs(0.5, 0.03, 0.3, 100) == [("#r", 1, 2), ("#r", 4, 4)]
    streams.gone(parse(":srv FAIL REPAIR GONE #r 1 2 :No longer held"))
    assert shown == []
    streams.repairs(3.0, 0.03, 0.3, 100)
    assert [text for _, text in shown] == ["three", "#r"]
    assert streams.stats["gone"] == 0  # nothing we had was lost


def test_no_history_on_join_when_turned_off_or_at_seq_1():
    """history_on_join=0, or a JOIN that is the room's first event: shown at once."""
    for limit, seq in ((0, 7), (50, 1)):
        streams, shown = make_room(limit)
        streams.joining("#r")
        streams.room_in(room_line(seq, "", "JOIN", "me"))
        assert shown == [(seq, "#r")]


def joined(streams, epoch="E1", seq=1):
    streams.heartbeat(beat(epoch))
    streams.joining("#r")
    streams.room_in(room_line(seq, "", "JOIN", "me"))


def test_after_a_new_session_the_gap_to_our_join_is_repaired_first():
    """Shown to 3; a new session; our JOIN at 8: nothing asked until the epoch; then 4-7."""
    streams, shown = make_room(0)
    joined(streams)
    streams.room_in(room_line(2, "a"))
    streams.room_in(room_line(3, "b"))
    streams.suspend()
    streams.new_session()
    streams.room_in(room_line(8, "", "JOIN", "me"))
    streams.room_in(room_line(9, "after"))
    assert streams.repairs(1.0, 0.03, 0.3, 100) == []  # the epoch is not known yet
    streams.heartbeat(beat("E1", "#r:9"))
    assert streams.repairs(2.0, 0.03, 0.3, 100) == []  # a short wait for reordering
    assert streams.repairs(2.1, 0.03, 0.3, 100) == [("#r", 4, 7)]
    for seq in (7, 5, 4, 6):
        streams.room_in(room_line(seq, f"gap {seq}"))
    assert [text for _, text in shown] == ["#r", "a", "b", "gap 4", "gap 5", "gap 6", "gap 7",
                                           "#r", "after"]


def test_another_epoch_after_a_new_session_starts_the_room_afresh():
    """Shown to 40 in E1; the server comes back in E2 with our JOIN at 2: no repair of 41-."""
    streams, shown = make_room(50)
    joined(streams, "E1", 40)
    streams.suspend()
    streams.new_session()
    streams.heartbeat(beat("E2"))
    streams.room_in(room_line(2, "", "JOIN", "me"))
    assert streams.repairs(0.0, 0.03, 0.3, 100) == [("#r", 1, 1)]  # history on join, in E2
    streams.room_in(room_line(1, "", "JOIN", "bob"))
    streams.room_in(room_line(3, "fresh"))
    assert [text for _, text in shown] == ["#r", "#r", "fresh"]
    assert streams.rooms["#r"].epoch == "E2"


def test_a_higher_join_in_another_listed_epoch_starts_afresh_too():
    """Numbers did not go back, but the heartbeat lists the room in another epoch: afresh."""
    streams, shown = make_room(0)
    joined(streams, "E1", 3)
    streams.suspend()
    streams.new_session()
    streams.heartbeat(beat("E2"))  # the beacon's epoch alone is not the room's
    streams.room_in(room_line(10, "", "JOIN", "me"))
    assert shown == [(3, "#r")]
    streams.heartbeat(beat("E2", "#r:10"))
    assert shown == [(3, "#r"), (10, "#r")]
    assert streams.repairs(1.0, 0.03, 0.3, 100) == []


def test_a_heartbeat_with_another_epoch_resets_the_room():
    """Mid-stream, the room listed in another epoch: its stream waits for our JOIN again."""
    streams, shown = make_room(0)
    joined(streams, "E1", 5)
    streams.heartbeat(beat("E1", "#r:5"))
    streams.heartbeat(beat("E2", "#r:2"))
    streams.room_in(room_line(3, "old numbering?"))
    assert streams.repairs(1.0, 0.03, 0.3, 100) == []
    streams.room_in(room_line(4, "", "JOIN", "me"))
    assert [text for _, text in shown] == ["#r", "#r"]


def test_history_after_a_part_and_a_join_starts_after_what_was_shown():
    """PART at 10, JOIN at 20: history on join asks for 11-19 only; nothing shown twice."""
    streams, shown = make_room()
    joined(streams, seq=1)
    for seq in range(2, 10):
        streams.room_in(room_line(seq, f"m{seq}"))
    streams.room_in(room_line(10, "", "PART", "me"))
    streams.left("#r")
    streams.joining("#r")
    streams.room_in(room_line(20, "", "JOIN", "me"))
    assert streams.repairs(0.0, 0.03, 0.3, 100) == [("#r", 11, 19)]
    for seq in range(11, 20):
        streams.room_in(room_line(seq, f"m{seq}"))
    texts = [text for _, text in shown if text.startswith("m")]
    assert texts == [f"m{s}" for s in range(2, 10)] + [f"m{s}" for s in range(11, 20)]
