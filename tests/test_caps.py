"""
IRCv3 capabilities of issue #13 on the TCP side, in memory (StringTransport, task.Clock).

One section per capability: CAP LS 302 and cap-notify, userhost-in-names,
extended-join, invite-notify, setname, chghost, MONITOR, bot mode,
no-implicit-names, client-only tags.  Registry-level rules are tested beside
them with no I/O; the end-to-end test is in tests/test_caps_e2e.py.
"""

import pytest

from tests.memory import MemoryServer, first
from twistchat.frontends import ircv3


@pytest.fixture
def server():
    return MemoryServer()


def ls_words(messages):
    """Every capability word of a (possibly multi-line) CAP LS or LIST answer."""
    words = []
    for m in messages:
        if m.command == "CAP":
            words += m.params[-1].split()
    return words


# ------------------------------------------------------------- CAP LS 302, cap-notify


def test_cap_ls_302_offers_cap_notify_and_turns_it_on(server):
    """CAP LS 302 offers cap-notify and enables it by itself (CAP LIST shows it)."""
    client = server.connect()
    assert "cap-notify" in ls_words(client.ask("CAP LS 302"))
    assert ls_words(client.ask("CAP LIST")) == ["cap-notify"]


def test_cap_ls_without_version_does_not_enable_cap_notify(server):
    """Plain CAP LS (version 301) implies nothing: CAP LIST stays empty."""
    client = server.connect()
    client.ask("CAP LS")
    assert ls_words(client.ask("CAP LIST")) == []


def test_cap_notify_can_be_requested(server):
    """A pre-302 client may CAP REQ cap-notify (ACK), and turn it off again."""
    client = server.connect()
    assert first(client.ask("CAP REQ cap-notify"), "CAP").params[1:] == ("ACK", "cap-notify")
    assert ls_words(client.ask("CAP LIST")) == ["cap-notify"]
    assert first(client.ask("CAP REQ -cap-notify"), "CAP").params[1] == "ACK"
    assert ls_words(client.ask("CAP LIST")) == []


def test_302_client_cannot_turn_cap_notify_off(server):
    """After CAP LS 302, CAP REQ -cap-notify is refused (NAK) and cap-notify stays."""
    client = server.connect()
    client.ask("CAP LS 302")
    assert first(client.ask("CAP REQ -cap-notify"), "CAP").params[1] == "NAK"
    assert "cap-notify" in ls_words(client.ask("CAP LIST"))


def test_cap_values_only_for_302(server, monkeypatch):
    """``cap=value`` words go to CAP LS 302 clients; older clients get the bare name."""
    monkeypatch.setitem(ircv3.CAP_VALUES, "batch", "x=1")
    new, old = server.connect(), server.connect()
    assert "batch=x=1" in ls_words(new.ask("CAP LS 302"))
    words = ls_words(old.ask("CAP LS"))
    assert "batch" in words and not any("=" in w for w in words)


@pytest.mark.parametrize("words, room, lines", [
    (["a", "b"], 400, [("n", "LS", "a b")]),
    (["aaaa", "bbbb", "cccc"], 9, [("n", "LS", "*", "aaaa bbbb"), ("n", "LS", "cccc")]),
    (["aaaa", "bbbb", "cccc"], 4, [("n", "LS", "*", "aaaa"), ("n", "LS", "*", "bbbb"),
                                   ("n", "LS", "cccc")]),
    ([], 400, [("n", "LS", "")]),
])
def test_cap_lines_split_with_star_marker(words, room, lines):
    """Multi-line LS: every line but the last carries ``*``; none passes ``room`` bytes."""
    assert ircv3.cap_lines("n", "LS", words, True, room) == lines


def test_long_cap_ls_302_is_split_and_pre_302_is_one_line(server, monkeypatch):
    """A long offer: several ``CAP * LS * :...`` lines for 302, every line under 512 bytes."""
    many = tuple(f"vendor.example/cap-{i:03}" for i in range(40))
    monkeypatch.setattr(ircv3, "CAPABILITIES", ircv3.CAPABILITIES + many)
    client = server.connect()
    client.take()
    client.send("CAP LS 302")
    raw = client.transport.value().split(b"\r\n")[:-1]
    got = client.take()
    assert len(got) > 1
    assert all(m.params[2] == "*" for m in got[:-1]) and got[-1].params[2] != "*"
    assert all(len(line) + 2 <= 512 for line in raw)
    assert set(many) <= set(ls_words(got)) - {"*"}
    assert len([m for m in server.connect().ask("CAP LS") if m.command == "CAP"]) == 1
