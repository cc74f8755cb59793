"""
UDP commands need a ``cseq`` (issue #12, item 6), and the boot id (item 2), in memory.

docs/udp-protocol.md, "Reliable commands": only PING, REPAIR and QUIT may come
without a cseq; any other command without one is not run and gets
``FAIL <command> NEED_CSEQ`` in the session's numbered stream.  "Registration"
and "Heartbeat": ``boot`` is drawn at every start, in the 001 and every
heartbeat.  Each test names one rule in its docstring.
"""

from __future__ import annotations

import pytest

from tests.udpnet import Listener, Raw, UDPWorld, parse_reply
from twistchat.frontends.udp import MAX_DATAGRAM, UDPLimits, heartbeat_lines


def alice_in_room(world) -> tuple[Raw, Listener]:
    """alice registered and in #room, and a listener on the broadcast; output read."""
    listener = Listener(world)
    alice = Raw(world)
    alice.register("alice")
    alice.command("JOIN #room")
    alice.take()
    listener.events()
    return alice, listener


def said(listener: Listener) -> list:
    return [m.params[-1] for m in listener.events() if m.command == "PRIVMSG"]


def test_five_unsequenced_copies_put_nothing_in_the_room(world):
    """Five copies of ``@token=T PRIVMSG #room :x``: x zero times, five NEED_CSEQ, numbered."""
    alice, listener = alice_in_room(world)
    for _ in range(5):
        alice.send(f"@token={alice.token} PRIVMSG #room :x".encode())
    got = alice.take()
    assert said(listener) == []
    fails = [m for m in got if m.command == "FAIL"]
    assert [m.params for m in fails] == [("PRIVMSG", "NEED_CSEQ", "Send it with a cseq")] * 5
    assert all("useq" in m.tags for m in fails)
    assert [e.message.command for e in world.registry.log.held("#room", 1, 99, 99)[1]] == \
        ["JOIN"]


def test_five_copies_of_one_cseq_run_once(world):
    """Five copies of the same ``cseq``: x once, five ACKs of it."""
    alice, listener = alice_in_room(world)
    for _ in range(5):
        alice.send(f"@token={alice.token};cseq=2 PRIVMSG #room :x".encode())
    assert said(listener) == ["x"]
    assert [m.params[0] for m in alice.take() if m.command == "ACK"] == ["2"] * 5


@pytest.mark.parametrize("line", ["JOIN #room", "NICK bob", "PART #room", "TOPIC #room :t",
                                  "CAP LS", "MODE #room +m", "whois alice", "AWAY :gone"])
def test_every_other_command_without_cseq_is_refused(world, line):
    """Any command but PING, REPAIR, QUIT without cseq: FAIL <verb> NEED_CSEQ, nothing run."""
    alice = Raw(world)
    alice.register("alice")
    alice.send(f"@token={alice.token} {line}".encode())
    got = alice.take()
    assert [(m.command, m.params[:2]) for m in got] == [
        ("FAIL", (line.split()[0].upper(), "NEED_CSEQ"))]
    assert world.registry.find_channel("#room") is None
    assert world.registry.find_user("alice") is not None


def test_ping_repair_and_quit_need_no_cseq(world):
    """PING, REPAIR and QUIT run without a cseq (running them twice changes nothing)."""
    alice = Raw(world)
    alice.register("alice")
    alice.send(f"@token={alice.token} PING x".encode())
    assert [m.command for m in alice.take()] == ["PONG"]
    alice.send(f"@token={alice.token} REPAIR * 1 1".encode())
    assert [m.tags.get("useq") for m in alice.take()] == ["1"]
    alice.send(f"@token={alice.token} QUIT :bye".encode())
    assert world.registry.find_user("alice") is None and not world.front.sessions


def test_unsequenced_refusals_obey_flood_control():
    """A flood of commands without cseq earns no more FAILs than the flood limit lets through."""
    w = UDPWorld(UDPLimits(flood_burst=3, flood_rate=0.001))
    alice = Raw(w)
    alice.register("alice")
    for _ in range(10):
        alice.send(f"@token={alice.token} JOIN #room".encode())
    assert len([m for m in alice.take() if m.command == "FAIL"]) == 3
    w.stop()


def test_boot_is_in_the_001_and_every_heartbeat(world):
    """The 001 and every heartbeat carry the front-end's boot id, the same one."""
    listener = Listener(world)
    alice = Raw(world)
    welcome = alice.register("alice")[0]
    alice.command("JOIN #room")
    listener.got.clear()
    world.net.run(2.0, step=0.05)
    beats = [parse_reply(d) for d in listener.got if b"HEARTBEAT" in d]
    assert len(beats) >= 2
    assert {b.tags["boot"] for b in beats} == {welcome.tags["boot"]} == {world.front.boot}


def test_every_start_draws_another_boot():
    """Two front-ends (two server starts) have different boot ids."""
    first, second = UDPWorld(), UDPWorld()
    assert first.front.boot != second.front.boot
    first.stop()
    second.stop()


def test_heartbeat_lines_carry_boot_on_every_datagram():
    """A heartbeat split over many datagrams names the boot on each, within 1200 bytes."""
    rooms = [(f"#room-with-a-long-name-{i}", i, "e1") for i in range(200)]
    lines = heartbeat_lines("srv", "net", 6667, rooms, 0, boot="0123456789abcdef")
    assert len(lines) > 1 and all(len(line) <= MAX_DATAGRAM for line in lines)
    assert {parse_reply(line).tags["boot"] for line in lines} == {"0123456789abcdef"}
