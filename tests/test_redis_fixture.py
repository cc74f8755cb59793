"""
The real ``redis-server`` the cluster's tests stand on (issue #15; tests/redisproc.py).

Proves the fixtures of tests/conftest.py: the server answers on its own loopback port with
no config file of the machine's; a stream goes in and out in order through the client
library the cluster uses (txredisapi, docs/cluster.md); and with the append-only file on,
a stream survives a restart of Redis, even a kill -9, while without it the stream is gone
(the room whose stream is lost gets a new epoch: the fault tests' building block).
"""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
import txredisapi

from tests import redisproc


async def connect(server: redisproc.RedisProcess):
    """One txredisapi connection to ``server``, replies as bytes, no reconnecting."""
    return await txredisapi.Connection(server.host, server.port, dbid=0, reconnect=False,
                                       charset=None, convertNumbers=False)


def events(n: int, start: int = 1) -> list[tuple[bytes, bytes]]:
    """``n`` room events as a stream entry's fields would carry them: seq and the line."""
    return [(b"%d" % i, b":alice!a@127.0.0.1 PRIVMSG #room :line %d" % i)
            for i in range(start, start + n)]


async def append(conn, key: str, items: list[tuple[bytes, bytes]]) -> list[bytes]:
    """XADD each (seq, line) to ``key`` in order; the ids Redis gave them."""
    return [await conn.execute_command("XADD", key, "*", "seq", seq, "line", line)
            for seq, line in items]


async def read_all(conn, key: str) -> list[tuple[bytes, bytes]]:
    """XRANGE - + of ``key`` as (seq, line) pairs."""
    reply = await conn.execute_command("XRANGE", key, "-", "+")
    out = []
    for _id, fields in reply:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append((values[b"seq"], values[b"line"]))
    return out


async def blocked(conn, n: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until Redis counts ``n`` clients blocked (XREAD BLOCK reached it)."""
    from twisted.internet import reactor, task

    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        info = await conn.execute_command("INFO", "clients")
        if b"blocked_clients:%d\r\n" % n in info:
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"not {n} blocked clients within {timeout} s: {info!r}")


def test_server_answers_on_its_own_port(redis_server):
    """The session's server answers PING on loopback, on a port of its own, not 6379."""
    assert redis_server.ping()
    assert redis_server.host == "127.0.0.1"
    assert redis_server.port != 6379
    assert redis_server.proc.poll() is None
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


@pytest_twisted.ensureDeferred
async def test_settings_come_from_the_command_line(redis_server):
    """No config file is read: the data directory is the test's, nothing is saved."""
    conn = await connect(redis_server)
    try:
        assert await conn.execute_command("CONFIG", "GET", "dir") == [
            b"dir", str(redis_server.workdir).encode()]
        assert await conn.execute_command("CONFIG", "GET", "save") == [b"save", b""]
        assert await conn.execute_command("CONFIG", "GET", "appendonly") == [
            b"appendonly", b"no"]
        assert await conn.execute_command("CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]
    finally:
        await conn.disconnect()


@pytest_twisted.ensureDeferred
async def test_each_test_gets_an_empty_database(redis_server):
    """The shared server is flushed before every test that asks for it."""
    conn = await connect(redis_server)
    try:
        assert await conn.execute_command("DBSIZE") == 0
        await conn.execute_command("SET", "left:behind", "1")
        redis_server.flush()
        assert await conn.execute_command("DBSIZE") == 0
    finally:
        await conn.disconnect()


@pytest_twisted.ensureDeferred
async def test_xadd_xrange_round_trip(redis_server):
    """Events XADDed to a room's stream come back from XRANGE in order, byte for byte."""
    conn = await connect(redis_server)
    try:
        sent = events(50)
        ids = await append(conn, "room:#room", sent)
        assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split(b"-")))
        assert len(set(ids)) == 50
        assert await read_all(conn, "room:#room") == sent
        assert await conn.execute_command("XLEN", "room:#room") == 50
    finally:
        await conn.disconnect()


@pytest_twisted.ensureDeferred
async def test_maxlen_keeps_the_newest(redis_server):
    """XADD MAXLEN = n (what --history-per-room maps to) keeps the n newest events."""
    conn = await connect(redis_server)
    try:
        for seq, line in events(30):
            await conn.execute_command("XADD", "room:#small", "MAXLEN", "=", "10", "*",
                                       "seq", seq, "line", line)
        assert await read_all(conn, "room:#small") == events(10, start=21)
    finally:
        await conn.disconnect()


@pytest_twisted.ensureDeferred
async def test_xread_block_wakes_on_xadd(redis_server):
    """A reader blocked in XREAD on a second connection gets the event another XADDs."""
    reader = await connect(redis_server)
    writer = await connect(redis_server)
    try:
        waiting = reader.execute_command("XREAD", "BLOCK", "5000", "STREAMS", "room:#live", "$")
        await blocked(writer, 1)
        [(seq, line)] = events(1)
        await writer.execute_command("XADD", "room:#live", "*", "seq", seq, "line", line)
        [[key, [[_id, fields]]]] = await waiting
        assert key == b"room:#live"
        assert fields == [b"seq", seq, b"line", line]
    finally:
        await reader.disconnect()
        await writer.disconnect()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("how", ["sigterm", "kill -9"])
async def test_appendonly_restart_keeps_the_stream(redis_factory, how):
    """With the append-only file on, a restarted Redis (even after kill -9) has the stream."""
    server = redis_factory(appendonly=True)
    conn = await connect(server)
    sent = events(100)
    await append(conn, "room:#kept", sent)
    await conn.disconnect()

    if how == "sigterm":
        assert server.stop() == 0
    else:
        server.kill()
    server.start()

    conn = await connect(server)
    try:
        assert await read_all(conn, "room:#kept") == sent
    finally:
        await conn.disconnect()


@pytest_twisted.ensureDeferred
async def test_without_persistence_a_restart_loses_the_stream(redis_factory):
    """Without persistence the stream is gone after a restart: the lost-stream case."""
    server = redis_factory()
    conn = await connect(server)
    await append(conn, "room:#lost", events(5))
    await conn.disconnect()

    server.restart()

    conn = await connect(server)
    try:
        assert await conn.execute_command("EXISTS", "room:#lost") == 0
    finally:
        await conn.disconnect()


def test_a_missing_binary_is_named(monkeypatch, tmp_path):
    """Without redis-server the message names the Debian package to install."""
    monkeypatch.setattr(redisproc, "redis_server_path", lambda: None)
    with pytest.raises(RuntimeError, match=r"Debian package redis-server"):
        redisproc.RedisProcess(tmp_path).start()
    assert redisproc.MISSING == "redis-server is not installed (Debian package redis-server)"


def test_a_picked_port_taken_meanwhile_is_picked_again(monkeypatch, tmp_path):
    """A free port someone takes before Redis binds it: the first start moves on."""
    if redisproc.redis_server_path() is None:
        pytest.skip(redisproc.MISSING)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([taken])
        real = redisproc.free_tcp_port
        monkeypatch.setattr(redisproc, "free_tcp_port",
                            lambda host="127.0.0.1": next(picks, None) or real(host))
        server = redisproc.RedisProcess(tmp_path)
        try:
            server.start()
            assert server.port != taken
            assert server.ping()
            server.restart()
            assert server.ping()
        finally:
            server.stop()
