"""
IRC text formatting (bold, colours, ...) read into styled runs: pure, no terminal.

test-case-name: tests.test_ptk_formatting

The codes, as https://modern.ircdocs.horse/formatting.html describes them
(issue #17, "IRC formatting shows as escaped codes"):

- ``\\x02`` bold, ``\\x1d`` italics, ``\\x1f`` underline, ``\\x1e`` strikethrough,
  ``\\x16`` reverse: each toggles its attribute.
- ``\\x0f`` resets every attribute and colour.
- ``\\x03`` colour: "``<CODE>[<FOREGROUND>[,<BACKGROUND>]]``", each colour one or
  two ASCII digits (0-98; 99 is the terminal's default).  A comma not followed
  by a digit is text.  ``\\x03`` with no digits resets both colours.
- ``\\x04`` hex colour: "``<CODE>[RRGGBB[,RRGGBB]]``", likewise.

Every other character is left in the text, so the caller's escaping still
shows the rest of C0 (``\\x11`` monospace included: not rendered here) as it
did before.  The palette of 0-15 is the common mIRC one; 16-98 is the table
of the same page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["Format", "PALETTE", "parse", "style_of", "BOLD", "COLOUR", "UNDERLINE"]

BOLD = "\x02"
COLOUR = "\x03"
HEX_COLOUR = "\x04"
RESET = "\x0f"
REVERSE = "\x16"
ITALIC = "\x1d"
STRIKE = "\x1e"
UNDERLINE = "\x1f"

# Index = colour number (modern.ircdocs.horse, "Colors" and "Colors 16-98").
PALETTE = (
    "#ffffff", "#000000", "#00007f", "#009300", "#ff0000", "#7f0000", "#9c009c", "#fc7f00",
    "#ffff00", "#00fc00", "#009393", "#00ffff", "#0000fc", "#ff00ff", "#7f7f7f", "#d2d2d2",
    "#470000", "#472100", "#474700", "#324700", "#004700", "#00472c", "#004747", "#002747",
    "#000047", "#2e0047", "#470047", "#47002a", "#740000", "#743a00", "#747400", "#517400",
    "#007400", "#007449", "#007474", "#004074", "#000074", "#4b0074", "#740074", "#740045",
    "#b50000", "#b56300", "#b5b500", "#7db500", "#00b500", "#00b571", "#00b5b5", "#0063b5",
    "#0000b5", "#7500b5", "#b500b5", "#b5006b", "#ff0000", "#ff8c00", "#ffff00", "#b2ff00",
    "#00ff00", "#00ffa0", "#00ffff", "#008cff", "#0000ff", "#a500ff", "#ff00ff", "#ff0098",
    "#ff5959", "#ffb459", "#ffff71", "#cfff60", "#6fff6f", "#65ffc9", "#6dffff", "#59b4ff",
    "#5959ff", "#c459ff", "#ff66ff", "#ff59bc", "#ff9c9c", "#ffd39c", "#ffff9c", "#e2ff9c",
    "#9cff9c", "#9cffdb", "#9cffff", "#9cd3ff", "#9c9cff", "#dc9cff", "#ff9cff", "#ff94d3",
    "#000000", "#131313", "#282828", "#363636", "#4d4d4d", "#656565", "#818181", "#9f9f9f",
    "#bcbcbc", "#e2e2e2", "#ffffff",
)

# The toggles: code -> Format field.
_TOGGLES = {BOLD: "bold", ITALIC: "italic", UNDERLINE: "underline", STRIKE: "strike",
            REVERSE: "reverse"}
_CODES = re.compile("[\x02\x03\x04\x0f\x16\x1d\x1e\x1f]")
# ASCII digits only ([0-9], not \d: a Unicode digit is text).
_COLOUR_ARGS = re.compile(r"([0-9]{1,2})(?:,([0-9]{1,2}))?")
_HEX_ARGS = re.compile(r"([0-9a-fA-F]{6})(?:,([0-9a-fA-F]{6}))?")


@dataclass(frozen=True)
class Format:
    """The attributes in force for a run of text; colours as ``#rrggbb`` or None (default)."""

    bold: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    reverse: bool = False
    fg: str | None = None
    bg: str | None = None


PLAIN = Format()


def _colour(number: str | None) -> str | None:
    if number is None:
        return None
    index = int(number)
    return PALETTE[index] if index < len(PALETTE) else None  # 99: the default


def parse(text: str) -> list[tuple[Format, str]]:
    """
    ``text`` as runs of (format, text) with the formatting codes taken out.

    Runs are non-empty and adjacent runs differ in format.
    """
    if _CODES.search(text) is None:
        return [(PLAIN, text)] if text else []
    runs: list[tuple[Format, str]] = []
    fmt = PLAIN
    pos = 0

    def emit(chunk: str) -> None:
        if not chunk:
            return
        if runs and runs[-1][0] == fmt:
            runs[-1] = (fmt, runs[-1][1] + chunk)
        else:
            runs.append((fmt, chunk))

    for match in _CODES.finditer(text):
        if match.start() < pos:
            continue  # inside the arguments of a colour code just read
        emit(text[pos:match.start()])
        code = match.group()
        pos = match.end()
        if code in _TOGGLES:
            field = _TOGGLES[code]
            toggled: dict = {field: not getattr(fmt, field)}
            fmt = replace(fmt, **toggled)
        elif code == RESET:
            fmt = PLAIN
        else:
            args = (_COLOUR_ARGS if code == COLOUR else _HEX_ARGS).match(text, pos)
            if args is None:
                fmt = replace(fmt, fg=None, bg=None)
                continue
            pos = args.end()
            if code == COLOUR:
                fg = _colour(args.group(1))
                bg = _colour(args.group(2)) if args.group(2) is not None else fmt.bg
            else:
                fg = "#" + args.group(1).lower()
                bg = "#" + args.group(2).lower() if args.group(2) else fmt.bg
            fmt = replace(fmt, fg=fg, bg=bg)
    emit(text[pos:])
    return runs


def style_of(fmt: Format) -> str:
    """A prompt_toolkit style string for ``fmt`` ("" when plain)."""
    parts = [name for name in ("bold", "italic", "underline", "reverse") if getattr(fmt, name)]
    if fmt.strike:
        parts.append("strike")
    if fmt.fg:
        parts.append("fg:" + fmt.fg)
    if fmt.bg:
        parts.append("bg:" + fmt.bg)
    return " ".join(parts)
