"""
Write coalescing per reactor turn: a connection's output of one turn leaves in one ``send``.

test-case-name: tests.test_coalesce

Why (issue #18): Twisted's socket transport registers for writability on every
``write`` into an empty buffer and unregisters once it has flushed, so each
delivery to a quiet connection cost one ``send`` and two ``epoll_ctl`` calls, and
the lines of one turn went out as separate ``send`` calls when the socket was
already writable.  :class:`TurnCoalescer` keeps each connection's bytes of the
current turn in a list and, once per turn (one ``callLater(0)`` for all
connections: it runs right after the I/O the reactor just handled, before it
waits again), hands them over joined:

- to a plain TCP transport whose buffer is empty, straight to the socket
  (``writeSomeData``: one ``send``, no registration for writability); whatever the
  kernel did not take, or everything if the connection is broken, goes to the
  transport's own ``write``, which buffers it, registers for writability and
  pauses a registered producer past ``bufferSize``: the SendQ and the dropping of
  slow readers (:class:`twistchat.frontends.irc._SendQWatch`) see the same bytes
  as before, one turn later at most;
- to a transport that still holds unsent bytes, through its ``write``, behind them;
- to a TLS transport, as one ``write``: one record where there were several.

Connections that are not on a socket (tests' string transports) are written at
once, as before: nothing is held without a reactor turn to flush it.  Nothing is
kept per connection between turns, so an idle connection costs nothing here.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor

__all__ = ["TurnCoalescer", "coalescible"]


def _innermost(transport: Any) -> Any:
    """The transport below any wrapping (TLS), which owns the socket."""
    while getattr(transport, "transport", None) is not None:
        transport = transport.transport
    return transport


def coalescible(transport: Any) -> bool:
    """Is ``transport`` on a real socket (maybe under TLS), so a reactor turn will flush it?"""
    return isinstance(_innermost(transport), FileDescriptor)


def _idle_socket(transport: Any) -> bool:
    """
    A connected socket transport with nothing unsent: a ``send`` now keeps the order.

    Twisted has no public question for "does this transport hold unsent bytes";
    FileDescriptor's two buffers (``dataBuffer`` from ``offset``, and
    ``_tempDataBuffer`` of ``_tempDataLen`` bytes) are what its ``doWrite`` empties.
    """
    return bool(isinstance(transport, FileDescriptor)
            and type(transport).writeSomeData is not FileDescriptor.writeSomeData
            and transport.connected and not transport.disconnecting
            and not getattr(transport, "_aborting", False)
            and transport.offset == len(transport.dataBuffer)
            and not transport._tempDataLen)  # noqa: SLF001


class TurnCoalescer:
    """
    Holds output per transport for the rest of the reactor turn; writes it once at its end.

    One per front-end (the IRC factory); ``clock`` is the reactor.  Writes made
    while a turn is flushed (a connection lost in a TLS write makes its user quit,
    and the others see the QUIT) go to the next turn.
    """

    __slots__ = ("_clock", "_queued", "_call", "sends", "fallbacks")

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._queued: dict[Any, list[bytes]] = {}
        self._call: Any = None
        self.sends = 0  # flushes that went straight to a socket
        self.fallbacks = 0  # flushes that went through the transport's write (TLS, full, busy)

    def write(self, transport: Any, data: bytes) -> None:
        """Queue ``data`` for ``transport`` (which :func:`coalescible` accepted)."""
        chunks = self._queued.get(transport)
        if chunks is not None:
            chunks.append(data)
            return
        self._queued[transport] = [data]
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write every transport's output of this turn (the once-per-turn call)."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        pending, self._queued = self._queued, {}
        for transport, chunks in pending.items():
            self._send(transport, chunks)

    def flush_one(self, transport: Any) -> None:
        """Write what ``transport`` holds now, e.g. before a last line and a close."""
        chunks = self._queued.pop(transport, None)
        if chunks is not None:
            self._send(transport, chunks)

    def discard(self, transport: Any) -> None:
        """Drop what ``transport`` holds (its connection is being aborted)."""
        self._queued.pop(transport, None)

    def pending(self, transport: Any) -> int:
        """Bytes held for ``transport`` until the end of the turn."""
        return sum(map(len, self._queued.get(transport, ())))

    def _send(self, transport: Any, chunks: list[bytes]) -> None:
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if _idle_socket(transport):
            sent = transport.writeSomeData(data)
            if type(sent) is int and sent >= 0:
                self.sends += 1
                if sent == len(data):
                    return
                data = data[sent:]
            # The rest (or all of it, on an error: Twisted's own write finds the error
            # at its next attempt and loses the connection the usual way) is the
            # transport's to buffer, with its flow control.
        self.fallbacks += 1
        transport.write(data)
