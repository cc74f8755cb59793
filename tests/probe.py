"""
A real-socket IRC client for tests that reads every reply to what it sent.

After the lines it sends, a :class:`Probe` sends a ``PING`` mark and reads until
the matching ``PONG``: everything in between is the server's answer, so a test
asserts on whole replies without sleeping.  Probes still open when a test ends
are closed by an autouse fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import itertools
import time

from tests.serverproc import LineClient, ServerProcess
from twistchat.wire import Message, parse

_names = (f"u{n}" for n in itertools.count())


class Probe:
    """A real-socket client that reads every reply to what it sent (a PING marks the end)."""

    open: list[Probe] = []  # closed after each test

    def __init__(self, server: ServerProcess, caps: str = "", nick: str | None = None) -> None:
        self.client = LineClient(server.host, server.port)
        Probe.open.append(self)
        self.nick = nick or new_nick()
        self.marks = itertools.count()
        if caps:
            self.client.send(f"CAP REQ :{caps}")
        self.client.send(f"NICK {self.nick}", f"USER {self.nick} 0 * :{self.nick} Real")
        if caps:
            self.client.send("CAP END")
        self.welcome = self.ask()

    def ask(self, *lines: str) -> list[Message]:
        """Send ``lines``; every line the server sends until it answers a PING after them."""
        mark = f"mark{next(self.marks)}"
        self.client.send(*lines, f"PING {mark}")
        got = []
        while True:
            line = self.client.read_line(deadline())
            message = parse(line.encode(), max_body=8192)
            if message.command == "PONG" and message.params[-1] == mark:
                return got
            got.append(message)

    def join(self, room: str, key: str | None = None) -> list[Message]:
        return self.ask(f"JOIN {room} {key}" if key else f"JOIN {room}")

    def close(self) -> None:
        self.client.close()


def deadline() -> float:
    """Ten seconds from now: how long a reply may take."""
    return time.monotonic() + 10


def codes(messages: list[Message]) -> list[str]:
    return [m.command for m in messages]


def one(messages: list[Message], command: str) -> Message:
    found = [m for m in messages if m.command == command]
    assert found, f"no {command} in {[str(m) for m in messages]}"
    return found[0]


def new_nick() -> str:
    """A nick no other probe of this test run has used."""
    return next(_names)
