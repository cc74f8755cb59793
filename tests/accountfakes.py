"""
Fakes for the account tests: an authenticator on a fast hasher, a hasher that waits.

Not a test module: ``tests.test_sasl`` and ``tests.test_services`` use it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from tests.test_auth import QuickHasher
from twistchat.auth import Authenticator


def quick_accounts(registry, *accounts):
    """An Authenticator over ``registry.accounts`` with QuickHasher; ``(name, password)`` made."""
    auth = Authenticator(registry.accounts, QuickHasher(), registry.clock)
    for name, password in accounts:
        auth.create(name, password)
    return auth


class WaitingHasher(QuickHasher):
    """QuickHasher's answers, given only when the test calls :meth:`finish`."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list = []

    def hash(self, password):
        return self._later(super().hash(password))

    def verify(self, credential, password):
        return self._later(super().verify(credential, password))

    def _later(self, fired):
        d = Deferred()
        self.waiting.append((d, fired))
        return d

    def finish(self) -> None:
        """Answer every check waiting, oldest first."""
        waiting, self.waiting = self.waiting, []
        for d, fired in waiting:
            fired.addCallback(d.callback)


class FakeCert:
    """What ``getPeerCertificate()`` gives: only ``digest`` is asked."""

    def __init__(self, hex_digest: str) -> None:
        self.hex = hex_digest

    def digest(self, name: str) -> bytes:
        assert name == "sha256"
        return ":".join(self.hex[i:i + 2].upper() for i in range(0, 64, 2)).encode()


def with_cert(client, hex_digest: str | None) -> None:
    """Give a MemoryClient's transport a TLS client certificate (None: TLS without one)."""
    client.transport.getPeerCertificate = \
        lambda: FakeCert(hex_digest) if hex_digest is not None else None
