"""Shared fixtures: the real server on loopback."""

import pytest

from tests.serverproc import ServerProcess


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
