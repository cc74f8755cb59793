"""
The ordered streams of a UDP chat session: each event once, in sequence order.

test-case-name: tests.test_udp_client, tests.test_udp_e2e, tests.test_client_udp_streams

Datagrams get lost, doubled and reordered (../../DESIGN.md, "Wire
protocols"); this module is the one place that puts them back in order,
apart from the session's registration and command window and from turning
lines into events.  Two kinds of stream (docs/udp-protocol.md):

- a room's: every room event carries the room's ``seq``; the stream starts
  at our own JOIN and ends at our own PART (or KICK);
- our unicast stream: replies and private messages, numbered ``useq``.

A line is *held* until every number below it has been shown; a hole is a
missing number below one we hold or below the latest a heartbeat (rooms) or
an ACK/PONG (unicast) announced.  After ``reorder_delay`` the session asks
``REPAIR`` for each hole (:meth:`Streams.repairs`); ``FAIL REPAIR GONE``
skips what the server no longer holds.
"""

from __future__ import annotations

from collections.abc import Callable

from twistchat.client.interfaces import is_room
from twistchat.wire import Message, casefold

__all__ = ["RoomStream", "Streams", "UnicastStream", "holes", "ROOM_VERBS"]

# Verbs that are room events when they carry a seq.
ROOM_VERBS = frozenset(("JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "KICK", "MODE", "QUIT",
                        "NICK"))
# Lines held for a room before our JOIN arrives (the JOIN sets where the stream starts).
MAX_EARLY = 4096


class _Stream:
    """Numbers shown so far, lines held, and the holes asked about."""

    def __init__(self, key: str, first: int | None) -> None:
        self.key = key
        self.next = first  # None: unknown until our own JOIN arrives
        self.held: dict[int, Message] = {}  # seq -> line, not yet shown
        self.latest = 0  # the highest number the server said exists
        self.asked: dict[int, float] = {}  # hole start -> when we last asked
        self.hole_since: float | None = None


class RoomStream(_Stream):
    """One room's stream: events in ``seq`` order from our JOIN to our PART."""

    def __init__(self, name: str) -> None:
        super().__init__(casefold(name), None)
        self.name = name


class UnicastStream(_Stream):
    """Our numbered unicast stream (``useq``)."""

    def __init__(self) -> None:
        super().__init__("*", 1)


def holes(stream: _Stream, limit: int, most: int = 8) -> list[tuple[int, int]]:
    """Missing ``(from, to)`` ranges of ``stream``, at most ``most``, each at most ``limit``."""
    if stream.next is None:
        return []
    top = max(stream.latest, max(stream.held) if stream.held else 0)
    out: list[tuple[int, int]] = []
    seq = stream.next
    held = stream.held
    while seq <= top and len(out) < most:
        if seq in held:
            seq += 1
            continue
        start = seq
        while seq <= top and seq not in held and seq - start < limit:
            seq += 1
        out.append((start, seq - 1))
    return out


def room_key(message: Message) -> str | None:
    """The folded room a line belongs to (``room`` tag, else its first parameter)."""
    room = message.tags.get("room")
    if room:
        return casefold(room)
    if message.params and is_room(message.params[0]):
        return casefold(message.params[0])
    return None


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return 0


class Streams:
    """
    Our unicast stream and one stream per room we are in.

    ``show(message, room)`` gets each line in order (``room`` None: unicast);
    ``is_me(nick)`` tells our own JOIN; ``changed()`` is called when there may
    be something to repair; ``gone(room, count)`` when events are lost for good.
    """

    def __init__(self, show: Callable[[Message, RoomStream | None], None],
                 is_me: Callable[[str], bool], changed: Callable[[], None],
                 gone: Callable[[str | None, int], None], stats: dict[str, int]) -> None:
        self.show = show
        self.is_me = is_me
        self.changed = changed
        self.on_gone = gone
        self.stats = stats
        self.unicast = UnicastStream()
        self.rooms: dict[str, RoomStream] = {}  # folded name -> stream

    def reset(self) -> None:
        """A new session: numbering starts again."""
        self.unicast = UnicastStream()
        self.rooms.clear()

    def joining(self, room: str) -> None:
        """We asked to join ``room``: collect its lines until our JOIN says where to start."""
        key = casefold(room)
        if key not in self.rooms:
            self.rooms[key] = RoomStream(room)

    def refused(self, room: str) -> None:
        """The JOIN failed: stop collecting the room's lines."""
        stream = self.rooms.get(casefold(room))
        if stream is not None and stream.next is None:
            del self.rooms[casefold(room)]

    def left(self, room: str) -> None:
        """Our PART or KICK: the rest of the room's stream is not ours."""
        self.rooms.pop(casefold(room), None)

    # ----------------------------------------------------------- lines in

    def unicast_in(self, seq: int, message: Message) -> None:
        """A line of our unicast stream, numbered ``seq``."""
        stream = self.unicast
        if seq < 1:
            return
        assert stream.next is not None  # the unicast stream starts at 1
        if seq < stream.next or seq in stream.held:
            self.stats["duplicates"] += 1
            return
        stream.held[seq] = message
        self._drain(stream)

    def room_in(self, message: Message) -> None:
        """A room event (it has a ``seq``), by broadcast, unicast copy or repair."""
        key = room_key(message)
        if key is None:
            return
        seq = _int(message.tags.get("seq", "0"))
        own_join = message.verb == "JOIN" and self.is_me(_nick(message))
        room = self.rooms.get(key)
        if room is None:
            if not own_join:
                return  # a room we are not in
            room = self.rooms[key] = RoomStream(message.params[0])
        if room.next is None:
            if not own_join:
                self._early(room, seq, message)
                return
            room.next = seq
            room.name = message.params[0]
            for old in [s for s in room.held if s < seq]:
                del room.held[old]
        if seq < room.next or seq in room.held:
            self.stats["duplicates"] += 1
            return
        room.held[seq] = message
        self._drain(room)

    def _early(self, room: RoomStream, seq: int, message: Message) -> None:
        """A line before our JOIN: kept, for it may come after the JOIN."""
        if seq in room.held:
            self.stats["duplicates"] += 1
        elif len(room.held) < MAX_EARLY:
            room.held[seq] = message

    def _drain(self, stream: _Stream) -> None:
        """Show every held line that is next in its stream."""
        while stream.next is not None and stream.next in stream.held:
            message = stream.held.pop(stream.next)
            stream.asked.pop(stream.next, None)
            stream.next += 1
            if isinstance(stream, RoomStream):
                self.show(message, stream)
                if stream.key not in self.rooms:
                    return  # we left: the rest is not ours
            elif "seq" in message.tags and room_key(message) is not None \
                    and message.verb in ROOM_VERBS:
                self.room_in(message)  # our own JOIN/PART/NICK/KICK: the room's stream
            else:
                self.show(message, None)
        stream.hole_since = None if not stream.held else stream.hole_since
        self.changed()

    # -------------------------------------------------------- what exists

    def note_latest(self, stream: _Stream, latest: int) -> None:
        """The server says ``stream`` has events up to ``latest``."""
        if latest > stream.latest:
            stream.latest = latest
            self.changed()

    def heartbeat(self, message: Message) -> None:
        """``HEARTBEAT <server> <port> :<room>:<seq> ...``: each room's latest seq."""
        if len(message.params) < 3:
            return
        for entry in message.params[2].split():
            name, _, seq = entry.rpartition(":")
            room = self.rooms.get(casefold(name))
            if room is not None and seq.isdigit():
                self.note_latest(room, int(seq))

    def gone(self, message: Message) -> None:
        """``FAIL REPAIR GONE <room> <from> <to>``: the server no longer holds them: skip."""
        p = message.params
        if len(p) < 5:
            return
        stream: _Stream | None = self.unicast if p[2] == "*" else self.rooms.get(casefold(p[2]))
        if stream is None or stream.next is None:
            return
        first, last = _int(p[3]), _int(p[4])
        if first <= stream.next <= last:
            lost = last - stream.next + 1
            self.stats["gone"] += lost
            self.on_gone(stream.name if isinstance(stream, RoomStream) else None, lost)
            stream.next = last + 1
            for seq in [s for s in stream.held if s < stream.next]:
                del stream.held[seq]
            self._drain(stream)

    # ------------------------------------------------------------- repair

    def needs_repair(self) -> bool:
        """Whether any stream holds lines past a hole, or knows of lines not yet seen."""
        return any(s.next is not None and (s.held or s.latest >= s.next) for s in self._all())

    def repairs(self, now: float, reorder_delay: float, interval: float, limit: int
                ) -> list[tuple[str, int, int]]:
        """
        ``(target, from, to)`` to ask REPAIR for now: holes older than
        ``reorder_delay``, each asked at most once per ``interval``.
        """
        out = []
        for stream in self._all():
            found = holes(stream, limit)
            if not found:
                stream.hole_since = None
                stream.asked.clear()
                continue
            if stream.hole_since is None:
                stream.hole_since = now
            if now - stream.hole_since < reorder_delay:
                continue
            target = stream.name if isinstance(stream, RoomStream) else "*"
            for start, end in found:
                if now - stream.asked.get(start, -1e9) >= interval:
                    stream.asked[start] = now
                    self.stats["repairs_asked"] += 1
                    out.append((target, start, end))
        return out

    def _all(self) -> list[_Stream]:
        return [self.unicast, *self.rooms.values()]


def _nick(message: Message) -> str:
    return message.source.split("!", 1)[0] if message.source else ""
