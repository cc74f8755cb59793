"""
The cluster's one stream of inputs in Redis: append in order, read in order.

test-case-name: tests.test_cluster_stream

Two connections (txredisapi, docs/cluster.md): one writes (``XADD``, in the order
the calls were made: txredisapi writes every command on its connection in call
order and Redis answers in that order), one reads (``XREAD BLOCK`` from the last
entry seen).  Both reconnect by themselves; the reader goes on from the last id it
handed out, so after Redis comes back nothing is read twice and nothing is missed
(with Redis's persistence on).

Bounded: at most ``max_pending`` appends wait for Redis at once; past that, and
while the writer is not connected, :meth:`InputStream.append` fails at once
(:class:`Unavailable`) instead of queueing lines that cannot be ordered.

Every stream key lives under the cluster's prefix, ``<prefix>log``; the stream's
*epoch* (``<prefix>epoch``, made once with ``SET NX``) tells a node whether the
stream it folded is still the one in Redis (see :meth:`InputStream.check_epoch`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from twisted.internet import defer, task
from twisted.logger import Logger

__all__ = ["Entry", "InputStream", "Unavailable", "parse_url"]

Entry = dict[bytes, bytes]
Reader = Callable[[bytes, Entry], None]

_log = Logger(namespace="twistchat.cluster")


class Unavailable(Exception):
    """Redis cannot take this input now (not connected, or too many waiting)."""


def parse_url(url: str) -> tuple[str, int, int]:
    """``redis://host[:port][/db]`` as (host, port, db); ValueError naming what is wrong."""
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {url!r}")
    if not parsed.hostname:
        raise ValueError(f"no host in {url!r}")
    path = parsed.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the database must be a number: {url!r}")
    return parsed.hostname, parsed.port or 6379, int(path or 0)


def _fields(flat: list[bytes]) -> Entry:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class InputStream:
    """
    Append to and read from ``<prefix>log`` on the Redis at ``host:port/db``.

    ``maxlen``: entries kept (``XADD MAXLEN ~``); a node that finds entries
    gone before the ones it must fold cannot rebuild the state and says so
    (:meth:`start`).
    """

    def __init__(self, reactor: Any, host: str, port: int, db: int = 0,
                 prefix: str = "twistchat:", max_pending: int = 10000,
                 maxlen: int = 1_000_000, batch: int = 500) -> None:
        self.reactor = reactor
        self.host, self.port, self.db = host, port, db
        self.key = f"{prefix}log".encode()
        self.epoch_key = f"{prefix}epoch".encode()
        self.prefix = prefix
        self.max_pending = max_pending
        self.maxlen = maxlen
        self.batch = batch
        self.pending = 0
        self.last_id = b"0-0"
        self.epoch: bytes | None = None
        self.writer: Any = None
        self._reader_conn: Any = None
        self._reading = False
        self._read_done: defer.Deferred | None = None
        self.on_entry: Reader | None = None
        self.on_epoch_lost: Callable[[], None] | None = None

    # ------------------------------------------------------------- lifecycle

    async def start(self, on_entry: Reader) -> None:
        """
        Connect both connections, make or read the epoch, then read from the first entry.

        Raises RuntimeError when the stream was trimmed: entries before the first one
        held are gone, and the state they made cannot be folded again.
        """
        self.on_entry = on_entry
        self.writer = await self._connect()
        self._reader_conn = await self._connect()
        fresh = os.urandom(8).hex().encode()
        await self.writer.execute_command("SET", self.epoch_key, fresh, "NX")
        self.epoch = await self.writer.execute_command("GET", self.epoch_key)
        info = await self._stream_info()
        if info is not None and info.get(b"entries-added", 0) != info.get(b"length", 0):
            raise RuntimeError(
                f"the cluster's stream {self.key.decode()} was trimmed "
                f"({info.get(b'entries-added')} entries added, {info.get(b'length')} held): "
                "a new node cannot rebuild the chat state; restart every node together")
        self._reading = True
        self._read_done = defer.ensureDeferred(self._read_loop())

    async def stop(self) -> None:
        """Wait for appends in flight (bounded by the caller), then disconnect."""
        self._reading = False
        for conn in (self.writer, self._reader_conn):
            if conn is not None:
                try:
                    await conn.disconnect()
                except Exception:  # noqa: BLE001 - already gone is fine
                    pass

    async def _connect(self) -> Any:
        # Imported here: txredisapi (the `cluster` extra) is needed only with --cluster,
        # and it imports twisted.internet.ssl, which a plain install may lack.
        import txredisapi

        return await txredisapi.Connection(self.host, self.port, dbid=self.db,
                                           reconnect=True, charset=None,
                                           convertNumbers=False)

    async def _stream_info(self) -> dict[bytes, int] | None:
        import txredisapi

        try:
            flat = await self.writer.execute_command("XINFO", "STREAM", self.key)
        except txredisapi.ResponseError:
            return None  # no stream yet
        out: dict[bytes, int] = {}
        for name, value in zip(flat[::2], flat[1::2], strict=True):
            if isinstance(value, int):
                out[name] = value
            elif isinstance(value, bytes) and value.isdigit():
                out[name] = int(value)
        return out

    # ---------------------------------------------------------------- append

    @property
    def connected(self) -> bool:
        """True when the writer is connected (appends can be ordered now)."""
        factory = getattr(self.writer, "_factory", None)
        return factory is not None and bool(factory.size)

    def append(self, fields: Entry) -> defer.Deferred:
        """
        ``XADD`` one entry; the Deferred fires with its id, or fails.

        Fails at once with :class:`Unavailable` while Redis is not connected or
        ``max_pending`` appends already wait.
        """
        if not self.connected:
            return defer.fail(Unavailable("the cluster's Redis is not connected"))
        if self.pending >= self.max_pending:
            return defer.fail(Unavailable(f"{self.pending} inputs already wait for Redis"))
        self.pending += 1
        args: list[Any] = ["XADD", self.key, "MAXLEN", "~", str(self.maxlen), "*"]
        for name, value in fields.items():
            args += [name, value]
        d = self.writer.execute_command(*args)

        def done(result: Any) -> Any:
            self.pending -= 1
            return result

        d.addBoth(done)
        return d

    # ------------------------------------------------------------------ read

    async def _read_loop(self) -> None:
        backoff = 0.05
        while self._reading:
            try:
                reply = await self._reader_conn.execute_command(
                    "XREAD", "COUNT", str(self.batch), "BLOCK", "1000",
                    "STREAMS", self.key, self.last_id)
            except Exception as e:  # noqa: BLE001 - Redis gone: wait, then go on
                if not self._reading:
                    return
                _log.warn("cluster stream read failed ({error}); retrying", error=e)
                await task.deferLater(self.reactor, backoff, lambda: None)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if not reply:
                continue
            for _key, entries in reply:
                for entry_id, flat in entries:
                    self.last_id = entry_id
                    assert self.on_entry is not None
                    self.on_entry(entry_id, _fields(flat))

    async def check_epoch(self) -> bool:
        """
        Is the epoch in Redis still the one this node folded?  False: Redis lost it.

        Redis restarted without its data (or was flushed): the stream this node's
        state came from is gone, and nothing read from now on continues it.
        """
        try:
            now = await self.writer.execute_command("GET", self.epoch_key)
        except Exception:  # noqa: BLE001 - not connected: no answer yet
            return True
        if now != self.epoch:
            if self.on_epoch_lost is not None:
                self.on_epoch_lost()
            return False
        return True
