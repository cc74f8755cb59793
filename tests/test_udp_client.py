"""
The UDP client session (twistchat.client.udp) against the real front-end, in memory.

A FakeNet on a task.Clock carries the datagrams; FaultInjector loses,
duplicates and reorders them, seeded, so every run is the same.
"""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from tests.udpnet import BROADCAST, UDPWorld
from twistchat.client import interfaces as I
from twistchat.client.interfaces import IChatSession
from twistchat.client.udp import FaultInjector, UDPChatSession, discover
from twistchat.frontends.udp import UDPLimits


def session(world: UDPWorld, nick: str, seed: int = None, loss: float = 0.0,
            duplicate: float = 0.0, reorder: float = 0.0, **kw) -> UDPChatSession:
    """A started session recording its events in ``.events``; faults if a seed is given."""
    faults = {}
    if seed is not None:
        faults = dict(
            fault_in=FaultInjector(world.clock, seed, loss, duplicate, reorder),
            fault_out=FaultInjector(world.clock, seed + 1000, loss, duplicate, reorder))
    s = UDPChatSession("127.0.0.1", 6667, nick, reactor=world.clock, net=world.net, **faults, **kw)
    s.events = []
    s.set_handler(s.events.append)
    s.start()
    return s


def transcript(s: UDPChatSession, room: str = "#room") -> list:
    """The room's events as (seq, kind, nick, text): what a screen shows."""
    return [(e.seq, e.kind, e.nick, e.text) for e in s.events
            if e.room == room and e.seq is not None]


@pytest.fixture
def world():
    w = UDPWorld()
    yield w
    w.stop()


def test_provides_the_chat_session_interface(world):
    """UDPChatSession provides IChatSession, like the TCP session."""
    s = UDPChatSession("127.0.0.1", 6667, "alice", reactor=world.clock, net=world.net)
    assert verifyObject(IChatSession, s)
    assert s.transport_name == "udp"


def test_register_join_say(world):
    """start() registers; join and say give JOIN then MESSAGE events with seq."""
    alice = session(world, "alice")
    fired = []
    alice.start().addCallback(fired.append)
    assert world.net.run_until(lambda: fired)
    assert alice.state == I.REGISTERED
    alice.join("#room")
    alice.say("#room", "hello")
    world.net.run(0.2)
    assert transcript(alice) == [(1, I.JOIN, "alice", ""), (2, I.MESSAGE, "alice", "hello")]
    assert alice.rooms == ["#room"]
    assert [e.names for e in alice.events if e.kind == I.NAMES] == [("@alice",)]


def test_welcome_lines_beyond_the_budget_are_repaired(world):
    """What did not fit the registration budget arrives once the session uses its token."""
    world.registry.motd = [f"line {i} " + "x" * 80 for i in range(20)]
    alice = session(world, "alice")
    world.net.run(0.5)
    infos = [e.text for e in alice.events if e.kind == I.INFO]
    assert (
        infos[-1] == "End of /MOTD command."
        and len([t for t in infos if t.startswith("- line")]) == 20
    )


def test_three_clients_under_loss_duplication_reordering_agree(world):
    """
    10% loss, 5% duplicates, 10% reordered, both ways: identical transcripts, none lost or
    doubled.
    """
    clients = [
        session(world, n, seed=i, loss=0.1, duplicate=0.05, reorder=0.1)
        for i, n in enumerate(("alice", "bob", "carol"))
    ]
    assert world.net.run_until(lambda: all(c.state == I.REGISTERED for c in clients))
    for c in clients:
        c.join("#room")
    assert world.net.run_until(lambda: all(len(transcript(c)) >= 1 for c in clients))
    world.net.run(0.5)
    for k in range(200):
        for c in clients:
            c.say("#room", f"{c.nick} {k}")
        world.net.run(0.005)

    def said(c):
        return [t for t in transcript(c) if t[1] == I.MESSAGE]

    assert world.net.run_until(lambda: all(len(said(c)) == 600 for c in clients), 30)
    start = max(transcript(c)[0][0] for c in clients)
    views = [[t for t in transcript(c) if t[0] >= start] for c in clients]
    assert views[0] == views[1] == views[2]
    seqs = [t[0] for t in views[0]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none missing or doubled
    for c in clients:
        mine = [t[3] for t in said(c) if t[2] == c.nick]
        assert mine == [f"{c.nick} {k}" for k in range(200)]  # each command ran once, in order
    assert sum(c.stats["repairs_asked"] for c in clients) > 0
    assert sum(c.stats["duplicates"] for c in clients) > 0


def test_private_messages_arrive_once_in_order_under_loss(world):
    """Private messages ride the numbered unicast stream: each once, in order, despite loss."""
    alice = session(world, "alice", seed=5, loss=0.2, duplicate=0.1, reorder=0.2)
    bob = session(world, "bob", seed=7, loss=0.2, duplicate=0.1, reorder=0.2)
    assert world.net.run_until(lambda: alice.state == bob.state == I.REGISTERED)
    for k in range(50):
        alice.say("bob", f"dm {k}")
    got = lambda: [e.text for e in bob.events if e.kind == I.MESSAGE]  # noqa: E731
    assert world.net.run_until(lambda: len(got()) >= 50, 30)
    world.net.run(1.0)
    assert got() == [f"dm {k}" for k in range(50)]
    mine = [e.text for e in alice.events if e.kind == I.MESSAGE and e.own]
    assert mine == [f"dm {k}" for k in range(50)]
    assert all(e.room == "bob" for e in alice.events if e.kind == I.MESSAGE)


def test_taken_nick_gets_an_alternative(world):
    """A nick in use (433) at registration: the session tries nick_."""
    session(world, "alice")
    world.net.run(0.2)
    other = session(world, "alice")
    assert world.net.run_until(lambda: other.state == I.REGISTERED)
    assert other.nick == "alice_"


def test_quit_and_nick_are_shown_per_room(world):
    """A peer's QUIT shows in each room it was in, with that room's seq."""
    alice, bob = session(world, "alice"), session(world, "bob")
    world.net.run(0.2)
    for s in (alice, bob):
        s.join("#a")
        s.join("#b")
    world.net.run(0.2)
    bob.set_nick("robert")
    world.net.run(0.2)
    bob.close("bye")
    world.net.run(0.5)
    assert bob.state == I.CLOSED
    for room in ("#a", "#b"):
        kinds = [(k, n, t) for _, k, n, t in transcript(alice, room)[-2:]]
        assert kinds == [(I.NICK, "bob", "robert"), (I.QUIT, "robert", "Quit: bye")]


def test_own_part_ends_the_room_stream(world):
    """After our own PART, the room's later events are not shown."""
    alice, bob = session(world, "alice"), session(world, "bob")
    world.net.run(0.2)
    alice.join("#room")
    bob.join("#room")
    world.net.run(0.2)
    alice.part("#room", "later")
    world.net.run(0.2)
    bob.say("#room", "after alice left")
    world.net.run(0.5)
    assert transcript(alice)[-1][1:] == (I.PART, "alice", "later")
    assert alice.rooms == []


def test_broadcast_from_another_host_is_ignored(world):
    """Datagrams on the broadcast port that do not come from our server are dropped."""
    alice = session(world, "alice")
    world.net.run(0.2)
    alice.join("#room")
    world.net.run(0.2)
    before = len(alice.events)
    world.net.send(
        ("127.0.0.66", 6667),
        b"@seq=2;time=2026-01-01T00:00:00.000Z :evil!e@h PRIVMSG #room :fake\r\n",
        (BROADCAST, 6668),
    )
    world.net.run(0.2)
    assert len(alice.events) == before


def test_silent_server_means_disconnected():
    """When the server stops answering past its timeout, the session says DISCONNECTED."""
    w = UDPWorld(UDPLimits(session_timeout=2.0, flood_burst=100, flood_rate=100.0))
    alice = session(w, "alice")
    w.net.run(0.2)
    alice.join("#room")
    w.net.run(0.2)
    w.stop()
    alice.say("#room", "anyone?")
    assert w.net.run_until(lambda: alice.state == I.DISCONNECTED, 10)


def test_discover_finds_the_server_by_its_beacon(world):
    """discover() hears a HEARTBEAT and returns the server's address, port and name."""
    found = []
    discover(
        reactor=world.clock, broadcast_port=6668, address=BROADCAST, net=world.net
    ).addCallback(found.append)
    world.net.run(1.1)
    assert found == [("127.0.0.1", 6667, "srv", "twistchat")]


def test_lost_session_registers_again_and_rejoins():
    """
    If the server forgets our session, the client notices the silence, registers anew and
    rejoins.
    """
    w = UDPWorld(UDPLimits(session_timeout=2.0, flood_burst=100, flood_rate=100.0))
    alice = session(w, "alice")
    w.net.run(0.2)
    alice.join("#room")
    w.net.run(0.2)
    old_token = alice.token
    w.front.close_session(w.front.sessions[old_token], "forgotten")
    states = lambda: [e.text for e in alice.events if e.kind == I.STATE]  # noqa: E731
    assert w.net.run_until(
        lambda: states()[-1:] == [I.REGISTERED] and I.DISCONNECTED in states(), 15, step=0.05
    )
    assert alice.token != old_token
    assert w.net.run_until(lambda: alice.rooms == ["#room"], 5)
    alice.say("#room", "back")
    w.net.run(0.3)
    assert transcript(alice)[-1][1:] == (I.MESSAGE, "alice", "back")
    w.stop()


def test_rooms_given_at_construction_are_joined(world):
    """rooms=(...) are joined once registered (the UI's autojoin)."""
    s = UDPChatSession("127.0.0.1", 6667, "alice", ["#lobby"], reactor=world.clock, net=world.net)
    s.start()
    assert world.net.run_until(lambda: s.rooms == ["#lobby"], 5)
    s.close()
    world.net.run(0.2)
    assert s.state == I.CLOSED


def test_no_host_finds_the_server_by_beacon(world):
    """host=None: the session listens for the beacon, then registers with the server it names."""
    s = UDPChatSession(None, 6667, "alice", reactor=world.clock, net=world.net)
    fired = []
    s.start().addCallback(fired.append)
    assert world.net.run_until(lambda: fired, 5)
    assert (s.host, s.port) == ("127.0.0.1", 6667)


def test_a_command_that_cannot_be_a_line_is_refused_and_the_rest_still_runs(world):
    """A CR/LF in a command is one ERROR event; the next command still reaches the server."""
    alice = session(world, "alice")
    assert world.net.run_until(lambda: alice.state == I.REGISTERED)
    alice.join("#room")
    alice.topic("#room", "two\r\nlines")
    alice.send_line("PRIVMSG")  # parses; the server answers with an error reply
    alice.send_line("")  # not a line at all
    alice.say("#room", "still here")
    world.net.run(0.5)
    errors = [e.text for e in alice.events if e.kind == I.ERROR]
    assert sum(text.startswith("Not sent:") for text in errors) == 2
    assert (2, I.MESSAGE, "alice", "still here") in transcript(alice)


def test_ctcp_version_is_answered_without_a_conversation(world):
    """
    A CTCP VERSION to a UDP session (#17): answered with a NOTICE, no event on the answering
    side; the asker sees the reply as one INFO for the server window, not as a conversation.
    """
    alice = session(world, "alice")
    bob = session(world, "bob")
    assert world.net.run_until(lambda: alice.state == bob.state == I.REGISTERED)
    bob.say("alice", "\x01VERSION\x01")
    bob.say("alice", "\x01FINGER\x01")
    replies = lambda: [e for e in bob.events if e.kind == I.INFO and "CTCP" in e.text]  # noqa: E731
    assert world.net.run_until(lambda: replies(), 10)
    world.net.run(0.5)
    assert [(e.room, e.text) for e in replies()] == [
        (None, "CTCP VERSION reply from alice: twistchat")]
    shown = [(e.kind, e.room, e.text) for e in alice.events
             if e.kind in (I.MESSAGE, I.NOTICE) or "CTCP" in e.text]
    assert shown == [(I.INFO, None, "CTCP FINGER from bob")]
    assert not [e for e in bob.events if e.kind in (I.MESSAGE, I.NOTICE)]
