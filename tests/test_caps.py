"""
IRCv3 capabilities of issue #13 on the TCP side, in memory (StringTransport, task.Clock).

One section per capability: CAP LS 302 and cap-notify, userhost-in-names,
extended-join, invite-notify, setname, chghost, MONITOR, bot mode,
no-implicit-names, client-only tags.  Registry-level rules are tested beside
them with no I/O; the end-to-end test is in tests/test_caps_e2e.py.
"""

import pytest

from tests.memory import MemoryServer, first, numerics
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


# ------------------------------------------------------ userhost-in-names, extended-join


def names_entries(messages):
    return [e for m in messages if m.command == "353" for e in m.params[-1].split()]


def test_userhost_in_names_shows_nick_user_host(server):
    """With userhost-in-names, 353 entries are prefix + nick!user@host; without, the nick."""
    server.user("alice", "#r")
    full = server.user("bob", caps="userhost-in-names multi-prefix")
    plain = server.user("carol")
    assert names_entries(full.ask("NAMES #r")) == ["@alice!alice@127.0.0.1"]
    assert names_entries(plain.ask("NAMES #r")) == ["@alice"]
    assert "@alice!alice@127.0.0.1" in names_entries(full.ask("JOIN #r"))


def test_extended_join_shows_account_and_realname(server):
    """extended-join peers see ``JOIN #r * :realname``; others the plain JOIN."""
    ext = server.user("ext", "#r", caps="extended-join")
    plain = server.user("plain", "#r")
    ext.take()
    server.user("bob", "#r")
    assert first(ext.take(), "JOIN").params == ("#r", "*", "bob Real")
    assert first(plain.take(), "JOIN").params == ("#r",)


def test_extended_join_bytes_cached_per_view_and_shared():
    """One JOIN event: the same bytes object for every extended view, the plain form apart."""
    from twistchat.core.events import TAG_EXTENDED, TAG_TIME, Event
    from twistchat.wire import Message
    event = Event("#r", 1, 0, "m1", Message("JOIN", ("#r",), "a!a@h"),
                  extended=Message("JOIN", ("#r", "*", "A"), "a!a@h"))
    assert event.line(TAG_EXTENDED) is event.line(TAG_EXTENDED)
    assert event.line(TAG_EXTENDED) == b":a!a@h JOIN #r * :A\r\n"
    assert event.line() == b":a!a@h JOIN #r\r\n"
    plain = Event("#r", 2, 0, "m2", Message("PRIVMSG", ("#r", "x"), "a!a@h"))
    assert plain.line(TAG_EXTENDED | TAG_TIME) is plain.line(TAG_TIME)


def test_udp_session_sees_plain_join(world):
    """A UDP member gets the plain JOIN form of an extended-join event."""
    from tests.udpnet import Raw
    udp = Raw(world)
    udp.register("udpy")
    udp.command("JOIN #r")
    event = world.registry.log.held("#r", 1, 1, 1)[1][0]
    assert event.extended.params == ("#r", "*", "udpy") and event.message.params == ("#r",)


def test_no_implicit_names_skips_names_after_join(server):
    """draft/no-implicit-names: JOIN answers no 353/366; NAMES still works."""
    quiet = server.user("quiet", caps="draft/no-implicit-names")
    got = quiet.ask("JOIN #r")
    assert "JOIN" in [m.command for m in got] and "353" not in numerics(got)
    assert "366" not in numerics(got)
    assert numerics(quiet.ask("NAMES #r")) == ["353", "366"]
    assert "366" in numerics(server.user("loud").ask("JOIN #r"))


# ------------------------------------------------------------------------ invite-notify


def invites(messages):
    return [(m.source.split("!")[0], *m.params) for m in messages if m.command == "INVITE"]


def test_invite_notify_tells_members_with_the_cap(server):
    """Members with invite-notify see the INVITE; members without it, and the inviter, do not."""
    alice = server.user("alice", "#r")
    watcher = server.user("watcher", "#r", caps="invite-notify")
    plain = server.user("plain", "#r")
    bob = server.user("bob")
    assert numerics(alice.ask("INVITE bob #r")) == ["341"]
    assert invites(watcher.take()) == [("alice", "bob", "#r")]
    assert invites(plain.take()) == []
    assert invites(bob.take()) == [("alice", "bob", "#r")]


def test_invite_notify_on_invite_only_room_goes_to_operators(server):
    """On a +i room, only operators with invite-notify see the INVITE."""
    alice = server.user("alice", "#r", caps="invite-notify")
    member = server.user("member", "#r", caps="invite-notify")
    op = server.user("op", "#r", caps="invite-notify")
    alice.send("MODE #r +i", "MODE #r +o op")
    member.take(), op.take(), alice.take()
    server.user("bob")
    alice.send("INVITE bob #r")
    assert invites(op.take()) == [("alice", "bob", "#r")]
    assert invites(member.take()) == []
    assert invites(alice.take()) == []


def test_invited_user_without_the_cap_still_gets_its_invite(server):
    """The invitee's own INVITE is never gated, whatever it negotiated."""
    alice = server.user("alice", "#r")
    bob = server.user("bob", caps="invite-notify")
    carol = server.user("carol")
    alice.send("INVITE bob #r", "INVITE carol #r")
    assert invites(bob.take()) == [("alice", "bob", "#r")]
    assert invites(carol.take()) == [("alice", "carol", "#r")]
