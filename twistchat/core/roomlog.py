"""
The room log: the one source of a room's order.

test-case-name: tests.test_roomlog

Every numbered event of a target (a room, or a private conversation, see
:mod:`twistchat.core.targets`) is appended here and gets the target's next
sequence number and a msgid.  The log also answers what front-ends ask of a
room's order: the latest number, a range of recent events (UDP repair), and
the **epoch**: a value that changes whenever the numbering restarts, so a
client can tell "I missed events" (same epoch, a gap) from "this is a new log"
(another epoch; numbers may start over).  Centrifugo's stream offsets and
epochs are the same idea.

:class:`RoomLog` is the interface; :class:`LocalRoomLog` is the in-process
implementation: numbers start where the history store left off, the epoch is
the store's.  A second implementation (Redis Streams, for several nodes) can
take its place without a change to any front-end: front-ends only ever see
this interface.

Rule: nothing but the log allocates sequence numbers or msgids.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from twistchat.core.events import NO_CLIENT_TAGS, Event
from twistchat.core.targets import is_room_key
from twistchat.wire import Message

__all__ = ["LocalRoomLog", "RoomLog", "new_epoch"]

Listener = Callable[[Event], None]


def new_epoch() -> str:
    """A fresh random epoch: 16 hex digits."""
    return os.urandom(8).hex()


class RoomLog(Protocol):
    """The order of every target: append, latest, range, epoch."""

    def append(self, target: str, message: Message, time_ms: int,
               client_tags: Mapping[str, str] | None = None,
               extended: Message | None = None, account: str | None = None) -> Event:
        """
        Number ``message`` as ``target``'s next event; tell every subscriber.

        ``extended``: the event's longer form for IRCv3 views that ask for it
        (extended-join); ``account``: its sender's account (account-tag), see
        :class:`~twistchat.core.events.Event`.
        """

    def latest(self, target: str) -> int:
        """The last sequence number handed out for ``target`` (0: none yet)."""

    def epoch(self, target: str) -> str:
        """The epoch of ``target``'s numbering."""

    def new_msgid(self) -> str:
        """A msgid for a relayed line that is not numbered (TAGMSG): unique like the others."""

    def held(self, target: str, first: int, last: int, limit: int) -> tuple[int, list[Event]]:
        """
        ``(lowest, events)``: events of ``target`` still held with ``first <= seq <= last``.

        At most ``limit`` events, ascending.  ``lowest`` is the lowest sequence
        number still held (``latest + 1`` when none is): anything below it can
        only come from the history store.
        """

    def open(self, target: str) -> None:
        """``target`` is in use (a room with members): keep its recent events."""

    def close(self, target: str) -> None:
        """``target`` is no longer in use: its recent events may be let go."""

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event appended from now on."""


class LocalRoomLog:
    """
    The in-process room log.

    ``last_seqs`` is where each target's numbering stands (the history store's
    ``last_seqs()``), so numbers keep rising across restarts; ``epoch`` is the
    store's epoch (new for a store that starts empty every time).  The last
    ``recent`` events of each open room are held in memory, for repair.
    """

    def __init__(self, epoch: str | None = None, last_seqs: Mapping[str, int] | None = None,
                 recent: int = 1000) -> None:
        self._epoch = epoch if epoch is not None else new_epoch()
        self._last: dict[str, int] = dict(last_seqs or {})
        self._recent_size = recent
        self._recent: dict[str, deque[Event]] = {}
        self._listeners: list[Listener] = []
        # msgids: unique across restarts by a random prefix per process.
        self._msgid_prefix = os.urandom(6).hex()
        self._msgid_counter = itertools.count(1)

    def append(self, target: str, message: Message, time_ms: int,
               client_tags: Mapping[str, str] | None = None,
               extended: Message | None = None, account: str | None = None) -> Event:
        seq = self._last.get(target, 0) + 1
        self._last[target] = seq
        event = Event(target, seq, time_ms, self.new_msgid(),
                      message, client_tags or NO_CLIENT_TAGS, extended, account)
        recent = self._recent.get(target)
        if recent is not None:
            recent.append(event)
        for listener in self._listeners:
            listener(event)
        return event

    def latest(self, target: str) -> int:
        return self._last.get(target, 0)

    def new_msgid(self) -> str:
        return f"{self._msgid_prefix}{next(self._msgid_counter):x}"

    def epoch(self, target: str) -> str:
        return self._epoch

    def held(self, target: str, first: int, last: int, limit: int) -> tuple[int, list[Event]]:
        recent = self._recent.get(target)
        if not recent:
            return self.latest(target) + 1, []
        lowest = recent[0].seq
        start = max(first, lowest) - lowest
        events = [e for e in itertools.islice(recent, start, start + max(limit, 0))
                  if e.seq <= last]
        return lowest, events

    def open(self, target: str) -> None:
        if is_room_key(target) and target not in self._recent:
            self._recent[target] = deque(maxlen=self._recent_size)

    def close(self, target: str) -> None:
        self._recent.pop(target, None)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def targets(self) -> Iterable[str]:
        """Every target numbered so far (for tests and the store's checks)."""
        return self._last.keys()
