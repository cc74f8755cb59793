"""
The order of a TCP session's room events: each once, and none before its past.

test-case-name: tests.test_client_tcp, tests.test_client_order

After a reconnect the server's ``CHATHISTORY AFTER`` (draft/chathistory,
https://ircv3.net/specs/extensions/chathistory) fills the hole in a room's
transcript.  This module keeps the three things that make that right, apart
from the connection's state machine and from turning lines into events:

- the last ``msgid`` (or server time) shown per room: where history resumes;
- the ``msgid`` values shown recently: a line history replays is dropped;
- the room's live lines, *held* while its history is due (with ``batch``, up to
  ``hold_timeout``), so they follow the lines they came after; our own JOIN is
  not held: it comes first, before the lines we missed (issue #17).

It also collects ``BATCH`` lines (https://ircv3.net/specs/extensions/batch)
and replays a history batch through the session's dispatcher.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent
from twistchat.wire import Message, casefold

__all__ = ["RoomOrder", "SEEN_MSGIDS"]

# Messages remembered per room to drop the duplicates history replays.
SEEN_MSGIDS = 4096


class _Sender(Protocol):
    def send(self, command: str, *params: str, tags: dict[str, str] | None = None) -> None: ...


class _Batch:
    """An open ``BATCH +ref type params...``: its lines, until ``BATCH -ref``."""

    __slots__ = ("kind", "params", "lines")

    def __init__(self, kind: str, params: tuple[str, ...]) -> None:
        self.kind = kind
        self.params = params
        self.lines: list[Message] = []


class RoomOrder:
    """
    Shows room events once, in the server's order, with history's lines first.

    ``emit`` gets each :class:`ChatEvent` to show; ``clock`` times how long
    live lines are held.
    """

    def __init__(self, clock: IReactorTime, emit: Callable[[ChatEvent], None], *,
                 hold_timeout: float = 5.0, history_limit: int = 100) -> None:
        self.clock = clock
        self.emit = emit
        self.hold_timeout = hold_timeout
        self.history_limit = history_limit
        self.replaying = False  # dispatching lines from a history batch
        self._last: dict[str, tuple[str | None, str | None]] = {}  # room -> (msgid, time)
        self._seen: dict[str, tuple[deque[str], set[str]]] = {}  # room -> msgids shown
        self._holding: dict[str, list[tuple[Message, ChatEvent]]] = {}  # room -> held lines
        self._hold_calls: dict[str, IDelayedCall] = {}
        self._want_history: set[str] = set()  # rooms to fill from history once rejoined
        self._batches: dict[str, _Batch] = {}  # batch id -> open batch

    # -------------------------------------------------------------- rejoin

    def new_connection(self) -> None:
        """A new connection: batches of the old one will never end."""
        self._batches.clear()

    def rejoining(self) -> None:
        """We are about to rejoin our rooms: forget which were still waiting for history."""
        self._want_history.clear()

    def expect_history(self, key: str, hold: bool) -> None:
        """
        Fill room ``key`` from history once our JOIN is back, if we saw it before.

        ``hold`` (the server has ``batch``): hold the room's lines, our JOIN
        first, until the gap is filled, so the transcript keeps the server's order.
        """
        if key not in self._last:
            return
        self._want_history.add(key)
        if hold:
            self._holding[key] = []
            self._hold_calls[key] = self.clock.callLater(self.hold_timeout, self.release, key)

    def own_join(self, proto: _Sender, room: str, isupport: dict[str, str]) -> None:
        """Our JOIN to ``room`` arrived: ask for the history we missed, if due."""
        key = casefold(room)
        if key not in self._want_history:
            return
        self._want_history.discard(key)
        msgid, stamp = self._last.get(key, (None, None))
        if msgid:
            ref = f"msgid={msgid}"
        elif stamp:
            ref = f"timestamp={stamp}"
        else:
            self.release(key)
            return
        limit = self.history_limit
        try:
            limit = min(limit, int(isupport.get("CHATHISTORY") or limit) or limit)
        except ValueError:
            pass
        proto.send("CHATHISTORY", "AFTER", room, ref, str(limit))

    # -------------------------------------------------------------- events

    def room_event(self, msg: Message, event: ChatEvent) -> None:
        """Emit a room's event once: hold it while history is due, drop a msgid seen before."""
        key = casefold(event.room) if event.room else None
        if key is not None and key in self._holding:
            if event.kind == I.JOIN and event.own and not self.replaying:
                self._show_own_join(key, msg, event)
                return
            self._holding[key].append((msg, event))
            return
        self._show(key, msg, event)

    def _show_own_join(self, key: str, msg: Message, event: ChatEvent) -> None:
        """
        Our JOIN while the room's history is due: shown now, before the lines we missed.

        Issue #17: held with the rest, it came out after the history it asked
        for.  Where history resumes (``_last``) stays at the gap's start, so a
        connection lost before the history arrives asks for the same gap again.
        """
        msgid = msg.tags.get("msgid")
        if msgid and self._seen_before(key, msgid):
            return
        self.emit(event)

    def _show(self, key: str | None, msg: Message, event: ChatEvent) -> None:
        msgid = msg.tags.get("msgid")
        if key is not None:
            if msgid and self._seen_before(key, msgid):
                return
            if msgid or "time" in msg.tags:
                self._last[key] = (msgid, msg.tags.get("time"))
        self.emit(event)

    def _seen_before(self, key: str, msgid: str) -> bool:
        """Whether ``msgid`` was shown in room ``key``; remember it if not."""
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = (deque(maxlen=SEEN_MSGIDS), set())
        order, ids = seen
        if msgid in ids:
            return True
        if len(order) == order.maxlen:
            ids.discard(order[0])
        order.append(msgid)
        ids.add(msgid)
        return False

    def release(self, key: str) -> None:
        """History came (or did not in time): show what was held, in order."""
        call = self._hold_calls.pop(key, None)
        if call is not None and call.active():
            call.cancel()
        for msg, event in self._holding.pop(key, []):
            self._show(key, msg, event)

    def release_all(self) -> None:
        """Show every room's held lines (the connection ended, or history failed)."""
        for key in list(self._hold_calls) + list(self._holding):
            self.release(key)

    def forget_held(self, key: str) -> None:
        """Room ``key`` refused our JOIN: nothing is held for it any more."""
        self._holding.pop(key, None)

    # ------------------------------------------------------------- batches

    def collect(self, msg: Message) -> bool:
        """Keep ``msg`` if it belongs to an open batch (it is dispatched when the batch ends)."""
        batch = msg.tags.get("batch")
        if batch and batch in self._batches and msg.verb != "BATCH":
            self._batches[batch].lines.append(msg)
            return True
        return False

    def batch(self, proto: Any, msg: Message, dispatch: Callable[[Any, Message], None]) -> None:
        """``BATCH +ref type ...`` opens a batch; ``BATCH -ref`` replays its lines."""
        if not msg.params:
            return
        ref = msg.params[0]
        if ref.startswith("+"):
            self._batches[ref[1:]] = _Batch(msg.params[1] if len(msg.params) > 1 else "",
                                            msg.params[2:])
            return
        if not ref.startswith("-"):
            return
        batch = self._batches.pop(ref[1:], None)
        if batch is None:
            return
        for line in batch.lines:
            line = Message(line.command, line.params, line.source,
                           {k: v for k, v in line.tags.items() if k != "batch"})
            self._replay(proto, line, dispatch)
        if batch.kind in ("chathistory", "draft/chathistory") and batch.params:
            key = casefold(batch.params[0])
            if key in self._holding:
                self.release(key)

    def _replay(self, proto: Any, msg: Message, dispatch: Callable[[Any, Message], None]
                ) -> None:
        """A line replayed from history: shown like a live one, never held again."""
        if msg.verb not in ("PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "TOPIC", "MODE"):
            return  # Other lines in a history batch (QUIT, NICK) describe the past.
        key = casefold(msg.params[0] if msg.params else "")
        held = self._holding.pop(key, None)
        self.replaying = True
        try:
            dispatch(proto, msg)
        finally:
            self.replaying = False
            if held is not None:
                self._holding[key] = held
