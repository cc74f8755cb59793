"""
Read markers (IRCv3 ``draft/read-marker``): how far an account has read each target.

test-case-name: tests.test_readmarkers

https://ircv3.net/specs/extensions/read-marker: ``MARKREAD <target>
[timestamp=YYYY-MM-DDThh:mm:ss.sssZ]``.  A marker belongs to an account, so
that the teacher's laptop and phone agree on what she has read: set from one
connection, it is pushed to every other connection logged in as that account
(those that negotiated ``draft/read-marker``).  It is never shown to anyone
else (the spec's "MUST NOT leak").

- **set** (``MARKREAD #room timestamp=...``): the stored time only ever rises;
  the new one is clamped to now (the spec's "Implementation Considerations").
  The sender always gets the stored value back; the others only when it moved.
- **get** (``MARKREAD #room``): the stored value, or ``*``.
- **JOIN**: a client with the capability gets the room's marker after its JOIN,
  before 366 (:func:`on_join`, called by :meth:`Registry.join`).
- Without an account there is nowhere to keep a marker: get answers ``*``, set
  ``FAIL MARKREAD INTERNAL_ERROR`` ("cannot be set ... due to an error").
- At most :data:`MAX_MARKERS_PER_ACCOUNT` targets per account; past it, a new
  target is refused with ``INTERNAL_ERROR`` as well (known ones still move).

Keys: the account's casefolded name and the casefolded target (a room, or the
other party's nick).  Times are milliseconds since the epoch, as room events'.
Each change is handed to ``saver(account_key, target, time_ms)``; the store's
``save_marker`` (docs/accounts.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery, Gated
from twistchat.core.identity import fail
from twistchat.core.model import Channel, User
from twistchat.wire import CHANTYPES, Message, casefold, format_server_time, parse_server_time

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["CAP", "MAX_MARKERS_PER_ACCOUNT", "MarkerSaver", "ReadMarkers", "markread",
           "on_join"]

CAP = "draft/read-marker"
# The most targets one account keeps a marker for: every room and conversation a
# busy user reads, with room to spare; the memory one account may claim is bounded.
MAX_MARKERS_PER_ACCOUNT = 1000

# Told of every change: (casefolded account, casefolded target, time in ms).
MarkerSaver = Callable[[str, str, int], None]


class ReadMarkers:
    """Every account's read markers: (account key, target key) -> time in ms."""

    def __init__(self, markers: Iterable[tuple[str, str, int]]
                 | Mapping[tuple[str, str], int] = (),
                 saver: MarkerSaver | None = None) -> None:
        """``markers``: (account, target, time_ms) triples, or a map (account, target) -> time."""
        self._times: dict[tuple[str, str], int] = {}
        self._counts: dict[str, int] = {}  # account key -> targets with a marker
        triples = ([(a, t, ms) for (a, t), ms in markers.items()]
                   if isinstance(markers, Mapping) else markers)
        for account, target, time_ms in triples:
            self._put(casefold(account), casefold(target), int(time_ms))
        self.saver = saver  # set by the service once the store is open

    def __len__(self) -> int:
        return len(self._times)

    def get(self, account: str, target: str) -> int | None:
        """The marker of ``account`` on ``target`` (any case), or None."""
        return self._times.get((casefold(account), casefold(target)))

    def advance(self, account: str, target: str, time_ms: int) -> tuple[int, bool] | None:
        """
        Move the marker to ``time_ms`` if that is later: (the marker now, whether it moved).

        None if ``target`` is new and the account has MAX_MARKERS_PER_ACCOUNT already.
        """
        key = (casefold(account), casefold(target))
        held = self._times.get(key)
        if held is not None and time_ms <= held:
            return held, False
        if held is None and self._counts.get(key[0], 0) >= MAX_MARKERS_PER_ACCOUNT:
            return None
        self._put(*key, time_ms)
        if self.saver is not None:
            self.saver(*key, time_ms)
        return time_ms, True

    def _put(self, account: str, target: str, time_ms: int) -> None:
        if (account, target) not in self._times:
            self._counts[account] = self._counts.get(account, 0) + 1
        self._times[account, target] = time_ms


def _shown(time_ms: int | None) -> str:
    return "*" if time_ms is None else "timestamp=" + format_server_time(time_ms)


def _line(registry: Registry, target: str, time_ms: int | None) -> Message:
    return Message("MARKREAD", (target, _shown(time_ms)), registry.server_name)


def markread(registry: Registry, user: User, params: tuple[str, ...]) -> list[Delivery]:
    """``MARKREAD <target> [timestamp=...]``: get or set ``user``'s account's marker."""
    if not params or not params[0]:
        return [fail(registry, user, "MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")]
    target = params[0]
    is_room = target[:1] in CHANTYPES
    if not (registry.valid_channel(target) if is_room else registry.valid_nick(target)):
        return [Delivery((user,), Message("FAIL", ("MARKREAD", "INVALID_PARAMS", target,
                                                   "Invalid target"), registry.server_name))]
    account = user.account
    if len(params) == 1:
        held = registry.read_markers.get(account, target) if account is not None else None
        return [Delivery((user,), _line(registry, target, held))]
    stamp = params[1]
    try:
        if not stamp.startswith("timestamp="):
            raise ValueError(stamp)
        time_ms = parse_server_time(stamp[len("timestamp="):])
    except ValueError:
        return [Delivery((user,), Message("FAIL", ("MARKREAD", "INVALID_PARAMS", stamp,
                                                   "Invalid timestamp"), registry.server_name))]
    if account is None:
        return [Delivery((user,), Message("FAIL", (
            "MARKREAD", "INTERNAL_ERROR", target,
            "Read markers are kept for logged-in accounts only"), registry.server_name))]
    now_ms = int(registry.clock() * 1000)
    result = registry.read_markers.advance(account, target, min(time_ms, now_ms))
    if result is None:
        return [Delivery((user,), Message("FAIL", (
            "MARKREAD", "INTERNAL_ERROR", target,
            f"At most {MAX_MARKERS_PER_ACCOUNT} read markers per account"),
            registry.server_name))]
    held, moved = result
    line = _line(registry, target, held)
    out = [Delivery((user,), line)]
    if moved:
        key = casefold(account)
        others = [u for u in registry.users()
                  if u is not user and u.account is not None and casefold(u.account) == key]
        if others:
            out.append(Delivery(others, Gated(CAP, line)))
    return out


def on_join(registry: Registry, channel: Channel, user: User) -> list[Delivery]:
    """After ``user``'s JOIN, before 366: the room's marker, to a client with the capability."""
    held = registry.read_markers.get(user.account, channel.key) if user.account else None
    return [Delivery((user,), Gated(CAP, _line(registry, channel.name, held)))]
