"""
A UDP session uses the same command table as a TCP client (issue #13, "both front-ends").

A UDP session and TCP clients on one registry and clock, no sockets: what the
session asks for over datagrams is answered as over TCP.
"""

from __future__ import annotations

from tests.udpnet import Raw


def replies(messages, code):
    return [m.params for m in messages if m.command == code]


def test_udp_session_monitors_a_tcp_user(mixed):
    """MONITOR over UDP: 731 while offline, 730 when the nick signs on, 731 when it leaves."""
    server, w = mixed
    bob = Raw(w)
    bob.register("bob")
    assert replies(bob.command("MONITOR + alice"), "731") == [("bob", "alice")]
    alice = server.user("alice")
    w.net.run(0.05)
    assert [p[1].split("!")[0] for p in replies(bob.take(), "730")] == ["alice"]
    alice.send("QUIT :gone")
    alice.proto.connectionLost(None)  # the transport closes after QUIT
    w.net.run(0.05)
    assert replies(bob.take(), "731") == [("bob", "alice")]


def test_udp_session_changes_its_real_name(mixed):
    """SETNAME over UDP: the session is told, and a TCP client's WHOIS shows the new name."""
    server, w = mixed
    bob = Raw(w)
    bob.register("bob")
    got = bob.command("SETNAME :Robert on the LAN")
    assert [m.params for m in got if m.command == "SETNAME"] == [("Robert on the LAN",)]
    alice = server.user("alice")
    alice.send("WHOIS bob")
    assert [m.params[-1] for m in alice.take() if m.command == "311"] == ["Robert on the LAN"]
