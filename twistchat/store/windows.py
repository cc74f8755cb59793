"""
What each history question means, once, for every store and for the write queue.

test-case-name: tests.test_store

IRCv3 ``draft/chathistory`` leaves choices to the server (how AROUND splits,
which end BETWEEN and TARGETS keep when the limit cuts).  They are made here,
on plain sorted lists of records: :class:`~twistchat.store.memory.MemoryStore`
answers with them directly, and :class:`~twistchat.store.sqlite.SQLiteStore`
merges its queue of not-yet-written records into what the database returned
with the same functions, so both stores give the same answers.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from twistchat.core.targets import dm_parties
from twistchat.store.records import HistoryRecord

__all__ = [
    "BY_SEQ", "BY_TIME", "INT_MAX", "INT_MIN", "Range", "around", "around_windows",
    "between_window", "clamp", "latest_in_window", "merge", "order_targets", "select",
    "target_window", "time_pick", "visible_filter",
]

# SQLite INTEGER is a signed 64-bit number; clamp what clients hand us (a UDP
# repair range, a limit) so a huge number is an empty answer, not an error.
INT_MAX = 2**63 - 1
INT_MIN = -(2**63) + 1

#: Sort keys of records (bisect ``key=``).
BY_SEQ = attrgetter("seq")
BY_TIME = attrgetter("time_ms")


def clamp(n: int) -> int:
    """``n`` as an int inside SQLite's INTEGER range."""
    return max(INT_MIN, min(INT_MAX, int(n)))


@dataclass(frozen=True, slots=True)
class Range:
    """
    A window of one target's sequence numbers.

    ``low`` < seq < ``high`` (None: unbounded); ``from_end`` picks the last
    ``limit`` of the window instead of the first.  The answer is ascending.
    """

    target: str
    low: int | None
    high: int | None
    limit: int
    from_end: bool

    @property
    def empty(self) -> bool:
        """True if no record can satisfy this window."""
        return (
            self.limit <= 0
            or (self.low is not None and self.high is not None and self.high - self.low < 2)
        )


def select(records: list, window: Range) -> list:
    """The records of ``window`` from ``records``, ascending and unique by seq."""
    if window.empty:
        return []
    lo = 0 if window.low is None else bisect_right(records, window.low, key=BY_SEQ)
    hi = len(records) if window.high is None else bisect_left(records, window.high, key=BY_SEQ)
    if hi <= lo:
        return []
    if window.from_end:
        return records[max(lo, hi - window.limit):hi]
    return records[lo:min(hi, lo + window.limit)]


def around_windows(target: str, seq: int, limit: int) -> tuple[Range, Range]:
    """The two windows AROUND draws from: below ``seq``, and from ``seq`` up."""
    return (Range(target, None, seq, limit, True), Range(target, seq - 1, None, limit, False))


def around(records: list, seq: int, limit: int) -> list:
    """
    Up to ``limit`` records around ``seq`` (the record at ``seq`` included).

    The chathistory draft leaves the split to the server.  As Ergo
    (irc/history/queries.go, GenericAround): (limit - 1) // 2 records before
    the pivot, the pivot and the rest after it.  Unlike Ergo, near either end
    of the transcript the other side fills up to ``limit``.
    """
    below, above = around_windows("", seq, limit)
    lower = select(records, below)
    upper = select(records, above)
    n_before = min(len(lower), max((limit - 1) // 2, limit - len(upper)))
    n_after = min(len(upper), limit - n_before)
    return lower[len(lower) - n_before:] + upper[:n_after]


def between_window(target: str, first: int, second: int, limit: int) -> Range:
    """
    BETWEEN ``first`` and ``second``, exclusive, in either order.

    chathistory draft: "start from and exclude the first message selector,
    while finishing on and excluding the second - this may be forwards or
    backwards in time", so the ``limit`` records nearest ``first`` are chosen
    (as Ergo's MinMaxAsc); the answer is ascending either way.
    """
    if first <= second:
        return Range(target, first, second, limit, False)
    return Range(target, second, first, limit, True)


def merge(stored: list, pending: list) -> list:
    """
    ``stored`` (ascending) and ``pending`` records as one ascending list, unique by seq.

    A sequence number already stored keeps its stored record, and among queued
    duplicates the first queued wins: the same rule as the INSERT OR IGNORE
    that writes them.
    """
    if not pending:
        return stored
    by_seq = {record.seq: record for record in stored}
    for record in pending:
        by_seq.setdefault(record.seq, record)
    return sorted(by_seq.values(), key=BY_SEQ)


def time_pick(candidates: Iterable[tuple[int, int]], after: bool) -> int | None:
    """The seq of the earliest (``after``) or latest ``(time_ms, seq)`` candidate."""
    candidates = list(candidates)
    if not candidates:
        return None
    return (min if after else max)(candidates)[1]


def target_window(since_ms: int | None, until_ms: int | None) -> tuple[int, int, bool]:
    """
    TARGETS' time window: ``(low, high, ascending)``, bounds exclusive.

    As Ergo (irc/history/queries.go, MinMaxAsc): the window runs from the
    first timestamp to the second, forwards or backwards; ``limit`` keeps the
    targets nearest the first.  Without the first bound, nearest the second.
    """
    low, high = since_ms, until_ms
    if since_ms is not None and until_ms is not None:
        low, high = min(since_ms, until_ms), max(since_ms, until_ms)
        ascending = since_ms <= until_ms
    else:
        ascending = since_ms is not None
    # An open side is one past SQLite's range, so every stored time is inside.
    return (INT_MIN - 1 if low is None else clamp(low),
            INT_MAX + 1 if high is None else clamp(high),
            ascending)


def visible_filter(
    visible: Iterable[str] | None, dm_party: str | None
) -> Callable[[str], bool]:
    """
    Which targets an asker may list.

    ``visible`` None means every target (an operator's view).  Otherwise a
    target is listed if it is in ``visible``, or if it is a private
    conversation with ``dm_party`` (a casefolded nick) as one of the two.
    """
    if visible is None:
        return lambda target: True
    allowed = frozenset(visible)

    def visible_to_asker(target: str) -> bool:
        if target in allowed:
            return True
        if dm_party is None:
            return False
        parties = dm_parties(target)
        return parties is not None and dm_party in parties

    return visible_to_asker


def order_targets(latest: Mapping[str, int], ascending: bool, limit: int) -> list:
    """``(target, time)`` pairs by time, the ``limit`` nearest the window's start, ascending."""
    if limit <= 0:
        return []
    ordered = sorted(latest.items(), key=lambda item: (item[1], item[0]))
    return ordered[:limit] if ascending else ordered[max(0, len(ordered) - limit):]


def latest_in_window(records: Iterable[HistoryRecord], low: int, high: int) -> dict:
    """``{target: latest time}`` of ``records`` with low < time < high."""
    latest: dict = {}
    for record in records:
        if low < record.time_ms < high and record.time_ms > latest.get(record.target, low):
            latest[record.target] = record.time_ms
    return latest
