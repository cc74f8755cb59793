"""
Operator password hashes: scrypt, written ``scrypt$n$r$p$salt$hash``.

test-case-name: tests.test_operators

One job: make a hash of a password (``python -m twistchat.operhash`` prints one)
and check a password against it in constant time.  ``salt`` and ``hash`` are
standard base64; ``n``, ``r``, ``p`` are scrypt's cost (RFC 7914), kept in the
hash so old entries still verify after the defaults change.

The costs a hash may name are bounded (:func:`parse_hash`): the server checks
a password on the reactor thread, so one OPER attempt must stay short.  At
the default n=2**14, r=8, p=1 a check takes 16 MiB and some 30-60 ms on one
core; OPER failures are rate limited per address (core/operators.py), so an
attacker gets a handful of those per minute per address.  Moving the check to
a thread would need the core to answer later (a Deferred): not worth it for a
command this rare.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

__all__ = ["DEFAULT_COST", "ScryptHash", "hash_password", "parse_hash", "verify_password"]

SCHEME = "scrypt"
# (n, r, p): scrypt's recommended interactive cost (RFC 7914 section 2 uses r=8, p=1).
DEFAULT_COST = (2 ** 14, 8, 1)
SALT_BYTES = 16
KEY_BYTES = 32
# Bounds on a hash's cost: n a power of two up to 2**17, r up to 16, p up to 4,
# and at most 64 MiB of scrypt memory (128 * n * r bytes) for one check.
MAX_N = 2 ** 17
MAX_R = 16
MAX_P = 4
MAX_MEMORY = 64 * 1024 * 1024


@dataclass(frozen=True)
class ScryptHash:
    """A parsed ``scrypt$n$r$p$salt$hash``."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        """The hash as one token of an opers file line."""
        return "$".join((SCHEME, str(self.n), str(self.r), str(self.p),
                         base64.b64encode(self.salt).decode("ascii"),
                         base64.b64encode(self.key).decode("ascii")))


def _derive(password: str, n: int, r: int, p: int, salt: bytes, length: int) -> bytes:
    # maxmem: hashlib's default (32 MiB) is below the largest cost we accept.
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=MAX_MEMORY + 1024 * 1024, dklen=length)


def hash_password(password: str, cost: tuple[int, int, int] = DEFAULT_COST,
                  salt: bytes | None = None) -> str:
    """A new hash of ``password`` with a random salt (``salt`` only for tests)."""
    n, r, p = cost
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    _check_cost(n, r, p)
    return ScryptHash(n, r, p, salt, _derive(password, n, r, p, salt, KEY_BYTES)).encode()


def _check_cost(n: int, r: int, p: int) -> None:
    if n < 2 or n & (n - 1) or n > MAX_N:
        raise ValueError(f"scrypt n must be a power of two from 2 to {MAX_N}, got {n}")
    if not 1 <= r <= MAX_R:
        raise ValueError(f"scrypt r must be 1-{MAX_R}, got {r}")
    if not 1 <= p <= MAX_P:
        raise ValueError(f"scrypt p must be 1-{MAX_P}, got {p}")
    if 128 * n * r > MAX_MEMORY:
        raise ValueError(f"scrypt n*r too costly: {128 * n * r} bytes, at most {MAX_MEMORY}")


def parse_hash(text: str) -> ScryptHash:
    """``scrypt$n$r$p$salt$hash`` as a value; ValueError saying what is wrong."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("not a scrypt$n$r$p$salt$hash hash "
                         "(make one with: python -m twistchat.operhash)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
    except ValueError:
        raise ValueError("scrypt n, r and p must be whole numbers") from None
    _check_cost(n, r, p)
    try:
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("salt and hash must be base64") from None
    if not salt or len(key) < 16:
        raise ValueError("salt is empty or hash shorter than 16 bytes")
    return ScryptHash(n, r, p, salt, key)


def verify_password(password: str, stored: ScryptHash) -> bool:
    """True if ``password`` hashes to ``stored``; the comparison takes constant time."""
    derived = _derive(password, stored.n, stored.r, stored.p, stored.salt, len(stored.key))
    return hmac.compare_digest(derived, stored.key)
