"""
The UDP front-end (twistchat.frontends.udp) on an in-memory network and a task.Clock: no sockets.

Each test names one rule of docs/udp-protocol.md in its docstring.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.memory import MemoryServer
from tests.udpnet import BROADCAST, Listener, Raw, UDPWorld, padded
from twistchat.frontends.udp import (
    MAX_DATAGRAM,
    UDPLimits,
    broadcast_domain,
    heartbeat_lines,
    parse_heartbeat,
    peek_tags,
)
from twistchat.wire import parse


def test_padded_nick_gets_001_with_128_bit_token(world):
    """A padded NICK with its cookie opens a session: 001, a 32-hex-digit token, the boot id."""
    client = Raw(world)
    replies = client.register("alice")
    first = replies[0]
    assert first.command == "001" and first.params[0] == "alice"
    assert re.fullmatch(r"[0-9a-f]{32}", first.tags["token"])
    assert first.tags["boot"] == world.front.boot
    assert re.fullmatch(r"[0-9a-f]{16}", first.tags["boot"])
    assert first.tags["broadcast"] == f"{BROADCAST}:6668"
    assert first.tags["useq"] == "1"


def test_tokens_are_distinct_and_sessions_per_ip_bounded(world):
    """Every session gets its own random token; one address gets at most max_per_ip sessions."""
    tokens = set()
    for i in range(16):
        client = Raw(world)
        client.register(f"n{i}")
        tokens.add(client.token)
    assert len(tokens) == 16 and None not in tokens
    extra = Raw(world)
    assert [m.params[1] for m in extra.register("n16")] == ["TOO_MANY_SESSIONS"]


def test_unpadded_nick_gets_no_session(world):
    """A NICK shorter than MIN_REGISTER opens nothing; its short FAIL fits in what it sent."""
    client = Raw(world)
    line = b"NICK alice" + b" " * 80
    client.send(line)
    assert client.received_bytes() <= len(line)
    assert [m.params[1] for m in client.take()] == ["NEED_PADDING"]
    assert not world.front.sessions
    tiny = b"NICK a"
    client.send(tiny)
    assert client.got == []  # FAIL would be longer than 6 bytes: nothing at all


def test_registration_reply_never_amplifies(world):
    """The whole answer to either registering NICK is at most the bytes of that NICK."""
    client = Raw(world)
    data = padded("NICK alice")
    client.send(data)
    assert 0 < client.received_bytes() <= len(data)
    cookie = client.take()[0].params[1]
    data = padded("NICK alice", f"cookie={cookie}")
    client.send(data)
    assert 0 < client.received_bytes() <= len(data)
    assert client.take()[0].command == "001"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500) | st.builds(lambda s: s.encode(), st.text(max_size=300)))
def test_no_unregistered_datagram_amplifies(data):
    """No datagram without a valid token makes the server send more bytes than it holds."""
    w = UDPWorld()
    client = Raw(w)
    listener = Listener(w)
    listener.got.clear()
    client.send(data)
    w.clock.advance(0)
    sent = sum(len(d) for d, addr in w.port.sent if addr != (BROADCAST, 6668))
    assert sent <= len(data)
    w.stop()


def test_retransmitted_nick_gets_the_same_token(world):
    """A NICK sent again (its 001 was lost) gets the same 001, not 433."""
    client = Raw(world)
    first = client.register("alice")[0]
    again = client.register("alice")[0]
    assert again.command == "001" and again.tags["token"] == first.tags["token"]


def test_duplicate_nick_across_tcp_and_udp_gets_433():
    """Nicks are unique across TCP and UDP, case-insensitively."""
    tcp = MemoryServer()
    w = UDPWorld(registry=tcp.registry, clock=tcp.clock)
    tcp.user("Alice")
    client = Raw(w)
    replies = client.register("alice")
    assert [m.command for m in replies] == ["433"]
    assert not w.front.sessions
    client2 = Raw(w)
    client2.register("bob")
    irc = tcp.connect()
    out = irc.ask("NICK BOB", "USER b 0 * :b")
    assert "433" in [m.command for m in out]
    w.stop()


def test_forged_token_is_dropped_silently(world):
    """A datagram with an unknown token gets no reply and runs nothing."""
    client = Raw(world)
    client.register("alice")
    forger = Raw(world)
    forger.send(b"@token=" + b"0" * 32 + b";cseq=1 JOIN #room")
    assert forger.got == [] and world.registry.room_count() == 0


def test_right_token_from_another_address_is_dropped(world):
    """A session's token from another address (a forged source) is refused."""
    alice = Raw(world)
    alice.register("alice")
    thief = Raw(world, "127.0.0.2")
    thief.send(f"@token={alice.token};cseq=1 JOIN #room".encode())
    assert thief.got == [] and world.registry.room_count() == 0
    alice.command("JOIN #room")
    assert world.registry.find_channel("#room") is not None


def test_room_events_are_broadcast_once_with_seq_and_time(world):
    """JOIN and PRIVMSG go out once, to the broadcast address, tagged seq and time."""
    listener = Listener(world)
    alice = Raw(world)
    alice.register("alice")
    alice.command("JOIN #room")
    alice.command("PRIVMSG #room :hello there")
    events = listener.events()
    assert [(m.command, m.tags["seq"]) for m in events] == [("JOIN", "1"), ("PRIVMSG", "2")]
    assert events[1].source == "alice!alice@127.0.0.1"
    assert events[1].params == ("#room", "hello there")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", events[1].tags["time"])
    broadcasts = [d for d, addr in world.port.sent if addr == (BROADCAST, 6668)
                  and b"PRIVMSG" in d]
    assert len(broadcasts) == 1


def test_tcp_and_udp_users_share_a_room_and_its_numbers():
    """An IRC user's message is broadcast with the seq TCP history uses; and the other way round."""
    tcp = MemoryServer()
    w = UDPWorld(registry=tcp.registry, clock=tcp.clock)
    listener = Listener(w)
    irc = tcp.user("ircuser", "#room")
    udp = Raw(w)
    udp.register("udpuser")
    udp.command("JOIN #room")
    irc.take()
    irc.send("PRIVMSG #room :from tcp")
    udp.command("PRIVMSG #room :from udp")
    heard = [(m.source.split("!")[0], m.params[-1], m.tags["seq"]) for m in listener.events()
             if m.command == "PRIVMSG"]
    assert heard == [("ircuser", "from tcp", "3"), ("udpuser", "from udp", "4")]
    assert [m.params[-1] for m in irc.take() if m.command == "PRIVMSG"] == ["from udp"]
    assert [e.seq for e in tcp.registry.log.held("#room", 1, 10**9, 10**9)[1]] == [1, 2, 3, 4]
    w.stop()


def test_rooms_without_udp_members_stay_off_the_lan():
    """Events of a room with no UDP member are not broadcast."""
    tcp = MemoryServer()
    w = UDPWorld(registry=tcp.registry, clock=tcp.clock)
    listener = Listener(w)
    irc = tcp.user("ircuser", "#quiet")
    irc.send("PRIVMSG #quiet :nobody on udp")
    assert listener.events() == []
    w.stop()


def test_quit_and_nick_events_name_their_room(world):
    """QUIT and NICK carry a room tag: their parameters do not name the room."""
    listener = Listener(world)
    alice, bob = Raw(world), Raw(world)
    alice.register("alice")
    bob.register("bob")
    alice.command("JOIN #a")
    alice.command("JOIN #b")
    bob.command("JOIN #a")
    bob.command("JOIN #b")
    listener.events()
    alice.command("NICK alicia")
    alice.command("QUIT :bye")
    got = [(m.command, m.tags["room"], m.tags["seq"]) for m in listener.events()]
    assert got == [("NICK", "#a", "3"), ("NICK", "#b", "3"), ("QUIT", "#a", "4"),
                   ("QUIT", "#b", "4")]


def test_heartbeat_carries_latest_seq_and_is_the_beacon(world):
    """Every heartbeat interval: HEARTBEAT network port :#room:seq, to the broadcast address."""
    listener = Listener(world)
    world.net.run(1.0)
    beacon = parse(listener.got[-1])
    assert beacon.command == "HEARTBEAT" and beacon.params[:2] == ("twistchat", "6667")
    alice = Raw(world)
    alice.register("alice")
    alice.command("JOIN #room")
    alice.command("PRIVMSG #room :x")
    listener.got.clear()
    world.net.run(1.0)
    beats = [parse(d) for d in listener.got if b"HEARTBEAT" in d]
    assert beats and parse_heartbeat(beats[-1]) == {"#room": 2}
    assert {beat.tags["boot"] for beat in beats} == {world.front.boot}
    assert beacon.tags["boot"] == world.front.boot


def test_heartbeat_splits_many_rooms_within_1200_bytes():
    """A heartbeat with many rooms is several datagrams, each within MAX_DATAGRAM."""
    rooms = [(f"#room-with-a-long-name-{i}", i * 1000, "e1") for i in range(200)]
    lines = heartbeat_lines("srv", "net", 6667, rooms, 0)
    assert len(lines) > 1 and all(len(line) <= MAX_DATAGRAM for line in lines)
    merged = {}
    for line in lines:
        merged.update(parse_heartbeat(parse(line, max_body=MAX_DATAGRAM + 2)))
    assert merged == {name: seq for name, seq, _ in rooms}
    assert all(parse(line, max_body=MAX_DATAGRAM + 2).tags["epoch"] == "e1" for line in lines)


def test_repair_sends_missing_events_in_order(world):
    """REPAIR #room from to: the held events of that range, by unicast, as broadcast."""
    alice = Raw(world)
    alice.register("alice")
    alice.command("JOIN #room")
    for i in range(5):
        alice.command(f"PRIVMSG #room :m{i}")
    alice.take()
    alice.send(f"@token={alice.token} REPAIR #room 3 5".encode())
    got = alice.take()
    assert [(m.tags["seq"], m.params[-1]) for m in got] == [("3", "m1"), ("4", "m2"), ("5", "m3")]


def test_repair_is_bounded_by_the_range_limit():
    """A repair answers at most repair_limit events."""
    w = UDPWorld(UDPLimits(repair_limit=10, flood_burst=1000, flood_rate=1000.0))
    alice = Raw(w)
    alice.register("alice")
    alice.command("JOIN #room")
    for i in range(30):
        alice.command(f"PRIVMSG #room :m{i}")
    alice.take()
    alice.send(f"@token={alice.token} REPAIR #room 1 30".encode())
    assert len(alice.take()) == 10
    w.stop()


def test_repair_is_rate_limited():
    """Past repair_burst, a session gets repair_rate events a second, no more."""
    w = UDPWorld(UDPLimits(repair_limit=100, repair_burst=50, repair_rate=10.0,
                           flood_burst=1000, flood_rate=1000.0))
    alice = Raw(w)
    alice.register("alice")
    alice.command("JOIN #room")
    for i in range(100):
        alice.command(f"PRIVMSG #room :m{i}")
    alice.take()
    counts = []
    for _ in range(3):
        alice.send(f"@token={alice.token} REPAIR #room 1 100".encode())
        counts.append(len([m for m in alice.take() if "seq" in m.tags]))
    assert counts[0] == 50 and sum(counts[1:]) <= 2  # 10/s over ~0.02 s
    w.clock.advance(1.0)
    alice.send(f"@token={alice.token} REPAIR #room 1 100".encode())
    assert 9 <= len(alice.take()) <= 11
    w.stop()


def test_repair_of_events_no_longer_held_says_gone():
    """A range that fell out of the room's memory is answered FAIL REPAIR GONE."""
    tcp = MemoryServer(registry_limits={"recent_history": 5})
    w = UDPWorld(registry=tcp.registry, clock=tcp.clock,
                 limits=UDPLimits(flood_burst=1000, flood_rate=1000.0))
    alice = Raw(w)
    alice.register("alice")
    alice.command("JOIN #room")
    for i in range(10):
        alice.command(f"PRIVMSG #room :m{i}")
    alice.take()
    alice.send(f"@token={alice.token} REPAIR #room 2 8".encode())
    got = alice.take()
    assert got[0].command == "FAIL" and got[0].params[:5] == ("REPAIR", "GONE", "#room", "2", "6")
    assert [m.tags["seq"] for m in got[1:]] == ["7", "8"]
    w.stop()


def test_unicast_stream_repair(world):
    """REPAIR * from to sends again the numbered unicast lines (useq) still kept."""
    alice = Raw(world)
    alice.register("alice")
    alice.send(f"@token={alice.token} REPAIR * 1 3".encode())
    got = alice.take()
    assert [m.tags["useq"] for m in got] == ["1", "2", "3"]
    assert got[0].tags["token"] == alice.token


def test_sequenced_commands_run_once_in_order_and_are_acked(world):
    """cseq: duplicates are not run again, early ones wait, ACK says the last run."""
    listener = Listener(world)
    alice = Raw(world)
    alice.register("alice")
    t = alice.token
    alice.send(f"@token={t};cseq=1 JOIN #room".encode())
    alice.send(f"@token={t};cseq=3 PRIVMSG #room :three".encode())
    acks = [m.params[0] for m in alice.take() if m.command == "ACK"]
    assert acks == ["1", "1"]
    alice.send(f"@token={t};cseq=2 PRIVMSG #room :two".encode())
    alice.send(f"@token={t};cseq=2 PRIVMSG #room :two".encode())
    acks = [m.params[0] for m in alice.take() if m.command == "ACK"]
    assert acks == ["3", "3"]
    said = [m.params[-1] for m in listener.events() if m.command == "PRIVMSG"]
    assert said == ["two", "three"]


def test_ack_carries_latest_useq(world):
    """ACK <cseq> <useq>: the client learns at once of any reply it missed."""
    alice = Raw(world)
    alice.register("alice")
    got = alice.command("JOIN #room")
    ack = [m for m in got if m.command == "ACK"][0]
    numbered = [int(m.tags["useq"]) for m in got if "useq" in m.tags]
    assert int(ack.params[1]) == max(numbered)


def test_over_long_datagram_gets_417(world):
    """A datagram over MAX_DATAGRAM bytes gets 417 by unicast; the session lives on."""
    alice = Raw(world)
    alice.register("alice")
    got = alice.command("PRIVMSG #room :" + "x" * 1300)
    assert "417" in [m.command for m in got]
    assert "ACK" in [m.command for m in got]
    stranger = Raw(world)
    stranger.send(b"x" * 1500)
    assert [m.command for m in stranger.take()] == ["417"]
    assert alice.command("JOIN #room") and world.registry.find_channel("#room") is not None


def test_invalid_utf8_and_malformed_lines_get_errors(world):
    """Bad UTF-8 gets FAIL INVALID_UTF8, a malformed line FAIL INVALID_MESSAGE; nothing breaks."""
    alice = Raw(world)
    alice.register("alice")
    got = alice.command("PRIVMSG #x :\xff".encode("latin-1").decode("latin-1"))  # valid text
    bad = f"@token={alice.token};cseq={alice.cseq + 1} PRIVMSG #x :".encode() + b"\xff\xfe"
    alice.cseq += 1
    alice.send(bad)
    got = alice.take()
    fails = [(m.command, m.params[1]) for m in got if m.command == "FAIL"]
    assert ("FAIL", "INVALID_UTF8") in fails
    alice.cseq += 1
    alice.send(f"@token={alice.token};cseq={alice.cseq} :only-a-source".encode())
    got = alice.take()
    assert ("FAIL", "INVALID_MESSAGE") in [(m.command, m.params[1]) for m in got
                                           if m.command == "FAIL"]
    assert world.registry.find_channel("#room") is None
    alice.command("JOIN #room")
    assert world.registry.find_channel("#room") is not None


def test_silent_session_expires_with_quit_to_its_rooms():
    """A session silent past the timeout is expired: QUIT broadcast, nick freed."""
    w = UDPWorld(UDPLimits(session_timeout=5.0, flood_burst=100, flood_rate=100.0))
    listener = Listener(w)
    alice, bob = Raw(w), Raw(w)
    alice.register("alice")
    bob.register("bob")
    alice.command("JOIN #room")
    bob.command("JOIN #room")
    listener.events()
    for _ in range(7):
        w.clock.advance(1.0)
        bob.send(f"@token={bob.token} PING keep".encode())
    quits = [m for m in listener.events() if m.command == "QUIT"]
    assert [q.source.split("!")[0] for q in quits] == ["alice"]
    assert "Session timed out" in quits[0].params[0]
    assert w.registry.find_user("alice") is None and w.registry.find_user("bob") is not None
    w.stop()


def test_session_that_never_uses_its_token_expires_sooner():
    """A session opened (perhaps from a forged address), never used, ends after pending_timeout."""
    w = UDPWorld(UDPLimits(session_timeout=60.0, pending_timeout=3.0))
    Raw(w).register("ghost")
    w.net.run(4.5, step=0.5)
    assert w.registry.find_user("ghost") is None
    w.stop()


def test_quit_ends_the_session(world):
    """QUIT: acknowledged, QUIT to the room, token forgotten."""
    alice = Raw(world)
    alice.register("alice")
    alice.command("JOIN #room")
    got = alice.command("QUIT :bye")
    assert "ACK" in [m.command for m in got]
    assert not world.front.sessions and world.registry.find_user("alice") is None


def test_sessions_outside_the_broadcast_domain_get_unicast_copies():
    """A client whose address is outside the broadcast domain gets each room event by unicast."""
    w = UDPWorld(domain="127.0.0.0/24")
    inside, outside = Raw(w), Raw(w, "127.0.1.9")
    inside.register("inside")
    replies = outside.register("outside")
    assert "unicast" in replies[0].tags
    outside.command("JOIN #room")
    outside.take()
    inside.command("JOIN #room")
    inside.command("PRIVMSG #room :hi")
    got = [(m.command, m.tags.get("seq")) for m in outside.take() if "useq" not in m.tags]
    assert ("PRIVMSG", "3") in got and ("JOIN", "2") in got
    w.stop()


def test_unicast_tag_asks_for_unicast_copies(world):
    """NICK tagged unicast (a client that cannot hear broadcasts) gets copies too."""
    alice = Raw(world)
    replies = alice.register("alice", extra_tags="unicast")
    assert "unicast" in replies[0].tags
    alice.command("JOIN #room")
    got = alice.command("PRIVMSG #room :hi")
    assert ("PRIVMSG", "2") in [(m.command, m.tags.get("seq")) for m in got]


def test_flood_limit_delays_commands():
    """Past flood_burst, commands are left unacknowledged (the client resends them later)."""
    w = UDPWorld(UDPLimits(flood_burst=3, flood_rate=1.0))
    alice = Raw(w)
    alice.register("alice")
    acks = []
    for i in range(6):
        acks += [m.params[0] for m in alice.command(f"PRIVMSG alice :{i}") if m.command == "ACK"]
    assert acks[-1] == "3"
    w.clock.advance(1.0)
    alice.send(f"@token={alice.token};cseq=4 PRIVMSG alice :3".encode())
    assert [m.params[0] for m in alice.take() if m.command == "ACK"] == ["4"]
    w.stop()


def test_private_messages_are_numbered_unicast(world):
    """A private message reaches both parties in their numbered unicast streams."""
    alice, bob = Raw(world), Raw(world)
    alice.register("alice")
    bob.register("bob")
    # bob proves his address with his token: his unicast is no longer held to the
    # registration's anti-amplification budget, which the welcome burst may use up.
    bob.command("PING x")
    alice.command("PRIVMSG bob :psst")
    got = [m for m in bob.take() if m.command == "PRIVMSG"]
    assert got and "useq" in got[0].tags and got[0].params == ("bob", "psst")


def test_peek_tags_reads_token_and_cseq_from_bytes():
    """peek_tags works on raw bytes, even when the rest is not UTF-8."""
    assert peek_tags(b"@token=ab;cseq=7 PRIVMSG #x :\xff") == ("ab", 7)
    assert peek_tags(b"@cseq=x;token=ab PING") == ("ab", None)
    assert peek_tags(b"PING") == (None, None)


def test_broadcast_domain_follows_the_interface():
    """The default broadcast address is the bound interface's; loopback gives 127.255.255.255."""
    assert broadcast_domain("127.0.0.1") == ("127.255.255.255",
                                             ipaddress.IPv4Network("127.0.0.0/8"))
    assert broadcast_domain("127.0.0.1", "127.0.255.255/16")[1] == \
        ipaddress.IPv4Network("127.0.0.0/16")
    # Interfaces are passed in: no real one is looked at (loopback-only addresses).
    fake_ifaces = [ipaddress.IPv4Interface("127.10.0.1/24")]
    assert broadcast_domain("127.10.0.1", "127.10.0.255", fake_ifaces)[0] == "127.10.0.255"
    with pytest.raises(ValueError):
        broadcast_domain("0.0.0.0", None, fake_ifaces)


def test_service_builds_udp_with_tcp():
    """--proto=both starts TCP and UDP on one registry; flags reach the UDP limits."""
    from twisted.internet.task import Clock

    from twistchat.service import Options, makeService

    options = Options()
    options.parseOptions(["--proto=both", "--port=0", "--heartbeat=0.5", "--db=:memory:",
                          "--udp-session-timeout=7", "--repair-limit=9"])
    assert options["broadcast-port"] == 1
    top = makeService(options, reactor=Clock())
    assert top.udp.registry is top.registry
    assert top.udp.limits.heartbeat == 0.5 and top.udp.limits.session_timeout == 7
    assert top.udp.limits.repair_limit == 9
    assert top.udp.broadcast.address == "127.255.255.255"
    store = getattr(top, "store", None)
    if store is not None and hasattr(store, "close"):
        store.close()


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="\r\n\x00"),
                max_size=15)
_UDP_LINES = st.builds(
    lambda verb, words, tail: " ".join([verb, *words]) + (" :" + tail if tail else ""),
    st.sampled_from(["PRIVMSG", "NOTICE", "JOIN", "PART", "MODE", "TOPIC", "KICK", "NICK", "WHO",
                     "WHOIS", "NAMES", "REPAIR", "PING", "CAP", "AWAY", "TAGMSG", "INVITE",
                     "CHATHISTORY", "LIST", "USER", "QUIT"]),
    st.lists(st.one_of(st.sampled_from(["#room", "alice", "bob", "*", "0", "-5", "+o", ":", ","]),
                       _TEXT), max_size=4),
    _TEXT,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_UDP_LINES, min_size=1, max_size=6))
def test_no_command_of_a_session_hits_an_internal_error(lines):
    """Any commands from a registered UDP session: no internal error, the server serves on."""
    w = UDPWorld()
    try:
        other = Raw(w)  # registered first, so the fuzzed session cannot take its nick
        assert any(m.command == "001" for m in other.register("bob"))
        client = Raw(w)
        client.register("mallory")
        client.command("JOIN #room")
        replies = []
        for line in lines:
            replies += client.command(line)
        assert not [m for m in replies if m.command == "FAIL" and "INTERNAL_ERROR" in m.params]
        assert any(m.command == "ACK" for m in other.command("JOIN #elsewhere"))
    finally:
        w.stop()
