"""
IRCv3 ``draft/chathistory``: from a CHATHISTORY request to records of the store.

test-case-name: tests.test_history

https://ircv3.net/specs/extensions/chathistory ::

    CHATHISTORY LATEST  <target> <timestamp | msgid | *> <limit>
    CHATHISTORY BEFORE  <target> <timestamp | msgid> <limit>
    CHATHISTORY AFTER   <target> <timestamp | msgid> <limit>
    CHATHISTORY AROUND  <target> <timestamp | msgid> <limit>
    CHATHISTORY BETWEEN <target> <timestamp | msgid> <timestamp | msgid> <limit>
    CHATHISTORY TARGETS <timestamp> <timestamp> <limit>

Who may read what is a chat rule, so it asks the registry
(:meth:`~twistchat.core.registry.Registry.can_read`): a room's history only for
its members, a private conversation only for its two parties.  A room the asker
cannot see gets the same answer as one that does not exist (INVALID_TARGET), so
the reply reveals nothing.

:class:`History` is what front-ends hold: CHATHISTORY requests and history on
join, planned over the room log (where a room's numbering stands) and the
store (the records).  Front-ends never see the store itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed

from twistchat.core.events import TAG_CLIENT, TAG_MSGID, TAG_TIME
from twistchat.core.registry import Registry, User
from twistchat.core.replies import StandardReplyError
from twistchat.wire import (
    CHANTYPES,
    Message,
    casefold,
    format_server_time,
    is_decimal,
    parse_server_time,
)

SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS")
# Lines replayed to clients without draft/event-playback (what Ergo replays by default).
MESSAGE_COMMANDS = frozenset(("PRIVMSG", "NOTICE", "TAGMSG"))
_NO_BOUND = 2**62


class HistoryError(StandardReplyError):
    """A request we refuse: becomes ``FAIL CHATHISTORY <code> <params...> :<text>``."""

    command = "CHATHISTORY"


@dataclass(frozen=True)
class Selector:
    """``timestamp=...`` (``time_ms``) or ``msgid=...`` (``msgid``), or ``*``."""

    time_ms: int | None = None
    msgid: str | None = None

    @property
    def star(self) -> bool:
        return self.time_ms is None and self.msgid is None


STAR = Selector()


def parse_selector(sub: str, text: str, allow_star: bool = False) -> Selector:
    """Parse one message reference; INVALID_PARAMS on anything else."""
    if text == "*" and allow_star:
        return STAR
    kind, _, value = text.partition("=")
    if kind == "msgid" and value:
        return Selector(msgid=value)
    if kind == "timestamp" and value:
        try:
            return Selector(time_ms=parse_server_time(value))
        except ValueError:
            pass
    raise HistoryError("INVALID_PARAMS", sub, text=f"Invalid message reference: {text}")


def parse_limit(sub: str, text: str, maximum: int) -> int:
    """The limit: a whole number from 1 to the advertised maximum."""
    if not is_decimal(text) or not 0 < int(text) <= maximum:
        raise HistoryError("INVALID_PARAMS", sub,
                           text=f"Limit must be a whole number from 1 to {maximum}")
    return int(text)


def target_key(registry: Registry, user: User, sub: str, target: str) -> str:
    """The store key of ``target`` if ``user`` may read it; INVALID_TARGET otherwise."""
    if target[:1] in CHANTYPES:
        key = casefold(target)
        if not registry.can_read(user, key):
            raise HistoryError("INVALID_TARGET", sub, target,
                               text="No such channel, or you are not in it")
        return key
    conversation = registry.conversation_key(user, target)
    if conversation is None:
        raise HistoryError("INVALID_TARGET", sub, target, text="Invalid target")
    return conversation


async def _seq(store, key: str, selector: Selector, sub: str, *, after: bool) -> int | None:
    """
    The exclusive sequence bound a selector stands for.

    A msgid is the seq of that message; a timestamp is the bound just past
    the messages on the other side of it.
    """
    if selector.msgid is not None:
        seq = await store.seq_for_msgid(key, selector.msgid)
        if seq is None:
            raise HistoryError("INVALID_PARAMS", sub, text="Unknown msgid")
        return seq
    found = await store.seq_for_time(key, selector.time_ms, after=after)
    if found is None:
        return None
    # found is the first seq past the time (after) or the last before it: step outside.
    return found - 1 if after else found + 1


async def query(store, registry: Registry, user: User, params: tuple, maximum: int,
                messages_only: bool = False):
    """
    Run one CHATHISTORY request (params after the verb).

    Returns ``(target_name, records)`` for message subcommands, records in
    ascending order, or ``("*", [(target_name, time_ms), ...])`` for TARGETS.
    With ``messages_only`` (no draft/event-playback) only PRIVMSG, NOTICE and
    TAGMSG count toward the limit.  Raises :class:`HistoryError` for requests
    we refuse.
    """
    if not messages_only:
        return await _query(store, registry, user, params, maximum)
    # Ask for more, then keep ``limit`` messages on the side the request counts from.
    wider = tuple(params)
    sub = params[0].upper() if params else ""
    limit_at = 4 if sub == "BETWEEN" else 3
    if sub in SUBCOMMANDS and sub != "TARGETS" and len(params) > limit_at:
        limit = parse_limit(sub, params[limit_at], maximum)
        wider = (*params[:limit_at], str(min(limit * OVERFETCH, 10 * maximum)),
                 *params[limit_at + 1:])
        target, records = await _query(store, registry, user, wider, 10 * maximum)
        kept = [r for r in records if r.command in MESSAGE_COMMANDS]
        if sub in ("LATEST", "BEFORE") or (sub == "BETWEEN" and not _order(
                parse_selector(sub, params[2]), parse_selector(sub, params[3]))):
            return target, kept[-limit:]
        if sub == "AROUND" and records:
            # The store centred its window on the reference: keep the messages nearest it.
            middle = records[len(records) // 2].seq
            nearest = sorted(kept, key=lambda r: (abs(r.seq - middle), r.seq))[:limit]
            return target, sorted(nearest, key=lambda r: r.seq)
        return target, kept[:limit]
    return await _query(store, registry, user, params, maximum)


OVERFETCH = 4  # events fetched per message wanted when non-message events are skipped


async def _query(store, registry: Registry, user: User, params: tuple, maximum: int):
    if not params:
        raise HistoryError("INVALID_PARAMS", "*", text="Missing subcommand")
    sub = params[0].upper()
    if sub not in SUBCOMMANDS:
        raise HistoryError("INVALID_PARAMS", params[0], text="Unknown subcommand")
    needed = 5 if sub == "BETWEEN" else 4
    if len(params) < needed:
        raise HistoryError("INVALID_PARAMS", sub, text="Not enough parameters")
    if sub == "TARGETS":
        return "*", await _targets(store, registry, user, params, maximum)
    target = params[1]
    key = target_key(registry, user, sub, target)
    limit = parse_limit(sub, params[needed - 1], maximum)
    first = parse_selector(sub, params[2], allow_star=sub == "LATEST")
    if sub == "LATEST":
        if first.star:
            return target, await store.latest(key, limit)
        low = await _seq(store, key, first, sub, after=True)
        if low is None:
            return target, []
        # The most recent messages after the reference.
        return target, await store.between(key, _NO_BOUND, low, limit)
    if sub == "BEFORE":
        high = await _seq(store, key, first, sub, after=False)
        return target, [] if high is None else await store.before(key, high, limit)
    if sub == "AFTER":
        low = await _seq(store, key, first, sub, after=True)
        return target, [] if low is None else await store.after(key, low, limit)
    if sub == "AROUND":
        if first.msgid is not None:
            centre = await _seq(store, key, first, sub, after=False)
        else:
            centre = await store.seq_for_time(key, first.time_ms, after=True)
            if centre is None:
                centre = await store.seq_for_time(key, first.time_ms, after=False)
        return target, [] if centre is None else await store.around(key, centre, limit)
    # BETWEEN: nearest the first reference, in either direction.
    second = parse_selector(sub, params[3])
    ascending = _order(first, second)
    a = await _seq(store, key, first, sub, after=ascending)
    b = await _seq(store, key, second, sub, after=not ascending)
    if a is None or b is None:
        return target, []
    return target, await store.between(key, a, b, limit)


def _order(first: Selector, second: Selector) -> bool:
    """True when the first reference is the older one (timestamps compared; msgids: assume so)."""
    if first.time_ms is not None and second.time_ms is not None:
        return first.time_ms <= second.time_ms
    return True


async def _targets(store, registry: Registry, user: User, params: tuple, maximum: int) -> list:
    """TARGETS: rooms the user is in and its private conversations, latest first by time."""
    since = parse_selector("TARGETS", params[1])
    until = parse_selector("TARGETS", params[2])
    limit = parse_limit("TARGETS", params[3], maximum)
    if since.time_ms is None or until.time_ms is None:
        raise HistoryError("INVALID_PARAMS", "TARGETS", text="TARGETS takes two timestamps")
    low, high = sorted((since.time_ms, until.time_ms))
    rooms = {key for key, _ in registry.rooms_of(user)}
    found = await store.targets(since_ms=low, until_ms=high, limit=limit,
                                visible=rooms, dm_party=user.key)
    return [(registry.target_name(user, key), time_ms) for key, time_ms in found]


def replay_message(record, view: int, batch: str | None, server_name: str) -> Message:
    """The line a client sees for one stored record, with the tags its view asks for."""
    tags = {}
    if view & TAG_CLIENT and record.tags:
        tags.update(record.tags)
    if batch is not None:
        tags["batch"] = batch
    if view & TAG_MSGID:
        tags["msgid"] = record.msgid
    if view & TAG_TIME:
        tags["time"] = format_server_time(record.time_ms)
    return Message(record.command, record.params, record.source or server_name, tags)


class History:
    """
    History as a front-end sees it: CHATHISTORY and history on join.

    ``store`` is the history store (an ``IHistoryStore``), ``registry`` the
    core; ``maximum`` is the most a CHATHISTORY request returns (ISUPPORT
    ``CHATHISTORY``), ``on_join`` the most messages replayed on JOIN (0: none).
    """

    def __init__(self, store, registry: Registry, maximum: int = 100,
                 on_join: int = 50) -> None:
        self.store = store
        self.registry = registry
        self.maximum = maximum
        self.on_join_count = on_join

    def query(self, user: User, params: tuple, messages_only: bool) -> Deferred:
        """One CHATHISTORY request: a Deferred of :func:`query`'s answer, or HistoryError."""
        return Deferred.fromCoroutine(query(self.store, self.registry, user, params,
                                            self.maximum, messages_only=messages_only))

    def range(self, user: User, key: str, first: int, last: int, limit: int) -> Deferred:
        """
        The records of target ``key`` numbered ``first`` to ``last`` (both included), ascending.

        At most ``limit``, the lowest first: the UDP front-end's REPAIR of a range
        the room log no longer holds in memory (docs/udp-protocol.md, "Repair").
        Nothing (an empty list) for a ``user`` who may not read ``key``: the
        core's rule (:meth:`~twistchat.core.registry.Registry.can_read`), as for
        CHATHISTORY.
        """
        if limit <= 0 or first > last or not self.registry.can_read(user, key):
            return succeed([])
        # Store bounds are exclusive; a low bound below the high one keeps the lowest.
        return self.store.between(key, first - 1, last + 1, limit)

    def on_join(self, user: User, key: str, messages_only: bool) -> Deferred | None:
        """
        The last messages of room ``key`` before ``user``'s JOIN, oldest first; None for none.

        Only events before the JOIN (whose number the room log has just
        handed out) are replayed: later ones reach the client live.
        """
        count = self.on_join_count
        if not count or not self.registry.can_read(user, key):
            return None
        joined_at = self.registry.latest(key)
        d = self.store.before(key, joined_at, min(count * 4, 1000))

        def kept(records: list) -> list:
            if messages_only:
                records = [r for r in records if r.command in MESSAGE_COMMANDS]
            return records[-count:]

        d.addCallback(kept)
        return d
