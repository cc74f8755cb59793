"""
The IRC front-end on StringTransport and task.Clock: registration, commands,
error numerics, limits and bad input.

Each error numeric of issue #3 has a row in ERROR_CASES below.
"""

import pytest

from tests.memory import MemoryServer, first, numerics


@pytest.fixture
def server():
    return MemoryServer()


# ------------------------------------------------------------------ registration


def test_registration_sends_welcome_burst(server):
    """NICK + USER registers: 001-005, LUSERS, then 422 when there is no MOTD."""
    client = server.connect()
    client.send("NICK alice", "USER al 0 * :Alice Liddell")
    got = numerics(client.take())
    assert got[:4] == ["001", "002", "003", "004"]
    assert "005" in got and "251" in got and got[-1] == "422"


def test_isupport_advertises_limits_and_casemapping(server):
    """005 names CASEMAPPING, CHANTYPES, PREFIX, NICKLEN, CHANNELLEN, TOPICLEN, NETWORK, LINELEN."""
    client = server.connect()
    client.send("NICK alice", "USER al 0 * :Alice")
    tokens = [p for m in client.take() if m.command == "005" for p in m.params[1:-1]]
    for token in ("CASEMAPPING=rfc1459", "CHANTYPES=#", "PREFIX=(ov)@+", "NICKLEN=30",
                  "CHANNELLEN=50", "TOPICLEN=390", "NETWORK=twistchat", "LINELEN=512"):
        assert token in tokens


def test_motd_lines_are_sent(server):
    """With a MOTD: 375, one 372 per line, 376."""
    server = MemoryServer(motd=["Be kind.", "No spam."])
    client = server.connect()
    client.send("NICK alice", "USER al 0 * :Alice")
    got = client.take()
    assert [m.params[1] for m in got if m.command == "372"] == ["- Be kind.", "- No spam."]
    assert numerics(got)[-1] == "376"


def test_password_accepted(server):
    """PASS with the right password registers."""
    server = MemoryServer(password="s3cret")
    client = server.connect()
    client.send("PASS s3cret", "NICK alice", "USER al 0 * :Alice")
    assert "001" in numerics(client.take())


def test_cap_negotiation_holds_registration_until_end(server):
    """After CAP LS the server waits for CAP END before 001."""
    client = server.connect()
    client.send("CAP LS 302", "NICK alice", "USER al 0 * :Alice")
    got = client.take()
    assert first(got, "CAP").params[1] == "LS"
    assert "001" not in numerics(got)
    client.send("CAP REQ :server-time echo-message")
    assert first(client.take(), "CAP").params[1:] == ("ACK", "server-time echo-message")
    client.send("CAP END")
    assert "001" in numerics(client.take())


def test_cap_req_unknown_is_nak_all_or_nothing(server):
    """A REQ naming one unknown capability is refused whole (NAK) and enables nothing."""
    client = server.connect()
    client.send("CAP REQ :server-time bogus-cap")
    assert first(client.take(), "CAP").params[1] == "NAK"
    client.send("CAP LIST")
    assert first(client.take(), "CAP").params[2] == ""


def test_echo_message_returns_own_privmsg(server):
    """With echo-message the sender sees its own PRIVMSG; without it does not."""
    alice = server.user("alice", "#r")
    bob = server.connect()
    bob.send("CAP REQ echo-message", "CAP END", "NICK bob", "USER b 0 * :Bob", "JOIN #r")
    bob.take()
    bob.send("PRIVMSG #r :hi")
    assert [m.command for m in bob.take()] == ["PRIVMSG"]
    assert [m.command for m in alice.take()] == ["JOIN", "PRIVMSG"]
    assert alice.ask("PRIVMSG #r :hey") == []


def test_server_time_tags_room_events(server):
    """A server-time client gets a time tag on room lines; a plain client gets none."""
    plain = server.user("plain", "#r")
    timed = server.connect()
    timed.send("CAP REQ server-time", "CAP END", "NICK timed", "USER t 0 * :T", "JOIN #r")
    timed.take()
    plain.send("PRIVMSG #r :hello")
    line = first(timed.take(), "PRIVMSG")
    assert line.tags["time"].endswith("Z")
    timed.send("PRIVMSG #r :back")
    assert first(plain.take(), "PRIVMSG").tags == {}


def test_ping_is_answered(server):
    """PING token gets PONG server token, also before registration."""
    client = server.connect()
    assert first(client.ask("PING abc"), "PONG").params == ("srv", "abc")


# --------------------------------------------------------------- rooms and talk


def test_first_joiner_is_operator_and_gets_names(server):
    """JOIN creates the room; its first member is @, NAMES ends with 366."""
    alice = server.user("alice")
    got = alice.ask("JOIN #lobby")
    assert got[0].command == "JOIN" and got[0].source == "alice!alice@127.0.0.1"
    assert first(got, "353").params[-1] == "@alice"
    assert got[-1].command == "366"


def test_join_comma_list_and_join_zero(server):
    """JOIN #a,#b joins both; JOIN 0 parts every room."""
    alice = server.user("alice")
    got = alice.ask("JOIN #a,#b")
    assert [m.params[0] for m in got if m.command == "JOIN"] == ["#a", "#b"]
    got = alice.ask("JOIN 0")
    assert sorted(m.params[0] for m in got if m.command == "PART") == ["#a", "#b"]
    assert server.registry.room_count() == 0


def test_privmsg_reaches_room_members_but_not_sender(server):
    """A room PRIVMSG goes to the other members, with the sender's prefix."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    alice.take()
    bob.send("PRIVMSG #r :hello there")
    got = alice.take()
    assert got[0].command == "PRIVMSG" and got[0].params == ("#r", "hello there")
    assert got[0].source.startswith("bob!")
    assert bob.take() == []


def test_room_event_bytes_formatted_once(server):
    """Every plain member receives the very same bytes object for a room line."""
    members = [server.user(f"u{i}", "#r") for i in range(5)]
    for m in members:
        m.take()
    written = []
    for m in members[1:]:
        m.transport.write = written.append
    members[0].send("PRIVMSG #r :fan out")
    assert len(written) == 4 and all(w is written[0] for w in written)


def test_private_message_and_away_reply(server):
    """PRIVMSG to a nick reaches only that nick; an away target answers 301."""
    alice, bob = server.user("alice"), server.user("bob")
    bob.send("AWAY :lunch")
    assert numerics(bob.take()) == ["306"]
    got = alice.ask("PRIVMSG Bob :psst")
    assert first(got, "301").params[1:] == ("bob", "lunch")
    assert first(bob.take(), "PRIVMSG").params == ("bob", "psst")
    bob.send("AWAY")
    assert numerics(bob.take()) == ["305"]


def test_notice_never_gets_error_replies(server):
    """NOTICE to a missing nick is silently dropped (RFC 2812 3.3.2)."""
    alice = server.user("alice")
    assert alice.ask("NOTICE nobody :hi") == []


def test_nicks_are_case_insensitive_rfc1459(server):
    """[]\\~ fold to {}|^: 'Foo[1]' and 'foo{1}' are the same nick."""
    server.user("Foo[1]")
    client = server.connect()
    assert numerics(client.ask("NICK foo{1}")) == ["433"]


def test_room_names_are_case_insensitive(server):
    """#Lobby and #lobby are one room, shown as first spelt."""
    alice = server.user("alice", "#Lobby")
    bob = server.user("bob")
    got = bob.ask("JOIN #LOBBY")
    assert got[0].params == ("#Lobby",)
    alice.take()


def test_nick_change_is_seen_once_by_peers(server):
    """A nick change in two shared rooms reaches each peer once and is numbered in both rooms."""
    alice, bob = server.user("alice", "#a", "#b"), server.user("bob", "#a", "#b")
    alice.take()
    seq_a = server.registry.latest("#a")
    bob.send("NICK robert")
    assert [m.command for m in alice.take()] == ["NICK"]
    assert first(bob.take(), "NICK").params == ("robert",)
    assert server.registry.latest("#a") == seq_a + 1
    assert server.registry.find_user("robert") is not None
    assert server.registry.find_user("bob") is None


def test_quit_tells_peers_and_frees_nick(server):
    """QUIT: peers see QUIT with the reason; the quitter gets ERROR; the nick is free."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    alice.take()
    got = bob.ask("QUIT :gone fishing")
    assert got[0].command == "ERROR" and bob.closed
    bob.proto.connectionLost(None)
    quit_line = first(alice.take(), "QUIT")
    assert quit_line.params == ("Quit: gone fishing",)
    assert server.registry.find_user("bob") is None


def test_topic_set_and_query(server):
    """The operator sets the topic; everyone sees TOPIC; a later joiner gets 332/333."""
    alice = server.user("alice", "#r")
    alice.send("TOPIC #r :Maths at 10")
    assert first(alice.take(), "TOPIC").params == ("#r", "Maths at 10")
    bob = server.user("bob")
    got = bob.ask("JOIN #r")
    assert first(got, "332").params[-1] == "Maths at 10"
    assert first(got, "333").params[2].startswith("alice!")
    assert first(bob.ask("TOPIC #r"), "332").params[-1] == "Maths at 10"


def test_topic_without_t_mode_anyone_may_set(server):
    """After MODE -t a plain member may set the topic."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    alice.send("MODE #r -t")
    assert first(bob.ask("TOPIC #r :anyone"), "TOPIC").params[1] == "anyone"


def test_topic_is_cut_to_topiclen(server):
    """A topic longer than TOPICLEN is cut to it."""
    server = MemoryServer(registry_limits={"topiclen": 10})
    alice = server.user("alice", "#r")
    assert first(alice.ask("TOPIC #r :0123456789abcdef"), "TOPIC").params[1] == "0123456789"


def test_channel_modes_query_and_set(server):
    """MODE #r shows +nt; an operator sets +m+l+k and everyone sees one MODE line."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    assert first(alice.ask("MODE #r"), "324").params[2:] == ("+nt",)
    bob.take()
    alice.send("MODE #r +mlk 5 key")
    assert first(bob.take(), "MODE").params == ("#r", "+mlk", "5", "key")
    assert first(alice.ask("MODE #r"), "324").params[2:] == ("+mntkl", "key", "5")


def test_voice_and_op_modes(server):
    """+v lets a member speak in +m; +o makes an operator; NAMES shows @ and +."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    alice.send("MODE #r +m")
    assert numerics(bob.ask("PRIVMSG #r :hi")) == ["404"]
    alice.send("MODE #r +v bob")
    assert bob.ask("PRIVMSG #r :now I can") == []
    alice.send("MODE #r +o bob")
    names = first(alice.ask("NAMES #r"), "353").params[-1].split()
    assert sorted(names) == ["@alice", "@bob"]


def test_multi_prefix_shows_all_prefixes(server):
    """With multi-prefix NAMES shows @+ for an opped, voiced member."""
    alice = server.connect()
    alice.send("CAP REQ multi-prefix", "CAP END", "NICK alice", "USER a 0 * :A", "JOIN #r",
               "MODE #r +v alice")
    assert first(alice.ask("NAMES #r"), "353").params[-1] == "@+alice"


def test_ban_list_query_ends_cleanly(server):
    """MODE #r b (asked by clients on join) answers 368 with an empty list."""
    alice = server.user("alice", "#r")
    assert numerics(alice.ask("MODE #r b")) == ["368"]


def test_user_mode_query_and_set(server):
    """MODE nick shows 221; +i is accepted and echoed."""
    alice = server.user("alice")
    assert first(alice.ask("MODE alice"), "221").params[1] == "+"
    assert first(alice.ask("MODE alice +i"), "MODE").params == ("alice", "+i")
    assert first(alice.ask("MODE alice"), "221").params[1] == "+i"


def test_kick_removes_member(server):
    """KICK by an operator: everyone sees it, the kicked user is out."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    alice.take()
    alice.send("KICK #r bob :be nice")
    assert first(bob.take(), "KICK").params == ("#r", "bob", "be nice")
    assert numerics(bob.ask("PRIVMSG #r :hi")) == ["404"]


def test_invite_lets_user_into_invite_only_room(server):
    """+i keeps people out (473) until an operator INVITEs them (341 + INVITE)."""
    alice, bob = server.user("alice", "#r"), server.user("bob")
    alice.send("MODE #r +i")
    assert numerics(bob.ask("JOIN #r")) == ["473"]
    got = alice.ask("INVITE bob #r")
    assert numerics(got) == ["341"]
    assert first(bob.take(), "INVITE").params == ("bob", "#r")
    assert bob.ask("JOIN #r")[0].command == "JOIN"


def test_names_list_who_whois_ison_userhost(server):
    """The query commands answer with their numerics."""
    alice = server.user("alice", "#r")
    server.user("bob", "#r")
    alice.send("TOPIC #r :hi")
    alice.take()
    listing = alice.ask("LIST")
    assert numerics(listing) == ["321", "322", "323"]
    assert first(listing, "322").params[1:] == ("#r", "2", "hi")
    who = alice.ask("WHO #r")
    assert numerics(who) == ["352", "352", "315"]
    whois = alice.ask("WHOIS bob")
    assert numerics(whois) == ["311", "319", "312", "317", "318"]
    assert first(whois, "319").params[-1] == "#r"
    assert first(alice.ask("ISON bob carol alice"), "303").params[1] == "bob alice"
    assert first(alice.ask("USERHOST bob"), "302").params[1] == "bob=+bob@127.0.0.1"


def test_lusers_version_time_motd(server):
    """LUSERS, VERSION, TIME and MOTD answer."""
    alice = server.user("alice")
    assert "251" in numerics(alice.ask("LUSERS"))
    assert numerics(alice.ask("VERSION"))[0] == "351"
    assert numerics(alice.ask("TIME")) == ["391"]
    assert numerics(alice.ask("MOTD")) == ["422"]


# ------------------------------------------------------------- error numerics

# (numeric, what sets it up, the line that errs).  Setup lines run as "alice"
# (registered, operator of #r, with "bob" registered and in #r unless said).
ERROR_CASES = [
    ("401", [], "PRIVMSG nobody :hi"),
    ("403", [], "PART #nowhere"),
    ("404", ["MODE #r +m"], "@as=bob PRIVMSG #r :hi"),
    ("411", [], "PRIVMSG"),
    ("412", [], "PRIVMSG #r"),
    ("421", [], "FROBNICATE"),
    ("431", [], "NICK"),
    ("432", [], "NICK 9lives"),
    ("433", [], "NICK bob"),
    ("441", [], "KICK #r carol"),
    ("442", [], "@as=carol PART #r"),
    ("443", [], "INVITE bob #r"),
    ("461", [], "JOIN"),
    ("462", [], "USER a 0 * :again"),
    ("471", ["MODE #r +l 2"], "@as=carol JOIN #r"),
    ("473", ["MODE #r +i"], "@as=carol JOIN #r"),
    ("475", ["MODE #r +k sesame"], "@as=carol JOIN #r"),
    ("482", [], "@as=bob TOPIC #r :not an op"),
]


@pytest.mark.parametrize("code, setup, line", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_numeric(server, code, setup, line):
    """Each rule violation answers its RFC 2812 numeric, and the connection lives."""
    clients = {"alice": server.user("alice", "#r"), "bob": server.user("bob", "#r"),
               "carol": server.user("carol")}
    if code == "441":
        clients["carol"].send("JOIN #elsewhere")
    for setup_line in setup:
        clients["alice"].send(setup_line)
    who = "alice"
    if line.startswith("@as="):
        who, line = line[4:].split(" ", 1)
    client = clients[who]
    got = client.ask(line)
    assert code in numerics(got), [str(m) for m in got]
    assert not client.closed
    assert "001" not in numerics(client.ask("PING still-here")) and not client.closed


def test_error_451_before_registration(server):
    """Commands before registration get 451."""
    client = server.connect()
    assert numerics(client.ask("JOIN #r")) == ["451"]


def test_error_464_wrong_password(server):
    """A wrong PASS gets 464 and the connection is closed."""
    server = MemoryServer(password="s3cret")
    client = server.connect()
    got = client.ask("PASS wrong", "NICK alice", "USER al 0 * :Alice")
    assert numerics(got) == ["464"] and client.closed


def test_error_436_nick_collision_between_unregistered_clients(server):
    """Two unregistered clients ask for one nick: the first to finish wins, the other gets 436."""
    first_client, second = server.connect(), server.connect()
    first_client.send("CAP LS 302", "NICK same", "USER a 0 * :A")
    second.send("NICK same", "USER b 0 * :B")
    assert "001" in numerics(second.take())
    first_client.take()
    got = first_client.ask("CAP END")
    assert numerics(got) == ["436"]
    assert "001" in numerics(first_client.ask("NICK other"))


def test_error_417_line_too_long_connection_lives(server):
    """A 511-byte line body is refused with 417; the next line works."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    prefix = "PRIVMSG #r :"
    longest = prefix + "x" * (510 - len(prefix))
    assert bob.ask(longest) == []
    assert len(first(alice.take(), "PRIVMSG").params[1]) == 510 - len(prefix)
    got = bob.ask(longest + "x", "PRIVMSG #r :after")
    assert numerics(got) == ["417"]
    assert first(alice.take(), "PRIVMSG").params[1] == "after"


def test_error_417_for_line_past_the_buffer_limit(server):
    """A line longer than every limit (tags included) gets one 417 and is skipped whole."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    bob.take()
    huge = b"PRIVMSG #r :" + b"y" * 20000
    bob.proto.dataReceived(huge[:9000])
    bob.proto.dataReceived(huge[9000:] + b"\r\nPRIVMSG #r :next\r\n")
    server.clock.advance(0)
    assert numerics(bob.take()) == ["417"]
    assert [m.params[1] for m in alice.take() if m.command == "PRIVMSG"] == ["next"]


def test_invalid_utf8_gets_fail_and_connection_lives(server):
    """Invalid UTF-8 is refused with FAIL <command> INVALID_UTF8 (UTF8ONLY); nothing relayed."""
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    alice.take()
    got = bob.ask(b"PRIVMSG #r :caf\xe9")
    assert first(got, "FAIL").params[:2] == ("PRIVMSG", "INVALID_UTF8")
    assert first(bob.ask(b"@a=\xff :x \xff"), "FAIL").params[:2] == ("*", "INVALID_UTF8")
    assert alice.take() == []
    bob.send("PRIVMSG #r :ok")
    assert first(alice.take(), "PRIVMSG").params[1] == "ok"


@pytest.mark.parametrize("junk", [b"@", b":only-a-source", b"\x00\x01\x02", b"@a=b", b"   :x"])
def test_malformed_lines_never_break_the_connection(server, junk):
    """Malformed lines get an error reply (or none) and the connection goes on."""
    alice = server.user("alice")
    alice.ask(junk)
    assert not alice.closed
    assert first(alice.ask("PING x"), "PONG")


# ------------------------------------------------------------------ limits


def test_flood_is_delayed_then_disconnected():
    """Past the burst lines wait for tokens; past the queue: ERROR Excess Flood."""
    server = MemoryServer(flood_burst=5, flood_rate=1.0, flood_queue=3)
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    server.clock.advance(10)  # refill after registration
    alice.take()
    bob.send(*[f"PRIVMSG #r :{i}" for i in range(8)])
    assert [m.params[1] for m in alice.take()] == ["0", "1", "2", "3", "4"]
    assert not bob.closed
    server.clock.advance(1)
    assert [m.params[1] for m in alice.take()] == ["5"]
    bob.send(*[f"PRIVMSG #r :x{i}" for i in range(3)])
    assert bob.closed
    assert "Excess Flood" in bob.transport.value().decode()


def test_flood_queue_drains_in_order():
    """Held-back lines all arrive, in order, as tokens return."""
    server = MemoryServer(flood_burst=2, flood_rate=2.0, flood_queue=10)
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    server.clock.advance(10)
    alice.take()
    bob.send(*[f"PRIVMSG #r :{i}" for i in range(6)])
    server.clock.pump([0.5] * 5)
    assert [m.params[1] for m in alice.take()] == [str(i) for i in range(6)]


@pytest.mark.parametrize("ending", ["QUIT then close", "close only"])
def test_lines_held_by_flood_control_still_run_after_the_client_closes(ending):
    """
    Issue #12, item 1: 60 lines at 10 a second, then (QUIT :bye and) close: all 60 arrive.

    The held lines run at the flood rate after the connection is gone; the
    QUIT, held behind them, gives its reason.  No drain is left scheduled.
    """
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    server = MemoryServer(flood_burst=20, flood_rate=5.0, flood_queue=40)
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    server.clock.advance(10)
    alice.take()
    for i in range(1, 61):
        bob.send(f"PRIVMSG #r :m{i:02d}")
        server.clock.advance(0.1)
    if ending == "QUIT then close":
        bob.send("QUIT :bye")
    bob.proto.connectionLost(Failure(ConnectionDone()))
    server.clock.pump([0.2] * 100)
    got = alice.take()
    assert [m.params[1] for m in got if m.command == "PRIVMSG"] == [
        f"m{i:02d}" for i in range(1, 61)]
    (quit_line,) = [m for m in got if m.command == "QUIT"]
    assert quit_line.params[0] == ("Quit: bye" if ending == "QUIT then close"
                                   else "Quit: Connection closed")
    assert server.registry.find_user("bob") is None
    assert [c for c in server.clock.getDelayedCalls() if "_drain" in repr(c)] == []


def test_registration_timeout():
    """A connection that does not register in time is closed."""
    server = MemoryServer(registration_timeout=10)
    client = server.connect()
    client.send("NICK slow")
    server.clock.advance(9)
    assert not client.closed
    server.clock.advance(2)
    assert client.closed and "Registration timed out" in client.transport.value().decode()


def test_ping_timeout():
    """Idle: the server PINGs; no answer in time: closed with Ping timeout."""
    server = MemoryServer(ping_interval=30, ping_timeout=10)
    alice = server.user("alice")
    server.clock.advance(31)
    assert first(alice.take(), "PING")
    server.clock.advance(11)
    assert alice.closed and "Ping timeout" in alice.transport.value().decode()


def test_ping_answered_keeps_connection():
    """A PONG in time keeps an idle connection open."""
    server = MemoryServer(ping_interval=30, ping_timeout=10)
    alice = server.user("alice")
    server.clock.advance(31)
    alice.send("PONG srv")
    server.clock.advance(11)
    assert not alice.closed


def test_connections_per_ip_limit():
    """The connection past max-per-ip from one address is refused at once; others still come in."""
    server = MemoryServer(max_per_ip=2)
    a, b, c = server.connect("127.0.0.5"), server.connect("127.0.0.5"), server.connect("127.0.0.5")
    assert not a.closed and not b.closed and c.closed
    assert "Too many connections" in c.transport.value().decode()
    assert not server.connect("127.0.0.6").closed
    a.proto.connectionLost(None)
    assert not server.connect("127.0.0.5").closed


def test_no_delayed_calls_left_after_disconnect():
    """A closed connection leaves no timers behind."""
    server = MemoryServer()
    alice = server.user("alice")
    alice.proto.connectionLost(None)
    assert server.clock.getDelayedCalls() == []


def test_ping_counts_from_the_last_line():
    """The server PINGs ping_interval after a client's last line, not after it connected."""
    server = MemoryServer(ping_interval=30, ping_timeout=10)
    alice = server.user("alice")
    server.clock.advance(20)
    alice.send("PONG srv")
    server.clock.advance(11)
    assert "PING" not in alice.take_verbs()
    server.clock.advance(20)
    assert "PING" in alice.take_verbs()


def test_connections_share_one_timer():
    """Timeouts are one sweep for all connections, not a timer per connection (issue #8)."""
    server = MemoryServer()
    alice, bob = server.user("alice", "#r"), server.user("bob", "#r")
    server.connect()  # not registered yet
    assert len(server.clock.getDelayedCalls()) == 1
    for proto in (alice.proto, bob.proto):
        # Idle memory (issue #8): a joined connection keeps its state in slots, no __dict__.
        assert not proto.__dict__


# ------------------------------------------------------------------ fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

VERBS = ["PRIVMSG", "NOTICE", "JOIN", "PART", "MODE", "TOPIC", "KICK", "INVITE", "NICK", "WHO",
         "WHOIS", "NAMES", "LIST", "ISON", "USERHOST", "AWAY", "TAGMSG", "CAP", "CHATHISTORY",
         "PING", "PONG", "LUSERS", "TIME", "VERSION", "MOTD", "USER", "PASS"]
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00")
WORDS = st.one_of(st.sampled_from(["#r", "#other", "bob", "alice", "+o", "-v", "+mlk", "*", "0",
                                   "+i", "LS", "REQ", "LATEST", "timestamp=x", ":", ",", "##"]),
                  st.text(alphabet=CHARS, max_size=12))
LINES = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda verb, words, tail: " ".join([verb, *words]) + (" :" + tail if tail else ""),
              st.sampled_from(VERBS), st.lists(WORDS, max_size=5),
              st.text(alphabet=CHARS, max_size=20)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINES, min_size=1, max_size=8))
def test_no_input_raises_or_hurts_another_client(lines):
    """Any lines from one client: no internal error, and another client still chats."""
    server = MemoryServer()
    victim = server.user("alice", "#r")
    # bob joins first: "NICK bob" from mallory would otherwise take his nick.
    bob = server.user("bob", "#r")
    # standard-replies: an internal error would come as FAIL INTERNAL_ERROR, not a NOTICE.
    mallory = server.user("mallory", "#r", caps="standard-replies")
    for line in lines:
        if line.upper().lstrip().startswith("QUIT" if isinstance(line, str) else b"QUIT"):
            continue
        mallory.send(line)
    written = mallory.transport.value()
    assert b"INTERNAL_ERROR" not in written
    bob.send("PRIVMSG #r :still fine")
    assert any(m.command == "PRIVMSG" and m.params[1] == "still fine" for m in victim.take())
