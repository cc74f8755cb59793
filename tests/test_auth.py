"""
Account passwords (twistchat.auth): checked off the reactor thread, guessing bounded.

Rules run with a fast stand-in hasher and a plain clock; one test hashes with
the real argon2id in its thread pool under the running reactor.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed

from twistchat.auth import (
    ACCOUNT_BURST,
    ADDRESS_BURST,
    MAX_PASSWORD_BYTES,
    MAX_QUEUED,
    Argon2Hasher,
    Authenticator,
    AuthFailed,
)
from twistchat.core.accounts import AccountDirectory


class QuickHasher:
    """A reversible stand-in for argon2 that answers at once and counts its work."""

    def __init__(self) -> None:
        self.work = 0

    def hash(self, password):
        self.work += 1
        return succeed("quick$" + password[::-1])

    def verify(self, credential, password):
        self.work += 1
        return succeed(credential == "quick$" + password[::-1])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def made(*accounts):
    auth = Authenticator(AccountDirectory(), QuickHasher(), Clock())
    for name, password in accounts:
        auth.create(name, password)
    return auth


def result(d):
    """The result of a Deferred that has fired; AuthFailed's code if it failed."""
    out = []
    d.addCallbacks(out.append, lambda f: out.append(f.trap(AuthFailed) and f.value.code))
    assert out, "the Deferred has not fired"
    return out[0]


def test_the_right_password_logs_in_and_a_wrong_one_is_invalid():
    auth = made(("teacher", "s3cret"))
    assert result(auth.check_password("127.0.0.1", "TEACHER", "s3cret")).name == "teacher"
    assert result(auth.check_password("127.0.0.1", "teacher", "wrong")) == "invalid"


def test_an_unknown_account_costs_a_hash_and_says_invalid_too():
    auth = made()
    before = auth.hasher.work
    assert result(auth.check_password("127.0.0.1", "nobody", "x")) == "invalid"
    assert result(auth.check_password("127.0.0.1", "nobody", "x")) == "invalid"
    assert auth.hasher.work == before + 2  # the work is spent, so timing tells nothing


def test_guesses_from_one_address_are_limited_then_refill():
    auth = made(("teacher", "s3cret"))
    for _ in range(ADDRESS_BURST):
        assert result(auth.check_password("127.0.0.1", "teacher", "wrong")) == "invalid"
    work = auth.hasher.work
    assert result(auth.check_password("127.0.0.1", "teacher", "s3cret")) == "rate-limited"
    assert auth.hasher.work == work  # refused without hashing
    assert result(auth.check_password("127.0.0.2", "teacher", "s3cret")).name == "teacher"
    auth.clock.now += 5  # one attempt per 5 s
    assert result(auth.check_password("127.0.0.1", "teacher", "s3cret")).name == "teacher"


def test_guesses_at_one_account_from_many_addresses_are_limited():
    auth = made(("teacher", "s3cret"))
    for n in range(ACCOUNT_BURST):
        assert result(auth.check_password(f"127.0.1.{n}", "teacher", "wrong")) == "invalid"
    assert result(auth.check_password("127.0.2.1", "teacher", "s3cret")) == "rate-limited"


def test_right_passwords_cost_no_attempt():
    auth = made(("teacher", "s3cret"))
    for _ in range(ADDRESS_BURST * 3):
        assert result(auth.check_password("127.0.0.1", "teacher", "s3cret")).name == "teacher"


@pytest.mark.parametrize("password", ["", "x" * (MAX_PASSWORD_BYTES + 1)])
def test_empty_and_over_long_passwords_are_refused_before_hashing(password):
    auth = made()
    assert result(auth.create("teacher", password)) == "bad-password"
    assert auth.hasher.work == 0


def test_a_taken_name_cannot_be_registered_again():
    auth = made(("teacher", "s3cret"))
    assert result(auth.create("Teacher", "other")) == "exists"


class PendingHasher:
    """A hasher whose jobs never finish: the queue only fills."""

    def __init__(self) -> None:
        self.started = 0

    def hash(self, password):
        self.started += 1
        return Deferred()


def test_a_full_queue_says_busy_without_starting_more_work():
    auth = Authenticator(AccountDirectory(), PendingHasher(), Clock())
    for n in range(MAX_QUEUED):
        auth.create(f"user{n}", "pw")
    assert result(auth.create("late", "pw")) == "busy"
    assert auth.hasher.started == MAX_QUEUED


def test_set_password_replaces_the_old_one():
    auth = made(("teacher", "s3cret"))
    result(auth.set_password("teacher", "n3w"))
    assert result(auth.check_password("127.0.0.1", "teacher", "s3cret")) == "invalid"
    assert result(auth.check_password("127.0.0.1", "teacher", "n3w")).name == "teacher"


@pytest_twisted.ensureDeferred
async def test_argon2id_hashes_in_threads_and_checks():
    from twisted.internet import reactor
    hasher = Argon2Hasher(reactor)
    credential = await hasher.hash("s3cret")
    assert credential.startswith("$argon2id$") and "s3cret" not in credential
    assert await hasher.verify(credential, "s3cret") is True
    assert await hasher.verify(credential, "wrong") is False
    assert await hasher.verify("not a hash", "s3cret") is False
