"""
Channel modes on the registry, no I/O: +e, +I (and the MAXLIST they share with +b), +s, +C.

The rules are :meth:`Registry.can_join`, :meth:`Registry.can_speak`,
:meth:`Registry.can_see`, :meth:`Registry.is_banned` and ``core/lists.py``;
the real-socket checks of the same letters are in tests/test_advertised.py
(CHANNEL_MODES, EXCEPTS, INVEX, MAXLIST).  Numerics per https://modern.ircdocs.horse/.
"""

import pytest

from tests.test_registry import codes, joined, make, room_with
from twistchat.core.lists import MAX_LIST
from twistchat.core.masks import matches_any


def params(delivery) -> tuple:
    """The params of a delivery's message (a numeric, or a room event's line)."""
    payload = delivery.payload
    return getattr(payload, "message", payload).params


def mode_ok(registry, user, *changes) -> None:
    out = registry.mode(user, "#r", changes[0], changes[1:])
    assert codes(out) == ["MODE"], out


# --------------------------------------------------------- +e ban exceptions


def test_ban_exception_lets_a_banned_user_join():
    """+b carol keeps carol out (474); +e carol lets her in; -e shuts her out again."""
    registry, channel, users = room_with("+b", "carol")
    alice, carol = users["alice"], users["carol"]
    assert codes(registry.join(carol, "#r")) == ["474"]
    mode_ok(registry, alice, "+e", "carol")
    assert registry.is_banned(carol, channel) is False
    assert "JOIN" in codes(registry.join(carol, "#r"))
    registry.part(carol, "#r")
    mode_ok(registry, alice, "-e", "CAROL")  # any case removes it
    assert codes(registry.join(carol, "#r")) == ["474"]


def test_ban_exception_lets_a_banned_member_speak():
    """A member matching a ban is silent (404) unless an exception matches them too."""
    registry, _, users = room_with("+b", "*!*@*")
    bob = users["bob"]
    assert codes(registry.message(bob, "PRIVMSG", "#r", "hi")) == ["404"]
    mode_ok(registry, users["alice"], "+e", f"*!*@{bob.host}")
    assert codes(registry.message(bob, "PRIVMSG", "#r", "hi")) == ["PRIVMSG"]


def test_exception_alone_bans_nobody_and_lets_nobody_past_other_modes():
    """+e without a ban changes nothing; it does not open a +i or +k room."""
    registry, _, users = room_with("+e", "carol")
    carol = users["carol"]
    mode_ok(registry, users["alice"], "+ik", "sesame")
    assert codes(registry.join(carol, "#r", "sesame")) == ["473"]


# ------------------------------------------------------- +I invite exceptions


def test_invite_exception_lets_a_matching_user_into_an_invite_only_room():
    """+i: carol gets 473; +I *!carol@* lets her in without an INVITE, and only her."""
    registry, _, users = room_with("+i")
    carol = users["carol"]
    dave, _ = joined(registry, "dave")
    assert codes(registry.join(carol, "#r")) == ["473"]
    mode_ok(registry, users["alice"], "+I", f"*!{carol.user}@*")
    assert "JOIN" in codes(registry.join(carol, "#r"))
    assert codes(registry.join(dave, "#r")) == ["473"]


@pytest.mark.parametrize(("modes", "expected"), [
    (("+b", "carol"), "474"),  # a ban still keeps them out
    (("+k", "sesame"), "475"),  # so does the key
    (("+l", "2"), "471"),  # and the limit
])
def test_invite_exception_lifts_invite_only_and_nothing_else(modes, expected):
    """+I is about +i only (as Ergo and InspIRCd): +b, +k, +l still apply."""
    registry, _, users = room_with("+iI", "carol")
    mode_ok(registry, users["alice"], *modes)
    assert codes(registry.join(users["carol"], "#r")) == [expected]


# -------------------------------------------------------------- the lists


@pytest.mark.parametrize(("letter", "entry", "end", "text"), [
    ("b", "367", "368", "End of channel ban list"),
    ("e", "348", "349", "End of channel exception list"),
    ("I", "346", "347", "End of channel invite exception list"),
])
def test_each_list_is_its_entries_then_its_end(letter, entry, end, text):
    """MODE #r <letter>: one entry per mask (mask, set by, when), then the end numeric."""
    registry, _, users = room_with(f"+{letter}{letter}", "x", "y!u@h")
    alice = users["alice"]
    out = registry.mode(alice, "#r", letter)
    assert codes(out) == [entry, entry, end]
    assert params(out[0]) == ("alice", "#r", "x!*@*", alice.source, "1800000000")
    assert params(out[1])[2] == "y!u@h"
    assert params(out[2]) == ("alice", "#r", text)


def test_empty_lists_answer_their_end_numeric_alone():
    """A room with no masks: 368, 349, 347 alone (clients ask on join)."""
    registry, _, users = room_with()
    for letter, end in (("b", "368"), ("e", "349"), ("I", "347")):
        assert codes(registry.mode(users["alice"], "#r", "+" + letter)) == [end]


@pytest.mark.parametrize("who", ["bob", "carol"])
def test_exception_lists_are_shown_to_operators_only(who):
    """+e and +I lists: 482 to a plain member or an outsider; the ban list to anyone."""
    registry, _, users = room_with("+beI", "a", "b", "c")
    for letter in "eI":
        out = registry.mode(users[who], "#r", letter)
        assert codes(out) == ["482"] and params(out[0])[1] == "#r"
    assert codes(registry.mode(users[who], "#r", "b")) == ["367", "368"]


def test_the_three_lists_share_maxlist():
    """MAXLIST=beI:100: b, e and I together hold 100; then 478 names the letter refused."""
    registry, channel, users = room_with()
    alice = users["alice"]
    for n in range(MAX_LIST):
        mode_ok(registry, alice, "+" + "beI"[n % 3], f"m{n}")
    for letter in "beI":
        (full,) = registry.mode(alice, "#r", "+" + letter, ["one-more"])
        assert codes([full]) == ["478"]
        assert params(full)[1:] == ("#r", letter, "Channel list is full")
    mode_ok(registry, alice, "-b", "m0")  # room for exactly one more, of any letter
    mode_ok(registry, alice, "+I", "one-more")
    assert codes(registry.mode(alice, "#r", "+e", ["two-more"])) == ["478"]
    assert len(channel.bans) + len(channel.excepts) + len(channel.invex) == MAX_LIST


def test_a_mask_already_listed_in_any_case_is_not_added_twice():
    """+e CAROL after +e carol: no MODE, one entry; -e of a mask not listed: no MODE."""
    registry, channel, users = room_with("+e", "carol")
    assert registry.mode(users["alice"], "#r", "+e", ["CAROL"]) == []
    assert registry.mode(users["alice"], "#r", "-I", ["carol"]) == []
    assert list(channel.excepts) == ["carol!*@*"]


@pytest.mark.parametrize("bad", ["", ":x", "a b"])
def test_a_mask_that_could_not_be_a_parameter_is_696(bad):
    """An empty mask, one starting with ':', one with a space: ERR_INVALIDMODEPARAM."""
    registry, channel, users = room_with()
    (refused,) = registry.mode(users["alice"], "#r", "+e", [bad])
    assert codes([refused]) == ["696"]
    assert params(refused)[1:3] == ("#r", "e") and params(refused)[-1] == "Invalid mask"
    assert channel.excepts == {}


def test_only_operators_change_the_lists():
    """+e/+I by a plain member: 482, nothing kept; by an outsider: 442."""
    registry, channel, users = room_with()
    assert codes(registry.mode(users["bob"], "#r", "+e", ["x"])) == ["482"]
    assert codes(registry.mode(users["carol"], "#r", "+I", ["x"])) == ["442"]
    assert channel.excepts == channel.invex == {}


def test_list_letters_take_their_parameter_set_and_unset():
    """-I takes a mask (as -b does), so the next parameter goes to the next letter."""
    registry, channel, users = room_with("+I", "x")
    (event,) = registry.mode(users["alice"], "#r", "-I+k", ["x", "sesame"])
    assert params(event) == ("#r", "-I+k", "x!*@*", "sesame")
    assert channel.password == "sesame" and channel.invex == {}


def test_at_most_modes_list_changes_per_line():
    """MODES=4 counts e and I like any parameter mode: a fifth is ignored."""
    registry, channel, users = room_with()
    (event,) = registry.mode(users["alice"], "#r", "+eeIII", ["a", "b", "c", "d", "e"])
    assert params(event)[1] == "+eeII"
    assert len(channel.excepts) + len(channel.invex) == 4


@pytest.mark.parametrize(("masks", "source", "expected"), [
    ([], "bob!b@h", False),
    (["bob!*@*"], "BOB!b@h", True),  # rfc1459 folding
    (["*!*@127.0.0.?"], "bob!b@127.0.0.7", True),
    (["*!*@127.0.0.?"], "bob!b@127.0.0.77", False),
    (["[a]!*@*"], "{A}!x@y", True),  # [ ] fold to { }
])
def test_matches_any(masks, source, expected):
    """matches_any: ``*`` and ``?`` wildcards, case folded under rfc1459."""
    assert matches_any(masks, source) is expected


# ------------------------------------------------------------------ +s secret


def test_secret_room_is_not_listed_to_outsiders():
    """LIST, and LIST #r by name: an outsider sees no 322 for a +s room; a member does."""
    registry, _, users = room_with("+s")
    for names in ((), ["#r"]):
        assert codes(registry.list_channels(users["carol"], names)) == ["321", "323"]
        assert codes(registry.list_channels(users["bob"], names)) == ["321", "322", "323"]


def test_secret_room_hides_its_members_from_outsiders():
    """NAMES and WHO #r: only the end numeric for an outsider; WHOIS shows no 319."""
    registry, _, users = room_with("+s")
    carol = users["carol"]
    assert codes(registry.names(carol, "#r")) == ["366"]
    assert codes(registry.who(carol, "#r")) == ["315"]
    assert "319" not in codes(registry.whois(carol, "alice"))
    assert "319" in codes(registry.whois(users["bob"], "alice"))
    assert codes(registry.topic(carol, "#r")) == ["442"]


def test_names_of_a_secret_room_echoes_the_name_as_asked():
    """An outsider's NAMES #R of a +s room #r ends with 366 #R, as for a room that is not."""
    registry, _, users = room_with("+s")
    (end,) = registry.names(users["carol"], "#R")
    assert params(end)[1] == "#R"
    assert params(registry.names(users["bob"], "#R")[-1])[1] == "#r"


def test_names_shows_a_secret_room_with_the_at_symbol():
    """RPL_NAMREPLY: ``@`` for a +s room, ``=`` for any other (+i included)."""
    registry, _, users = room_with("+s")
    assert params(registry.names(users["bob"], "#r")[0])[1:3] == ("@", "#r")
    mode_ok(registry, users["alice"], "-s+i")
    assert params(registry.names(users["bob"], "#r")[0])[1:3] == ("=", "#r")


def test_invite_only_room_hides_nothing():
    """+i keeps people out, it does not hide who is in: outsiders see NAMES, WHO, LIST."""
    registry, _, users = room_with("+i")
    carol = users["carol"]
    assert codes(registry.names(carol, "#r")) == ["353", "366"]
    assert codes(registry.who(carol, "#r")) == ["352", "352", "315"]
    assert "322" in codes(registry.list_channels(carol))


# ------------------------------------------------------------------ +C no CTCP


@pytest.mark.parametrize(("text", "refused"), [
    ("\x01VERSION\x01", True),
    ("\x01PING 123\x01", True),
    ("\x01DCC SEND f 1 2 3", True),  # the closing \x01 is optional
    ("\x01ACTION waves\x01", False),  # /me is talk
    ("\x01ACTION\x01", False),
    ("hello \x01VERSION\x01", False),  # a CTCP starts the message
    ("hello", False),
])
def test_no_ctcp_room_refuses_ctcp_but_action(text, refused):
    """+C: PRIVMSG with a CTCP other than ACTION is 404 (+C), from members and ops alike."""
    registry, _, users = room_with("+C")
    for who in ("bob", "alice"):
        out = registry.message(users[who], "PRIVMSG", "#r", text)
        if refused:
            assert codes(out) == ["404"]
            assert params(out[0])[1:] == ("#r", "Cannot send CTCP to channel (+C)")
        else:
            assert codes(out) == ["PRIVMSG"]


def test_no_ctcp_notice_is_dropped_without_a_reply():
    """A CTCP reply (NOTICE) to a +C room: not relayed, and (a NOTICE) no error either."""
    registry, _, users = room_with("+C")
    assert registry.message(users["bob"], "NOTICE", "#r", "\x01VERSION x\x01") == []


def test_no_ctcp_is_about_the_room_only():
    """A CTCP to a nick is untouched by the rooms' +C; a +C room's ops-only STATUSMSG is not."""
    registry, _, users = room_with("+C")
    assert codes(registry.message(users["bob"], "PRIVMSG", "carol", "\x01VERSION\x01")) == \
        ["PRIVMSG"]
    assert codes(registry.message(users["bob"], "PRIVMSG", "@#r", "\x01VERSION\x01")) == \
        ["404"]


def test_room_without_no_ctcp_relays_ctcp():
    """-C (the default): a CTCP to the room is relayed."""
    registry, _, users = room_with()
    assert codes(registry.message(users["bob"], "PRIVMSG", "#r", "\x01VERSION\x01")) == \
        ["PRIVMSG"]


# ------------------------------------------------------------- what is shown


def test_mode_string_shows_every_flag_in_chanmodes_order():
    """324 after +Cimnst (n and t are defaults): ``+Cimnst``; -C-s takes them off again."""
    registry, _, users = room_with("+Cims")
    assert params(registry.mode(users["bob"], "#r")[0])[1:] == ("#r", "+Cimnst")
    mode_ok(registry, users["alice"], "-C-s")
    assert params(registry.mode(users["bob"], "#r")[0])[1:] == ("#r", "+imnt")


def test_isupport_and_myinfo_name_the_modes():
    """005: CHANMODES=beI,k,l,Cimnst, EXCEPTS=e, INVEX=I, MAXLIST=beI:100; 004 to match."""
    registry, _ = make()
    tokens = registry.isupport()
    for token in ("CHANMODES=beI,k,l,Cimnst", "EXCEPTS=e", "INVEX=I", f"MAXLIST=beI:{MAX_LIST}"):
        assert token in tokens
    from tests.test_registry import Conn

    user = registry.connect(Conn(), "127.0.0.2")
    welcome = registry.register(user, "alice", "alice", "Alice")
    myinfo = next(d for d in welcome if d.payload.command == "004")
    assert params(myinfo)[4:] == ("CIbeiklmnostv", "Ibeklov")
