"""
IRCv3 capabilities of issue #13 on the TCP side, in memory (StringTransport, task.Clock).

One section per capability: CAP LS 302 and cap-notify, userhost-in-names,
extended-join, invite-notify, setname, chghost, MONITOR, bot mode,
no-implicit-names, client-only tags.  Registry-level rules are tested beside
them with no I/O; the end-to-end test is in tests/test_caps_e2e.py.
"""

import pytest

from tests.memory import MemoryServer, first, numerics
from tests.udpnet import Raw
from twistchat.core.events import TAG_EXTENDED, TAG_TIME, Event, deliver
from twistchat.core.model import Limits
from twistchat.core.registry import Registry
from twistchat.frontends import ircv3
from twistchat.wire import Message


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
    event = Event("#r", 1, 0, "m1", Message("JOIN", ("#r",), "a!a@h"),
                  extended=Message("JOIN", ("#r", "*", "A"), "a!a@h"))
    assert event.line(TAG_EXTENDED) is event.line(TAG_EXTENDED)
    assert event.line(TAG_EXTENDED) == b":a!a@h JOIN #r * :A\r\n"
    assert event.line() == b":a!a@h JOIN #r\r\n"
    plain = Event("#r", 2, 0, "m2", Message("PRIVMSG", ("#r", "x"), "a!a@h"))
    assert plain.line(TAG_EXTENDED | TAG_TIME) is plain.line(TAG_TIME)


def test_udp_session_sees_plain_join(world):
    """A UDP member gets the plain JOIN form of an extended-join event."""
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


# ---------------------------------------------------------------------------- setname


def test_setname_tells_peers_with_the_cap_and_confirms(server):
    """SETNAME: the sender and peers with setname see it; WHOIS shows the new name."""
    alice = server.user("alice", "#r", caps="setname")
    bob = server.user("bob", "#r", caps="setname")
    plain = server.user("plain", "#r")
    alice.take()
    got = alice.ask("SETNAME :Alice Liddell")
    assert [(m.command, m.params) for m in got] == [("SETNAME", ("Alice Liddell",))]
    assert first(got, "SETNAME").source == "alice!alice@127.0.0.1"
    assert first(bob.take(), "SETNAME").params == ("Alice Liddell",)
    assert plain.take() == []
    assert first(plain.ask("WHOIS alice"), "311").params[-1] == "Alice Liddell"


@pytest.mark.parametrize("realname, ok", [
    ("x", True), ("x" * 128, True), ("é" * 64, True),  # 128 bytes
    ("x" * 129, False), ("é" * 64 + "x", False), (" ", False),
])
def test_setname_length_edges(server, realname, ok):
    """Real names of 1 to NAMELEN (128) UTF-8 bytes; others: FAIL SETNAME INVALID_REALNAME."""
    alice = server.user("alice", caps="setname")
    got = alice.ask(f"SETNAME :{realname}")
    if ok:
        assert first(got, "SETNAME").params == (realname,)
    else:
        assert first(got, "FAIL").params[:2] == ("SETNAME", "INVALID_REALNAME")
        assert server.registry.find_user("alice").realname == "alice Real"


def test_setname_without_parameter_is_461(server):
    """SETNAME with no parameter: 461 ERR_NEEDMOREPARAMS."""
    assert numerics(server.user("alice", caps="setname").ask("SETNAME")) == ["461"]


def test_namelen_is_advertised_and_user_realname_cut_to_it(server):
    """ISUPPORT NAMELEN=128; a longer USER realname is cut to 128 bytes."""
    client = server.connect()
    got = client.ask("NICK alice", "USER a 0 * :" + "y" * 300)
    assert "NAMELEN=128" in [p for m in got if m.command == "005" for p in m.params]
    assert server.registry.find_user("alice").realname == "y" * 128


def test_udp_session_can_setname(world):
    """A UDP session sends SETNAME through the one command table: it is confirmed and applied."""
    udp = Raw(world)
    udp.register("udpy")
    got = udp.command("SETNAME :Over UDP")
    assert [(m.command, m.params) for m in got if m.command == "SETNAME"] == [
        ("SETNAME", ("Over UDP",))]
    assert world.registry.find_user("udpy").realname == "Over UDP"
    bad = udp.command("SETNAME :" + "z" * 200)
    assert [m.params[:2] for m in bad if m.command == "FAIL"] == [("SETNAME", "INVALID_REALNAME")]


# ---------------------------------------------------------------------------- chghost


def test_change_host_tells_peers_and_user(server):
    """Registry.change_host: CHGHOST from the old source to peers with chghost and the user."""
    alice = server.user("alice", "#r", caps="chghost")
    bob = server.user("bob", "#r", caps="chghost")
    plain = server.user("plain", "#r")
    alice.take()
    user = server.registry.find_user("alice")
    deliver(server.registry.change_host(user, "al", "vhost.example"))
    for client in (alice, bob):
        line = first(client.take(), "CHGHOST")
        assert line.source == "alice!alice@127.0.0.1"
        assert line.params == ("al", "vhost.example")
    assert plain.take() == []  # no fallback: see core/identity.py
    plain.send("WHOIS alice")
    assert first(plain.take(), "311").params[2:4] == ("al", "vhost.example")
    bob.send("PRIVMSG #r :hi")
    alice.send("PRIVMSG #r :hello")
    assert first(bob.take(), "PRIVMSG").source == "alice!al@vhost.example"


def test_change_host_unchanged_tells_nobody():
    """The same user@host again: no CHGHOST."""
    registry = Registry(clock=lambda: 0.0)
    user = registry.connect(object(), "127.0.0.9")
    registry.offer_nick(user, "alice")
    registry.offer_user(user, "alice", "A")
    assert registry.change_host(user, "alice", "127.0.0.9") == []
    out = registry.change_host(user, "alice", "cloak")
    assert [d.payload.command for d in out] == ["CHGHOST"] and set(out[0].to) == {user}


def test_change_host_keeps_the_per_address_count():
    """A vhost does not move the connection's address: the per-address limit still frees it."""
    registry = Registry(clock=lambda: 0.0, limits=Limits(max_per_ip=1))
    user = registry.connect(object(), "127.0.0.9")
    registry.offer_nick(user, "alice")
    registry.offer_user(user, "alice", "A")
    registry.change_host(user, "alice", "cloak")
    registry.quit(user)
    assert registry.connect(object(), "127.0.0.9") is not None


# ---------------------------------------------------------------------------- MONITOR


def mon(messages):
    """(numeric, last parameter) of each MONITOR reply."""
    return [(m.command, m.params[-1]) for m in messages if m.command in ("730", "731", "732",
                                                                         "733", "734")]


def test_monitor_add_reports_status_then_sign_on_and_off(server):
    """MONITOR + gives 730/731 at once; then 730 when a watched nick registers, 731 on QUIT."""
    server.user("bob")
    watcher = server.user("watcher")
    assert mon(watcher.ask("MONITOR + bob,carol")) == [("730", "bob!bob@127.0.0.1"),
                                                       ("731", "carol")]
    carol = server.user("Carol")
    assert mon(watcher.take()) == [("730", "Carol!Carol@127.0.0.1")]
    carol.send("QUIT :bye")
    carol.proto.connectionLost(None)
    assert mon(watcher.take()) == [("731", "Carol")]


def test_monitor_follows_nick_changes(server):
    """A watched nick renamed: 731 for the old nick, 730 for a watched new one."""
    bob = server.user("bob")
    watcher = server.user("watcher")
    watcher.ask("MONITOR + bob,robert")
    bob.send("NICK robert")
    assert mon(watcher.take()) == [("731", "bob"), ("730", "robert!bob@127.0.0.1")]
    bob.send("NICK ROBERT")  # the same nick under rfc1459 folding: nothing to tell
    assert mon(watcher.take()) == []


def test_monitor_list_remove_clear_status(server):
    """L lists (732/733), - removes, C clears, S reports every watched nick."""
    server.user("bob")
    watcher = server.user("watcher")
    watcher.ask("MONITOR + bob,carol,dave")
    assert mon(watcher.ask("MONITOR L")) == [("732", "bob,carol,dave"),
                                            ("733", "End of MONITOR list")]
    assert watcher.ask("MONITOR - carol") == []
    assert mon(watcher.ask("MONITOR S")) == [("730", "bob!bob@127.0.0.1"), ("731", "dave")]
    assert watcher.ask("MONITOR C") == []
    assert mon(watcher.ask("MONITOR L")) == [("733", "End of MONITOR list")]
    server.user("dave")
    assert mon(watcher.take()) == []


def test_monitor_list_full_is_734():
    """Past MONITOR=<limit>, 734 names the targets left out; those before it are added."""
    server = MemoryServer(registry_limits={"monitor": 2})
    watcher = server.user("watcher")
    got = watcher.ask("MONITOR + a,b,c,d")
    assert mon(got) == [("731", "a,b"), ("734", "Monitor list is full")]
    assert first(got, "734").params[1:3] == ("2", "c,d")
    assert "MONITOR=2" in [p for m in server.connect().ask("NICK x", "USER x 0 * :x")
                           if m.command == "005" for p in m.params]


@pytest.mark.parametrize("line, expected", [
    ("MONITOR", ["461"]), ("MONITOR +", ["461"]), ("MONITOR -", ["461"]),
    ("MONITOR X a", ["461"]), ("MONITOR + #room,a!b,,", []),  # not nicks: skipped
])
def test_monitor_bad_input(server, line, expected):
    """Missing targets or an unknown subcommand: 461; targets that are not nicks: skipped."""
    assert numerics(server.user("watcher").ask(line)) == expected


def test_monitor_list_ends_with_the_watcher(server):
    """A watcher that quits leaves no list behind."""
    watcher = server.user("watcher")
    watcher.ask("MONITOR + bob")
    watcher.send("QUIT")
    watcher.proto.connectionLost(None)
    assert server.registry.monitors.watchers("bob") == set()


def test_extended_monitor_sends_away_setname_chghost_to_watchers(server):
    """extended-monitor watchers outside the user's rooms get its AWAY/SETNAME/CHGHOST."""
    server.user("bob", caps="setname")
    ext = server.user("ext", caps="extended-monitor away-notify setname chghost")
    plain = server.user("plain", caps="away-notify setname chghost")
    half = server.user("half", caps="extended-monitor")  # without away-notify or setname
    for client in (ext, plain, half):
        client.ask("MONITOR + bob")
    user = server.registry.find_user("bob")
    deliver(server.registry.set_away(user, "lunch"))
    deliver(server.registry.set_realname(user, "Robert"))
    deliver(server.registry.change_host(user, "rob", "cloak"))
    assert [m.command for m in ext.take()] == ["AWAY", "SETNAME", "CHGHOST"]
    assert plain.take() == [] and half.take() == []


def test_extended_monitor_no_duplicate_for_room_peers(server):
    """A watcher sharing a room hears AWAY once, as a peer."""
    server.user("bob", "#r")
    ext = server.user("ext", "#r", caps="extended-monitor away-notify")
    ext.ask("MONITOR + bob")
    deliver(server.registry.set_away(server.registry.find_user("bob"), "lunch"))
    assert [m.command for m in ext.take()] == ["AWAY"]


def test_udp_session_can_monitor(world):
    """A UDP session uses MONITOR through the command table: status now, 730 on sign-on."""
    udp = Raw(world)
    udp.register("udpy")
    got = udp.command("MONITOR + pal")
    assert [(m.command, m.params[-1]) for m in got if m.command in ("730", "731")] == [
        ("731", "pal")]
    pal = Raw(world)
    pal.register("pal")
    world.net.run(0.01)
    got = udp.take()
    assert [m.command for m in got if m.command == "730"] == ["730"]


# ------------------------------------------------------- standard-replies, UTF8ONLY


def test_standard_replies_fail_only_with_the_cap(server):
    """A malformed line: FAIL * INVALID_MESSAGE with standard-replies, a server NOTICE without."""
    fancy = server.user("fancy", caps="standard-replies")
    plain = server.user("plain")
    assert first(fancy.ask("@"), "FAIL").params[:2] == ("*", "INVALID_MESSAGE")
    got = plain.ask("@")
    assert [m.command for m in got] == ["NOTICE"] and got[0].params[0] == "plain"
    assert got[0].params[1].startswith("Malformed line")


def test_internal_error_is_fail_with_standard_replies(server, monkeypatch):
    """A bug of ours on a command: FAIL <verb> INTERNAL_ERROR to standard-replies clients."""
    fancy = server.user("fancy", caps="standard-replies")
    plain = server.user("plain")

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.registry, "time", broken)
    assert first(fancy.ask("TIME"), "FAIL").params[:2] == ("TIME", "INTERNAL_ERROR")
    assert [m.command for m in plain.ask("TIME")] == ["NOTICE"]


@pytest.mark.parametrize("line, verb", [
    (b"PRIVMSG #r :caf\xe9", "PRIVMSG"), (b"@t=1 :src!u@h NOTICE x :\xff", "NOTICE"),
    (b"\xff\xfe", "*"),
])
def test_utf8only_fail_names_the_command(server, line, verb):
    """UTF8ONLY is advertised; invalid UTF-8 gets FAIL <command> INVALID_UTF8 from anyone."""
    client = server.user("alice", "#r")
    assert first(client.ask(line), "FAIL").params[:2] == (verb, "INVALID_UTF8")
    tokens = [p for m in server.connect().ask("NICK x", "USER x 0 * :x") if m.command == "005"
              for p in m.params]
    assert "UTF8ONLY" in tokens


# ----------------------------------------------------------------------------- bot mode


def test_bot_mode_tag_whois_and_who(server):
    """+B: BOT=B advertised; the bot tag on its messages (message-tags only), 335, WHO flag B."""
    bot = server.user("bot", "#r")
    tagged = server.user("tagged", "#r", caps="message-tags")
    plain = server.user("plain", "#r")
    assert first(bot.ask("MODE bot +B"), "MODE").params == ("bot", "+B")
    assert first(bot.ask("MODE bot"), "221").params[-1] == "+B"
    tagged.take(), plain.take()
    bot.send("PRIVMSG #r :beep", "NOTICE tagged :boop", "@+typing=active TAGMSG #r")
    got = tagged.take()
    assert [m.command for m in got] == ["PRIVMSG", "NOTICE", "TAGMSG"]
    assert all("bot" in m.tags for m in got)
    assert [m.tags for m in plain.take()] == [{}]
    assert first(plain.ask("WHOIS bot"), "335").params[1:] == ("bot", "is a Bot on twistchat")
    assert "335" not in numerics(plain.ask("WHOIS tagged"))
    assert first(plain.ask("WHO #r"), "352").params[6] == "HB@"
    bot.send("MODE bot -B", "PRIVMSG #r :human now")
    assert "bot" not in first(tagged.take(), "PRIVMSG").tags
    tokens = [p for m in server.connect().ask("NICK x", "USER x 0 * :x") if m.command == "005"
              for p in m.params]
    assert "BOT=B" in tokens


# ------------------------------------------------------------- client-only tags, TAGMSG


def test_typing_tags_relayed_to_message_tags_clients_only(server):
    """+typing on TAGMSG and +draft/reply on PRIVMSG reach message-tags clients, nobody else."""
    alice = server.user("alice", "#r", caps="message-tags")
    tagged = server.user("tagged", "#r", caps="message-tags")
    plain = server.user("plain", "#r")
    tagged.take(), plain.take()
    alice.send("@+typing=active TAGMSG #r", "@+draft/reply=x PRIVMSG #r :yes")
    got = tagged.take()
    assert [(m.command, m.tags.get("+typing"), m.tags.get("+draft/reply")) for m in got] == [
        ("TAGMSG", "active", None), ("PRIVMSG", None, "x")]
    assert [(m.command, m.tags) for m in plain.take()] == [("PRIVMSG", {})]


def test_tagmsg_rate_limited_and_dropped_silently(server):
    """Past the burst (8), TAGMSGs are dropped without a reply; tokens come back with time."""
    alice = server.user("alice", "#r", caps="message-tags")
    bob = server.user("bob", "#r", caps="message-tags")
    bob.take()
    for _ in range(12):
        assert alice.ask("@+typing=active TAGMSG #r") == []
    assert len([m for m in bob.take() if m.command == "TAGMSG"]) == 8
    server.clock.advance(1)  # 2 a second
    alice.send(*["@+typing=paused TAGMSG #r"] * 3)
    assert len([m for m in bob.take() if m.command == "TAGMSG"]) == 2
    alice.send("PRIVMSG #r :words are not limited by it")
    assert first(bob.take(), "PRIVMSG")


def test_tagmsg_rate_limit_at_registry_level():
    """Registry.tagmsg: the per-user bucket (tagmsg_burst, tagmsg_rate), other users apart."""
    now = [100.0]
    registry = Registry(clock=lambda: now[0], limits=Limits(tagmsg_burst=2, tagmsg_rate=1.0))
    users = []
    for nick in ("a", "b"):
        user = registry.connect(object(), "127.0.0.9")
        registry.offer_nick(user, nick)
        registry.offer_user(user, nick, nick)
        registry.join(user, "#r")
        users.append(user)
    a, b = users
    sent = [bool(registry.tagmsg(a, "#r", {"+typing": "active"})) for _ in range(3)]
    assert sent == [True, True, False]
    assert registry.tagmsg(b, "#r", {"+typing": "active"})
    now[0] += 1.0
    assert registry.tagmsg(a, "#r", {"+typing": "done"})
