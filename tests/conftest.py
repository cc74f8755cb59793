"""Shared fixtures: the real server on loopback."""

import pytest

from tests.memory import MemoryServer
from tests.probe import Probe
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
