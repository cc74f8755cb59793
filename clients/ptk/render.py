"""
How one transcript line looks: prompt_toolkit formatted-text fragments.

test-case-name: tests.test_ptk_render

Pure functions of a :class:`~twistchat.client.interfaces.ChatEvent` (no
application, no I/O).  Server time in the local time zone; each nick in a
colour of its own that stays the same across runs; ``/me`` as ``* nick``;
joins, parts and nick changes dimmed; a line that names us highlighted.

Whatever a server sends, nothing reaches the terminal as a control
character: C0/C1 controls, DEL, bidi overrides and other format characters
are shown escaped (``\\x1b``, ``\\u202e``) in their own style, never
interpreted (issue #5, "Bad input").  The exception is IRC formatting in
what people say (bold, colours: :mod:`clients.ptk.formatting`), shown as
styles (issue #17).
"""

from __future__ import annotations

import re
import time
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from prompt_toolkit.utils import get_cwidth

from clients.ptk.formatting import parse, style_of
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent

__all__ = [
    "Line", "STYLE", "escape", "formatted", "format_time", "is_mention", "nick_style",
    "render_line", "wrap",
]

# Foreground colours for nicks: bright enough on dark and light terminals,
# never the plain foreground (ours) nor the dim grey (joins and parts).
NICK_COLOURS = (
    "ansired", "ansigreen", "ansiyellow", "ansiblue", "ansimagenta", "ansicyan",
    "ansibrightred", "ansibrightgreen", "ansibrightyellow", "ansibrightblue",
    "ansibrightmagenta", "ansibrightcyan",
)

# Style rules for the class names used here and in app.py.
STYLE = {
    "time": "#888888",
    "dim": "#888888",
    "own": "bold",
    "mention": "bg:#5f5f00 bold",
    "error": "ansired bold",
    "info": "ansicyan",
    "notice": "ansimagenta",
    "escape": "reverse",
    "status": "reverse",
    "status.state.bad": "reverse ansired",
    "status.unread": "reverse bold",
    "status.mention": "reverse bold ansiyellow",
    "status.hint": "reverse ansiyellow",
    "prompt": "bold",
}

_STATE_TEXT = {
    I.CONNECTING: "Connecting...",
    I.REGISTERED: "Connected.",
    I.DISCONNECTED: "Disconnected: reconnecting...",
    I.CLOSED: "Closed.",
}


@dataclass(frozen=True)
class Line:
    """
    One line of a window's transcript: the event, and whether it named us.

    ``mention`` is decided when the line arrives, with the nick we had then,
    so a later nick change does not re-colour old lines.
    """

    event: ChatEvent
    mention: bool = False


def format_time(time_ms: int) -> str:
    """``HH:MM`` of ``time_ms`` (milliseconds since the epoch) in the local time zone."""
    return time.strftime("%H:%M", time.localtime(time_ms / 1000))


def nick_style(nick: str) -> str:
    """The colour of ``nick``: the same for every run and every case (rfc1459 folding)."""
    key = nick.lower().translate(str.maketrans("[]\\~", "{}|^"))
    return NICK_COLOURS[zlib.crc32(key.encode("utf-8", "replace")) % len(NICK_COLOURS)]


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# Categories never printed as they are: controls (Cc), format characters
# (Cf: bidi overrides, zero-width joiners), surrogates, line/paragraph seps.
_UNSAFE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def escape(text: str, style: str = "") -> list:
    """
    Fragments showing ``text`` with every unsafe character escaped.

    Printable text keeps ``style``; each escaped character gets ``class:escape``
    added, so it stands out and cannot be mistaken for what the sender typed.
    """
    if text.isprintable():
        return [(style, text)] if text else []
    out = []
    run = []
    for char in text:
        if char == " " or unicodedata.category(char) not in _UNSAFE:
            run.append(char)
            continue
        if run:
            out.append((style, "".join(run)))
            run = []
        out.append((f"{style} class:escape".strip(), _escape_char(char)))
    if run:
        out.append((style, "".join(run)))
    return out


def formatted(text: str, style: str = "") -> list:
    """
    Fragments of ``text`` with its IRC formatting as styles, the rest escaped.

    The formatting's style comes after ``style`` so a colour shows on a
    mention's background; anything unsafe left is escaped as :func:`escape` does.
    """
    out = []
    for fmt, run in parse(text):
        out += escape(run, f"{style} {style_of(fmt)}".strip())
    return out


def is_mention(text: str, nick: str) -> bool:
    """Does ``text`` name ``nick`` as a word (any case)?"""
    if not nick or not text:
        return False
    pattern = r"(?<![\w\[\]\\`^{|}-])" + re.escape(nick.lower()) + r"(?![\w\[\]\\`^{|}-])"
    return re.search(pattern, text.lower()) is not None


WRAP_INDENT = 6  # a wrapped line goes on under its text, past the time ("HH:MM ")


def wrap(fragments: list, width: int, indent: int = WRAP_INDENT) -> list:
    """
    ``fragments`` (one transcript line) as screen rows of at most ``width`` columns.

    Breaks at spaces (issue #17: ``/help`` broke words in two); a word wider
    than a row is cut where the row ends.  Rows after the first start with
    ``indent`` spaces; the spaces at a break are dropped.  Returns a list of
    rows, each a list of fragments.
    """
    width = max(width, indent + 1, 1)
    # Words and runs of spaces, each a list of (style, text) pieces: a word may
    # span fragments ("<", "bob", ">"), and must not break where they meet.
    tokens: list[tuple[bool, list, int]] = []  # (is_space, pieces, columns)
    for style, text in fragments:
        for chunk in _SPACES.split(text):
            if not chunk:
                continue
            space = chunk[0] == " "
            if tokens and tokens[-1][0] == space:
                _, pieces, cols = tokens[-1]
                pieces.append((style, chunk))
                tokens[-1] = (space, pieces, cols + get_cwidth(chunk))
            else:
                tokens.append((space, [(style, chunk)], get_cwidth(chunk)))
    rows: list[list] = [[]]
    used = 0
    pending: list = []  # spaces before the next word: shown only if it fits on this row
    pending_cols = 0

    def new_row() -> None:
        nonlocal used
        rows.append([("", " " * indent)])
        used = indent

    for space, pieces, cols in tokens:
        if space:
            pending, pending_cols = pieces, cols
            continue
        fresh = used == (indent if len(rows) > 1 else 0)
        if fresh or used + pending_cols + cols <= width:
            if pending_cols and used + pending_cols <= width:
                rows[-1].extend(pending)
                used += pending_cols
        else:
            new_row()
        pending, pending_cols = [], 0
        for style, text in pieces:
            while used + get_cwidth(text) > width:  # wider than a row: cut it
                cut = _fit(text, width - used)
                if cut == 0 and used <= indent:
                    cut = 1  # a character wider than a whole row: it overflows, no loop
                if cut:
                    rows[-1].append((style, text[:cut]))
                text = text[cut:]
                new_row()
            if text:
                rows[-1].append((style, text))
                used += get_cwidth(text)
    if pending_cols and used + pending_cols <= width:
        rows[-1].extend(pending)  # trailing spaces, where they fit
    return rows


_SPACES = re.compile("( +)")


def _fit(text: str, columns: int) -> int:
    """How many characters of ``text`` fit in ``columns``."""
    used = 0
    for count, char in enumerate(text):
        used += get_cwidth(char)
        if used > columns:
            return count
    return len(text)


def _nick(nick: str, own: bool) -> list:
    style = nick_style(nick) + (" class:own" if own else "")
    return escape(nick, style)


def render_line(line: Line) -> list:
    """The fragments of one transcript line, without the line break."""
    ev = line.event
    out = [("class:time", format_time(ev.time_ms) + " ")]
    render = _RENDERERS.get(ev.kind, _info)
    return out + render(ev, ev.nick or "*", line.mention)


def _message(ev: ChatEvent, nick: str, mention: bool) -> list:
    body_style = "class:mention" if mention else ""
    return [("", "<")] + _nick(nick, ev.own) + [("", "> ")] + formatted(ev.text, body_style)


def _action(ev: ChatEvent, nick: str, mention: bool) -> list:
    body_style = "class:mention" if mention else ""
    out = [(body_style, "* ")] + _nick(nick, ev.own) + [(body_style, " ")]
    return out + formatted(ev.text, body_style)


def _notice(ev: ChatEvent, nick: str, mention: bool) -> list:
    body_style = "class:mention" if mention else "class:notice"
    out = []
    if ev.nick:
        out += [("class:notice", "-")] + _nick(nick, ev.own) + [("class:notice", "- ")]
    return out + formatted(ev.text, body_style)


def _join(ev: ChatEvent, nick: str, mention: bool) -> list:
    return [("class:dim", "--> ")] + _dim_nick(nick) + escape(f" joined {ev.room}", "class:dim")


def _part(ev: ChatEvent, nick: str, mention: bool) -> list:
    reason = f" ({ev.text})" if ev.text else ""
    return ([("class:dim", "<-- ")] + _dim_nick(nick)
            + escape(f" left {ev.room}{reason}", "class:dim"))


def _quit(ev: ChatEvent, nick: str, mention: bool) -> list:
    reason = f" ({ev.text})" if ev.text else ""
    return [("class:dim", "<-- ")] + _dim_nick(nick) + escape(f" quit{reason}", "class:dim")


def _nick_change(ev: ChatEvent, nick: str, mention: bool) -> list:
    out = [("class:dim", "--- ")] + _dim_nick(nick) + escape(" is now known as ", "class:dim")
    return out + _dim_nick(ev.text)


def _kick(ev: ChatEvent, nick: str, mention: bool) -> list:
    victim, _, reason = ev.text.partition(" ")
    out = [("class:dim", "<-- ")] + _dim_nick(victim)
    return out + escape(f" was kicked by {nick}" + (f" ({reason})" if reason else ""), "class:dim")


def _topic(ev: ChatEvent, nick: str, mention: bool) -> list:
    if ev.nick:
        out = ([("class:dim", "--- ")] + _dim_nick(nick)
               + escape(" set the topic: ", "class:dim"))
    else:
        out = [("class:dim", "--- Topic: ")]
    return out + formatted(ev.text)


def _mode(ev: ChatEvent, nick: str, mention: bool) -> list:
    return [("class:dim", "--- ")] + _dim_nick(nick) + escape(f" sets mode {ev.text}", "class:dim")


def _names(ev: ChatEvent, nick: str, mention: bool) -> list:
    return escape(f"--- {ev.room} ({len(ev.names)}): " + " ".join(ev.names), "class:dim")


def _error(ev: ChatEvent, nick: str, mention: bool) -> list:
    return escape("!!! " + ev.text, "class:error")


def _state(ev: ChatEvent, nick: str, mention: bool) -> list:
    return escape("--- " + _STATE_TEXT.get(ev.text, ev.text), "class:dim")


def _info(ev: ChatEvent, nick: str, mention: bool) -> list:
    """INFO and anything newer than this client."""
    return escape("--- " + ev.text, "class:info")


# ChatEvent.kind -> fragments after the time; a kind not here is shown as INFO.
_RENDERERS: dict[str, Callable[[ChatEvent, str, bool], list]] = {
    I.MESSAGE: _message,
    I.ACTION: _action,
    I.NOTICE: _notice,
    I.JOIN: _join,
    I.PART: _part,
    I.QUIT: _quit,
    I.NICK: _nick_change,
    I.KICK: _kick,
    I.TOPIC: _topic,
    I.MODE: _mode,
    I.NAMES: _names,
    I.ERROR: _error,
    I.STATE: _state,
}


def _dim_nick(nick: str) -> list:
    return escape(nick, "class:dim")
