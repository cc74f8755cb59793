"""
Server commands without I/O: WHOWAS, INFO, LINKS, HELP/HELPOP, INVITE's list, KNOCK (#13).

Through the command table (:func:`twistchat.core.commands.dispatch`), as a
front-end calls them; numerics as https://modern.ircdocs.horse/ gives them.
"""

import pytest
from twisted.python.usage import UsageError

from tests.test_registry import Clock, Conn, codes, joined, make, room_with
from tests.udpnet import Raw
from twistchat.core.commands import COMMANDS, dispatch
from twistchat.core.events import deliver
from twistchat.core.helptext import HELP, help_replies
from twistchat.core.invitations import KNOCK_TEXT
from twistchat.core.model import Limits
from twistchat.core.registry import Registry
from twistchat.core.whowas import NickHistory
from twistchat.service import Options
from twistchat.wire import Message, encode, format_message


def run(registry, user, verb, *params):
    return dispatch(registry, user, Message(verb, params))


def lines(out) -> list[str]:
    """The formatted lines of ``out`` (replies are Messages)."""
    return [format_message(d.payload) for d in out]


def params(out, code) -> list[tuple]:
    return [d.payload.params for d in out if d.payload.command == code]


# ---------------------------------------------------------------------- WHOWAS


def gone(registry, nick, realname=None):
    """A user ``nick`` who registers and quits."""
    someone, _ = joined(registry, nick)
    if realname is not None:
        someone.realname = realname
    registry.quit(someone, "bye")
    return someone


def test_whowas_after_quit_is_314_312_369():
    """A nick that quit: 314 nick user host * :realname, 312 nick server :when, then 369."""
    registry, clock = make()
    asker, _ = joined(registry, "asker")
    bob = gone(registry, "Bob", realname="Bob Real")
    out = run(registry, asker, "WHOWAS", "bob")
    assert codes(out) == ["314", "312", "369"]
    assert out[0].payload.params == ("asker", "Bob", "Bob", bob.host, "*", "Bob Real")
    assert out[1].payload.params[:3] == ("asker", "Bob", "srv")
    assert "2027" in out[1].payload.params[3]  # when it was let go (the clock's 1.8e9 s)
    assert out[2].payload.params == ("asker", "bob", "End of WHOWAS")
    assert lines(out)[0].endswith(" * :Bob Real")  # the real name is free text


def test_whowas_unknown_nick_is_406_then_369():
    """No history for the nick: 406 ERR_WASNOSUCHNICK, then 369."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    out = run(registry, asker, "WHOWAS", "nobody")
    assert [d.payload.params for d in out] == [
        ("asker", "nobody", "There was no such nickname"), ("asker", "nobody", "End of WHOWAS")]
    assert codes(out) == ["406", "369"]


def test_whowas_without_a_nick_is_431():
    """WHOWAS with no nick: a single 431 ERR_NONICKNAMEGIVEN."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    assert codes(run(registry, asker, "WHOWAS")) == ["431"]
    assert codes(run(registry, asker, "WHOWAS", "")) == ["431"]


def test_whowas_records_the_old_nick_on_a_nick_change():
    """NICK alice -> carol: WHOWAS alice shows who had it; carol has no history yet."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    alice, _ = joined(registry, "alice")
    deliver(registry.change_nick(alice, "carol"))
    assert params(run(registry, asker, "WHOWAS", "ALICE"), "314")[0][1] == "alice"
    assert codes(run(registry, asker, "WHOWAS", "carol")) == ["406", "369"]


def test_whowas_is_newest_first_and_count_limits_the_entries():
    """Three users had the nick: newest first; count 2 gives two; 0 or junk gives all."""
    registry, clock = make()
    asker, _ = joined(registry, "asker")
    for name in ("first", "second", "third"):
        gone(registry, "dup", realname=name)
        clock.now += 10

    def real(*p):
        return [m[-1] for m in params(run(registry, asker, "WHOWAS", *p), "314")]
    assert real("dup") == ["third", "second", "first"]
    assert real("dup", "2") == ["third", "second"]
    assert real("dup", "1") == ["third"]
    for full in ("0", "-1", "many"):
        assert real("dup", full) == ["third", "second", "first"], full


def test_whowas_keeps_whowas_per_nick_entries_per_nick():
    """Limits.whowas_per_nick: at most that many entries of one nick, the oldest dropped."""
    registry, _ = make(limits=Limits(whowas_per_nick=2))
    asker, _ = joined(registry, "asker")
    for name in ("first", "second", "third"):
        gone(registry, "dup", realname=name)
    assert [m[-1] for m in params(run(registry, asker, "WHOWAS", "dup"), "314")] == \
        ["third", "second"]


def test_whowas_keeps_whowas_entries_in_all():
    """Limits.whowas: at most that many entries over all nicks, the oldest forgotten first."""
    registry, _ = make(limits=Limits(whowas=3))
    asker, _ = joined(registry, "asker")
    for nick in ("n1", "n2", "n3"):
        gone(registry, nick)
    assert codes(run(registry, asker, "WHOWAS", "n1"))[0] == "314"  # exactly at the limit
    gone(registry, "n4")
    assert codes(run(registry, asker, "WHOWAS", "n1")) == ["406", "369"]
    assert all(codes(run(registry, asker, "WHOWAS", n))[0] == "314" for n in ("n2", "n3", "n4"))
    assert len(registry.nick_history) == 3


def test_nick_history_stays_bounded_when_one_nick_churns():
    """One nick recorded again and again: never more than ``total`` entries nor order slots."""
    history = NickHistory(total=4, per_nick=2)
    registry, _ = make()
    user, _ = joined(registry, "churn")
    for _ in range(100):
        history.record(user, 1.0)
    other, _ = joined(registry, "other")
    history.record(other, 2.0)
    assert len(history) == 3 and len(history._order) <= 4
    assert [e.nick for e in history.lookup("churn")] == ["churn", "churn"]
    assert [e.nick for e in history.lookup("other")] == ["other"]


def test_whowas_zero_limit_keeps_nothing():
    """Limits(whowas=0): no history at all (WHOWAS always 406)."""
    registry, _ = make(limits=Limits(whowas=0))
    asker, _ = joined(registry, "asker")
    gone(registry, "bob")
    assert codes(run(registry, asker, "WHOWAS", "bob")) == ["406", "369"]


def test_unregistered_quit_is_not_recorded():
    """A connection that never registered had no nick: nothing to remember."""
    registry, _ = make()
    user = registry.connect(Conn(), "127.0.0.5")
    registry.offer_nick(user, "ghost")
    registry.quit(user)
    assert len(registry.nick_history) == 0


def test_whowas_records_a_udp_sessions_quit():
    """A by_broadcast (UDP) user's QUIT is recorded by the same core call."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    udp = registry.connect(Conn(), "127.0.0.77", by_broadcast=True)
    deliver(registry.register(udp, "udpuser", "udpuser", "UDP Real"))
    deliver(registry.join(udp, "#r"))
    registry.quit(udp, "Session timed out")
    assert params(run(registry, asker, "WHOWAS", "udpuser"), "314") == [
        ("asker", "udpuser", "udpuser", "127.0.0.77", "*", "UDP Real")]


def test_whowas_after_a_real_udp_sessions_quit(world):
    """Over the UDP front-end (in memory): a UDP session asks WHOWAS about another one that quit."""
    alice = Raw(world)
    alice.register("alice")
    alice.command("JOIN #room")
    alice.command("QUIT :bye")
    assert world.registry.find_user("alice") is None
    bob = Raw(world, "127.0.0.2")
    bob.register("bob")
    got = bob.command("WHOWAS alice")
    whowas = [m for m in got if m.command in ("314", "312", "369", "406")]
    assert [m.command for m in whowas] == ["314", "312", "369"]
    assert whowas[0].params[1:5] == ("alice", "alice", "127.0.0.1", "*")


def test_whowas_limits_by_default():
    """Limits defaults: 1000 WHOWAS entries in all, 5 per nick."""
    limits = Registry(clock=Clock()).limits
    assert (limits.whowas, limits.whowas_per_nick) == (1000, 5)


# ------------------------------------------------------------------ INFO, LINKS


def test_info_is_371_lines_then_374():
    """INFO: 371 lines (the software and version first), then one 374."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    out = run(registry, asker, "INFO")
    assert codes(out)[-1] == "374" and set(codes(out)[:-1]) == {"371"} and len(out) >= 2
    assert "twistchat-0.1" in out[0].payload.params[-1]
    assert lines(out)[-1] == ":srv 374 asker :End of INFO list"


def test_links_lists_this_server_only():
    """LINKS: one 364 (this server, linked to itself, 0 hops), then 365."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    out = run(registry, asker, "LINKS")
    assert lines(out) == [":srv 364 asker srv srv :0 twistchat chat server",
                          ":srv 365 asker * :End of /LINKS list"]


@pytest.mark.parametrize("mask,listed", [("srv", True), ("S*", True), ("*.example", False)])
def test_links_mask_matches_the_server_name(mask, listed):
    """LINKS <mask>: the 364 only if the mask matches the name; 365 names the mask."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    out = run(registry, asker, "LINKS", mask)
    assert codes(out) == (["364", "365"] if listed else ["365"])
    assert out[-1].payload.params[1] == mask


# ------------------------------------------------------------------ INVITE list


def test_invite_without_parameters_lists_the_invitations():
    """INVITE alone: 336 per room the user is invited to (sorted), then 337."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#b", "#a")
    bob, _ = joined(registry, "bob")
    assert codes(run(registry, bob, "INVITE")) == ["337"]
    for room in ("#b", "#a"):
        assert "341" in codes(run(registry, alice, "INVITE", "bob", room))
    out = run(registry, bob, "INVITE")
    assert lines(out) == [":srv 336 bob #a", ":srv 336 bob #b",
                          ":srv 337 bob :End of /INVITE list"]


def test_invite_list_forgets_used_and_vanished_invitations():
    """A room joined (invitation used) or gone (all left) is no longer listed."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#a", "#b")
    bob, _ = joined(registry, "bob")
    run(registry, alice, "INVITE", "bob", "#a")
    run(registry, alice, "INVITE", "bob", "#b")
    deliver(registry.join(bob, "#a"))
    deliver(registry.part(alice, "#b"))
    assert codes(run(registry, bob, "INVITE")) == ["337"]


def test_invite_with_one_parameter_is_461():
    """INVITE bob (no room): 461, as before the invite list."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#a")
    assert params(run(registry, alice, "INVITE", "bob"), "461") == [
        ("alice", "INVITE", "Not enough parameters")]


# ------------------------------------------------------------------------ KNOCK


def closed_room(*changes):
    """``#r`` (alice op, bob member) with ``changes`` set by alice; carol outside."""
    return room_with(*changes)


def test_knock_on_an_invite_only_room_tells_its_operators():
    """KNOCK #r: 710 to each operator (not to plain members), 711 to the knocker."""
    registry, channel, users = closed_room("+i")
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    out = run(registry, carol, "KNOCK", "#r")
    assert [(d.to, d.payload.command) for d in out] == [((alice,), "710"), ((carol,), "711")]
    assert lines(out) == [
        f":srv 710 alice #r {carol.source} :has asked for an invite.",
        ":srv 711 carol #r :Your KNOCK has been delivered."]
    assert bob not in [u for d in out for u in d.to]


def test_knock_passes_the_message_on_cut_to_knock_text():
    """KNOCK #r :text: the text with the 710, cut at KNOCK_TEXT bytes."""
    registry, _, users = closed_room("+i")
    out = run(registry, users["carol"], "KNOCK", "#r", "please " + "x" * 300)
    text = out[0].payload.params[-1]
    assert text.startswith("has asked for an invite: please ")
    assert len(text.split(": ", 1)[1].encode()) == KNOCK_TEXT
    assert len(encode(out[0].payload)) <= 512


@pytest.mark.parametrize("changes", [("+k", "sesame"), ("+l", "2")])
def test_knock_on_a_keyed_or_full_room_is_delivered(changes):
    """A room with a key, or full at its limit, is closed too: the knock goes through."""
    registry, _, users = closed_room(*changes)
    assert codes(run(registry, users["carol"], "KNOCK", "#r")) == ["710", "711"]


def test_knock_on_an_open_room_is_713():
    """A room anyone may join: 713 ERR_CHANOPEN (also +l not yet full)."""
    registry, _, users = closed_room()
    assert lines(run(registry, users["carol"], "KNOCK", "#r")) == [
        ":srv 713 carol #r :Channel is open."]
    registry, _, users = closed_room("+l", "3")
    assert codes(run(registry, users["carol"], "KNOCK", "#r")) == ["713"]


def test_knock_on_a_room_one_is_in_is_714():
    """A member knocking: 714 ERR_KNOCKONCHAN."""
    registry, _, users = closed_room("+i")
    assert lines(run(registry, users["bob"], "KNOCK", "#r")) == [
        ":srv 714 bob #r :You are already on that channel."]


def test_knock_errors_for_no_room_no_param_and_a_ban():
    """No such room: 403; no parameter: 461; banned from the room: 404."""
    registry, _, users = closed_room("+i")
    carol = users["carol"]
    assert codes(run(registry, carol, "KNOCK", "#nowhere")) == ["403"]
    assert codes(run(registry, carol, "KNOCK")) == ["461"]
    deliver(registry.mode(users["alice"], "#r", "+b", ["carol!*@*"]))
    assert codes(run(registry, carol, "KNOCK", "#r")) == ["404"]


def test_knock_is_once_per_knock_interval_per_user_per_room():
    """A second KNOCK within knock_interval: 712 naming the interval; after it, delivered."""
    registry, clock = make(limits=Limits(knock_interval=60.0))
    alice, _ = joined(registry, "alice", "#r", "#s")
    deliver(registry.mode(alice, "#r", "+i"))
    deliver(registry.mode(alice, "#s", "+i"))
    carol, _ = joined(registry, "carol")
    dave, _ = joined(registry, "dave")
    assert codes(run(registry, carol, "KNOCK", "#r")) == ["710", "711"]
    clock.now += 59.9
    out = run(registry, carol, "KNOCK", "#r")
    assert codes(out) == ["712"] and "60 seconds" in out[0].payload.params[-1]
    assert codes(run(registry, carol, "KNOCK", "#s")) == ["710", "711"]  # another room
    assert codes(run(registry, dave, "KNOCK", "#r")) == ["710", "711"]  # another user
    clock.now += 0.1  # exactly knock_interval after the first
    assert codes(run(registry, carol, "KNOCK", "#r")) == ["710", "711"]


def test_knocks_remember_only_the_last_interval():
    """Old knocks are dropped as new ones come: the memory stays small."""
    registry, clock = make(limits=Limits(knock_interval=10.0))
    alice, _ = joined(registry, "alice", "#r")
    deliver(registry.mode(alice, "#r", "+i"))
    for n in range(50):
        knocker, _ = joined(registry, f"k{n}")
        run(registry, knocker, "KNOCK", "#r")
        clock.now += 5
    assert len(registry.knocks._last) == 2


def test_knock_text_is_free_text_on_the_wire():
    """KNOCK's message and the 710/711 texts are written after ':' (wire.text_param)."""
    assert format_message(Message("KNOCK", ("#r", "hi"))) == "KNOCK #r :hi"


def test_knock_interval_by_default():
    """Limits default: one KNOCK per user per room a minute."""
    assert Registry(clock=Clock()).limits.knock_interval == 60.0


# ------------------------------------------------------------------------ HELP

def test_every_command_has_help_and_every_help_a_command():
    """Each verb of COMMANDS has a help entry; no entry is for a verb that does not exist."""
    assert set(COMMANDS) <= set(HELP), set(COMMANDS) - set(HELP)
    assert set(HELP) <= set(COMMANDS), set(HELP) - set(COMMANDS)
    for verb, (syntax, what) in HELP.items():
        assert syntax.split()[0] == verb and what.endswith("."), verb


@pytest.mark.parametrize("verb", ["HELP", "HELPOP"])
def test_help_on_a_command_is_704_705_706(verb):
    """HELP privmsg: 704 PRIVMSG title, an empty 705 first, the text, then 706."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    out = run(registry, asker, verb, "privmsg")
    assert codes(out) == ["704", "705", "705", "706"]
    assert {d.payload.params[1] for d in out} == {"PRIVMSG"}  # the subject, casefolded
    assert "PRIVMSG <target>" in out[0].payload.params[2]
    assert lines(out)[1] == ":srv 705 asker PRIVMSG :"
    assert out[2].payload.params[2] == HELP["PRIVMSG"][1]


def test_help_without_subject_lists_the_commands():
    """HELP: 704 * title, 705 lines naming every command, 706."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    out = run(registry, asker, "HELP")
    assert codes(out)[0] == "704" and codes(out)[-1] == "706"
    assert {d.payload.params[1] for d in out} == {"*"}
    listed = " ".join(d.payload.params[2] for d in out if d.payload.command == "705").split()
    assert set(COMMANDS) <= set(listed)
    assert all(len(encode(d.payload)) <= 512 for d in out)


@pytest.mark.parametrize("subject,shown", [("frobnicate", "FROBNICATE"),
                                           ("unknown subject", "*")])
def test_help_on_an_unknown_subject_is_524(subject, shown):
    """An unknown subject: a single 524; a subject that cannot be a parameter shows as *."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    out = run(registry, asker, "HELP", subject)
    assert [d.payload.params for d in out] == [
        ("asker", shown, "No help available on this topic")]
    assert codes(out) == ["524"]


def test_help_on_a_verb_not_in_the_table_is_524():
    """A help entry whose command this server does not serve is not offered."""
    registry, _ = make()
    asker, _ = joined(registry, "asker")
    served = set(COMMANDS) - {"OPER"}
    assert codes(help_replies(registry, asker, "OPER", served)) == ["524"]
    listed = " ".join(d.payload.params[2] for d in help_replies(registry, asker, None, served))
    assert "OPER" not in listed.split()


# ----------------------------------------------------------------------- flags


def test_flags_set_the_whowas_and_knock_limits():
    """--whowas, --whowas-per-nick, --knock-interval reach the registry's Limits."""
    options = Options()
    options.parseOptions(["--whowas=7", "--whowas-per-nick=2", "--knock-interval=1.5"])
    limits = Limits(**options.limits("registry"))
    assert (limits.whowas, limits.whowas_per_nick, limits.knock_interval) == (7, 2, 1.5)
    assert Limits(**_defaults().limits("registry")) == Limits()  # the flags' defaults


@pytest.mark.parametrize("argv", [["--whowas=-1"], ["--whowas-per-nick=0"],
                                  ["--knock-interval=-1"]])
def test_flags_refuse_values_out_of_range(argv):
    """A negative history or interval, or no entry per nick, is refused."""
    with pytest.raises(UsageError):
        Options().parseOptions(argv)


def _defaults():
    options = Options()
    options.parseOptions([])
    return options


# ------------------------------------------------------- every command, one table


def _scene():
    """alice: operator of #open and of #closed (+i); bob in neither; "gone" quit; carol asks."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#open", "#closed")
    deliver(registry.mode(alice, "#closed", "+i"))
    joined(registry, "bob")
    gone(registry, "gone")
    carol, _ = joined(registry, "carol")
    return registry, carol


# A line from carol -> the numerics she is sent, runs of one numeric shown once.
SERVER_COMMANDS = [
    ("WHOWAS", ["431"]),
    ("WHOWAS nobody", ["406", "369"]),
    ("WHOWAS gone", ["314", "312", "369"]),
    ("WHOWAS GONE 1", ["314", "312", "369"]),
    ("INFO", ["371", "374"]),
    ("LINKS", ["364", "365"]),
    ("LINKS s*", ["364", "365"]),
    ("LINKS *.nowhere", ["365"]),
    ("HELP", ["704", "705", "706"]),
    ("HELP whowas", ["704", "705", "706"]),
    ("HELPOP KNOCK", ["704", "705", "706"]),
    ("HELP nosuch", ["524"]),
    ("INVITE", ["337"]),
    ("INVITE bob", ["461"]),
    ("KNOCK", ["461"]),
    ("KNOCK #nowhere", ["403"]),
    ("KNOCK #open", ["713"]),
    ("KNOCK #closed", ["711"]),
]


@pytest.mark.parametrize("line,expected", SERVER_COMMANDS)
def test_server_command_numerics(line, expected):
    """Each server command's numerics to its sender (tests above check their parameters)."""
    registry, carol = _scene()
    verb, *args = line.split()
    mine = [d for d in run(registry, carol, verb, *args) if carol in d.to]
    shown = [c for i, c in enumerate(codes(mine)) if i == 0 or codes(mine)[i - 1] != c]
    assert shown == expected
