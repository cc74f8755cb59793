"""
The one IRC line grammar of twistchat: parse and format, no I/O.

test-case-name: tests.test_wire

Shared by the server, the clients, TCP and UDP (../DESIGN.md, "Wire protocols").
Bytes in, :class:`Message` out; :class:`Message` in, text out.  It knows no
socket and no clock (h11's "bring your own I/O").

Grammar (RFC 1459 section 2.3.1, with IRCv3 message tags,
https://ircv3.net/specs/extensions/message-tags)::

    message    = [ "@" tags SPACE ] [ ":" source SPACE ] command [ params ] crlf
    tags       = tag *[ ";" tag ]
    tag        = key [ "=" escaped-value ]
    key        = [ "+" ] [ vendor "/" ] 1*( letter / digit / "-" )
    params     = *( SPACE middle ) [ SPACE ":" trailing ]

Errors come in two kinds, as in h11 (``h11/_util.py``, Local/Remote):

- :class:`WireError` (a :class:`ValueError`): a *peer* sent a line that is not
  IRC.  Its ``reason`` is a short machine code, ``str()`` a sentence; the
  caller answers with an error reply and the connection lives on.
  :func:`parse` raises nothing else, whatever bytes or text it is given.
- a plain :class:`ValueError` from :func:`format_message`, :func:`encode` and
  :func:`format_tags`: *we* built a :class:`Message` that cannot be written as
  one line.  That is our bug, so it is not a :class:`WireError`.

Where the grammar leaves room, :func:`parse` is lenient the way
``ircdocs/parser-tests`` (msg-split.yaml) and irc-go ``ircmsg/message.go`` are,
and strict wherever leniency would let a line through that we could not write
back out.  Every :class:`Message` that :func:`parse` returns can be given to
:func:`format_message`, parses back to itself, and is no longer than the line
it came from but for the one ``:`` free text always gets (:func:`text_param`):

- one or more spaces separate atoms; spaces before the source or command and
  after the last parameter are ignored;
- tags whose key is not valid are dropped, the message is kept ("MUST NOT
  perform any validation that would reject the message if an invalid tag key
  name is used");
- an empty source (``": PING"``) is read as no source;
- a command starting with ``:`` or ``@`` is refused (``BAD_COMMAND``): it
  could not be echoed back in a reply, nor written without a source or tags.

Lengths are UTF-8 bytes, as the specs count them.

Reason codes: ``EMPTY``, ``NO_COMMAND``, ``BAD_COMMAND``, ``BAD_TAGS``,
``BAD_CHAR``, ``INVALID_UTF8`` (:class:`InvalidUTF8`), ``LINE_TOO_LONG`` and
``TAGS_TOO_LONG`` (both :class:`LineTooLong`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = [
    "MAX_BODY",
    "MAX_CLIENT_TAGS",
    "MAX_TAGS",
    "InvalidUTF8",
    "LineTooLong",
    "Message",
    "WireError",
    "casefold",
    "encode",
    "escape_tag_value",
    "format_message",
    "format_server_time",
    "format_tags",
    "is_decimal",
    "is_valid_channel",
    "is_valid_nick",
    "parse",
    "parse_server_time",
    "sanitize_nick",
    "split_source",
    "text_param",
    "unescape_tag_value",
]

# RFC 1459 section 2.3: "IRC messages are always lines of characters terminated
# with a CR-LF (Carriage Return - Line Feed) pair, and these messages shall not
# exceed 512 characters in length, counting all characters including the
# trailing CR-LF."  So the body (all after the tag section) may be 510 bytes.
MAX_BODY = 512

# message-tags, "Size limit": "The size limit for message tags is 8191 bytes,
# including the leading '@' (0x40) and trailing space ' ' (0x20) characters."
MAX_TAGS = 8191

# message-tags, "Size limit": clients may send "at most 4094 bytes of tag data" of their
# own (client-only tags, ``+``), and "servers MUST reject messages that exceed" it with
# ERR_INPUTTOOLONG (417).
MAX_CLIENT_TAGS = 4094

# The terminator that parse() strips from the body length budget.
_CRLF_LEN = 2


class WireError(ValueError):
    """
    A peer sent something that is not a valid IRC line.

    ``reason`` is a short machine code (``"EMPTY"``, ``"LINE_TOO_LONG"``...,
    listed in the module docstring); ``str(error)`` is a sentence for humans.
    """

    default_reason = "BAD_LINE"

    def __init__(self, reason: str | None = None, message: str | None = None) -> None:
        if reason is None:
            reason = self.default_reason
        if message is None:
            message = _SENTENCES.get(reason, f"Invalid IRC line ({reason}).")
        # Both in args, so that the error pickles and reprs faithfully.
        super().__init__(reason, message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message


class LineTooLong(WireError):
    """
    The body (all after the tag section) is longer than ``max_body - 2``
    bytes (``LINE_TOO_LONG``), or the tag section longer than ``max_tags``
    (``TAGS_TOO_LONG``).  message-tags: servers answer ``417
    ERR_INPUTTOOLONG``.
    """

    default_reason = "LINE_TOO_LONG"


class InvalidUTF8(WireError):
    """
    The line is not valid UTF-8 (or, given as text, holds lone surrogates).
    """

    default_reason = "INVALID_UTF8"


_SENTENCES = {
    "EMPTY": "The line is empty.",
    "NO_COMMAND": "The line has no command.",
    "BAD_COMMAND": "The command must not start with ':' or '@'.",
    "BAD_TAGS": "The tag section is empty.",
    "BAD_CHAR": "The line contains a NUL, CR or LF character.",
    "INVALID_UTF8": "The line is not valid UTF-8.",
    "LINE_TOO_LONG": "The line is too long.",
    "TAGS_TOO_LONG": "The tag section is too long.",
}


@dataclass(frozen=True, slots=True)
class Message:
    """
    One IRC message: what a line means, with no line ending.

    ``command`` is kept as received (``privmsg`` stays lower case; compare
    :attr:`verb`).  ``source`` has no leading ``:``; ``None`` when absent.
    ``tags`` maps each key to its unescaped value, ``""`` for a tag without
    a value (message-tags: "Implementations MUST interpret empty tag values
    (e.g. foo=) as equivalent to missing tag values"); treat it as read-only.
    It takes no part in the hash.

    ``trailing`` asks for the last parameter after ``:`` even where
    :func:`text_param` does not know it as free text: free text whose place
    depends on the request (WHOX's realname, last only when asked for).  It
    says how to write the line, not what it means, so it takes no part in
    equality either; :func:`parse` leaves it False.
    """

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    trailing: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        # A list here would make the message unhashable and unequal to the
        # parsed one; take any iterable, keep a tuple.
        if type(self.params) is not tuple:
            object.__setattr__(self, "params", tuple(self.params))

    @property
    def verb(self) -> str:
        """
        The command in upper case: IRC commands are case-insensitive.
        """
        return self.command.upper()


# --- tags -------------------------------------------------------------------

# message-tags, "Format":
#   <key>           ::= [ <client_prefix> ] [ <vendor> '/' ] <key_name>
#   <client_prefix> ::= '+'
#   <key_name>      ::= <non-empty sequence of ascii letters, digits, hyphens ('-')>
#   <vendor>        ::= <host>
# A host here is letters, digits, '-' and '.' (DNS names; "In cases where the
# prefix contains non-ASCII characters, punycode MUST be used").  No nested
# quantifiers: the vendor part cannot contain '/', so matching is linear.
_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+")
_match_key = _TAG_KEY.fullmatch

# message-tags, "Escaping values":
#   ';' -> '\:'   SPACE -> '\s'   '\' -> '\\'   CR -> '\r'   LF -> '\n'
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


def escape_tag_value(value: str) -> str:
    """
    Escape a tag value for the wire (message-tags, "Escaping values").
    """
    # The backslash first, so the escapes added after it stay single.
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\:")
        .replace(" ", "\\s")
        .replace("\r", "\\r")
        .replace("\n", "\\n")
    )


def unescape_tag_value(value: str) -> str:
    """
    Undo :func:`escape_tag_value`, leniently as the spec asks.

    message-tags: "If a lone \\ exists at the end of an escaped value (with no
    escape character following it), then there SHOULD be no output character
    [...] If a \\ exists with no valid escape character (for example, \\b),
    then the invalid backslash SHOULD be dropped."
    """
    if "\\" not in value:
        return value
    out = []
    start = 0
    end = len(value)
    while True:
        slash = value.find("\\", start)
        if slash < 0:
            out.append(value[start:])
            break
        out.append(value[start:slash])
        if slash + 1 == end:
            break  # lone trailing backslash: no output character
        char = value[slash + 1]
        out.append(_UNESCAPES.get(char, char))
        start = slash + 2
    return "".join(out)


def format_tags(tags: Mapping[str, str]) -> str:
    """
    Write tags as ``a=b;c`` (no ``@``, no trailing space); ``""`` for none.

    A tag whose value is ``""`` is written as a bare key: message-tags lets
    implementations "normalise tag values by converting the empty form to
    the missing form".  Raise :class:`ValueError` for a key the grammar does
    not allow, or a value holding NUL (which has no escape).
    """
    parts = []
    for key, value in tags.items():
        if _match_key(key) is None:
            raise ValueError(f"invalid tag key {key!r}")
        if value:
            if "\0" in value:
                raise ValueError(f"tag {key!r} value contains NUL")
            parts.append(f"{key}={escape_tag_value(value)}")
        else:
            parts.append(key)
    return ";".join(parts)


def _parse_tags(data: str) -> dict[str, str]:
    tags = {}
    for item in data.split(";"):
        key, _, value = item.partition("=")
        # "Implementations MUST treat tag key names as case-sensitive opaque
        # identifiers and MUST NOT perform any validation that would reject
        # the message if an invalid tag key name is used."  We drop the tag:
        # a key we could not write back must not reach format_tags().
        if _match_key(key) is None:
            continue
        # "Implementations receiving messages with more than one occurrence
        # of a tag key name SHOULD disregard all but the final occurrence."
        tags[key] = unescape_tag_value(value) if "\\" in value else value
    return tags


# --- parse ------------------------------------------------------------------


def _utf8_len(text: str) -> int:
    """
    Length of ``text`` in UTF-8 bytes; :class:`InvalidUTF8` for surrogates.
    """
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidUTF8(
            "INVALID_UTF8",
            f"The line is not valid UTF-8 (lone surrogate at character {exc.start}).",
        ) from None


def parse(
    line: bytes | str, *, max_body: int = MAX_BODY, max_tags: int = MAX_TAGS
) -> Message:
    """
    Parse one IRC line into a :class:`Message`.

    ``line`` is bytes (decoded strictly as UTF-8) or text, with or without
    one trailing CRLF, LF or CR.  The body (everything after the tag
    section) may hold ``max_body - 2`` bytes, room being kept for the CRLF;
    the tag section, ``@`` and trailing space included, ``max_tags``.

    Raise :class:`WireError` (or a subclass) for anything that is not a
    valid line, and nothing else for any bytes or text.
    """
    text = _strip_line_ending(_decode(line))
    if not text:
        raise WireError("EMPTY")
    # RFC 1459 2.3.1: <crlf> ends the message and "NUL or CR or LF" may not
    # appear in a parameter; irc-go refuses the same three bytes anywhere.
    if "\0" in text or "\r" in text or "\n" in text:
        raise WireError("BAD_CHAR")
    if text[0] == "@":
        tags, body = _split_tags(text, max_body, max_tags)
    else:
        tags, body = {}, _untagged_body(text, max_body)
    source, body = _split_prefix(body)
    return _split_params(body, source, tags)


def _decode(line: bytes | str) -> str:
    """``line`` as text: bytes (bytearray, memoryview) are decoded strictly as UTF-8."""
    if isinstance(line, str):
        return line
    try:
        return str(line, "utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUTF8(
            "INVALID_UTF8",
            f"The line is not valid UTF-8 (bad byte at offset {exc.start}).",
        ) from None


def _strip_line_ending(text: str) -> str:
    """
    ``text`` without one line ending, whichever a peer uses (LineReceiver
    splits on LF and may leave the CR; irc-go trims "\\n" then "\\r").
    """
    last = text[-1:]
    if last == "\n":
        return text[:-2] if text[-2:] == "\r\n" else text[:-1]
    if last == "\r":
        return text[:-1]
    return text


def _size(text: str) -> int:
    """UTF-8 length of ``text`` (its length, when it is ASCII)."""
    return len(text) if text.isascii() else _utf8_len(text)


def _check_body(body_size: int, max_body: int) -> None:
    body_limit = max_body - _CRLF_LEN
    if body_size > body_limit:
        raise LineTooLong("LINE_TOO_LONG", _too_long("line", body_size, body_limit))


def _split_tags(text: str, max_body: int, max_tags: int) -> tuple[dict[str, str], str]:
    """A tagged line (``text`` starts with ``@``): its tags and its body."""
    size = _size(text)
    end = text.find(" ")
    if end < 0:
        if size > max_tags:
            raise LineTooLong("TAGS_TOO_LONG", _too_long("tag section", size, max_tags))
        raise WireError("NO_COMMAND")
    # '@' + tag data + ' ': the space is the byte after `end`.  (A line of
    # as many bytes as characters is ASCII: the rest take two bytes or more.)
    tag_size = (end if size == len(text) else _utf8_len(text[:end])) + 1
    if tag_size > max_tags:
        raise LineTooLong("TAGS_TOO_LONG", _too_long("tag section", tag_size, max_tags))
    if end == 1:
        # "<tags> ::= <tag> [';' <tag>]*": "@ " has no tag at all.
        raise WireError("BAD_TAGS")
    _check_body(size - tag_size, max_body)
    tags = _parse_tags(text[1:end])
    body = text[end + 1 :].lstrip(" ")
    if not body:
        raise WireError("NO_COMMAND")
    return tags, body


def _untagged_body(text: str, max_body: int) -> str:
    """An untagged line's body, within ``max_body``."""
    _check_body(_size(text), max_body)
    # RFC 1459 2.3.1 "<SPACE> ::= ' ' { ' ' }": one or more spaces, so
    # spaces before the first atom are ignored too (msg-split.yaml).
    body = text.lstrip(" ")
    if not body:
        raise WireError("EMPTY")
    return body


def _split_prefix(body: str) -> tuple[str | None, str]:
    """The source (or None) and the rest of ``body``."""
    if body[0] != ":":
        return None, body
    end = body.find(" ")
    if end < 0:
        raise WireError("NO_COMMAND")
    # An empty prefix (": PING") says nothing: RFC 1459 "If the prefix
    # is missing from the message, it is assumed to have originated from
    # the connection from which it was received."
    source = body[1:end] or None
    body = body[end + 1 :].lstrip(" ")
    if not body:
        raise WireError("NO_COMMAND")
    return source, body


def _split_params(body: str, source: str | None, tags: dict[str, str]) -> Message:
    """The command and parameters of ``body``, as a :class:`Message`."""
    # RFC 1459: "<params> ::= <SPACE> [ ':' <trailing> | <middle> <params> ]";
    # <middle> cannot start with ':', so the first " :" starts the trailing
    # parameter, which keeps every space and colon that follows.
    trailing_at = body.find(" :")
    if trailing_at < 0:
        atoms = body.split(" ")
        trailing = None
    else:
        atoms = body[:trailing_at].split(" ")
        trailing = body[trailing_at + 2 :]
    if "" in atoms:  # runs of spaces
        atoms = [atom for atom in atoms if atom]

    command = atoms[0]
    if command[0] in ":@":
        raise WireError("BAD_COMMAND")
    if trailing is not None:
        atoms.append(trailing)
    return Message(command, tuple(atoms[1:]), source, tags)


def _too_long(what: str, size: int, limit: int) -> str:
    return f"The {what} is {size} bytes long, more than the {max(limit, 0)} allowed."


# --- format -----------------------------------------------------------------


# Where free text sits: the index of the text parameter of each command that has one.
# Servers write it with ':' even when it is one word (``PRIVMSG #c :hello``); many bots and
# scripts split on " :" to find it (issue #13).
_TEXT_PARAM = {
    "PRIVMSG": 1, "NOTICE": 1, "TOPIC": 1, "PART": 1, "QUIT": 0, "KICK": 2, "ERROR": 0,
    "AWAY": 0, "WALLOPS": 0, "SETNAME": 0, "KILL": 1, "KNOCK": 1,
    "JOIN": 2,  # IRCv3 extended-join: JOIN #room account :realname
}
# Numerics whose last parameter is a value, not text (RPL_MYINFO, RPL_UMODEIS,
# RPL_CHANNELMODEIS, RPL_CREATIONTIME, RPL_TOPICWHOTIME, RPL_INVITING, the list entries
# of +b +I +e, RPL_INVITELIST's room): written with ':' only where needed.  RPL_WHOSPCRPL
# (354) ends with the last WHOX field asked for, a value but for the realname (``r``,
# always last): its lines carry Message.trailing when they end with it, as ircu writes them.
_VALUE_NUMERICS = frozenset({"004", "221", "324", "329", "333", "336", "341", "346", "348",
                             "354", "367"})


def text_param(command: str, index: int) -> bool:
    """
    Is parameter ``index`` of ``command`` free text, written after ':' always?

    The text of PRIVMSG, NOTICE, TOPIC, PART, QUIT, KICK (and of the other
    verbs that carry some), the description of FAIL/WARN/NOTE, and the last
    parameter of a numeric (after the client's nick) unless it is a value.
    """
    at = _TEXT_PARAM.get(command)
    if at is not None:
        return at == index
    if len(command) == 3 and command.isdigit():
        return index >= 1 and command not in _VALUE_NUMERICS
    return index >= 2 and command in ("FAIL", "WARN", "NOTE")


def _format_body(msg: Message) -> str:
    """
    Everything after the tag section; :class:`ValueError` where the message
    cannot be one line.
    """
    command = msg.command
    if not command or command[0] in ":@" or " " in command:
        raise ValueError(f"command {command!r} cannot be written as an IRC command")
    params = msg.params
    if params:
        *middle, last = params
        for param in middle:
            # RFC 1459: "<middle> ::= <Any *non-empty* sequence of octets not
            # including SPACE or NUL or CR or LF, the first of which may not
            # be ':'>"
            if not param or param[0] == ":" or " " in param:
                raise ValueError(
                    f"middle parameter {param!r} must be non-empty, have no"
                    " space and not start with ':'"
                )
        # ':' where needed (msg-join.yaml lists the minimal form), and always on free
        # text (see text_param), as every widely deployed server writes it.
        if not last or last[0] == ":" or " " in last or msg.trailing \
                or text_param(command, len(params) - 1):
            last = ":" + last
        line = " ".join((command, *middle, last)) if middle else f"{command} {last}"
    else:
        line = command
    source = msg.source
    if source is not None:
        if not source or " " in source:
            raise ValueError(
                f"source {source!r} must be non-empty and have no space"
                " (None means no source)"
            )
        line = f":{source} {line}"
    if "\r" in line or "\n" in line or "\0" in line:
        raise ValueError(f"message {msg!r} contains CR, LF or NUL")
    return line


def format_message(msg: Message) -> str:
    """
    Write ``msg`` as one IRC line, without CRLF.

    The last parameter gets a ``:`` only when it needs one (it is empty,
    holds a space or starts with ``:``).  Raise :class:`ValueError` (not
    :class:`WireError`: the bug is ours) when ``msg`` cannot be one line.
    """
    if msg.tags:
        return f"@{format_tags(msg.tags)} {_format_body(msg)}"
    return _format_body(msg)


def encode(msg: Message) -> bytes:
    """
    The bytes to send for ``msg``: its line in UTF-8, then CRLF.

    Enforces no length limit: the caller knows what its peer accepts.
    """
    # Fast path: most lines (any IRC client without message-tags) have none.
    if not msg.tags:
        return (_format_body(msg) + "\r\n").encode("utf-8")
    return (f"@{format_tags(msg.tags)} {_format_body(msg)}\r\n").encode()


def split_source(source: str) -> tuple[str, str, str]:
    """
    Split ``nick!user@host`` into ``(nick, user, host)``, ``""`` for a
    missing part (``"irc.example.com"`` is all nick), as in
    parser-tests userhost-split.yaml.
    """
    nick_user, _, host = source.partition("@")
    nick, _, user = nick_user.partition("!")
    return nick, user, host


def safe_middle(param: str) -> str:
    """
    ``param`` if it can stand as a middle parameter, else ``*``.

    Replies that echo what a client sent (a target, a mode, a subcommand) use
    it so that the reply is one valid line whatever the client sent.
    """
    if not param or param[0] == ":" or any(c in param for c in " \r\n\0"):
        return "*"
    return param


# --------------------------------------------------------------------------
# Names: case folding and the nick and room grammar, shared by the server's core
# and every client (one copy, issue #11).

# rfc1459 case mapping (ISUPPORT CASEMAPPING=rfc1459): A-Z and []\~ fold to a-z and {}|^.
_RFC1459 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^"
)
# RFC 2812 2.3.1: nickname = ( letter / special ) *( letter / digit / special / "-" )
_NICK_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz[]\\`_^{|}")
_NICK_REST = _NICK_FIRST | frozenset("0123456789-")
# RFC 2812 2.3.1: chanstring excludes NUL, BELL, CR, LF, SPACE, "," and ":".
_CHANNEL_FORBIDDEN = frozenset("\x00\x07\r\n ,:")
CHANTYPES = "#"


def casefold(name: str) -> str:
    """Fold a nick or room name under rfc1459 case mapping (the server's CASEMAPPING)."""
    return name.translate(_RFC1459)


def is_valid_nick(nick: str, nicklen: int = 30) -> bool:
    """RFC 2812 2.3.1 nickname grammar, at most ``nicklen`` characters."""
    return (
        0 < len(nick) <= nicklen
        and nick[0] in _NICK_FIRST
        and all(c in _NICK_REST for c in nick[1:])
    )


def is_valid_channel(name: str, channellen: int = 50) -> bool:
    """RFC 2812 2.3.1 channel grammar (CHANTYPES ``#``), at most ``channellen`` bytes."""
    return (
        1 < len(name.encode("utf-8")) <= channellen
        and name[0] in CHANTYPES
        and not any(c in _CHANNEL_FORBIDDEN for c in name)
    )


def sanitize_nick(name: str, nicklen: int = 30) -> str:
    """A valid nick made from ``name`` (a login name): bad characters become ``_``."""
    nick = "".join(c if c in _NICK_REST else "_" for c in name)[:nicklen]
    if not nick or nick[0] not in _NICK_FIRST:
        nick = ("_" + nick)[:nicklen] if nick else "guest"
    return nick


# --------------------------------------------------------------------------
# IRCv3 server-time, the one timestamp format of the wire (server and clients).


def format_server_time(time_ms: int) -> str:
    """
    Format milliseconds since the epoch as IRCv3 server-time.

    https://ircv3.net/specs/extensions/server-time: "YYYY-MM-DDThh:mm:ss.sssZ", UTC.
    """
    seconds, millis = divmod(time_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_server_time(text: str) -> int:
    """
    Parse IRCv3 server-time text into milliseconds since the epoch.

    Raises ValueError on anything else.
    """
    if not text.endswith("Z"):
        raise ValueError(f"not a server-time timestamp: {text!r}")
    stamp = datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S.%f")
    return int(stamp.replace(tzinfo=timezone.utc).timestamp() * 1000 + 0.5)


def is_decimal(text: str) -> bool:
    """
    True for a plain ASCII decimal number (``"42"``).

    ``str.isdigit`` also accepts digits ``int()`` refuses (``"²"``): every number a
    peer sends is checked with this instead (found by fuzzing MODE +l).
    """
    return text.isascii() and text.isdigit()
