"""
LIST's search extensions (ISUPPORT ELIST): which rooms a LIST asks for.

test-case-name: tests.test_whox

modern.ircdocs.horse, LIST: ``LIST [<channel>{,<channel>}] [<elistcond>{,<elistcond>}]``;
the ``ELIST`` parameter: "a non-delimited list of letters, each of which denote
an extension".  We serve all five:

- **M** "Searching based on a mask": ``LIST #a*`` (``*`` and ``?``, case folded);
- **N** "a non-matching mask. i.e., the opposite of M": ``LIST !#a*``;
- **U** "user count within the channel, via the "<val" and ">val" modifiers
  to search for a channel that has less or more than val users";
- **C** and **T** "channel creation time" and "topic set time", ``C<val`` /
  ``C>val``: the reading of modern-irc PR #171 and of Solanum, InspIRCd
  (irctest ``testListCreationTime``): created (topic set) *less* than ``val``
  minutes ago, or *more* than ``val`` minutes ago.  A room without a topic
  has no topic time: no ``T`` condition matches it.

Items of either parameter may be mixed, comma-separated.  A room is listed if
it is one of the names or matches one of the masks (when any is given), matches
none of the ``!`` masks, and meets every numeric condition.  An item that looks
like a condition but is not one (``>x``, ``C<``, a lone ``!``) raises
:class:`BadCondition`: the client is told, rather than shown a list it did not ask for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twistchat.core.model import Channel
from twistchat.wire import is_decimal

__all__ = ["ELIST", "BadCondition", "Condition", "ListQuery", "parse_list"]

ELIST = "CMNTU"  # the ISUPPORT value: every letter above
_WILDCARDS = ("*", "?")


class BadCondition(ValueError):
    """A LIST item that is no condition this server knows; ``str()`` names it."""


@dataclass(frozen=True)
class Condition:
    """``what`` (``U`` members, ``C`` created, ``T`` topic set) ``op`` (``<``, ``>``) ``value``."""

    what: str
    op: str
    value: int

    def holds(self, channel: Channel, now: float) -> bool:
        """Does ``channel`` meet this condition at time ``now``?"""
        if self.what == "U":
            size = len(channel.members)
            return size < self.value if self.op == "<" else size > self.value
        if self.what == "T" and not channel.topic:
            return False
        since = channel.created if self.what == "C" else channel.topic_time
        age = now - since  # values are minutes ago
        return age < self.value * 60 if self.op == "<" else age > self.value * 60


@dataclass(frozen=True)
class ListQuery:
    """What one LIST asks for; the empty query lists every room."""

    names: tuple[str, ...] = ()  # exact room names, in the order asked
    masks: tuple[str, ...] = ()  # M
    excluded: tuple[str, ...] = ()  # N (without their '!')
    conditions: tuple[Condition, ...] = ()  # U, C, T

    @property
    def only_names(self) -> bool:
        """Named rooms alone: they are looked up, in the order asked, not searched for."""
        return bool(self.names) and not self.masks

    def matcher(self) -> Callable[[Channel, float], bool]:
        """A test of one room (at a time ``now``): is it one this LIST asks for?"""
        # Imported here: queries imports this module for LIST.
        from twistchat.core.queries import mask_matcher
        wanted = [mask_matcher(m) for m in self.names + self.masks]
        unwanted = [mask_matcher(m) for m in self.excluded]
        conditions = self.conditions

        def matches(channel: Channel, now: float) -> bool:
            name = channel.name
            return ((not wanted or any(m(name) for m in wanted))
                    and not any(m(name) for m in unwanted)
                    and all(c.holds(channel, now) for c in conditions))
        return matches


def parse_list(params: Iterable[str]) -> ListQuery:
    """The :class:`ListQuery` of LIST's parameters; :class:`BadCondition` for a bad item."""
    names: list[str] = []
    masks: list[str] = []
    excluded: list[str] = []
    conditions: list[Condition] = []
    for param in params:
        for item in param.split(","):
            if not item:
                continue
            condition = _condition(item)
            if condition is not None:
                conditions.append(condition)
            elif item[0] == "!":
                if len(item) == 1:
                    raise BadCondition(item)
                excluded.append(item[1:])
            elif any(w in item for w in _WILDCARDS):
                masks.append(item)
            else:
                names.append(item)
    return ListQuery(tuple(names), tuple(masks), tuple(excluded), tuple(conditions))


def _condition(item: str) -> Condition | None:
    """``>3``, ``<3``, ``C<10``, ``T>5`` as a Condition; None if ``item`` is no condition."""
    what, rest = ("U", item) if item[0] in "<>" else (item[0].upper(), item[1:])
    if what not in "UCT" or rest[:1] not in ("<", ">"):
        return None
    if not is_decimal(rest[1:]):
        raise BadCondition(item)
    return Condition(what, rest[0], int(rest[1:]))
