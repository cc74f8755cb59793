"""
ChanServ: registered rooms for clients that speak plain IRC (``/msg ChanServ REGISTER #room``).

test-case-name: tests.test_chanserv

A pseudo-user, as Ergo's ChanServ (``irc/chanserv.go``): the router of
:mod:`twistchat.services` hands it the text of each ``PRIVMSG ChanServ``;
:func:`handle` parses it, asks the core's rules (:mod:`twistchat.core.roomreg`)
and answers with NOTICEs from ``ChanServ!ChanServ@services.`` and, where the
room changes, the room's own lines (MODE, TOPIC) to its members.  Synchronous
and pure: nothing here waits (no password is checked; the account one is
logged in as is the proof).

Who may do what (a room's *access* is the mode its founder and AMODE list give
an account there, :meth:`RegisteredRoom.amode_of`):

=========================  =================================================
REGISTER #room             logged in, in the room and its operator; not
                           registered yet; at most MAX_ROOMS_PER_ACCOUNT
OP / DEOP / VOICE /        access o (the founder or AMODE +o); VOICE oneself
DEVOICE #room [nick]       with access v too; DEOP / DEVOICE oneself always
AMODE #room                access o: the list
AMODE #room (+|-)(o|v) a   the founder only; at most MAX_AMODES accounts
TOPIC #room text           access o; on an empty room, saved for its return
INFO #room                 anyone
DROP #room                 the founder only
=========================  =================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twistchat.core import roomreg
from twistchat.core.events import Delivery
from twistchat.core.model import User
from twistchat.core.registry import Registry
from twistchat.core.roomreg import MAX_AMODES, MAX_ROOMS_PER_ACCOUNT, RegisteredRoom
from twistchat.wire import Message, casefold

__all__ = ["NICK", "SOURCE", "handle"]

NICK = "ChanServ"
SOURCE = "ChanServ!ChanServ@services."

_ACCESS_NAMES = {"o": "operator", "v": "voice", "": "none"}


class _Refused(Exception):
    """A request refused: the text is ChanServ's answer."""


class _Request:
    """One command to ChanServ: who asks, and what ChanServ answers."""

    def __init__(self, registry: Registry, user: User, args: list[str]) -> None:
        self.registry = registry
        self.user = user
        self.args = args
        self.out: list[Delivery] = []

    def say(self, text: str) -> None:
        self.out.append(Delivery((self.user,), Message("NOTICE", (self.user.nick, text),
                                                       SOURCE)))

    def account(self) -> str:
        """The account the user is logged in as (refused when none)."""
        if self.user.account is None:
            raise _Refused("You must be logged in to an account to do that.")
        return self.user.account

    def room_name(self, syntax: str) -> str:
        """The first argument, a room name (refused with ``syntax`` when missing or bad)."""
        if not self.args:
            raise _Refused(f"Syntax: {syntax}")
        name = self.args[0]
        if not self.registry.valid_channel(name):
            raise _Refused(f"{name} is not a valid room name.")
        return name

    def registered(self, syntax: str) -> RegisteredRoom:
        """The registered room named by the first argument (refused when it is not)."""
        name = self.room_name(syntax)
        room = self.registry.registered_rooms.find(name)
        if room is None:
            raise _Refused(f"{name} is not registered.")
        return room

    def need_access(self, room: RegisteredRoom, what: str) -> str:
        """The user's account, if it has operator access to ``room`` (refused otherwise)."""
        account = self.account()
        if room.amode_of(account) != "o":
            raise _Refused(f"You do not have access to {what} in {room.name}.")
        return account

    def need_founder(self, room: RegisteredRoom, what: str) -> str:
        """The user's account, if it founded ``room`` (refused otherwise)."""
        account = self.account()
        if not room.is_founder(account):
            raise _Refused(f"Only the founder of {room.name} may {what}.")
        return account


def handle(registry: Registry, user: User, text: str) -> list[Delivery]:
    """ChanServ's answer to ``PRIVMSG ChanServ :<text>`` from ``user``."""
    words = text.split()
    verb = words[0].upper() if words else "HELP"
    request = _Request(registry, user, words[1:])
    command = _COMMANDS.get(verb)
    try:
        if command is None:
            raise _Refused(f"Unknown command {words[0]}.  /msg {NICK} HELP lists them.")
        command[0](request)
    except _Refused as refused:
        request.say(str(refused))
    return request.out


def _register(request: _Request) -> None:
    """REGISTER #room: the user, an operator of the room, becomes its founder."""
    registry = request.registry
    name = request.room_name("REGISTER #room")
    account = request.account()
    channel = registry.find_channel(name)
    if channel is None or request.user not in channel.members:
        raise _Refused(f"You must be in {name} to register it.")
    if not registry.is_operator(request.user, channel):
        raise _Refused(f"You must be an operator of {channel.name} to register it.")
    taken = registry.registered_rooms.find(name)
    if taken is not None:
        raise _Refused(f"{channel.name} is already registered (founder {taken.founder}).")
    if len(registry.registered_rooms.founded_by(account)) >= MAX_ROOMS_PER_ACCOUNT:
        raise _Refused(f"An account may register at most {MAX_ROOMS_PER_ACCOUNT} rooms.")
    room = RegisteredRoom(channel.name, account, registry.clock())
    room.capture(channel)
    registry.registered_rooms.add(room)
    request.say(f"{channel.name} is now registered to your account {account}.")


def _prefix(letter: str, on: bool) -> Callable[[_Request], None]:
    """The command that gives (``on``) or takes prefix mode ``letter`` in a registered room."""
    verb = ("" if on else "DE") + {"o": "OP", "v": "VOICE"}[letter]

    def command(request: _Request) -> None:
        """OP, DEOP, VOICE or DEVOICE #room [nick] (oneself without a nick)."""
        registry = request.registry
        room = request.registered(f"{verb} #room [nick]")
        account = request.account()
        channel = registry.find_channel(room.name)
        if channel is None:
            raise _Refused(f"No one is in {room.name}.")
        nick = request.args[1] if len(request.args) > 1 else request.user.nick
        target = registry.find_user(nick)
        if target is None:
            raise _Refused(f"No such nick {nick}.")
        if target not in channel.members:
            raise _Refused(f"{target.nick} is not in {channel.name}.")
        access = room.amode_of(account)
        if target is request.user:
            allowed = not on or access == "o" or access == letter
        else:
            allowed = access == "o"
        if not allowed:
            raise _Refused(f"You do not have access to {verb} in {channel.name}.")
        out = roomreg.set_prefixes(registry, channel, [(on, letter, target)], SOURCE)
        if not out:
            state = "already has" if on else "does not have"
            raise _Refused(f"{target.nick} {state} +{letter} in {channel.name}.")
        request.out += out

    return command


def _amode(request: _Request) -> None:
    """AMODE #room [(+|-)(o|v) account]: the room's AMODE list, or a change of it."""
    registry = request.registry
    syntax = "AMODE #room [+o|-o|+v|-v account]"
    room = request.registered(syntax)
    if len(request.args) == 1:
        request.need_access(room, "see the AMODE list")
        request.say(f"AMODE list of {room.name}; founder: {room.founder}")
        for key, mode in room.amodes.items():
            shown = registry.accounts.find(key)
            request.say(f"+{mode} {shown.name if shown is not None else key}")
        request.say(f"End of AMODE list ({len(room.amodes)} of at most {MAX_AMODES}).")
        return
    if len(request.args) != 3:
        raise _Refused(f"Syntax: {syntax}")
    request.need_founder(room, "change its AMODE list")
    change, name = request.args[1], request.args[2]
    if change not in ("+o", "-o", "+v", "-v"):
        raise _Refused("The mode must be +o, -o, +v or -v.")
    on, letter = change[0] == "+", change[1]
    account = registry.accounts.find(name)
    if account is None:
        raise _Refused(f"No such account {name}.")
    if room.is_founder(account.name):
        raise _Refused(f"{account.name} founded {room.name}: always its operator.")
    old = room.amodes.get(account.key, "")
    if on:
        if old == letter:
            raise _Refused(f"{account.name} has +{letter} in {room.name} already.")
        if not old and len(room.amodes) >= MAX_AMODES:
            raise _Refused(f"The AMODE list of {room.name} is full ({MAX_AMODES}).")
        room.amodes[account.key] = letter
    else:
        if old != letter:
            raise _Refused(f"{account.name} has no +{letter} in {room.name}.")
        del room.amodes[account.key]
    registry.registered_rooms.changed(room)
    request.say(f"AMODE {change} {account.name} in {room.name}.")
    channel = registry.find_channel(room.name)
    if channel is None:
        return
    # Members logged in as that account get the change now (as Ergo applies it).
    members = [m for m in channel.members if m.account and casefold(m.account) == account.key]
    changes = [(False, old, m) for m in members if on and old] + [
        (on, letter, m) for m in members]
    request.out += roomreg.set_prefixes(registry, channel, changes, SOURCE)


def _topic(request: _Request) -> None:
    """TOPIC #room text: set the topic, even of an empty registered room (kept for its return)."""
    registry = request.registry
    room = request.registered("TOPIC #room text")
    if len(request.args) < 2:
        raise _Refused("Syntax: TOPIC #room text")
    request.need_access(room, "set the topic")
    text = " ".join(request.args[1:])
    channel = registry.find_channel(room.name)
    if channel is not None:
        request.out.append(registry.set_topic(channel, text, request.user.source, SOURCE))
        text = channel.topic
    else:
        text = text.encode("utf-8")[:registry.limits.topiclen].decode("utf-8", "ignore")
        room.topic, room.topic_by, room.topic_time = (
            text, request.user.source, int(registry.clock()))
        registry.registered_rooms.changed(room)
    request.say(f"Topic of {room.name} set: {text}")


def _info(request: _Request) -> None:
    """INFO #room: who founded it, since when, and one's own access there."""
    room = request.registered("INFO #room")
    request.say(f"{room.name} is registered.")
    request.say(f"Founder: {room.founder}")
    request.say("Registered: " + time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                               time.gmtime(room.registered)))
    request.say(f"AMODE entries: {len(room.amodes)}")
    request.say(f"Your access: {_ACCESS_NAMES[room.amode_of(request.user.account)]}")


def _drop(request: _Request) -> None:
    """DROP #room: the founder ends the registration (the room, if in use, stays as it is)."""
    room = request.registered("DROP #room")
    request.need_founder(room, "drop it")
    request.registry.registered_rooms.remove(room.name)
    request.say(f"{room.name} is no longer registered.")


def _help(request: _Request) -> None:
    """HELP: every command and its syntax."""
    request.say(f"{NICK} keeps registered rooms: their topic, modes, bans and operators.")
    for _, syntax, text in _COMMANDS.values():
        request.say(f"{syntax:<32} {text}")
    request.say("End of HELP.")


_COMMANDS: dict[str, tuple[Callable[[_Request], None], str, str]] = {
    "REGISTER": (_register, "REGISTER #room", "register a room you are an operator of"),
    "OP": (_prefix("o", True), "OP #room [nick]", "give operator status"),
    "DEOP": (_prefix("o", False), "DEOP #room [nick]", "take operator status"),
    "VOICE": (_prefix("v", True), "VOICE #room [nick]", "give voice"),
    "DEVOICE": (_prefix("v", False), "DEVOICE #room [nick]", "take voice"),
    "AMODE": (_amode, "AMODE #room [+o|-o|+v|-v account]",
              "list or change who gets op or voice on joining"),
    "TOPIC": (_topic, "TOPIC #room text", "set the topic, kept while the room is empty"),
    "INFO": (_info, "INFO #room", "who founded a room, and your access there"),
    "DROP": (_drop, "DROP #room", "end a room's registration (founder only)"),
    "HELP": (_help, "HELP", "this list"),
}
