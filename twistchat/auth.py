"""
Account passwords: argon2id off the reactor thread, and the limits on guessing.

test-case-name: tests.test_auth

A check takes tens of milliseconds and 64 MiB (argon2-cffi's RFC 9106
low-memory profile), so it never runs in the reactor's thread: a small
``ThreadPool`` does it and answers through a Deferred.  Guessing is bounded
twice, per source address and per account, each a token bucket (a burst, then
one attempt every few seconds); a guess over either limit fails at once,
without hashing, so a flood of wrong passwords costs the server almost nothing
and the pool's queue stays short.  Over the pool's queue bound, checks fail
with ``"busy"`` rather than wait.  Passwords are never logged or kept.

The front-ends (SASL), the services (NickServ) and the account tool call
:class:`Authenticator`; the account directory they read and change is the
core's (:mod:`twistchat.core.accounts`).  Design: docs/accounts.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

import argon2
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from twistchat.core.accounts import Account, AccountDirectory
from twistchat.core.ratelimit import KeyedBuckets

__all__ = [
    "ADDRESS_BURST", "ADDRESS_RATE", "ACCOUNT_BURST", "ACCOUNT_RATE", "MAX_PASSWORD_BYTES",
    "MAX_QUEUED", "Argon2Hasher", "AuthFailed", "Authenticator", "PasswordHasher",
    "acceptable_password",
]

# Failed-login limits: a burst of tries, then one every 1/rate seconds.
ADDRESS_BURST, ADDRESS_RATE = 5, 0.2  # per source address: 5, then one per 5 s
ACCOUNT_BURST, ACCOUNT_RATE = 10, 0.1  # per account, from anywhere: 10, then one per 10 s
MAX_TRACKED = 4096  # addresses and accounts remembered (oldest forgotten first)
MAX_QUEUED = 32  # hash jobs waiting for the pool; beyond, "busy"
MAX_PASSWORD_BYTES = 512  # longer passwords are refused before hashing


def acceptable_password(password: str) -> bool:
    """Worth hashing: not empty, and at most :data:`MAX_PASSWORD_BYTES` bytes of UTF-8."""
    return 0 < len(password.encode("utf-8")) <= MAX_PASSWORD_BYTES


class AuthFailed(Exception):
    """
    A login or registration refused; ``code`` says why, for the reply.

    ``"invalid"``: no such account or a wrong password (the two are not told
    apart); ``"rate-limited"``: too many failures, try later; ``"busy"``: the
    hashing queue is full; ``"exists"``: the name is taken; ``"bad-password"``:
    empty or over :data:`MAX_PASSWORD_BYTES`.
    """

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class PasswordHasher(Protocol):
    """Makes and checks password hashes, answering later (never in the caller's turn)."""

    def hash(self, password: str) -> Deferred[str]:
        """The encoded hash of ``password`` (a fresh salt each time)."""

    def verify(self, credential: str, password: str) -> Deferred[bool]:
        """Does ``password`` match ``credential``?  False for a malformed one."""


# How much lower than the reactor's the hashing threads' scheduling priority is (nice).
HASH_NICENESS = 10


def _yield_to_the_reactor() -> None:
    """
    Lower this (hashing) thread's priority, once: the reactor thread must win the CPU.

    argon2 is CPU-bound in C (the GIL released) and runs its lanes in threads of its
    own, which inherit this one's niceness.  On a two-core machine a few hashes at the
    reactor's priority delayed its timers by tens of milliseconds; at +10 the kernel
    runs the reactor first whenever it is ready.  Linux: per-thread niceness
    (setpriority on the thread's id); elsewhere it is left as it is.
    """
    if getattr(_hashing_thread, "lowered", False):
        return
    _hashing_thread.lowered = True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)
    except (AttributeError, OSError):
        pass


_hashing_thread = threading.local()


class Argon2Hasher:
    """
    argon2id in a pool of ``threads`` threads (started and stopped with the reactor).

    One thread by default: a check already uses several cores (argon2's lanes), and
    a second concurrent check would only queue behind it for the same cores while
    taking the reactor's; the pool runs at a lower priority (:data:`HASH_NICENESS`).
    """

    def __init__(self, reactor: Any, threads: int = 1,
                 hasher: argon2.PasswordHasher | None = None) -> None:
        self._reactor = reactor
        self._argon2 = hasher or argon2.PasswordHasher()
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="twistchat-argon2")
        self._started = False

    def _run(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if not self._started:
            self._started = True
            self._pool.start()
            self._reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def hash(self, password: str) -> Deferred[str]:
        return self._run(self._hash, password)

    def verify(self, credential: str, password: str) -> Deferred[bool]:
        return self._run(self._verify, credential, password)

    def _hash(self, password: str) -> str:
        _yield_to_the_reactor()
        return self._argon2.hash(password)

    def _verify(self, credential: str, password: str) -> bool:
        _yield_to_the_reactor()
        try:
            return bool(self._argon2.verify(credential, password))  # constant time inside
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False


class Authenticator:
    """
    Checks passwords against the account directory, and makes accounts.

    ``clock()`` gives seconds (the reactor's); ``hasher`` does the slow part.
    Every answer is a Deferred, failing with :class:`AuthFailed`.
    """

    def __init__(self, directory: AccountDirectory, hasher: PasswordHasher,
                 clock: Callable[[], float]) -> None:
        self.directory = directory
        self.hasher = hasher
        self.clock = clock
        self._by_address = KeyedBuckets(ADDRESS_BURST, ADDRESS_RATE, MAX_TRACKED)
        self._by_account = KeyedBuckets(ACCOUNT_BURST, ACCOUNT_RATE, MAX_TRACKED)
        self._queued = 0
        # A hash to check unknown names against, so they cost what a real check costs.
        self._dummy: str | None = None

    def check_password(self, address: str, name: str, password: str) -> Deferred[Account]:
        """The account ``name`` if ``password`` is its password (from ``address``)."""
        now = self.clock()
        account = self.directory.find(name)
        key = account.key if account is not None else name.lower()
        if not self._by_address.take(address, now) or not self._by_account.take(key, now):
            return fail(AuthFailed("rate-limited"))
        if not acceptable_password(password):
            return fail(AuthFailed("invalid"))
        credential = account.credential if account is not None and account.credential \
            else self._dummy
        if credential is None:  # no dummy yet: make one, the real work is spent either way
            return self._queue(self.hasher.hash, password).addCallback(
                self._remember_dummy).addCallback(lambda _: _invalid())

        def checked(ok: bool) -> Account:
            if not ok or account is None or not account.credential:
                raise AuthFailed("invalid")
            self._by_address.give_back(address)  # a right password costs no attempt
            self._by_account.give_back(key)
            return account

        return self._queue(self.hasher.verify, credential, password).addCallback(checked)

    def create(self, name: str, password: str, email: str = "") -> Deferred[Account]:
        """A new account ``name`` with ``password``, added to the directory once hashed."""
        if not acceptable_password(password):
            return fail(AuthFailed("bad-password"))
        if self.directory.find(name) is not None:
            return fail(AuthFailed("exists"))

        def hashed(credential: str) -> Account:
            if self.directory.find(name) is not None:  # taken while we hashed
                raise AuthFailed("exists")
            account = Account(name, credential, email, self.clock())
            self.directory.add(account)
            return account

        return self._queue(self.hasher.hash, password).addCallback(hashed)

    def set_password(self, name: str, password: str) -> Deferred[Account]:
        """A new password for the existing account ``name``."""
        if not acceptable_password(password):
            return fail(AuthFailed("bad-password"))
        if self.directory.find(name) is None:
            return fail(AuthFailed("invalid"))

        def hashed(credential: str) -> Account:
            account = self.directory.find(name)
            if account is None:
                raise AuthFailed("invalid")
            account.credential = credential
            self.directory.changed(account)
            return account

        return self._queue(self.hasher.hash, password).addCallback(hashed)

    def by_certfp(self, certfp: str) -> Deferred[Account]:
        """The account that added this TLS client certificate (SASL EXTERNAL)."""
        account = self.directory.by_certfp(certfp)
        return succeed(account) if account is not None else fail(AuthFailed("invalid"))

    def _queue(self, job: Callable[..., Deferred[Any]], *args: Any) -> Deferred[Any]:
        """Start ``job(*args)`` on the hasher unless :data:`MAX_QUEUED` already wait."""
        if self._queued >= MAX_QUEUED:
            return fail(AuthFailed("busy"))
        self._queued += 1
        d = job(*args)

        def done(result: Any) -> Any:
            self._queued -= 1
            return result

        return d.addBoth(done)

    def _remember_dummy(self, credential: str) -> None:
        self._dummy = credential


def _invalid() -> Account:
    raise AuthFailed("invalid")
