"""
Tests for :mod:`twistchat.client.tcp_order`: room events once, in order, history first.

Pure objects: a ``task.Clock`` and a list of emitted events; no connection.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent
from twistchat.client.tcp_order import RoomOrder
from twistchat.wire import Message, parse


class Sender:
    """Records what would be sent, as (command, params)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def send(self, command: str, *params: str, tags: dict[str, str] | None = None) -> None:
        self.sent.append((command, params))


def line(text: str) -> tuple[Message, ChatEvent]:
    """A PRIVMSG line to #r and the event it means."""
    msg = parse(text)
    return msg, ChatEvent(I.MESSAGE, room="#r", text=msg.params[-1], message=msg)


def make() -> tuple[RoomOrder, list[ChatEvent], Clock]:
    clock = Clock()
    shown: list[ChatEvent] = []
    return RoomOrder(clock, shown.append, hold_timeout=5.0), shown, clock


def texts(events: list[ChatEvent]) -> list[str]:
    return [e.text for e in events]


def test_a_msgid_is_shown_once():
    """The same msgid twice in a room: one event."""
    order, shown, _ = make()
    for _ in range(2):
        order.room_event(*line("@msgid=a :bob!b@h PRIVMSG #r :hi"))
    assert texts(shown) == ["hi"]


def test_lines_without_msgid_are_all_shown():
    """No msgid, no de-duplication: both lines are shown."""
    order, shown, _ = make()
    for _ in range(2):
        order.room_event(*line(":bob!b@h PRIVMSG #r :hi"))
    assert texts(shown) == ["hi", "hi"]


def test_history_is_asked_after_the_last_msgid_seen():
    """After a rejoin, our JOIN asks CHATHISTORY AFTER the last msgid shown in the room."""
    order, _, _ = make()
    order.room_event(*line("@msgid=a :bob!b@h PRIVMSG #r :one"))
    order.rejoining()
    order.expect_history("#r", hold=False)
    proto = Sender()
    order.own_join(proto, "#r", {"CHATHISTORY": "50"})
    assert proto.sent == [("CHATHISTORY", ("AFTER", "#r", "msgid=a", "50"))]


def test_held_lines_follow_the_history_batch():
    """Live lines held while history is due come out after the batch's lines, each once."""
    order, shown, clock = make()
    order.room_event(*line("@msgid=a :bob!b@h PRIVMSG #r :one"))
    order.rejoining()
    order.expect_history("#r", hold=True)
    order.room_event(*line("@msgid=c :bob!b@h PRIVMSG #r :three"))  # live, held
    replayed: list[Message] = []

    def dispatch(proto: object, msg: Message) -> None:
        replayed.append(msg)
        order.room_event(msg, ChatEvent(I.MESSAGE, room="#r", text=msg.params[-1],
                                        message=msg))

    for text in ("BATCH +h chathistory #r",
                 "@batch=h;msgid=b :bob!b@h PRIVMSG #r :two",
                 "@batch=h;msgid=c :bob!b@h PRIVMSG #r :three"):
        msg = parse(text)
        if not order.collect(msg):
            order.batch(None, msg, dispatch)
    order.batch(None, parse("BATCH -h"), dispatch)
    assert texts(shown) == ["one", "two", "three"]
    assert all("batch" not in m.tags for m in replayed)
    assert not clock.getDelayedCalls()


def test_held_lines_come_out_when_history_never_does():
    """No history within hold_timeout: the held lines are shown anyway, in order."""
    order, shown, clock = make()
    order.room_event(*line("@msgid=a :bob!b@h PRIVMSG #r :one"))
    order.expect_history("#r", hold=True)
    order.room_event(*line("@msgid=b :bob!b@h PRIVMSG #r :two"))
    assert texts(shown) == ["one"]
    clock.advance(5.0)
    assert texts(shown) == ["one", "two"]


def test_own_join_comes_before_the_history_it_asked_for():
    """
    After a reconnect our JOIN is shown at once, then the missed lines, then the held live
    ones (#17); where history resumes is still the gap's start.
    """
    order, shown, clock = make()
    order.room_event(*line("@msgid=a :bob!b@h PRIVMSG #r :one"))
    order.rejoining()
    order.expect_history("#r", hold=True)
    join = parse("@msgid=j :alice!a@h JOIN #r")
    order.own_join(Sender(), "#r", {})
    order.room_event(join, ChatEvent(I.JOIN, room="#r", nick="alice", own=True, message=join))
    order.room_event(*line("@msgid=c :bob!b@h PRIVMSG #r :live"))  # held
    assert [e.kind for e in shown] == [I.MESSAGE, I.JOIN]
    assert order._last["#r"][0] == "a"  # a second loss would ask for the same gap

    def dispatch(proto: object, msg: Message) -> None:
        order.room_event(msg, ChatEvent(I.MESSAGE, room="#r", text=msg.params[-1], message=msg))

    for text in ("BATCH +h chathistory #r", "@batch=h;msgid=b :bob!b@h PRIVMSG #r :missed",
                 "BATCH -h"):
        msg = parse(text)
        if not order.collect(msg):
            order.batch(None, msg, dispatch)
    assert [(e.kind, e.text) for e in shown] == [
        (I.MESSAGE, "one"), (I.JOIN, ""), (I.MESSAGE, "missed"), (I.MESSAGE, "live")]
    assert not clock.getDelayedCalls()
