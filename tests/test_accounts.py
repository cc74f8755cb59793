"""The core's account directory (twistchat.core.accounts): found at once, every change saved."""

from __future__ import annotations

import pytest

from tests.test_registry import joined, make
from twistchat.core.accounts import Account, AccountDirectory
from twistchat.core.events import deliver


def test_accounts_are_found_case_insensitively_and_reserve_their_nick():
    directory = AccountDirectory([Account("Teacher", "hash")])
    assert directory.find("teacher").name == "Teacher"
    assert directory.owner_of("TEACHER").name == "Teacher"
    assert directory.find("student") is None and len(directory) == 1


def test_every_change_reaches_the_saver():
    saved = []
    directory = AccountDirectory(saver=lambda key, account: saved.append((key, account)))
    teacher = Account("Teacher", "hash")
    directory.add(teacher)
    teacher.certfps.add("ab" * 32)
    directory.changed(teacher)
    directory.remove("TEACHER")
    assert saved == [("teacher", teacher), ("teacher", teacher), ("teacher", None)]


def test_a_taken_name_is_refused():
    directory = AccountDirectory([Account("teacher")])
    with pytest.raises(ValueError):
        directory.add(Account("TEACHER"))


def test_certificate_fingerprints_find_their_account_until_removed():
    teacher = Account("teacher", certfps={"AB" * 32})
    directory = AccountDirectory([teacher])
    assert directory.by_certfp("ab" * 32) is teacher
    teacher.certfps = set()
    directory.changed(teacher)
    assert directory.by_certfp("ab" * 32) is None


def test_log_in_says_900_and_tells_peers_with_account_notify():
    """900 to the user; its peers get ACCOUNT, gated on account-notify."""
    registry, _ = make()
    registry.accounts.add(Account("Teacher", "hash"))
    teacher, conn = joined(registry, "teacher", "#class")
    _, seen = joined(registry, "student", "#class")
    conn.got.clear()  # the student's JOIN
    deliver(registry.log_in(teacher, "teacher"))
    assert teacher.account == "Teacher"
    assert [(m.command, m.params[1:]) for m in conn.got] == [
        ("900", ("teacher!teacher@" + teacher.host, "Teacher",
                 "You are now logged in as Teacher"))]
    assert [(g.cap, g.message.command, g.message.params) for g in seen.got] == [
        ("account-notify", "ACCOUNT", ("Teacher",))]
    conn.got.clear()
    deliver(registry.log_in(teacher, "teacher"))  # again: 900 again, peers told nothing new
    assert [m.command for m in conn.got] == ["900"] and len(seen.got) == 1


def test_log_out_says_901_and_account_star():
    """901 to the user; its peers get ACCOUNT *."""
    registry, _ = make()
    teacher, conn = joined(registry, "teacher", "#class")
    _, seen = joined(registry, "student", "#class")
    assert registry.log_out(teacher) == []  # not logged in: nothing to say
    deliver(registry.log_in(teacher, "teacher"))
    conn.got.clear()
    seen.got.clear()
    deliver(registry.log_out(teacher))
    assert teacher.account is None and [m.command for m in conn.got] == ["901"]
    assert [g.message.params for g in seen.got] == [("*",)]
