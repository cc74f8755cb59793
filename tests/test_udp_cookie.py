"""
UDP registration's address proof (issue #12, items 7 and 11), on the in-memory network.

docs/udp-protocol.md, "Registration": a padded NICK without a cookie earns
``COOKIE <nick> <cookie>`` and the server keeps nothing; only the same NICK with
that cookie, from the same address, opens a session.  Each test names one rule
in its docstring.
"""

from __future__ import annotations

import re

import pytest

from tests.memory import MemoryServer
from tests.udpnet import Raw, UDPWorld, parse_reply, register_datagrams
from twistchat.frontends.udp import UDPLimits
from twistchat.frontends.udpwire import COOKIE_INTERVAL, address_cookie, cookie_valid

SERVER = ("127.0.0.1", 6667)


def assert_nothing_kept(w: UDPWorld) -> None:
    """No session, no registry user, no entry in any of the front-end's tables."""
    front = w.front
    assert front.sessions == {} and front.by_addr == {}
    assert not front._audience and not front._stale  # noqa: SLF001 (the test looks inside)
    assert w.registry.user_count() == 0


def test_step_one_gets_a_cookie_and_keeps_nothing(world):
    """A padded NICK without a cookie: COOKIE <nick> <32 hex>, unnumbered, smaller; no state."""
    client = Raw(world)
    data = register_datagrams("alice")
    client.send(data)
    assert 0 < client.received_bytes() < len(data)
    (reply,) = client.take()
    assert reply.command == "COOKIE" and reply.source == "srv"
    assert reply.params[0] == "alice" and re.fullmatch(r"[0-9a-f]{32}", reply.params[1])
    assert "useq" not in reply.tags
    assert_nothing_kept(world)


def test_cookie_is_the_hmac_of_address_port_nick_and_interval(world):
    """The cookie is HMAC-SHA256(secret, host|port|casefold(nick)|interval)[:32]."""
    client = Raw(world)
    cookie = client.ask_cookie("Alice")
    interval = int(world.clock.seconds() // COOKIE_INTERVAL)
    secret = world.front._cookie_secret  # noqa: SLF001 (the test checks the construction)
    assert cookie == address_cookie(secret, *client.addr, "alice", interval)
    assert cookie_valid(secret, *client.addr, "ALICE", cookie, world.clock.seconds())


def test_step_two_with_the_cookie_opens_the_session(world):
    """The same padded NICK with the cookie it earned: 001 and a token, as before #12."""
    client = Raw(world)
    replies = client.register("alice")
    assert replies[0].command == "001" and client.token is not None
    assert world.registry.find_user("alice") is not None and len(world.front.sessions) == 1


@pytest.mark.parametrize("why", ["forged", "other nick", "other address", "other port"])
def test_a_cookie_that_does_not_verify_gets_bad_cookie(world, why):
    """A cookie made up, or made for another nick, address or port: FAIL NICK BAD_COOKIE."""
    client = Raw(world)
    other = Raw(world, "127.0.0.2")
    same_host = Raw(world)
    if why == "forged":
        cookie = "0" * 32
    elif why == "other nick":
        cookie = client.ask_cookie("bob")
    elif why == "other address":
        cookie = other.ask_cookie("alice")
    else:
        cookie = same_host.ask_cookie("alice")
    data = register_datagrams("alice", cookie)
    client.send(data)
    assert client.received_bytes() < len(data)
    assert [(m.command, m.params) for m in client.take()] == [
        ("FAIL", ("NICK", "BAD_COOKIE", "alice"))]
    assert_nothing_kept(world)


def test_a_cookie_is_good_for_30_to_60_seconds(world):
    """A cookie verifies in its interval and the next one, not later."""
    client = Raw(world)
    world.clock.advance(COOKIE_INTERVAL - world.clock.seconds() % COOKIE_INTERVAL)  # start
    cookie = client.ask_cookie("alice")
    world.clock.advance(COOKIE_INTERVAL * 2 - 0.5)  # 59.5 s later: the next interval still
    client.send(register_datagrams("alice", cookie))
    assert client.take()[0].command == "001"
    late = Raw(world)
    cookie = late.ask_cookie("bob")
    world.clock.advance(COOKIE_INTERVAL * 2)  # 60 s later: two intervals on
    late.send(register_datagrams("bob", cookie))
    assert [m.params[1] for m in late.take()] == ["BAD_COOKIE"]


def test_a_nick_without_cookie_gets_a_fresh_cookie_even_with_a_session(world):
    """Step 1 never looks at sessions: the same address gets a cookie, nothing changes."""
    client = Raw(world)
    client.register("alice")
    assert client.ask_cookie("alice") is not None
    assert len(world.front.sessions) == 1


def test_the_repeated_second_step_gets_the_same_token(world):
    """The step-2 NICK sent again (its 001 was lost) gets the same 001 and token, not 433."""
    client = Raw(world)
    cookie = client.ask_cookie("alice")
    data = register_datagrams("alice", cookie)
    client.send(data)
    first = client.take()
    client.send(data)
    again = client.take()
    assert again[0].command == "001" and again[0].tags["token"] == first[0].tags["token"]
    assert len(world.front.sessions) == 1


def test_nick_errors_come_at_the_second_step(world):
    """An invalid nick earns a cookie (checked later), then 432 and no session."""
    client = Raw(world)
    assert client.ask_cookie("9lives") is not None
    assert [m.command for m in client.register("9lives")] == ["432"]
    assert_nothing_kept(world)


def test_a_nick_with_no_name_gets_431_not_a_cookie(world):
    """NICK without a parameter: 431, within the budget, nothing kept."""
    client = Raw(world)
    client.send(register_datagrams(""))
    assert [m.command for m in client.take()] == ["431"]
    assert_nothing_kept(world)


def forge(w: UDPWorld, src: tuple, data: bytes) -> None:
    """A datagram with a forged source address: its replies go to nobody."""
    w.net.send(src, data, SERVER)


def test_forged_nick_flood_creates_nothing_and_takes_no_nick():
    """
    Issue #12's reproduction: 1,100 padded NICKs from 69 forged loopback addresses.

    Before the cookie they opened 1,024 sessions (a real user then got
    TOO_MANY_SESSIONS) and the forged nicks were taken on TCP (433).  Now:
    no session, no nick taken, and a real user registers at once.
    """
    tcp = MemoryServer()
    w = UDPWorld(registry=tcp.registry, clock=tcp.clock)
    for i in range(1100):
        src = (f"127.0.1.{1 + i % 69}", 20000 + i)
        forge(w, src, register_datagrams(f"forged{i}"))
        if i % 100 == 99:
            w.clock.advance(0)
    # ... and forged second steps, with guessed cookies.
    for i in range(200):
        forge(w, (f"127.0.2.{1 + i % 69}", 30000 + i),
              register_datagrams(f"forged{i}", f"{i:032x}"))
    w.clock.advance(0)
    assert_nothing_kept(w)
    assert all(w.registry.find_user(f"forged{i}") is None for i in range(1100))
    irc = tcp.connect()
    assert "001" in [m.command for m in irc.ask("NICK forged7", "USER f 0 * :f")]
    real = Raw(w)
    assert real.register("alice")[0].command == "001"
    assert len(w.front.sessions) == 1
    w.stop()


def test_flood_of_real_second_steps_is_still_bounded():
    """Addresses that do prove themselves still meet max_sessions and max_per_ip, as before."""
    w = UDPWorld(UDPLimits(max_sessions=3))
    clients = [Raw(w) for _ in range(4)]
    got = [c.register(f"n{i}")[0] for i, c in enumerate(clients)]
    assert [m.command for m in got[:3]] == ["001"] * 3
    assert got[3].params[:2] == ("NICK", "TOO_MANY_SESSIONS")
    w.stop()


def test_cookie_replies_obey_the_amplification_rule():
    """Step 1's COOKIE, BAD_COOKIE and 431 each fit within the datagram that asked."""
    w = UDPWorld()
    for data in (register_datagrams("x" * 30), register_datagrams("y", "z" * 32),
                 register_datagrams("")):
        client = Raw(w)
        client.send(data)
        sent = [d for d, addr in w.port.sent if addr == client.addr]
        assert sent and sum(map(len, sent)) < len(data)
        assert parse_reply(sent[0]).command in ("COOKIE", "FAIL", "431")
    w.stop()
