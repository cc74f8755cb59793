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

Two additions of issue #12 (docs/udp-protocol.md, "History on join" and
"Restarts"):

- **history on join**: after our first JOIN of a room (``seq`` J) the stream
  asks ``REPAIR <room> <max(1, J-50)> <J-1>`` and holds the JOIN until the
  answers are in (or :data:`BACKFILL_WAIT` passed); the messages among them
  are shown before the JOIN, each once, in order (:class:`Backfill`);
- **a new session** (the server restarted, :meth:`Streams.new_session`): each
  room's stream goes on from the last ``seq`` shown.  Our JOIN again is held
  where it falls, the hole before it is repaired (the server reads it from
  history) and shown first, as a TCP client gets CHATHISTORY before its
  JOIN.  Nothing is asked until that JOIN (the server would refuse: we are
  not in the room yet) and until the room's ``epoch`` is known to be the same;
  another epoch, or numbers that went back, start the stream afresh.
"""

from __future__ import annotations

from collections.abc import Callable

from twistchat.client.interfaces import is_room
from twistchat.wire import Message, casefold

__all__ = ["Backfill", "RoomStream", "Streams", "UnicastStream", "holes", "ROOM_VERBS"]

# Verbs that are room events when they carry a seq.
ROOM_VERBS = frozenset(("JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "KICK", "MODE", "QUIT",
                        "NICK"))
# Lines held for a room before our JOIN arrives (the JOIN sets where the stream starts).
MAX_EARLY = 4096
# History on join: how many events before our JOIN to ask for (docs, "History on join"),
# which of them to show (the same lines a TCP client with server-time gets), and how long
# to hold the JOIN for their answers before showing what came.
HISTORY_ON_JOIN = 50
HISTORY_VERBS = frozenset(("PRIVMSG", "NOTICE"))
BACKFILL_WAIT = 2.0


class _Stream:
    """Numbers shown so far, lines held, and the holes asked about."""

    def __init__(self, key: str, first: int | None) -> None:
        self.key = key
        self.next = first  # None: unknown until our own JOIN arrives
        self.held: dict[int, Message] = {}  # seq -> line, not yet shown
        self.latest = 0  # the highest number the server said exists
        self.asked: dict[int, float] = {}  # hole start -> when we last asked
        self.hole_since: float | None = None
        self.rejoining = False  # a new session: ask nothing until our JOIN and epoch are in


class Backfill:
    """The events before our JOIN we asked for (history on join), as they come."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.lines: dict[int, Message] = {}
        self.gone: set[int] = set()
        self.started: float | None = None  # when first asked
        self.asked: dict[int, float] = {}

    def wants(self, seq: int) -> bool:
        """Whether ``seq`` is asked for and not yet in."""
        return self.first <= seq <= self.last and seq not in self.lines and seq not in self.gone

    def missing(self, limit: int) -> list[tuple[int, int]]:
        """The ranges still to come, each at most ``limit``."""
        out: list[tuple[int, int]] = []
        seq = self.first
        while seq <= self.last:
            if not self.wants(seq):
                seq += 1
                continue
            start = seq
            while seq <= self.last and self.wants(seq) and seq - start < limit:
                seq += 1
            out.append((start, seq - 1))
        return out


class RoomStream(_Stream):
    """One room's stream: events in ``seq`` order from our JOIN to our PART."""

    def __init__(self, name: str) -> None:
        super().__init__(casefold(name), None)
        self.name = name
        self.epoch: str | None = None  # the numbering our seqs belong to (heartbeat ``epoch``)
        self.rejoin: Message | None = None  # our JOIN in a new session, until the epoch is known
        self.backfill: Backfill | None = None


class UnicastStream(_Stream):
    """Our numbered unicast stream (``useq``)."""

    def __init__(self) -> None:
        super().__init__("*", 1)


def holes(stream: _Stream, limit: int, most: int = 8) -> list[tuple[int, int]]:
    """Missing ``(from, to)`` ranges of ``stream``, at most ``most``, each at most ``limit``."""
    if stream.next is None or stream.rejoining:
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
                 gone: Callable[[str | None, int], None], stats: dict[str, int],
                 history_on_join: int = HISTORY_ON_JOIN) -> None:
        self.show = show
        self.history_on_join = history_on_join
        self.epoch: str | None = None  # the last heartbeat's epoch, since we last lost the server
        self.is_me = is_me
        self.changed = changed
        self.on_gone = gone
        self.stats = stats
        self.unicast = UnicastStream()
        self.rooms: dict[str, RoomStream] = {}  # folded name -> stream
        # Rooms we left: (epoch, next seq to show) when we left.  History on a later
        # JOIN starts after what we showed then, so a part and a join show no line
        # twice (as the TCP session's msgids ensure).
        self.left_at: dict[str, tuple[str | None, int]] = {}

    def reset(self) -> None:
        """Forget everything: numbering starts again."""
        self.unicast = UnicastStream()
        self.rooms.clear()

    def suspend(self) -> None:
        """The server went silent: the epoch heard next may be a restarted server's."""
        self.epoch = None

    def new_session(self) -> None:
        """
        We registered anew (the server restarted): our unicast stream starts
        again at 1; each room's stream waits for our JOIN and goes on from the
        last seq shown (docs/udp-protocol.md, "Restarts").
        """
        self.unicast = UnicastStream()
        for room in self.rooms.values():
            if room.backfill is not None:
                self._end_backfill(room)
            room.rejoining = room.next is not None
            room.rejoin = None
            room.asked.clear()
            room.hole_since = None

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
        stream = self.rooms.pop(casefold(room), None)
        if stream is not None and stream.next is not None:
            self.left_at[stream.key] = (stream.epoch or self.epoch, stream.next)

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
        if own_join and room.rejoining and room.rejoin is None:
            room.rejoin = message  # where we are again; the epoch says if it goes on
            self._check_epoch(room, None)
            return
        if room.next is None:
            if not own_join:
                self._early(room, seq, message)
                return
            self._start(room, seq, message)
        assert room.next is not None  # set by our JOIN, just now or before
        if seq < room.next or seq in room.held:
            backfill = room.backfill
            if backfill is not None and backfill.wants(seq):
                backfill.lines[seq] = message
                self._backfilled(room)
                return
            self.stats["duplicates"] += 1
            return
        room.held[seq] = message
        self._drain(room)

    def _start(self, room: RoomStream, seq: int, join: Message) -> None:
        """Our JOIN (seq ``seq``) starts ``room``'s stream; ask for what came before it."""
        room.next = seq
        room.name = join.params[0]
        room.epoch = room.epoch or self.epoch
        early = {s: m for s, m in room.held.items() if s < seq}
        for old in early:
            del room.held[old]
        first = max(1, seq - self.history_on_join)
        before = self.left_at.pop(room.key, None)
        if before is not None and before[0] == room.epoch:
            first = max(first, before[1])  # shown before we left: not again
        if self.history_on_join > 0 and first <= seq - 1:
            backfill = room.backfill = Backfill(first, seq - 1)
            # Lines heard before our JOIN are some of the answers already.
            backfill.lines.update({s: m for s, m in early.items() if backfill.first <= s})
            self.changed()

    def _backfilled(self, room: RoomStream) -> None:
        backfill = room.backfill
        if backfill is not None and not backfill.missing(1 << 30):
            self._end_backfill(room)

    def _end_backfill(self, room: RoomStream) -> None:
        """Show the messages before our JOIN, in order, then the stream from the JOIN."""
        backfill, room.backfill = room.backfill, None
        if backfill is None:
            return
        for seq in sorted(backfill.lines):
            message = backfill.lines[seq]
            if message.verb in HISTORY_VERBS:
                self.show(message, room)
        self._drain(room)

    def _check_epoch(self, room: RoomStream, listed: str | None) -> None:
        """
        A new session, our JOIN in: does the room's numbering go on?  Numbers
        that went back, or another epoch listed for the room, start it afresh;
        the same epoch (listed, or the heartbeat's) lets the repair begin.
        """
        join = room.rejoin
        if join is None:
            return
        seq = _int(join.tags.get("seq"))
        known = room.epoch
        if room.next is None or seq < room.next or (listed and known and listed != known):
            self._afresh(room, listed or self.epoch)
        elif known is None or listed == known or self.epoch == known:
            pass  # the same numbering: repair the gap up to our JOIN
        else:
            return  # the heartbeat names another epoch; wait for one listing this room
        room.rejoining = False
        room.rejoin = None
        if room.next is not None and seq >= room.next:
            room.held[seq] = join
            self._drain(room)
        self.changed()

    def _afresh(self, room: RoomStream, epoch: str | None) -> None:
        """The room's numbering started over: a new stream from our JOIN (no repair)."""
        room.held.clear()
        room.asked.clear()
        room.latest = 0
        room.hole_since = None
        room.epoch = epoch
        room.next = None
        join = room.rejoin
        if join is not None:
            room.rejoin = None
            self._start(room, _int(join.tags.get("seq")), join)

    def _early(self, room: RoomStream, seq: int, message: Message) -> None:
        """A line before our JOIN: kept, for it may come after the JOIN."""
        if seq in room.held:
            self.stats["duplicates"] += 1
        elif len(room.held) < MAX_EARLY:
            room.held[seq] = message

    def _drain(self, stream: _Stream) -> None:
        """Show every held line that is next in its stream."""
        if isinstance(stream, RoomStream) and stream.backfill is not None:
            return  # our JOIN waits for the lines before it
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
        """
        ``@epoch=E HEARTBEAT <server> <port> :<room>:<seq> ...``: each room's
        latest seq, in numbering E.  Another epoch than a room's own starts its
        stream afresh (docs, "Heartbeat and beacon").
        """
        epoch = message.tags.get("epoch") or None
        if epoch is not None:
            self.epoch = epoch
        for waiting in self.rooms.values():
            if waiting.rejoining and waiting.rejoin is not None and epoch is not None \
                    and waiting.epoch == epoch:
                self._check_epoch(waiting, None)
        if len(message.params) < 3:
            return
        for entry in message.params[2].split():
            name, _, seq = entry.rpartition(":")
            room = self.rooms.get(casefold(name))
            if room is None or not seq.isdigit():
                continue
            if room.rejoining:
                if room.rejoin is not None:
                    self._check_epoch(room, epoch)
                else:
                    continue  # the old numbering's latest means nothing until our JOIN
            elif epoch is not None and room.epoch is not None and epoch != room.epoch:
                self._afresh(room, epoch)  # numbering started over: wait for our JOIN
                continue
            elif room.epoch is None and room.next is not None:
                room.epoch = epoch
            if room.next is not None:
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
        if isinstance(stream, RoomStream) and stream.backfill is not None:
            backfill = stream.backfill
            backfill.gone.update(s for s in range(max(first, backfill.first),
                                                  min(last, backfill.last) + 1))
            self._backfilled(stream)
            if last < stream.next:
                return  # older than our JOIN: nothing was lost that we had
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
        return any(s.next is not None and (s.held or s.latest >= s.next) for s in self._all()) \
            or any(room.backfill is not None for room in self.rooms.values())

    def repairs(self, now: float, reorder_delay: float, interval: float, limit: int
                ) -> list[tuple[str, int, int]]:
        """
        ``(target, from, to)`` to ask REPAIR for now: holes older than
        ``reorder_delay``, each asked at most once per ``interval``.
        """
        out = []
        for room in list(self.rooms.values()):
            backfill = room.backfill
            if backfill is None:
                continue
            if backfill.started is None:
                backfill.started = now
            elif now - backfill.started >= BACKFILL_WAIT:
                self._end_backfill(room)  # show what came; the rest is not worth the wait
                continue
            for start, end in backfill.missing(limit):
                if now - backfill.asked.get(start, -1e9) >= interval:
                    backfill.asked[start] = now
                    self.stats["repairs_asked"] += 1
                    out.append((room.name, start, end))
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
