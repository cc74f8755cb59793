"""
What the password-flood test and benchmark share: a PING round-trip probe and a counting hasher.

Both run under the real reactor in one process: :class:`Pinger` sends ``PING <t>``
over a loopback connection to :class:`Echo` and times each answer (so a blocked
reactor shows as a long round trip); :class:`CountingHasher` wraps the real
``Argon2Hasher`` and counts how many checks reached argon2
(tests/test_auth_flood.py, bench/auth_bench.py).
"""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineReceiver

from twistchat.auth import Argon2Hasher


class Echo(LineReceiver):
    """The other client's server side: answers every line at once."""

    delimiter = b"\n"

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(b"PONG " + line[5:])


class Pinger(LineReceiver):
    """Sends ``PING <t>`` and records each round trip (seconds)."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self.rtts: list[float] = []
        self.sent: dict[bytes, float] = {}
        self.count = 0

    def ping(self) -> None:
        self.count += 1
        token = str(self.count).encode()
        self.sent[token] = time.perf_counter()
        self.sendLine(b"PING " + token)

    def lineReceived(self, line: bytes) -> None:
        started = self.sent.pop(line[5:], None)
        if started is not None:
            self.rtts.append(time.perf_counter() - started)


class CountingHasher:
    """The real Argon2Hasher, counting its verifications."""

    def __init__(self, inner: Argon2Hasher) -> None:
        self.inner = inner
        self.verified = 0

    def hash(self, password: str) -> Deferred:
        return self.inner.hash(password)

    def verify(self, credential: str, password: str) -> Deferred:
        self.verified += 1
        return self.inner.verify(credential, password)
