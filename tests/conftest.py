"""Shared fixtures: the real server on loopback, a real redis-server (issue #15)."""

import pytest

from tests.memory import MemoryServer
from tests.probe import Probe
from tests.redisproc import MISSING, RedisProcess, redis_server_path
from tests.serverproc import ServerProcess
from tests.udpnet import UDPWorld


@pytest.fixture
def chat_server(tmp_path):
    """
    Start ``twistd -n chat`` with extra arguments: ``chat_server("--motd", path)``.

    Every server started is stopped by pid when the test ends.
    """
    started = []

    def start(*args, **kwargs):
        server = ServerProcess(tmp_path, *args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def world():
    """
    A UDP front-end and its fake network on one clock (tests.udpnet.UDPWorld).

    Stopped after the test, with the datagrams still in flight delivered; no timer
    may be left running.
    """
    w = UDPWorld()
    yield w
    w.stop()
    w.clock.advance(0)  # datagrams still in flight
    assert not [c for c in w.clock.getDelayedCalls() if c.active()], "timers left running"


@pytest.fixture(autouse=True)
def _close_probes():
    """Real-socket probes (tests.probe) a test left open are closed when it ends."""
    yield
    while Probe.open:
        Probe.open.pop().close()


@pytest.fixture
def mixed():
    """A TCP server and a UDP front-end on one registry and clock (no sockets)."""
    server = MemoryServer()
    w = UDPWorld(registry=server.registry, clock=server.clock)
    yield server, w
    w.stop()


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory):
    """
    One ``redis-server`` for the whole session (tests.redisproc), on a free loopback port.

    Started at the first test that asks for it, stopped by pid at the session's end;
    without the binary every test that needs it skips, naming the Debian package.
    """
    if redis_server_path() is None:
        pytest.skip(MISSING)
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_server_session):
    """The session's ``redis-server``, emptied (FLUSHALL) before this test."""
    if not redis_server_session.ping():
        # A test that stopped the shared server (it should use redis_factory) must not
        # break the ones after it.
        redis_server_session.restart()
    redis_server_session.flush()
    return redis_server_session


@pytest.fixture
def redis_factory(tmp_path):
    """
    Start servers of this test's own: ``redis_factory(appendonly=True)``.

    For tests that restart or kill Redis, or need persistence; each server started
    is stopped by pid when the test ends.
    """
    if redis_server_path() is None:
        pytest.skip(MISSING)
    started = []

    def start(**kwargs):
        server = RedisProcess(tmp_path / f"redis{len(started)}", **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
