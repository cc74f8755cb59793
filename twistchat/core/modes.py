"""
Room and user modes: what each mode letter does.

test-case-name: tests.test_registry, tests.test_chanmodes

Who may change a room's modes is the registry's rule (:meth:`Registry.mode`:
operators only); this module applies a MODE line letter by letter, one small
handler per kind of mode (ISUPPORT ``CHANMODES=beI,k,l,Cimnst``, ``PREFIX=(ov)@+``),
and says what changed.  The mask lists (b, e, I) are kept as
:mod:`twistchat.core.lists` says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twistchat.core import lists
from twistchat.core.events import Delivery
from twistchat.core.masks import EXTBAN_PREFIX, extban_error, normal_mask
from twistchat.core.model import (
    CHANMODES,
    FLAG_MODES,
    MYINFO_PARAM_CHANMODES,
    PREFIX_MODES,
    Channel,
    User,
)
from twistchat.wire import Message, casefold, is_decimal

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["USER_MODES", "apply_channel_modes", "user_mode"]


def apply_channel_modes(registry: Registry, user: User, channel: Channel, changes: str,
                        args: list[str]) -> tuple[tuple[str, ...] | None, list[Delivery]]:
    """
    Apply each letter of ``changes`` in order (the caller checked the user may).

    Returns the MODE parameters of what changed (None: nothing did), for the
    caller to record as one room event, and the replies for what was refused.
    """
    change = _ModeChange(registry, user, channel, args)
    given = len(args)
    sign = "+"
    for letter in changes:
        if letter in "+-":
            sign = letter
            continue
        handler = _MODE_HANDLERS.get(letter)
        if handler is None:
            change.error("472", letter, "is unknown mode char to me")
        elif given - len(change.args) >= MODES_PER_LINE and change.args \
                and letter in _TAKES_PARAM[sign]:
            continue  # past ISUPPORT MODES: ignored, as Ergo and InspIRCd do
        else:
            handler(change, sign == "+", letter)
    return (change.mode_params() if change.applied else None), change.out


# User modes: letter -> the User attribute that shows it (004, 221).  Any user sets or
# unsets i, B and w on itself; o is set by OPER only (core/operators.py): ``MODE me +o``
# is ignored, ``MODE me -o`` drops it (as InspIRCd and Ergo do).
USER_MODES = {"i": "invisible", "B": "bot", "o": "oper", "w": "wallops"}
_USER_SETTABLE = frozenset("iBw")


def user_mode(registry: Registry, user: User, nick: str, changes: str | None) -> list[Delivery]:
    """MODE on oneself: query (221) or the letters of USER_MODES; others' modes are not ours."""
    if casefold(nick) != user.key:
        if registry.find_user(nick) is None:
            return [registry.reply(user, "401", nick, "No such nick/channel")]
        return [registry.reply(user, "502", "Can't change mode for other users")]
    if changes is None:
        return [registry.reply(user, "221", "+" + "".join(
            letter for letter, attribute in USER_MODES.items() if getattr(user, attribute)))]
    out: list = []
    sign, applied = "+", ""
    for letter in changes:
        if letter in "+-":
            sign = letter
        elif letter == "o":
            if sign == "-" and user.oper:
                user.oper = None  # the operator list forgets it (Operators.online)
                applied += "-o"
        elif letter in _USER_SETTABLE:
            attribute = USER_MODES[letter]
            if getattr(user, attribute) != (sign == "+"):
                setattr(user, attribute, sign == "+")
                applied += sign + letter
        else:
            out.append(registry.reply(user, "501", "Unknown MODE flag"))
    if applied:
        out.insert(0, Delivery((user,), Message("MODE", (user.nick, applied), user.source)))
    return out


class _ModeChange:
    """One MODE command on a room as it is applied: what changed, what was refused."""

    __slots__ = ("registry", "user", "channel", "args", "out", "applied")

    def __init__(self, registry: Registry, user: User, channel: Channel,
                 args: list[str]) -> None:
        self.registry = registry
        self.user = user
        self.channel = channel
        self.args = args
        self.out: list[Delivery] = []
        self.applied: list[tuple[str, str, str | None]] = []  # (sign, letter, param)

    def error(self, code: str, *params: str) -> None:
        self.out.append(self.registry.reply(self.user, code, *params))

    def param(self) -> str | None:
        """The next mode parameter, or None (after a 461) when there is none."""
        if not self.args:
            self.error("461", "MODE", "Not enough parameters")
            return None
        return self.args.pop(0)

    def mode_params(self) -> tuple[str, ...]:
        """``("+o-v", "alice", "bob")``: the applied changes as MODE parameters."""
        text, params, last = "", [], None
        for sign, letter, param in self.applied:
            if sign != last:
                text += sign
                last = sign
            text += letter
            if param is not None:
                params.append(param)
        return (text, *params)


def _mode_flag(change: _ModeChange, on: bool, letter: str) -> None:
    """+C +i +m +n +s +t: a flag of the room."""
    attribute = FLAG_MODES[letter]
    if getattr(change.channel, attribute) != on:
        setattr(change.channel, attribute, on)
        change.applied.append(("+" if on else "-", letter, None))


def _mode_prefix(change: _ModeChange, on: bool, letter: str) -> None:
    """+o +v: a member's prefix mode."""
    nick = change.param()
    if nick is None:
        return
    channel = change.channel
    member = change.registry.find_user(nick)
    if member is None:
        change.error("401", nick, "No such nick/channel")
        return
    if member not in channel.members:
        change.error("441", member.nick, channel.name, "They aren't on that channel")
        return
    held = channel.members[member]
    if on == (letter in held):
        return
    channel.members[member] = (
        "".join(m for m in PREFIX_MODES if m in held or m == letter) if on
        else held.replace(letter, ""))
    change.applied.append(("+" if on else "-", letter, member.nick))


def _mode_key(change: _ModeChange, on: bool, letter: str) -> None:
    """+k key / -k: the room's key."""
    channel = change.channel
    if not on:
        # k is CHANMODES type B: it takes its parameter when unset too (which need not match).
        if change.args:
            change.args.pop(0)
        if channel.password is not None:
            channel.password = None
            change.applied.append(("-", "k", "*"))
        return
    password = change.param()
    if password is None:
        return
    if not password or " " in password or "," in password:
        change.error("525", channel.name, "Key is not well-formed")
        return
    channel.password = password
    change.applied.append(("+", "k", password))


def _mode_limit(change: _ModeChange, on: bool, letter: str) -> None:
    """+l count / -l: the room's member limit."""
    channel = change.channel
    if not on:
        if channel.limit is not None:
            channel.limit = None
            change.applied.append(("-", "l", None))
        return
    raw = change.param()
    if raw is None:
        return
    if not is_decimal(raw) or int(raw) < 1:
        change.error("696", channel.name, "l", raw, "Invalid limit")
        return
    channel.limit = int(raw)
    change.applied.append(("+", "l", raw))


def _mode_list(change: _ModeChange, on: bool, letter: str) -> None:
    """
    +b/+e/+I mask, -b/-e/-I mask: one of the room's mask lists (:mod:`twistchat.core.lists`).

    Without a mask, the list itself (367/368, 348/349, 346/347).  A mask is kept
    as ``nick!user@host``; adding one already there (any case), or removing one
    that is not, changes nothing.  The three lists share ISUPPORT MAXLIST.
    """
    channel = change.channel
    if not change.args:
        change.out += lists.listing(change.registry, change.user, channel, letter)
        return
    raw = change.args.pop(0)
    if not raw or " " in raw or raw.startswith(":"):
        # It could not be a middle parameter of the 367-style entry (nor a mask).
        change.error("696", channel.name, letter, raw or "*", "Invalid mask")
        return
    if on and raw.startswith(EXTBAN_PREFIX):
        why = extban_error(raw)
        if why is not None:
            change.error("696", channel.name, letter, raw, why)
            return
    mask = normal_mask(raw)
    held = lists.entries(channel, letter)
    found = lists.find(held, mask)
    if on:
        if found is not None:
            return
        if lists.total(channel) >= lists.MAX_LIST:
            change.error("478", channel.name, letter, "Channel list is full")
            return
        held[mask] = (change.user.source, int(change.registry.clock()))
    else:
        if found is None:
            return
        del held[found]
        mask = found
    change.applied.append(("+" if on else "-", letter, mask))


# ISUPPORT MODES=4: the most modes with a parameter one MODE line applies.
MODES_PER_LINE = 4
# The letters that take a parameter, set and unset (ISUPPORT CHANMODES: lists, key and
# prefixes both ways; the third group, +l, only when set).
_TAKES_PARAM = {"+": frozenset(MYINFO_PARAM_CHANMODES),
                "-": frozenset(MYINFO_PARAM_CHANMODES) - frozenset(CHANMODES.split(",")[2])}


_MODE_HANDLERS: dict[str, Callable[[_ModeChange, bool, str], None]] = {
    **{letter: _mode_flag for letter in FLAG_MODES},
    **{letter: _mode_prefix for letter in PREFIX_MODES},
    "k": _mode_key,
    "l": _mode_limit,
    **{letter: _mode_list for letter in lists.LIST_MODES},
}
