"""
The client's slash commands: one table that runs them, lists them and completes them.

test-case-name: tests.test_ptk_commands

Issue #17: every command ``/help`` lists comes from the same table that
runs it, so a command cannot be missing from the help or listed without
working.  Each entry says what Tab completes after it (a nick of the window,
a room, a window's name, or nothing).

Commands the session has no method for (WHOIS, LIST, AWAY, KICK, MODE...)
go out as one raw IRC line through ``send_line``, which both transports
offer; the server's answers come back as ordinary events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twistchat.client import interfaces as I
from twistchat.client.interfaces import is_room
from twistchat.wire import casefold

if TYPE_CHECKING:
    from clients.ptk.app import ChatState

__all__ = ["COMMANDS", "Command", "NICK", "ROOM", "WINDOW"]

# What Tab completes in a command's arguments.
NICK, ROOM, WINDOW = "nick", "room", "window"


@dataclass(frozen=True)
class Command:
    """One slash command: how it is written, what it does, and its handler."""

    name: str
    usage: str
    help: str
    run: Callable[[ChatState, str], None]
    completes: str = ""


COMMANDS: dict[str, Command] = {}


def command(usage: str, help: str, completes: str = "") -> Callable:
    """Register the decorated ``cmd_<name>(state, arg)`` in :data:`COMMANDS`."""

    def register(fn: Callable[[ChatState, str], None]) -> Callable[[ChatState, str], None]:
        name = fn.__name__.removeprefix("cmd_")
        COMMANDS[name] = Command(name, usage, help, fn, completes)
        return fn

    return register


def usage(state: ChatState, name: str) -> None:
    state.say_local("Usage: " + COMMANDS[name].usage, I.ERROR)


def raw(state: ChatState, line: str) -> None:
    """One IRC line to the server, as typed by the command."""
    state.net(state.session.send_line, line)


def trailing(text: str) -> str:
    """``text`` as a last IRC parameter (``:`` when empty or with spaces)."""
    return ":" + text


def _room_here(state: ChatState, name: str) -> str | None:
    """This window's room, for a command that needs one; a hint and None elsewhere."""
    if state.window.is_room:
        return state.window.name
    state.say_local(f"/{name} needs a room window (or a #room argument).", I.ERROR)
    return None


def _room_and_rest(state: ChatState, arg: str, name: str) -> tuple[str | None, list[str]]:
    """(room, other words): a leading #room argument, else this window's room."""
    words = arg.split()
    if words and is_room(words[0]):
        return words[0], words[1:]
    return _room_here(state, name), words


def ban_mask(who: str) -> str:
    """A nick as a ban mask (``nick!*@*``); a mask is left as it is."""
    return who if "!" in who or "@" in who else who + "!*@*"


# ---------------------------------------------------------------- rooms


@command("/join #room", "join a room (and switch to it)", ROOM)
def cmd_join(state: ChatState, arg: str) -> None:
    room = arg.split()[0] if arg.split() else ""
    if not room:
        usage(state, "join")
        return
    if not is_room(room):
        room = "#" + room
    existing = state.find(room)
    if existing is not None and existing.members:
        state.switch(state.windows.index(existing))
        return
    state.autoswitch(room)
    state.net(state.session.join, room)


@command("/part [#room] [reason]", "leave a room (default: this one)", ROOM)
def cmd_part(state: ChatState, arg: str) -> None:
    room, reason = state.target_room(arg)
    if room is None:
        if state.window.is_query:
            # A word in the server window, or the window seems to vanish (#17).
            name = state.window.name
            state.close_window(state.window)
            state.note(state.windows[0], f"Closed the conversation with {name}.")
            return
        usage(state, "part")
        return
    state.net(state.session.part, room, reason)


@command("/topic [#room] [text]", "show this room's topic, or set it", ROOM)
def cmd_topic(state: ChatState, arg: str) -> None:
    room, text = state.target_room(arg)
    if room is None:
        state.say_local("Usage: /topic [#room] [text] (in a room window)", I.ERROR)
        return
    if not text:
        window = state.find(room)
        if window is not None and window.topic:
            state.say_local(f"Topic of {room}: {window.topic}")
            return
    state.net(state.session.topic, room, text or None)


@command("/names [#room]", "who is in a room", ROOM)
def cmd_names(state: ChatState, arg: str) -> None:
    room, _ = state.target_room(arg)
    if room is None:
        usage(state, "names")
        return
    state.net(state.session.names, room)


@command("/list [mask]", "the server's rooms, with members and topics")
def cmd_list(state: ChatState, arg: str) -> None:
    raw(state, "LIST" + (" " + arg.split()[0] if arg.split() else ""))


@command("/invite NICK [#room]", "invite someone to a room (default: this one)", NICK)
def cmd_invite(state: ChatState, arg: str) -> None:
    words = arg.split()
    if not words:
        usage(state, "invite")
        return
    room = words[1] if len(words) > 1 else _room_here(state, "invite")
    if room is not None:
        raw(state, f"INVITE {words[0]} {room}")


@command("/kick NICK [reason]", "put someone out of this room (operators)", NICK)
def cmd_kick(state: ChatState, arg: str) -> None:
    room, words = _room_and_rest(state, arg, "kick")
    if room is None:
        return
    if not words:
        usage(state, "kick")
        return
    reason = " ".join(words[1:])
    raw(state, f"KICK {room} {words[0]}" + (" " + trailing(reason) if reason else ""))


def _modes(state: ChatState, arg: str, name: str, mode: str) -> None:
    """``MODE #room +oo a b``: one mode letter for each nick (or mask) given."""
    room, words = _room_and_rest(state, arg, name)
    if room is None:
        return
    if not words:
        usage(state, name)
        return
    if mode[1] == "b":
        words = [ban_mask(w) for w in words]
    raw(state, f"MODE {room} {mode[0]}{mode[1] * len(words)} {' '.join(words)}")


@command("/ban NICK|MASK", "ban from this room (a nick bans nick!*@*)", NICK)
def cmd_ban(state: ChatState, arg: str) -> None:
    _modes(state, arg, "ban", "+b")


@command("/unban NICK|MASK", "lift a ban in this room", NICK)
def cmd_unban(state: ChatState, arg: str) -> None:
    _modes(state, arg, "unban", "-b")


@command("/op NICK...", "make operators of this room (@)", NICK)
def cmd_op(state: ChatState, arg: str) -> None:
    _modes(state, arg, "op", "+o")


@command("/deop NICK...", "take operator away (@)", NICK)
def cmd_deop(state: ChatState, arg: str) -> None:
    _modes(state, arg, "deop", "-o")


@command("/voice NICK...", "give voice in this room (+)", NICK)
def cmd_voice(state: ChatState, arg: str) -> None:
    _modes(state, arg, "voice", "+v")


@command("/devoice NICK...", "take voice away (+)", NICK)
def cmd_devoice(state: ChatState, arg: str) -> None:
    _modes(state, arg, "devoice", "-v")


@command("/mode [#room|NICK] [modes [args]]", "show or change a room's (or your) modes", ROOM)
def cmd_mode(state: ChatState, arg: str) -> None:
    words = arg.split()
    if words and (is_room(words[0]) or casefold(words[0]) == casefold(state.nick or "")):
        raw(state, "MODE " + " ".join(words))
        return
    room = _room_here(state, "mode")
    if room is not None:
        raw(state, f"MODE {room}" + (" " + " ".join(words) if words else ""))


# -------------------------------------------------------- conversations


@command("/msg NICK|#room text", "send a private message (opens a window)", NICK)
def cmd_msg(state: ChatState, arg: str) -> None:
    target, _, text = arg.partition(" ")
    if not target or not text.strip():
        usage(state, "msg")
        return
    window = state.window_for(target)
    state.switch(state.windows.index(window))
    state.net(state.session.say, target, text)


@command("/query NICK [text]", "open a conversation window with NICK", NICK)
def cmd_query(state: ChatState, arg: str) -> None:
    nick, _, text = arg.partition(" ")
    if not nick or is_room(nick):
        usage(state, "query")
        return
    window = state.window_for(nick)
    state.switch(state.windows.index(window))
    if text.strip():
        state.net(state.session.say, nick, text)


@command("/close [window]", "close a window (a room's is left)", WINDOW)
def cmd_close(state: ChatState, arg: str) -> None:
    window = state.find(arg.split()[0]) if arg.split() else state.window
    if window is None:
        state.say_local(f"No window {arg.split()[0]}.", I.ERROR)
        return
    if window is state.windows[0]:
        state.say_local("The server window stays open (/quit leaves).", I.ERROR)
        return
    if window.is_room and casefold(window.name) in {casefold(r) for r in state.session.rooms}:
        state.net(state.session.part, window.name, "")
    state.close_window(window)


@command("/me text", "an action: * you text (in a room or a conversation)")
def cmd_me(state: ChatState, arg: str) -> None:
    if state.window is state.windows[0]:
        state.say_local("/me needs a room or a conversation window.", I.ERROR)
        return
    if not arg:
        usage(state, "me")
        return
    state.net(state.session.action, state.window.name, arg)


@command("/nick NEWNICK", "change your nick (lines already shown keep the old one)")
def cmd_nick(state: ChatState, arg: str) -> None:
    if not arg or " " in arg:
        usage(state, "nick")
        return
    state.net(state.session.set_nick, arg)


@command("/away [reason]", "mark yourself away (/back returns)")
def cmd_away(state: ChatState, arg: str) -> None:
    raw(state, "AWAY " + trailing(arg or "Away"))


@command("/back", "no longer away")
def cmd_back(state: ChatState, arg: str) -> None:
    raw(state, "AWAY")


@command("/whois NICK", "who someone is, where they are, how long idle", NICK)
def cmd_whois(state: ChatState, arg: str) -> None:
    nick = arg.split()[0] if arg.split() else (state.window.name if state.window.is_query else "")
    if not nick:
        usage(state, "whois")
        return
    raw(state, f"WHOIS {nick}")


@command("/who [mask]", "WHO a room or nick", ROOM)
def cmd_who(state: ChatState, arg: str) -> None:
    mask = arg.split()[0] if arg.split() else (state.window.name if state.window.is_room else "")
    if not mask:
        usage(state, "who")
        return
    state.net(state.session.who, mask)


@command("/ignore [NICK]", "hide what NICK says (no NICK: the list)", NICK)
def cmd_ignore(state: ChatState, arg: str) -> None:
    nick = arg.split()[0] if arg.split() else ""
    if not nick:
        shown = ", ".join(sorted(state.ignored.values(), key=casefold)) or "nobody"
        state.say_local(f"Ignoring: {shown}.")
        return
    state.ignored[casefold(nick)] = nick
    state.say_local(f"Ignoring {nick} (/unignore {nick} undoes it).")


@command("/unignore NICK", "show what NICK says again", NICK)
def cmd_unignore(state: ChatState, arg: str) -> None:
    nick = arg.split()[0] if arg.split() else ""
    if not nick:
        usage(state, "unignore")
        return
    if state.ignored.pop(casefold(nick), None) is None:
        state.say_local(f"{nick} was not ignored.", I.ERROR)
        return
    state.say_local(f"No longer ignoring {nick}.")


# --------------------------------------------------------------- client


@command("/quote RAW IRC LINE", "send one line to the server as it is")
def cmd_quote(state: ChatState, arg: str) -> None:
    if not arg.strip():
        usage(state, "quote")
        return
    raw(state, arg.strip())


@command("/clear", "empty this window's transcript (on screen only)")
def cmd_clear(state: ChatState, arg: str) -> None:
    state.window.lines.clear()
    state.window.scroll = 0


@command("/windows", "the windows, with unread and mention counts")
def cmd_windows(state: ChatState, arg: str) -> None:
    for index, window in enumerate(state.windows):
        counts = f"{window.unread} unread" + (
            f", {window.mentions} mentions" if window.mentions else "")
        here = " (shown)" if window is state.window else ""
        state.say_local(f"{index + 1}: {window.name}  {counts}{here}")


@command("/connect HOST [PORT]", "leave this server and connect to another")
def cmd_connect(state: ChatState, arg: str) -> None:
    words = arg.split()
    if not words or len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
        usage(state, "connect")
        return
    if state.connect is None:
        state.say_local("/connect is not available here.", I.ERROR)
        return
    state.connect(words[0], int(words[1]) if len(words) == 2 else None)


@command("/quit [reason]", "leave (Ctrl-X does the same)")
def cmd_quit(state: ChatState, arg: str) -> None:
    if arg:
        state.quit_reason = arg
    state.quit()


KEYS_HELP = (
    "Keys: Enter sends, Ctrl-X quits, Tab completes, Up/Down history, "
    "PageUp/PageDown scroll, Alt-1..9 or Ctrl-N/Ctrl-P switch windows, F2 shows or hides "
    "the nick list, Ctrl-B bold, Ctrl-_ underline, Ctrl-K colour (Ctrl-K 4 red, Ctrl-K 4,2 "
    "on blue). A paste of several lines is sent when Enter is pressed. "
    "//text sends a line starting with /."
)


@command("/help", "this list")
def cmd_help(state: ChatState, arg: str) -> None:
    width = max(len(c.usage) for c in COMMANDS.values())
    for entry in COMMANDS.values():
        state.say_local(f"{entry.usage:<{width}} {entry.help}")
    state.say_local(KEYS_HELP)
