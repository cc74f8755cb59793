"""
A UDP session uses the same command table as a TCP client (issue #13, "both front-ends").

A UDP session and TCP clients on one registry and clock, no sockets: what the
session asks for over datagrams is answered as over TCP.
"""

from __future__ import annotations

from tests.udpnet import Raw
from twistchat.core.accounts import Account
from twistchat.core.events import deliver


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


def test_udp_session_on_a_reserved_nick_is_told_then_renamed(mixed):
    """A UDP session on another account's nick: told at once, renamed Guest<n> after the grace."""
    server, w = mixed
    server.registry.accounts.add(Account("teacher", "hash"))
    bob = Raw(w)
    got = bob.register("teacher")
    # The welcome is cut to the unproven address's budget; the rest comes by repair.
    last = max(int(m.tags["useq"]) for m in got if "useq" in m.tags)
    bob.send(f"@token={bob.token} REPAIR * {last + 1} {last + 20}".encode())
    got = bob.take()
    assert [m.params[-1] for m in got if m.command == "NOTICE"
            and m.source == "NickServ!NickServ@services."] == [
        "This nickname is registered. Identify within 30 seconds or it will be changed"]
    server.clock.advance(29.9)
    assert not [d for d in server.registry.enforce_reservations(server.clock.seconds())]
    server.clock.advance(0.1)
    deliver(server.registry.enforce_reservations(server.clock.seconds()))
    w.net.run(0.05)
    renamed = [m for m in bob.take() if m.command == "NICK"]
    assert len(renamed) == 1 and renamed[0].params[0].startswith("Guest")
    assert server.registry.find_user("teacher") is None
