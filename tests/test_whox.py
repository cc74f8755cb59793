"""
WHOX (WHO's fields, 354) and LIST's ELIST conditions, without I/O; and how 354 is written.

The real server is checked in tests/test_advertised.py (check_whox, check_elist).
"""

import pytest

from tests.test_registry import codes, joined, make
from tests.udpnet import Raw
from twistchat.core import elist, whox
from twistchat.core.commands import PLAIN, Context, dispatch
from twistchat.frontends.ircv3 import NO_CAPS
from twistchat.wire import Message, encode, parse

# ---------------------------------------------------------------- the wire rule


def test_354_is_a_value_numeric_its_last_field_gets_no_colon():
    """Without the realname, 354 ends with a value: ':' only where the grammar needs it."""
    assert encode(Message("354", ("me", "42", "bob"), "srv")) == b":srv 354 me 42 bob\r\n"


def test_354_ending_with_the_realname_writes_it_after_a_colon():
    """With ``r`` (always last) the realname is free text: ':' even for one word."""
    line = encode(Message("354", ("me", "bob", "Bob"), "srv", trailing=True))
    assert line == b":srv 354 me bob :Bob\r\n"


def test_trailing_is_how_a_line_is_written_not_what_it_means():
    """trailing takes no part in equality or hash; the line parses back to an equal Message."""
    written = Message("354", ("me", "Bob"), "srv", trailing=True)
    assert written == Message("354", ("me", "Bob"), "srv")
    assert hash(written) == hash(Message("354", ("me", "Bob"), "srv"))
    assert parse(encode(written)) == written
    assert parse(encode(written)).trailing is False


def test_a_client_view_that_strips_tags_keeps_trailing():
    """The IRC front-end's View.format rebuilds a tagged Message; the ':' survives."""
    tagged = Message("354", ("me", "Bob"), "srv", {"x": "y"}, trailing=True)
    assert NO_CAPS.format(tagged, 0) == b":srv 354 me :Bob\r\n"


def test_the_udp_front_end_keeps_trailing_when_it_numbers_a_line(world):
    """UDP adds useq to every line it sends to a session; the realname keeps its ':'."""
    client = Raw(world)
    client.register("alice")
    client.command("JOIN #r")
    client.command("SETNAME Solo")
    client.cseq += 1
    client.send(f"@token={client.token};cseq={client.cseq} WHO #r %nr".encode())
    assert any(d.endswith(b" 354 alice alice :Solo\r\n") for d in client.got), client.got


# ---------------------------------------------------------------- WHOX requests


@pytest.mark.parametrize("arg, fields, token", [
    ("%n", "n", ""),
    ("%rnxyzt,5", "tnr", "5"),  # the fixed order; unknown letters ignored
    ("%tcuihsnfdlaor,999", "tcuihsnfdlaor", "999"),  # TOKEN_DIGITS digits: the edge
    ("%nn", "n", ""),
    ("o%n", "n", ""),  # flags before '%' are ignored
    ("%", "", ""),
    ("%n,007", "n", "007"),  # a token without t is allowed, and not written
])
def test_parse_query(arg, fields, token):
    """The fields asked for, in FIELD_ORDER, and the token."""
    assert whox.parse_query(arg) == whox.Query(fields, token)


@pytest.mark.parametrize("arg", ["", "o", "n"])
def test_no_percent_is_no_whox_query(arg):
    """WHO's second parameter without '%' is a plain WHO (352)."""
    assert whox.parse_query(arg) is None


@pytest.mark.parametrize("arg", ["%t,1000", "%t,", "%t,4a", "%t,²", "%n,-1", "%t"])
def test_bad_tokens_are_refused(arg):
    """A token of more than TOKEN_DIGITS or non-ASCII digits, or t without a token."""
    assert whox.TOKEN_DIGITS == 3
    with pytest.raises(whox.BadQuery):
        whox.parse_query(arg)


def _room():
    """#r with alice (op, voiced) and bob (away); carol outside; the clock at 1.8e9."""
    registry, clock = make()
    alice, _ = joined(registry, "alice", "#r")
    bob, _ = joined(registry, "bob", "#r")
    carol, _ = joined(registry, "carol")
    registry.mode(alice, "#r", "+v", ["alice"])
    registry.set_away(bob, "lunch")
    registry.set_realname(bob, "Bob B. Bobson")
    return registry, clock, {"alice": alice, "bob": bob, "carol": carol}


def lines(out, code="354"):
    """The params of the ``code`` lines (without the asker's nick); the answer ends with 315."""
    assert codes(out)[-1] == "315"
    return [d.payload.params[1:] for d in out if d.payload.command == code]


def test_every_field_in_the_fixed_order():
    """%tcuihsnfdlaor,42: token room user IP host server nick flags 0 idle 0 n/a realname."""
    registry, clock, users = _room()
    clock.now += 42
    bob = users["bob"]
    got = lines(registry.who(users["alice"], "#r", False, "%tcuihsnfdlaor,42"))
    assert got == [
        ("42", "#r", "alice", users["alice"].address, users["alice"].host, "srv", "alice", "H@",
         "0", "42", "0", "n/a", "alice"),
        ("42", "#r", "bob", bob.address, bob.host, "srv", "bob", "G", "0", "42", "0", "n/a",
         "Bob B. Bobson"),
    ]


def test_the_realname_line_is_written_with_its_colon_and_other_lines_without():
    """r last: trailing; any other last field: a value."""
    registry, _, users = _room()
    with_r = [d.payload for d in registry.who(users["carol"], "#r", False, "%nr")][0]
    without = [d.payload for d in registry.who(users["carol"], "#r", False, "%rn")][0]
    assert with_r.trailing and encode(with_r) == b":srv 354 carol alice :alice\r\n"
    assert encode(without) == b":srv 354 carol alice :alice\r\n"  # %rn is %nr: r is last
    nick_only = [d.payload for d in registry.who(users["carol"], "#r", False, "%n")][0]
    assert not nick_only.trailing and encode(nick_only) == b":srv 354 carol alice\r\n"


def test_flags_follow_multi_prefix_as_352_does():
    """f is H@ plainly and H@+ with multi-prefix."""
    registry, _, users = _room()
    assert lines(registry.who(users["bob"], "#r", False, "%nf"))[0] == ("alice", "H@")
    assert lines(registry.who(users["bob"], "#r", True, "%nf"))[0] == ("alice", "H@+")


def test_a_mask_who_has_no_channel_and_the_same_users():
    """WHO al* %cn: the channel placeholder '*'; +i users hidden from strangers as for 352."""
    registry, _, users = _room()
    assert lines(registry.who(users["carol"], "al*", False, "%cn")) == [("*", "alice")]
    registry.mode(users["alice"], "alice", "+i")
    assert lines(registry.who(users["carol"], "al*", False, "%cn")) == []
    assert lines(registry.who(users["bob"], "al*", False, "%cn")) == [("*", "alice")]


def test_the_ip_is_hidden_behind_a_vhost_except_from_its_owner():
    """i: the address while the host shows it anyway; 255.255.255.255 once a vhost hides it."""
    registry, _, users = _room()
    alice = users["alice"]
    assert lines(registry.who(users["carol"], "alice", False, "%i")) == [(alice.address,)]
    registry.change_host(alice, "alice", "cloak.example")
    assert lines(registry.who(users["carol"], "alice", False, "%ih")) == [
        (whox.HIDDEN_IP, "cloak.example")]
    assert lines(registry.who(alice, "alice", False, "%i")) == [(alice.address,)]


def test_idle_is_seconds_since_the_last_activity():
    """l counts from the user's last line, as WHOIS 317 does."""
    registry, clock, users = _room()
    clock.now += 100
    dispatch(registry, users["bob"], Message("PRIVMSG", ("#r", "hi")))
    clock.now += 7
    idle = dict(lines(registry.who(users["carol"], "#r", False, "%nl")))
    assert idle == {"alice": "107", "bob": "7"}


def test_no_fields_is_354_with_the_asker_alone():
    """'%' and no known field: exactly the fields asked for, none (no 352: "MUST NOT")."""
    registry, _, users = _room()
    out = registry.who(users["carol"], "#r", False, "%xyz")
    assert codes(out) == ["354", "354", "315"]
    assert [d.payload.params for d in out][0] == ("carol",)


def test_a_bad_token_is_answered_400_then_315():
    """ERR_UNKNOWNERROR names WHO and says why; the WHO still ends with 315, nothing listed."""
    registry, _, users = _room()
    out = registry.who(users["carol"], "#r", False, "%tn,1234")
    assert codes(out) == ["400", "315"]
    assert out[0].payload.params[:2] == ("carol", "WHO")
    assert "1 to 3 digits" in out[0].payload.params[-1]
    assert out[1].payload.params[1] == "#r"


def test_without_percent_who_answers_352_as_before():
    """WHO #r o (a flag, no '%') is the plain WHO."""
    registry, _, users = _room()
    assert codes(registry.who(users["carol"], "#r", False, "o")) == ["352", "352", "315"]


def test_dispatch_passes_whox_through():
    """WHO #r %tn,7 through the command table; multi-prefix from the connection's context."""
    registry, _, users = _room()
    out = dispatch(registry, users["carol"], Message("WHO", ("#r", "%tnf,7")),
                   Context(multi_prefix=True))
    assert lines(out) == [("7", "alice", "H@+"), ("7", "bob", "G")]
    assert codes(dispatch(registry, users["carol"], Message("WHO", ("#r",)), PLAIN)) == \
        ["352", "352", "315"]


def test_whox_and_elist_are_advertised():
    """ISUPPORT has WHOX (no value) and ELIST with every letter LIST serves."""
    registry, _ = make()
    tokens = registry.isupport()
    assert "WHOX" in tokens and "ELIST=CMNTU" in tokens


# ---------------------------------------------------------------- LIST and ELIST


@pytest.mark.parametrize("params, query", [
    ((), elist.ListQuery()),
    (("#a,#b",), elist.ListQuery(names=("#a", "#b"))),
    (("#a*,!#ab*,>2,<10",), elist.ListQuery(
        masks=("#a*",), excluded=("#ab*",),
        conditions=(elist.Condition("U", ">", 2), elist.Condition("U", "<", 10)))),
    (("#a?", "C<5,t>3,U>1"), elist.ListQuery(
        masks=("#a?",), conditions=(elist.Condition("C", "<", 5), elist.Condition("T", ">", 3),
                                    elist.Condition("U", ">", 1)))),
    (("Cat*",), elist.ListQuery(masks=("Cat*",))),  # C then no < or >: a mask
    ((",,#a,",), elist.ListQuery(names=("#a",))),
])
def test_parse_list(params, query):
    """Names, M masks, N masks, U/C/T conditions; in one parameter or two; empty items skipped."""
    assert elist.parse_list(params) == query


@pytest.mark.parametrize("item", [">", "<x", ">-1", "C<", "T>1x", "c>²", "!", "U<"])
def test_bad_conditions_are_refused(item):
    """Looks like a condition, is not one."""
    with pytest.raises(elist.BadCondition):
        elist.parse_list([item])


def _rooms():
    """#alpha (3 members, topic), #abc (2), #beta (1); the asker is in none."""
    registry, clock = make()
    asker, _ = joined(registry, "asker")
    for n, room in enumerate(("#alpha", "#abc", "#beta")):
        for m in range(3 - n):
            joined(registry, f"u{n}x{m}", room)
    op = registry.find_channel("#alpha").members
    registry.topic(next(iter(op)), "#alpha", "Alpha's topic")
    return registry, clock, asker


def listed(out):
    """The rooms of the 322 lines; the answer is 321 ... 323."""
    assert codes(out)[0] == "321" and codes(out)[-1] == "323"
    return [d.payload.params[1] for d in out if d.payload.command == "322"]


@pytest.mark.parametrize("params, rooms", [
    ((), ["#alpha", "#abc", "#beta"]),
    ((">1",), ["#alpha", "#abc"]),
    ((">2",), ["#alpha"]),  # more than: strictly
    ((">3",), []),
    (("<3",), ["#abc", "#beta"]),
    (("<1",), []),
    (("#a*",), ["#alpha", "#abc"]),
    (("#A?C",), ["#abc"]),  # case folded, ? is one character
    (("!#a*",), ["#beta"]),
    (("!#beta",), ["#alpha", "#abc"]),
    (("#a*,>2",), ["#alpha"]),  # several conditions: all of them
    (("#a*", "<3"), ["#abc"]),  # in two parameters
    (("#beta,#abc",), ["#beta", "#abc"]),  # named rooms: in the order asked
    (("#beta,#BETA,#nope",), ["#beta"]),  # once each; rooms that do not exist are skipped
    (("#beta,#al*",), ["#alpha", "#beta"]),  # names or masks
])
def test_list_filters(params, rooms):
    """LIST with names, M/N masks and U conditions lists the rooms asked for."""
    registry, _, asker = _rooms()
    assert listed(registry.list_channels(asker, params)) == rooms


def test_list_by_creation_time_in_minutes():
    """C<n: created less than n minutes ago; C>n: more than n minutes ago (strictly)."""
    registry, clock, asker = _rooms()
    clock.now += 300
    joined(registry, "late", "#late")
    assert listed(registry.list_channels(asker, ["C<1"])) == ["#late"]
    assert listed(registry.list_channels(asker, ["C>4"])) == ["#alpha", "#abc", "#beta"]
    assert listed(registry.list_channels(asker, ["C>5"])) == []  # 300 s is not more than 5 min
    assert listed(registry.list_channels(asker, ["C<5"])) == ["#late"]
    assert listed(registry.list_channels(asker, ["C<0"])) == []


def test_list_by_topic_time_skips_rooms_without_a_topic():
    """T<n / T>n as C, on the topic's time; a room with no topic has none and never matches."""
    registry, clock, asker = _rooms()
    clock.now += 600
    assert listed(registry.list_channels(asker, ["T>9"])) == ["#alpha"]
    assert listed(registry.list_channels(asker, ["T<10"])) == []
    assert listed(registry.list_channels(asker, ["T<11"])) == ["#alpha"]


def test_list_shows_members_and_topic():
    """322: room, member count, topic."""
    registry, _, asker = _rooms()
    out = registry.list_channels(asker, ["#alpha"])
    assert [d.payload.params for d in out if d.payload.command == "322"] == [
        ("asker", "#alpha", "3", "Alpha's topic")]


def test_a_bad_condition_is_answered_400_then_323():
    """ERR_UNKNOWNERROR quotes the item and what is served; the LIST ends with 323."""
    registry, _, asker = _rooms()
    out = registry.list_channels(asker, ["#a*,>x"])
    assert codes(out) == ["400", "323"]
    assert out[0].payload.params == (
        "asker", "LIST", 'Unknown LIST condition ">x" (ELIST=CMNTU: <n >n C<n C>n T<n T>n !mask)')


def test_dispatch_passes_every_list_parameter():
    """LIST #a* >2 through the command table."""
    registry, _, asker = _rooms()
    assert listed(dispatch(registry, asker, Message("LIST", ("#a*", ">2")))) == ["#alpha"]
    assert listed(dispatch(registry, asker, Message("LIST", ()))) == ["#alpha", "#abc", "#beta"]
