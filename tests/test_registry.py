"""
The registry without any I/O: rules, sequence numbers, what goes to whom.
"""

import pytest

from twistchat.core.events import TAG_SEQ, TAG_TIME, Disconnect, Event, deliver
from twistchat.core.registry import Limits, Registry, casefold


class Conn:
    """A front-end stand-in that records what it is handed."""

    def __init__(self) -> None:
        self.got = []

    def deliver(self, payload) -> None:
        self.got.append(payload)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs):
    clock = Clock()
    registry = Registry(server_name="srv", clock=clock, **kwargs)
    return registry, clock


_hosts = iter(range(1, 10**6))


def joined(registry, nick, *rooms):
    """A registered user ``nick`` (from an address of its own) in ``rooms``."""
    conn = Conn()
    n = next(_hosts)
    user = registry.connect(conn, f"127.0.{n // 250}.{n % 250 + 1}")
    deliver(registry.register(user, nick, nick, nick))
    for room in rooms:
        deliver(registry.join(user, room))
    conn.got.clear()
    return user, conn


def test_casefold_is_rfc1459():
    """A-Z and []\\~ fold to a-z and {}|^; other characters stay."""
    assert casefold("Nick[A]\\~") == "nick{a}|^"
    assert casefold("#ÉTÉ") == "#ÉtÉ"  # only ASCII folds under rfc1459


def test_nick_grammar():
    """RFC 2812 nick grammar and NICKLEN."""
    registry, _ = make()
    assert registry.valid_nick("a[b]-1")
    for bad in ("", "1abc", "-x", "a b", "a,b", "x" * 31, "é"):
        assert not registry.valid_nick(bad), bad


def test_channel_grammar():
    """Channel names start with #, have no space, comma, colon or BEL, fit CHANNELLEN bytes."""
    registry, _ = make()
    assert registry.valid_channel("#ok-room") and registry.valid_channel("#café")
    for bad in ("#", "lobby", "#a b", "#a,b", "#a:b", "#a\x07", "#" + "x" * 50):
        assert not registry.valid_channel(bad), bad


def test_room_sequence_numbers_rise_by_one_per_event():
    """Every room event (JOIN, PRIVMSG, TOPIC, PART) takes the next number of its room."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    bob, _ = joined(registry, "bob", "#r")
    events = []
    registry.log.subscribe(events.append)
    registry.message(alice, "PRIVMSG", "#r", "one")
    registry.topic(alice, "#r", "t")
    registry.part(bob, "#r")
    assert [e.seq for e in events] == [3, 4, 5]
    assert [e.message.command for e in events] == ["PRIVMSG", "TOPIC", "PART"]
    assert all(e.target == "#r" for e in events)


def test_sequence_numbers_continue_from_the_store():
    """A room the store knew at seq 41 starts again at 42 (no reuse after restart)."""
    registry, _ = make(last_seqs={"#r": 41})
    events = []
    registry.log.subscribe(events.append)
    joined(registry, "alice", "#R")
    assert events[0].seq == 42


def test_empty_room_keeps_its_sequence():
    """A room that empties and is created again goes on counting."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    registry.part(alice, "#r")
    assert registry.find_channel("#r") is None
    events = []
    registry.log.subscribe(events.append)
    registry.join(alice, "#r")
    assert events[0].seq == 3


def test_private_messages_are_numbered_per_conversation():
    """PRIVMSGs between two nicks share one conversation key and sequence, seen by both only."""
    registry, _ = make()
    alice, _ = joined(registry, "Alice")
    bob, bob_conn = joined(registry, "bob")
    events = []
    registry.log.subscribe(events.append)
    deliver(registry.message(alice, "PRIVMSG", "bob", "hi"))
    deliver(registry.message(bob, "PRIVMSG", "alice", "hey"))
    assert [(e.target, e.seq) for e in events] == [("~dm:alice:bob", 1), ("~dm:alice:bob", 2)]
    assert bob_conn.got[0].message.params == ("bob", "hi")


def test_event_carries_server_time_in_ms():
    """Events are stamped with the registry's clock, in milliseconds."""
    registry, clock = make()
    alice, _ = joined(registry, "alice", "#r")
    clock.now = 1_800_000_123.456
    (delivery,) = registry.message(alice, "PRIVMSG", "#r", "x")
    assert delivery.payload.time_ms == 1_800_000_123_456


def test_event_line_views_are_cached():
    """An event formats once per tag view; seq and time tags appear only in their views."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    (delivery,) = registry.message(alice, "PRIVMSG", "#r", "x")
    event: Event = delivery.payload
    plain = event.line()
    assert plain == f":alice!alice@{alice.host} PRIVMSG #r :x\r\n".encode()
    assert event.line() is plain
    tagged = event.line(TAG_SEQ | TAG_TIME)
    assert tagged.startswith(b"@seq=") and b";time=" in tagged


def test_recent_history_is_bounded():
    """Each room keeps at most recent_history events in memory."""

    registry, _ = make(limits=Limits(recent_history=10))
    alice, _ = joined(registry, "alice", "#r")
    for i in range(25):
        registry.message(alice, "PRIVMSG", "#r", str(i))
    lowest, recent = registry.log.held("#r", 1, 10**9, 100)
    assert len(recent) == 10 and recent[-1].message.params[1] == "24"
    assert lowest == recent[0].seq == 17  # JOIN was 1, messages 2..26: the last ten held
    assert [e.seq for e in registry.log.held("#r", 25, 10**9, 100)[1]] == [25, 26]


def test_quit_reaches_each_peer_once_and_frees_everything():
    """QUIT from a user in two rooms: one line per peer, a numbered event per room."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#a", "#b")
    bob, bob_conn = joined(registry, "bob", "#a", "#b")
    events = []
    registry.log.subscribe(events.append)
    deliver(registry.quit(alice, "bye"))
    assert len(bob_conn.got) == 1 and bob_conn.got[0].message.command == "QUIT"
    assert sorted(e.target for e in events) == ["#a", "#b"]
    assert registry.find_user("alice") is None and registry.connection_count() == 1


def test_names_reply_is_split_to_fit_512_bytes():
    """A big room's NAMES is split over several 353 lines, each within 512 bytes."""
    from twistchat.wire import encode

    registry, _ = make()
    users = [joined(registry, f"member{i:03d}xxxxxxxxxx", "#big")[0] for i in range(60)]
    replies = registry.names(users[0], "#big")
    lines = [encode(d.payload) for d in replies if d.payload.command == "353"]
    assert len(lines) > 1 and all(len(line) <= 512 for line in lines)
    shown = " ".join(d.payload.params[-1] for d in replies if d.payload.command == "353")
    assert len(shown.split()) == 60


# ---------------------------------------------------------------- rules, no I/O
#
# Modes, KICK, INVITE and registration straight on the registry: who may do
# what is decided here, so it is tested here, without a protocol in between.


def codes(deliveries) -> list:
    """The commands (numerics, MODE, FAIL...) of what ``deliveries`` carry, in order."""
    out = []
    for d in deliveries:
        payload = d.payload
        message = payload.message if isinstance(payload, Event) else payload
        out.append(getattr(message, "command", type(payload).__name__))
    return out


def room_with(*changes: str):
    """
    ``#r`` with operator alice, member bob, and carol outside; ``changes`` as MODE args.

    ``room_with("+k", "sesame")`` sets the key; alice is the one who sets it.
    """
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    bob, _ = joined(registry, "bob", "#r")
    carol, _ = joined(registry, "carol")
    if changes:
        out = registry.mode(alice, "#r", changes[0], changes[1:])
        assert codes(out) == ["MODE"], out
    users = {"alice": alice, "bob": bob, "carol": carol}
    return registry, registry.find_channel("#r"), users


CAN_JOIN = [
    # (case, modes, invite carol first, password carol gives, expected numeric or None)
    ("open room", (), False, None, None),
    ("+i not invited", ("+i",), False, None, "473"),
    ("+i invited", ("+i",), True, None, None),
    ("+k right key", ("+k", "sesame"), False, "sesame", None),
    ("+k wrong key", ("+k", "sesame"), False, "guess", "475"),
    ("+k no key", ("+k", "sesame"), False, None, "475"),
    ("+k invited, no key", ("+k", "sesame"), True, None, None),
    ("+l full", ("+l", "2"), False, None, "471"),
    ("+l not full", ("+l", "3"), False, None, None),
    ("+ik invited, wrong key", ("+ik", "sesame"), True, "guess", None),
]


@pytest.mark.parametrize(("modes", "invite", "password", "expected"),
                         [case[1:] for case in CAN_JOIN], ids=[case[0] for case in CAN_JOIN])
def test_can_join(modes, invite, password, expected):
    """can_join: +i keeps out all but the invited, +k wrong keys (not the invited), +l when full."""
    registry, channel, users = room_with(*modes)
    carol = users["carol"]
    if invite:
        assert "341" in codes(registry.invite(users["alice"], "carol", "#r"))
    refused = registry.can_join(carol, channel, password)
    if expected is None:
        assert refused is None
    else:
        assert refused is not None and refused.payload.command == expected
        assert refused.to == (carol,) and refused.payload.params[1] == "#r"


CAN_SPEAK = [
    # (case, modes, who speaks, expected numeric text or None)
    ("member", (), "bob", None),
    ("operator", (), "alice", None),
    ("non-member, +n", (), "carol", "(+n)"),
    ("non-member, -n", ("-n",), "carol", None),
    ("+m plain member", ("+m",), "bob", "(+m)"),
    ("+m voiced", ("+mv", "bob"), "bob", None),
    ("+m operator", ("+m",), "alice", None),
    ("+m -n non-member", ("+m-n",), "carol", "(+m)"),
]


@pytest.mark.parametrize(("modes", "who", "expected"),
                         [case[1:] for case in CAN_SPEAK], ids=[case[0] for case in CAN_SPEAK])
def test_can_speak(modes, who, expected):
    """can_speak: +n keeps out non-members, +m lets only voiced members and operators speak."""
    registry, channel, users = room_with(*modes)
    refused = registry.can_speak(users[who], channel)
    if expected is None:
        assert refused is None
    else:
        assert refused is not None and refused.payload.command == "404"
        assert refused.payload.params[1] == "#r" and expected in refused.payload.params[-1]


def _unregistered(registry, users):
    return registry.connect(Conn(), "127.0.92.1")


def _quit_alice(registry, users):
    registry.quit(users["alice"])
    return users["alice"]


CAN_READ = [
    # (case, who (a name, or a function making the user), target key, expected)
    ("room member", "bob", "#r", True),
    ("room operator", "alice", "#r", True),
    ("room non-member", "carol", "#r", False),
    ("unknown room", "alice", "#nowhere", False),
    ("DM party (first)", "alice", "~dm:alice:carol", True),
    ("DM party (second)", "carol", "~dm:alice:carol", True),
    ("DM non-party", "bob", "~dm:alice:carol", False),
    ("malformed DM key", "alice", "~dm:alice", False),
    ("unregistered user, room", _unregistered, "#r", False),
    ("unregistered user, DM", _unregistered, "~dm:alice:carol", False),
    ("user who quit, own DM", _quit_alice, "~dm:alice:carol", False),
]


@pytest.mark.parametrize(("who", "target", "expected"),
                         [case[1:] for case in CAN_READ], ids=[case[0] for case in CAN_READ])
def test_can_read(who, target, expected):
    """can_read: a room's transcript for its members, a conversation's for its two parties."""
    registry, _, users = room_with()
    user = users[who] if isinstance(who, str) else who(registry, users)
    assert registry.can_read(user, target) is expected


CAN_SEE = [
    # (case, modes, who, expected)
    ("-i member", (), "bob", True),
    ("-i non-member", (), "carol", True),
    ("+i member", ("+i",), "bob", True),
    ("+i operator", ("+i",), "alice", True),
    ("+i non-member", ("+i",), "carol", True),  # +i keeps out, it does not hide
    ("+s member", ("+s",), "bob", True),
    ("+s non-member", ("+s",), "carol", False),
    ("+k non-member", ("+k", "sesame"), "carol", True),
]


@pytest.mark.parametrize(("modes", "who", "expected"),
                         [case[1:] for case in CAN_SEE], ids=[case[0] for case in CAN_SEE])
def test_can_see(modes, who, expected):
    """can_see: everyone sees a room's members and topic; a +s room's only its members."""
    registry, channel, users = room_with(*modes)
    assert registry.can_see(users[who], channel) is expected


IS_OPERATOR = [
    ("first joiner", (), "alice", True),
    ("plain member", (), "bob", False),
    ("voiced member", ("+v", "bob"), "bob", False),
    ("made operator", ("+o", "bob"), "bob", True),
    ("non-member", (), "carol", False),
]


@pytest.mark.parametrize(("modes", "who", "expected"),
                         [case[1:] for case in IS_OPERATOR],
                         ids=[case[0] for case in IS_OPERATOR])
def test_is_operator(modes, who, expected):
    """is_operator: the first joiner and whoever gets +o, nobody else."""
    registry, channel, users = room_with(*modes)
    assert registry.is_operator(users[who], channel) is expected


def test_audience_is_the_members_of_the_room():
    """audience(key): a room's members; nobody for a room that does not exist."""
    registry, _, users = room_with()
    assert set(registry.audience("#r")) == {users["alice"], users["bob"]}
    assert list(registry.audience("#nowhere")) == []


# ------------------------------------------------------------------------- MODE

FLAGS = [("i", "invite_only"), ("m", "moderated"), ("n", "no_external"), ("t", "topic_lock")]


@pytest.mark.parametrize(("letter", "attribute"), FLAGS, ids=[f"+{f[0]}" for f in FLAGS])
def test_mode_flag_on_and_off(letter, attribute):
    """Each room flag: one MODE event turns it from its default, another turns it back."""
    registry, channel, users = room_with()
    alice = users["alice"]
    for sign in ("-+" if getattr(channel, attribute) else "+-"):
        (event,) = registry.mode(alice, "#r", sign + letter)
        assert event.payload.message.params == ("#r", sign + letter)
        assert getattr(channel, attribute) is (sign == "+")


def test_mode_flag_already_set_changes_nothing():
    """"+n" on a room that is +n already: no event, nothing said."""
    registry, _, users = room_with()
    assert registry.mode(users["alice"], "#r", "+n") == []


def test_mode_key_sets_the_key_and_reaches_members():
    """+k key: the room's key is set; the MODE event goes to every member."""
    registry, channel, users = room_with()
    (out,) = registry.mode(users["alice"], "#r", "+k", ["sesame"])
    assert out.payload.message.params == ("#r", "+k", "sesame")
    assert set(out.to) == {users["alice"], users["bob"]}
    assert channel.password == "sesame"


def test_mode_minus_k_clears_the_key():
    """-k (with or without the key as parameter) clears the key, shown as "-k *"."""
    registry, channel, users = room_with("+k", "sesame")
    (out,) = registry.mode(users["alice"], "#r", "-k", ["whatever"])
    assert out.payload.message.params == ("#r", "-k", "*")
    assert channel.password is None
    assert registry.can_join(users["carol"], channel, None) is None


@pytest.mark.parametrize("key", ["a b", "a,b"])
def test_mode_bad_key_is_525(key):
    """+k with a space or a comma in the key: 525, and the room keeps no key."""
    registry, channel, users = room_with()
    (out,) = registry.mode(users["alice"], "#r", "+k", [key])
    assert out.payload.command == "525" and out.to == (users["alice"],)
    assert channel.password is None


def test_mode_limit_sets_and_clears():
    """+l 5 sets the member limit; -l clears it."""
    registry, channel, users = room_with()
    (out,) = registry.mode(users["alice"], "#r", "+l", ["5"])
    assert out.payload.message.params == ("#r", "+l", "5") and channel.limit == 5
    (out,) = registry.mode(users["alice"], "#r", "-l")
    assert out.payload.message.params == ("#r", "-l") and channel.limit is None


@pytest.mark.parametrize("raw", ["0", "-3", "x", "²", "١٢", "1.5", ""])
def test_mode_bad_limit_is_696(raw):
    """+l with anything but a positive ASCII decimal (also "²", which isdigit accepts): 696."""
    registry, channel, users = room_with()
    (out,) = registry.mode(users["alice"], "#r", "+l", [raw])
    assert out.payload.command == "696"
    assert out.payload.params[1:4] == ("#r", "l", raw or "*")
    assert channel.limit is None


@pytest.mark.parametrize("letter", ["o", "v"])
def test_mode_prefix_gives_and_takes(letter):
    """+o / +v nick gives the member that prefix mode; -o / -v takes it back."""
    registry, channel, users = room_with()
    bob = users["bob"]
    (out,) = registry.mode(users["alice"], "#r", "+" + letter, ["BOB"])
    assert out.payload.message.params == ("#r", "+" + letter, "bob")
    assert letter in channel.members[bob]
    (out,) = registry.mode(users["alice"], "#r", "-" + letter, ["bob"])
    assert letter not in channel.members[bob]


def test_mode_prefix_of_a_non_member_is_441():
    """+o for a user who is not in the room: 441, nothing changes."""
    registry, channel, users = room_with()
    assert codes(registry.mode(users["alice"], "#r", "+o", ["carol"])) == ["441"]
    assert users["carol"] not in channel.members


def test_mode_applies_at_most_four_parameter_modes_per_line():
    """ISUPPORT MODES=4: a fifth parameter mode on one line is ignored; flags still apply."""
    registry, channel, users = room_with()
    for n in range(5):
        joined_user = joined(registry, f"v{n}", "#r")[0]
        users[joined_user.nick] = joined_user
    (out,) = registry.mode(users["alice"], "#r", "+vvvvvm", ["v0", "v1", "v2", "v3", "v4"])
    assert out.payload.message.params == ("#r", "+vvvvm", "v0", "v1", "v2", "v3")
    assert "v" not in channel.members[users["v4"]] and channel.moderated


def test_mode_unknown_letter_is_472_and_the_rest_applies():
    """An unknown letter gets 472 naming it; the known letters around it still apply."""
    registry, channel, users = room_with()
    out = registry.mode(users["alice"], "#r", "+zm")
    assert codes(out) == ["MODE", "472"]
    assert out[1].payload.params[1] == "z"
    assert channel.moderated


@pytest.mark.parametrize("letter", ["k", "l", "o", "v"])
def test_mode_missing_param_is_461(letter):
    """+k +l +o +v without their parameter: 461 MODE, nothing changes."""
    registry, channel, users = room_with()
    before = channel.mode_string(), dict(channel.members)
    (out,) = registry.mode(users["alice"], "#r", "+" + letter)
    assert out.payload.command == "461" and out.payload.params[1] == "MODE"
    assert (channel.mode_string(), dict(channel.members)) == before


def test_mode_by_non_operator_is_482():
    """A plain member may not change modes: 482, the room stays as it was."""
    registry, channel, users = room_with()
    assert codes(registry.mode(users["bob"], "#r", "+m")) == ["482"]
    assert not channel.moderated


def test_mode_by_non_member_is_442():
    """Someone outside the room may not change its modes: 442."""
    registry, channel, users = room_with()
    assert codes(registry.mode(users["carol"], "#r", "+i")) == ["442"]
    assert not channel.invite_only


def test_mode_query_shows_the_modes_to_anyone():
    """MODE #r with no changes: 324 and 329; the key itself only to members (InspIRCd)."""
    registry, _, users = room_with("+kl", "sesame", "9")
    out = registry.mode(users["carol"], "#r")
    assert codes(out) == ["324", "329"]
    assert out[0].payload.params[1:] == ("#r", "+ntkl", "<key>", "9")
    inside = registry.mode(users["bob"], "#r")
    assert inside[0].payload.params[1:] == ("#r", "+ntkl", "sesame", "9")


def test_mode_changes_are_one_numbered_event():
    """Several changes in one MODE: one room event, merged signs, its params in order."""
    registry, _, users = room_with()
    events = []
    registry.log.subscribe(events.append)
    registry.mode(users["alice"], "#r", "+mk-t+l", ["key", "4"])
    assert len(events) == 1
    assert events[0].message.params == ("#r", "+mk-t+l", "key", "4")


# ------------------------------------------------------------------------- KICK


def test_kick_by_non_operator_is_482():
    """A plain member may not kick: 482, the target stays."""
    registry, channel, users = room_with()
    assert codes(registry.kick(users["bob"], "#r", "alice")) == ["482"]
    assert users["alice"] in channel.members


def test_kick_of_someone_not_on_the_channel_is_441():
    """Kicking a user who is not in the room: 441 naming them and the room."""
    registry, _, users = room_with()
    (out,) = registry.kick(users["alice"], "#r", "carol")
    assert out.payload.command == "441" and out.payload.params[1:3] == ("carol", "#r")


def test_kick_of_an_unknown_nick_is_401():
    """Kicking a nick nobody has: 401."""
    registry, _, users = room_with()
    assert codes(registry.kick(users["alice"], "#r", "nobody")) == ["401"]


def test_kicked_user_is_removed_and_told():
    """A KICK event reaches every member (the kicked one too); then the user is out of the room."""
    registry, channel, users = room_with()
    alice, bob = users["alice"], users["bob"]
    (out,) = registry.kick(alice, "#r", "bob", "bye")
    assert out.payload.message.params == ("#r", "bob", "bye")
    assert set(out.to) == {alice, bob}
    assert bob not in channel.members and "#r" not in bob.channels
    assert registry.can_read(bob, "#r") is False


def test_kick_reason_defaults_to_the_kicker():
    """KICK without a reason gives the kicker's nick as the reason."""
    registry, _, users = room_with()
    (out,) = registry.kick(users["alice"], "#r", "bob")
    assert out.payload.message.params[-1] == "alice"


# ----------------------------------------------------------------------- INVITE


def test_invite_to_invite_only_room_needs_operator():
    """On a +i room a plain member may not invite: 482, nobody is invited."""
    registry, channel, users = room_with("+i")
    assert codes(registry.invite(users["bob"], "carol", "#r")) == ["482"]
    assert registry.can_join(users["carol"], channel, None) is not None


def test_invite_by_member_of_open_room():
    """On a room without +i any member may invite: 341 to the inviter, INVITE to the invited."""
    registry, _, users = room_with()
    out = registry.invite(users["bob"], "carol", "#r")
    assert codes(out) == ["341", "INVITE", "Gated"]
    assert out[1].to == (users["carol"],) and out[1].payload.params == ("carol", "#r")


@pytest.mark.parametrize("changes, inviter, told", [
    ((), "bob", {"alice", "dave"}),  # an open room: every other member
    (("+i",), "alice", set()),  # +i: operators only, and alice is the only one
    (("+io", "dave"), "alice", {"dave"}),
])
def test_invite_notify_audience(changes, inviter, told):
    """invite-notify: the other members (of a +i room its operators), gated by the capability."""
    registry, _, users = room_with()
    joined(registry, "dave", "#r")
    if changes:
        registry.mode(users["alice"], "#r", changes[0], changes[1:])
    out = registry.invite(users[inviter], "carol", "#r")
    gated = out[2].payload
    assert gated.cap == "invite-notify" and gated.message.params == ("carol", "#r")
    assert {u.nick for u in out[2].to} == told


def test_invite_lets_in_once():
    """The invited user joins a +i room; after joining (and leaving) the invitation is used up."""
    registry, channel, users = room_with("+i")
    carol = users["carol"]
    registry.invite(users["alice"], "carol", "#r")
    assert codes(registry.join(carol, "#r"))[0] == "JOIN"
    assert carol in channel.members
    registry.part(carol, "#r")
    assert codes(registry.join(carol, "#r")) == ["473"]


def test_invite_of_someone_already_on_channel_is_443():
    """Inviting a member: 443 naming them and the room."""
    registry, _, users = room_with()
    (out,) = registry.invite(users["alice"], "bob", "#r")
    assert out.payload.command == "443" and out.payload.params[1:3] == ("bob", "#r")


def test_invite_by_non_member_is_442():
    """Someone outside the room may not invite to it: 442."""
    registry, _, users = room_with()
    dave, _ = joined(registry, "dave")
    assert codes(registry.invite(users["carol"], "dave", "#r")) == ["442"]
    assert not dave.invited_to


# ----------------------------------------------------------------- registration


def _fresh(registry, host="127.0.92.7"):
    conn = Conn()
    return registry.connect(conn, host), conn


@pytest.mark.parametrize("order", ["nick first", "user first"])
def test_registration_needs_nick_and_user_in_either_order(order):
    """NICK then USER or USER then NICK: nothing until both, then the welcome burst."""
    registry, _ = make()
    user, _ = _fresh(registry)
    steps = [lambda: registry.offer_nick(user, "dan"),
             lambda: registry.offer_user(user, "dan", "Dan D")]
    if order == "user first":
        steps.reverse()
    assert steps[0]() == []
    assert not user.registered
    out = steps[1]()
    assert codes(out)[:4] == ["001", "002", "003", "004"]
    assert user.registered and registry.find_user("DAN") is user
    assert user.realname == "Dan D"


def test_wrong_server_password_is_464_and_disconnect():
    """PASS with the wrong password: at NICK+USER, 464 and a Disconnect; not registered."""
    registry, _ = make(password="sesame")
    user, _ = _fresh(registry)
    assert registry.offer_password(user, "guess") == []
    registry.offer_nick(user, "dan")
    out = registry.offer_user(user, "dan", "Dan")
    assert codes(out) == ["464", "Disconnect"]
    assert out[1].to == (user,) and isinstance(out[1].payload, Disconnect)
    assert not user.registered and registry.find_user("dan") is None


def test_missing_server_password_is_464():
    """No PASS at all on a server with a password: 464 and a Disconnect."""
    registry, _ = make(password="sesame")
    user, _ = _fresh(registry)
    registry.offer_nick(user, "dan")
    assert codes(registry.offer_user(user, "dan", "Dan")) == ["464", "Disconnect"]


def test_right_server_password_registers():
    """PASS with the server's password: NICK+USER register as usual."""
    registry, _ = make(password="sesame")
    user, _ = _fresh(registry)
    assert registry.offer_password(user, "sesame") == []
    registry.offer_nick(user, "dan")
    assert codes(registry.offer_user(user, "dan", "Dan"))[0] == "001"
    assert user.registered


def test_pass_after_registration_is_462():
    """PASS once registered: 462."""
    registry, _ = make()
    dan, _ = joined(registry, "dan")
    assert codes(registry.offer_password(dan, "x")) == ["462"]
    assert codes(registry.offer_user(dan, "x", "y")) == ["462"]


def test_cap_holds_registration_until_release():
    """CAP before NICK/USER holds the welcome until CAP END (release_registration)."""
    registry, _ = make()
    user, _ = _fresh(registry)
    registry.hold_registration(user)
    assert registry.offer_nick(user, "dan") == []
    assert registry.offer_user(user, "dan", "Dan") == []
    assert not user.registered
    assert codes(registry.release_registration(user))[0] == "001"
    assert user.registered


def test_release_without_hold_does_nothing():
    """CAP END with no hold (or a second CAP END): nothing happens."""
    registry, _ = make()
    user, _ = _fresh(registry)
    registry.offer_nick(user, "dan")
    assert registry.release_registration(user) == []
    assert not user.registered


def test_release_before_nick_and_user_waits_for_them():
    """CAP END before USER: registration goes on when USER arrives."""
    registry, _ = make()
    user, _ = _fresh(registry)
    registry.hold_registration(user)
    registry.offer_nick(user, "dan")
    assert registry.release_registration(user) == []
    assert codes(registry.offer_user(user, "dan", "Dan"))[0] == "001"


def test_nick_collision_between_two_unregistered_users_is_436():
    """Two unregistered clients ask for one nick: the first to finish gets it, the other 436."""
    registry, _ = make()
    first, _ = _fresh(registry, "127.0.92.1")
    second, _ = _fresh(registry, "127.0.92.2")
    assert registry.offer_nick(first, "dan") == []
    assert registry.offer_nick(second, "Dan") == []  # not held before registration
    assert codes(registry.offer_user(first, "a", "A"))[0] == "001"
    assert codes(registry.offer_user(second, "b", "B")) == ["436"]
    assert not second.registered and registry.find_user("dan") is first
    # The loser picks another nick and registers with the USER it already gave.
    assert codes(registry.offer_nick(second, "dan2"))[0] == "001"
    assert second.user == "b"


def test_nick_of_a_registered_user_is_433_before_registration():
    """NICK for a nick a registered user holds: 433 at once."""
    registry, _ = make()
    joined(registry, "dan")
    user, _ = _fresh(registry)
    assert codes(registry.offer_nick(user, "DAN")) == ["433"]


def test_per_address_limit_refuses_and_quit_frees_a_slot():
    """max_per_ip connections from one address; the next is None; a QUIT frees one slot."""
    from twistchat.core.registry import Limits

    registry, _ = make(limits=Limits(max_per_ip=2))
    a = registry.connect(Conn(), "127.0.198.1")
    b = registry.connect(Conn(), "127.0.198.1", by_broadcast=True)  # another front-end
    assert a is not None and b is not None
    assert registry.connect(Conn(), "127.0.198.1") is None
    assert registry.connect(Conn(), "127.0.198.2") is not None  # other addresses unaffected
    registry.quit(a)
    assert registry.connect(Conn(), "127.0.198.1") is not None
    assert registry.connect(Conn(), "127.0.198.1") is None


def test_refused_connection_is_not_counted():
    """A connection refused by the per-address limit does not count as connected."""
    from twistchat.core.registry import Limits

    registry, _ = make(limits=Limits(max_per_ip=1))
    registry.connect(Conn(), "127.0.198.1")
    registry.connect(Conn(), "127.0.198.1")
    assert registry.connection_count() == 1


# ------------------------------------------- bugs these tests found (fixed)


def test_minus_k_always_takes_its_parameter():
    """MODE #r -k+o key bob on a room without a key: -k eats "key", +o gives bob op."""
    registry, channel, users = room_with()
    out = registry.mode(users["alice"], "#r", "-k+o", ["key", "bob"])
    assert codes(out) == ["MODE"]
    assert registry.is_operator(users["bob"], channel)


def test_invitation_does_not_pass_to_the_next_holder_of_the_nick():
    """carol is invited to +i #r and quits; a stranger who takes the nick carol is kept out."""
    registry, channel, users = room_with("+i")
    registry.invite(users["alice"], "carol", "#r")
    registry.quit(users["carol"])
    stranger, _ = joined(registry, "carol")
    assert registry.can_join(stranger, channel, None) is not None


def test_quit_twice_frees_the_address_once():
    """A second quit of the same user changes nothing: counts and per-address slots hold."""
    registry, _ = make(limits=Limits(max_per_ip=1))
    user = registry.connect(Conn(), "127.0.0.9")
    assert registry.quit(user) == [] and registry.quit(user) == []
    assert registry.connection_count() == 0
    first = registry.connect(Conn(), "127.0.0.9")
    assert first is not None and registry.connect(Conn(), "127.0.0.9") is None


# ------------------------------------------------ WHO, LUSERS, USER (issue #13, first items)


def who_nicks(out) -> list:
    """The nicks of the 352 lines of a WHO answer, in order; the answer ends with 315."""
    assert codes(out)[-1] == "315"
    return [d.payload.params[5] for d in out if d.payload.command == "352"]


@pytest.mark.parametrize("mask, nicks", [
    ("coolni*", ["coolnick", "CoolNinja"]),
    ("COOLN?CK", ["coolnick"]),
    ("*", ["coolnick", "CoolNinja", "plain"]),
    ("0", ["coolnick", "CoolNinja", "plain"]),
    ("*ninja*", ["CoolNinja"]),
    ("nobody*", []),
    ("[]", []),
])
def test_who_matches_masks_against_nick_user_host_and_realname(mask, nicks):
    """WHO coolni* lists the users it matches (it listed none); case folded, * and ?."""
    registry, _ = make()
    asker, _ = joined(registry, "plain")
    joined(registry, "coolnick")
    joined(registry, "CoolNinja")
    assert sorted(who_nicks(registry.who(asker, mask)), key=str.lower) == sorted(
        nicks, key=str.lower)


def test_who_mask_hides_invisible_users_from_strangers_only():
    """+i users are listed to those who share a room with them, and to themselves."""
    registry, _ = make()
    stranger, _ = joined(registry, "stranger")
    friend, _ = joined(registry, "friend", "#r")
    ghost, _ = joined(registry, "ghost", "#r")
    registry.mode(ghost, "ghost", "+i")
    assert who_nicks(registry.who(stranger, "gh*")) == []
    assert who_nicks(registry.who(friend, "gh*")) == ["ghost"]
    assert who_nicks(registry.who(ghost, "gh*")) == ["ghost"]


def test_who_shows_every_prefix_with_multi_prefix():
    """An op with voice is H@ plainly and H@+ with multi-prefix (as NAMES already was)."""
    registry, channel, users = room_with("+v", "alice")
    plain = {d.payload.params[5]: d.payload.params[6] for d in registry.who(users["bob"], "#r")
             if d.payload.command == "352"}
    multi = {d.payload.params[5]: d.payload.params[6]
             for d in registry.who(users["bob"], "#r", multi_prefix=True)
             if d.payload.command == "352"}
    assert plain == {"alice": "H@", "bob": "H"} and multi == {"alice": "H@+", "bob": "H"}


def test_lusers_reports_the_peak_as_the_maximum():
    """265/266 say current and max users: the max is the peak, not the current count."""
    registry, _ = make()
    users = [joined(registry, f"u{i}")[0] for i in range(3)]
    registry.quit(users[1])
    registry.quit(users[2])
    lines = {d.payload.command: d.payload.params for d in registry.lusers(users[0])}
    assert lines["265"][1:3] == ("1", "3") and lines["266"][1:3] == ("1", "3")


def test_user_with_an_empty_realname_is_461():
    """USER u * * : has too few parameters (the realname may not be empty)."""
    from twistchat.core import commands
    from twistchat.wire import Message

    registry, _ = make()
    user = registry.connect(Conn(), "127.0.0.2")
    out = commands.dispatch(registry, user, Message("USER", ("u", "*", "*", "")))
    assert codes(out) == ["461"] and user.pending_user is None


# ------------------------------------------------------------------ bans (+b, issue #13)


def test_ban_keeps_a_matching_user_out_and_invitation_lets_them_in():
    """MODE #r +b carol: carol gets 474; an INVITE from an op lets her in anyway."""
    registry, channel, users = room_with("+b", "carol")
    assert channel.bans.keys() == {"carol!*@*"}
    assert codes(registry.join(users["carol"], "#r")) == ["474"]
    registry.invite(users["alice"], "carol", "#r")
    assert "JOIN" in codes(registry.join(users["carol"], "#r"))


@pytest.mark.parametrize("given, stored", [
    ("bob", "bob!*@*"), ("*@127.0.0.1", "*!*@127.0.0.1"), ("bob!x", "bob!x@*"),
    ("*!*@*", "*!*@*"),
])
def test_ban_masks_are_stored_as_nick_user_host(given, stored):
    """A nick alone, user@host or nick!user: the missing parts are ``*`` (as servers do)."""
    registry, channel, users = room_with("+b", given)
    assert list(channel.bans) == [stored]


def test_ban_list_is_367_lines_then_368_and_minus_b_removes_any_case():
    """MODE #r +b lists the bans with who set them; -b CAROL removes carol's."""
    registry, channel, users = room_with("+b", "carol")
    out = registry.mode(users["bob"], "#r", "+b")
    assert codes(out) == ["367", "368"]
    assert out[0].payload.params[1:4] == ("#r", "carol!*@*", users["alice"].source)
    assert codes(registry.mode(users["alice"], "#r", "-b", ["CAROL"])) == ["MODE"]
    assert channel.bans == {}


def test_banned_member_may_not_speak_unless_voiced():
    """A member who matches a ban stays in the room but is silent, unless +v or +o."""
    registry, channel, users = room_with("+b", "bob")
    assert codes(registry.message(users["bob"], "PRIVMSG", "#r", "hi")) == ["404"]
    registry.mode(users["alice"], "#r", "+v", ["bob"])
    assert codes(registry.message(users["bob"], "PRIVMSG", "#r", "hi")) == ["PRIVMSG"]


def test_ban_list_is_bounded():
    """Past MAXLIST=beI:100 a +b is refused with 478 naming b; the list keeps its hundred."""
    from twistchat.core.lists import MAX_LIST

    registry, channel, users = room_with()
    for i in range(MAX_LIST):
        registry.mode(users["alice"], "#r", "+b", [f"n{i}"])
    (full,) = registry.mode(users["alice"], "#r", "+b", ["one-more"])
    assert full.payload.command == "478"
    assert full.payload.params[1:] == ("#r", "b", "Channel list is full")
    assert len(channel.bans) == MAX_LIST


# ------------------------------------------------------------ STATUSMSG (issue #13)


def test_statusmsg_reaches_only_ops_or_voiced_and_ops():
    """PRIVMSG @#r reaches the ops; +#r the voiced and the ops; nobody else, no history."""
    registry, channel, users = room_with("+v", "bob")
    dave, dave_conn = joined(registry, "dave", "#r")
    numbered = []
    registry.log.subscribe(numbered.append)
    (to_ops,) = registry.message(users["bob"], "PRIVMSG", "@#r", "ops only")
    assert to_ops.to == [users["alice"]] and to_ops.payload.params == ("@#r", "ops only")
    (to_voiced,) = registry.message(dave, "PRIVMSG", "+#r", "voice and up")
    assert set(to_voiced.to) == {users["alice"], users["bob"]}
    assert numbered == []


def test_statusmsg_needs_the_right_to_speak():
    """On a +m room an unvoiced member may not send even to the ops (404)."""
    registry, channel, users = room_with("+m")
    assert codes(registry.message(users["bob"], "PRIVMSG", "@#r", "hi")) == ["404"]
    assert codes(registry.message(users["bob"], "PRIVMSG", "@#nowhere", "hi")) == ["403"]


def test_lusers_counts_invisible_users_apart():
    """251: the users seen, then those with +i ("There are 1 users and 1 invisible")."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    bob, _ = joined(registry, "bob")
    deliver(registry.mode(bob, "bob", "+i"))
    out = registry.lusers(alice)
    assert out[0].payload.params[-1] == "There are 1 users and 1 invisible on 1 servers"
