"""The core's account directory (twistchat.core.accounts): found at once, every change saved."""

from __future__ import annotations

import pytest

from twistchat.core.accounts import Account, AccountDirectory


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
