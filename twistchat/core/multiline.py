"""
IRCv3 ``draft/multiline``: the limits, collecting a client's batch, splitting for the wire.

test-case-name: tests.test_multiline

Spec: https://ircv3.net/specs/extensions/multiline (work in progress, so the
``draft/`` names).  A client pastes several lines as one batch::

    BATCH +r draft/multiline #room
    @batch=r PRIVMSG #room :line one
    @batch=r;draft/multiline-concat PRIVMSG #room :, still line one
    BATCH -r

The front-end feeds every line of the open batch to one :class:`Collector`
(pure: no I/O, no clock of its own); at ``BATCH -r`` the collector gives the
*combined message*: lines joined by ``"\\n"``, a ``draft/multiline-concat``
line joined directly.  That text goes to the core as ONE ``PRIVMSG`` (the same
``Registry.message`` as a single line, so +n, +m, +b hold unchanged) and
becomes ONE room event: one seq, one msgid, one history record.

Going out, :func:`pieces` cuts the event's text into wire lines again.  We keep
no record of where the client cut its long lines (the spec says a server
SHOULD keep the client's composition): the text is cut at every ``"\\n"``, and a
line longer than :data:`PIECE_BYTES` is cut at a character boundary and sent
on with ``draft/multiline-concat``.  The same cut serves live delivery,
history replay and UDP, so every reader sees the same lines.  The choice keeps
the room log, the store and the UDP repair unchanged (an event is still one
``Message`` whose text has ``"\\n"`` in it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twistchat.core.replies import StandardReplyError
from twistchat.wire import casefold

__all__ = [
    "BATCH_TYPE", "CAP", "CAP_VALUE", "CONCAT_TAG", "MAX_BYTES", "MAX_LINES", "PIECE_BYTES",
    "TIMEOUT", "Collector", "Failed", "pieces",
]

CAP = "draft/multiline"
BATCH_TYPE = "draft/multiline"
CONCAT_TAG = "draft/multiline-concat"
# The combined message at most (each joining "\n" counts one byte, as the spec says).
MAX_BYTES = 4096
# At most this many PRIVMSG lines in one batch.
MAX_LINES = 24
# The capability's value (CAP LS 302): the spec REQUIRES max-bytes, RECOMMENDS max-lines.
CAP_VALUE = f"max-bytes={MAX_BYTES},max-lines={MAX_LINES}"
# Seconds a client batch may stay open before it is dropped (MULTILINE_INVALID).
TIMEOUT = 30.0
# Outgoing: a line's text is cut into pieces of at most this many UTF-8 bytes, so
# each PRIVMSG fits in 512 bytes with a long source and target before it.
PIECE_BYTES = 400


class Failed(StandardReplyError):
    """A batch broke a rule: ``FAIL BATCH <code> <params...> :<text>``."""

    command = "BATCH"


@dataclass
class Collector:
    """
    One open client batch (at most one per connection; bounded by the limits).

    ``feed`` each ``PRIVMSG`` of the batch; ``close`` gives the combined text.
    Both raise :class:`Failed` with the spec's code; after a failure the
    front-end drops the batch (nothing of it is delivered) and swallows its
    remaining lines up to ``BATCH -ref``.
    """

    ref: str
    target: str
    opened: float
    tags: dict[str, str] = field(default_factory=dict)  # label and client tags of BATCH +ref
    failed: bool = False
    _parts: list[str] = field(default_factory=list)
    _lines: int = 0
    _bytes: int = 0
    _any_text: bool = False

    @classmethod
    def open(cls, params: tuple[str, ...], tags: dict[str, str], now: float) -> Collector:
        """``BATCH +ref draft/multiline <target>``: a collector, or :class:`Failed`."""
        if len(params) < 3 or params[1] != BATCH_TYPE or len(params[0]) < 2:
            raise Failed("MULTILINE_INVALID", text="Invalid multiline batch")
        target = params[2]
        if not target or "," in target or target[0] in "@+":
            # One recipient, a room or a nick: a comma list or a STATUSMSG target
            # would not be one transcript line.
            raise Failed("MULTILINE_INVALID_TARGET", target, target,
                         text="Invalid multiline target")
        kept = {k: v for k, v in tags.items() if k == "label" or k.startswith("+")}
        return cls(params[0][1:], target, now, kept)

    def feed(self, target: str, text: str, concat: bool) -> None:
        """One ``@batch=ref PRIVMSG target :text`` (``concat``: it had the concat tag)."""
        if casefold(target) != casefold(self.target):
            raise Failed("MULTILINE_INVALID_TARGET", self.target, target,
                         text="Invalid multiline target")
        if concat and (not text or not self._lines):
            raise Failed("MULTILINE_INVALID", text="Invalid multiline batch (blank concat line)")
        self._lines += 1
        if self._lines > MAX_LINES:
            raise Failed("MULTILINE_MAX_LINES", str(MAX_LINES),
                         text="Multiline batch max-lines exceeded")
        self._bytes += len(text.encode("utf-8")) + (0 if concat or self._lines == 1 else 1)
        if self._bytes > MAX_BYTES:
            raise Failed("MULTILINE_MAX_BYTES", str(MAX_BYTES),
                         text="Multiline batch max-bytes exceeded")
        if concat:
            self._parts[-1] += text
        else:
            self._parts.append(text)
        self._any_text = self._any_text or bool(text)

    def close(self) -> str:
        """``BATCH -ref``: the combined message (lines joined by ``"\\n"``)."""
        if not self._any_text:
            raise Failed("MULTILINE_INVALID", text="Invalid multiline batch (no text)")
        return "\n".join(self._parts)


def pieces(text: str) -> list[tuple[str, bool]]:
    """
    The wire lines of a combined message: ``(text, concat)`` pairs, in order.

    Cut at every ``"\\n"``; a longer line into pieces of at most
    :data:`PIECE_BYTES` UTF-8 bytes, never inside a character, the pieces
    after the first marked ``concat``.  Blank lines stay (as ``("", False)``):
    the caller drops them for clients without the capability.
    """
    out: list[tuple[str, bool]] = []
    for line in text.split("\n"):
        data = line.encode("utf-8")
        if len(data) <= PIECE_BYTES:
            out.append((line, False))
            continue
        start = 0
        while start < len(data):
            end = min(start + PIECE_BYTES, len(data))
            while end < len(data) and (data[end] & 0xC0) == 0x80:
                end -= 1  # back off to a character boundary
            out.append((data[start:end].decode("utf-8"), start > 0))
            start = end
    return out
