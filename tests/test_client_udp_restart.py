"""
The UDP client session across registration cookies and server restarts (issue #12).

In memory: a FakeNet on a task.Clock (tests.udpnet), today's UDP front-end, and
a watched subclass of it (the ``COOKIE`` step of "Registration" as refusals or as
a server from before it; docs/udp-protocol.md), and a room log that answers old
ranges from an archive, as the history store does for "Repair".  A
"restart" is what SIGTERM does: every session QUITs, the socket closes, and a
new front-end (a new registry, its numbering continued from the old one's, as
from the history store) binds the same address.
"""

from __future__ import annotations

import pytest

from tests.udpnet import UDPWorld
from twistchat.client import interfaces as I
from twistchat.client.udp import UDPChatSession
from twistchat.core.registry import Registry
from twistchat.core.roomlog import LocalRoomLog, new_epoch
from twistchat.frontends.udp import UDPFrontEnd
from twistchat.wire import Message, encode, parse


class CookieFront(UDPFrontEnd):
    """
    The real front-end (cookie step, ``boot`` id: docs/udp-protocol.md), watched.

    It records each registration NICK as ``(nick, cookie tag or None)`` in
    ``nicks_seen``.  ``refuse_cookies``: answer that many NICKs that carry a
    cookie ``FAIL NICK BAD_COOKIE`` first (expired cookies).  ``cookies=False``:
    behave like a server from before the cookie step, which answers the first
    NICK with its 001.  ``boot``: the boot id to announce.
    """

    def __init__(self, *args, boot: str = None, cookies: bool = True, refuse_cookies: int = 0,
                 **kw) -> None:
        super().__init__(*args, **kw)
        if boot is not None:
            self.boot = boot
        self.cookies = cookies
        self.refuse_cookies = refuse_cookies
        self.nicks_seen = []

    def _unregistered(self, data: bytes, addr: tuple) -> None:
        try:
            message = parse(data, max_body=2000, max_tags=2000)
        except ValueError:
            message = None
        if message is None or message.verb != "NICK" or not message.params:
            super()._unregistered(data, addr)
            return
        nick = message.params[0]
        given = message.tags.get("cookie")
        self.nicks_seen.append((nick, given))
        if given is not None and self.refuse_cookies > 0 and addr not in self.by_addr:
            self.refuse_cookies -= 1
            self._write(encode(Message("FAIL", ("NICK", "BAD_COOKIE", nick), "srv")), addr)
            return
        if given is None and not self.cookies and data.startswith(b"@pad=x"):
            # A server of the old kind: as if the first NICK had proved its address
            # (the cookie takes the place of some padding: still 1200 bytes).
            extra = b"cookie=" + self.cookie(addr, nick).encode() + b";"
            data = b"@" + extra + b"pad=" + data[len(b"@pad=") + len(extra):]
        super()._unregistered(data, addr)


class HistoryLog(LocalRoomLog):
    """A room log that answers ranges it no longer holds from ``archive``, as history does."""

    def __init__(self, archive: list, **kw) -> None:
        super().__init__(**kw)
        self.archive = archive

    def held(self, target, first, last, limit):
        lowest, events = super().held(target, first, last, limit)
        old = [e for e in self.archive if e.target == target and e.seq < lowest]
        if not old:
            return lowest, events
        wanted = [e for e in old if first <= e.seq <= last] + events
        return min(e.seq for e in old), sorted(wanted, key=lambda e: e.seq)[:limit]


class Server:
    """One run of the server on the world's network: a registry and a front-end."""

    def __init__(self, world: UDPWorld, front_cls=CookieFront, log=None, **front_kw) -> None:
        self.world = world
        self.registry = Registry(server_name="srv", clock=world.clock.seconds, log=log)
        self.front = front_cls(self.registry, world.clock, world.broadcast, world.limits,
                               **front_kw)
        self.port = world.net.bind(self.front, "127.0.0.1", 6667)

    def sigterm(self) -> None:
        """What SIGTERM does: every session quits, then the socket closes."""
        self.front.shut_down()
        self.port.stopListening()


class Network:
    """An in-memory world whose server can be stopped and started again."""

    def __init__(self, **front_kw) -> None:
        self.world = UDPWorld()
        self.world.stop()  # the world's own front-end: replaced by ours
        self.clock, self.net = self.world.clock, self.world.net
        self.archive = []  # every event of every run: the history store
        self.epoch = new_epoch()
        self.server = self.start(**front_kw)

    def start(self, fresh: bool = False, **front_kw) -> Server:
        """A server run; numbering goes on from the last run's unless ``fresh`` (:memory:)."""
        if fresh:
            self.epoch = new_epoch()
            self.archive.clear()
        last = {}
        for event in self.archive:
            last[event.target] = max(last.get(event.target, 0), event.seq)
        log = HistoryLog(self.archive, epoch=self.epoch, last_seqs=last)
        log.subscribe(self.archive.append)
        self.server = Server(self.world, log=log, **front_kw)
        return self.server

    def session(self, nick: str, **kw) -> UDPChatSession:
        s = UDPChatSession("127.0.0.1", 6667, nick, reactor=self.clock, net=self.net, **kw)
        s.events = []
        s.set_handler(s.events.append)
        s.start()
        return s

    def run_until(self, predicate, limit: float = 30.0) -> float:
        """Advance until ``predicate()``; the simulated seconds it took (fails past ``limit``)."""
        start = self.clock.seconds()
        assert self.net.run_until(predicate, limit), "timed out"
        return self.clock.seconds() - start


class Gate:
    """A fault layer that passes everything while open and drops everything while shut."""

    def __init__(self) -> None:
        self.open = True

    def __call__(self, data, addr, forward) -> None:
        if self.open:
            forward(data, addr)


def said(s: UDPChatSession, room: str = "#room") -> list:
    return [(e.nick, e.text) for e in s.events if e.room == room and e.kind == I.MESSAGE]


def seqs(s: UDPChatSession, room: str = "#room") -> list:
    return [e.seq for e in s.events if e.room == room and e.seq is not None]


def states(s: UDPChatSession) -> list:
    return [e.text for e in s.events if e.kind == I.STATE]


def sent_lines(port) -> list:
    """Every datagram written on a session's unicast port (a FakePort), parsed."""
    return [parse(d, max_body=2000, max_tags=2000) for d, _ in port.sent]


@pytest.fixture
def network():
    n = Network()
    yield n
    n.server.port.stopListening()


# ---------------------------------------------------------------- registration


def test_registration_sends_the_cookie_back(network):
    """NICK, COOKIE, NICK with cookie=, 001: both NICKs padded to 1200 bytes."""
    alice = network.session("alice")
    network.run_until(lambda: alice.state == I.REGISTERED, 5)
    cookie = network.server.front.cookie((alice._uport.host, alice._uport.port), "alice")
    assert network.server.front.nicks_seen == [("alice", None), ("alice", cookie)]
    nicks = [d for d, _ in alice._uport.sent if b" NICK " in d]
    assert len(nicks) == 2 and all(len(d) == 1200 for d in nicks)


def test_a_refused_cookie_starts_registration_over(network):
    """FAIL NICK BAD_COOKIE: the client asks for a new cookie and registers."""
    network.server.front.refuse_cookies = 2
    alice = network.session("alice")
    network.run_until(lambda: alice.state == I.REGISTERED, 10)
    seen = network.server.front.nicks_seen
    assert [c is None for _, c in seen] == [True, False, True, False, True, False]


def test_cookies_refused_for_ever_end_the_first_registration(network):
    """More than a few BAD_COOKIE in a row: start() fails with one clear error."""
    network.server.front.refuse_cookies = 100
    alice = network.session("alice")
    failed = []
    alice.start().addErrback(failed.append)
    network.run_until(lambda: failed, 30)
    assert alice.state == I.DISCONNECTED
    assert any("cookie" in e.text for e in alice.events if e.kind == I.ERROR)


def test_a_server_without_the_cookie_step_still_registers(network):
    """Today's server answers the first NICK with its 001: that works too."""
    network.server.front.cookies = False
    alice = network.session("alice")
    network.run_until(lambda: alice.state == I.REGISTERED, 5)
    assert network.server.front.nicks_seen == [("alice", None)]


def test_every_state_changing_command_carries_a_cseq(network):
    """Only PING, REPAIR (and the registration NICK) go without cseq (docs, item 6)."""
    alice, bob = network.session("alice"), network.session("bob")
    network.run_until(lambda: alice.state == bob.state == I.REGISTERED, 5)
    port = alice._uport
    alice.join("#room")
    bob.join("#room")
    network.run_until(lambda: "#room" in alice.rooms and "#room" in bob.rooms, 5)
    alice.say("#room", "hi")
    alice.action("#room", "waves")
    alice.topic("#room", "a topic")
    alice.topic("#room")
    alice.names("#room")
    alice.who("#room")
    alice.set_nick("alicia")
    alice.send_line("MODE #room +m")
    alice.send_line("NOTICE #room :note")
    alice.part("#room", "bye")
    network.net.run(1.0)
    alice.close()
    network.net.run(1.0)
    tokened = [m for m in sent_lines(port) if "token" in m.tags]
    unsequenced = {m.command for m in tokened if "cseq" not in m.tags}
    assert unsequenced <= {"PING", "REPAIR"}
    commands = [m.command for m in tokened if "cseq" in m.tags]
    for verb in ("JOIN", "PRIVMSG", "TOPIC", "NAMES", "WHO", "NICK", "MODE", "NOTICE", "PART",
                 "QUIT"):
        assert verb in commands
    untokened = [m for m in sent_lines(port) if "token" not in m.tags]
    assert {m.command for m in untokened} == {"NICK"}


# --------------------------------------------------------------------- restarts


def _in_room(network, *nicks):
    clients = [network.session(n) for n in nicks]
    network.run_until(lambda: all(c.state == I.REGISTERED for c in clients), 5)
    for c in clients:
        c.join("#room")
    network.run_until(lambda: all(c.rooms == ["#room"] for c in clients), 5)
    network.net.run(0.3)
    return clients


def test_restart_noticed_in_seconds_typed_line_kept_and_gap_filled(network):
    """
    SIGTERM, 10 s down, up again with another boot: alice says DISCONNECTED
    within 3.5 s, CONNECTING then REGISTERED within 1.5 s of the restart; the line
    she typed meanwhile is sent once; the lines she missed (said just before the
    stop, and on the new server before she was back) come from history, once, in
    order, before her JOIN again.
    """
    gate = Gate()
    alice = _in_room(network, "alice")[0]
    bob = network.session("bob")
    network.run_until(lambda: bob.state == I.REGISTERED, 5)
    bob.join("#room")
    bob.say("#room", "before")
    network.run_until(lambda: ("bob", "before") in said(alice), 5)
    alice.fault_in = gate
    gate.open = False  # alice hears nothing more from this server run
    bob.say("#room", "missed 1")
    network.net.run(0.2)
    stopped = network.clock.seconds()
    network.server.sigterm()
    noticed = network.run_until(lambda: alice.state == I.DISCONNECTED, 10)
    assert noticed <= 3.5
    alice.say("#room", "typed while down")
    assert any(e.kind == I.INFO and "sent once the server is back" in e.text
               for e in alice.events)
    network.net.run(10 - noticed)
    network.start()
    carol = network.session("carol")
    network.run_until(lambda: carol.state == I.REGISTERED, 5)
    carol.join("#room")
    carol.say("#room", "missed 2")
    network.net.run(0.1)
    restarted = network.clock.seconds()
    gate.open = True
    back = network.run_until(lambda: alice.state == I.REGISTERED, 10)
    assert back <= 1.5, back
    network.run_until(lambda: ("alice", "typed while down") in said(carol), 5)
    network.net.run(1.0)
    assert said(alice) == [("bob", "before"), ("bob", "missed 1"), ("carol", "missed 2"),
                           ("alice", "typed while down")]
    assert said(carol).count(("alice", "typed while down")) == 1
    got = seqs(alice)
    assert got == sorted(set(got)) and got == list(range(got[0], got[-1] + 1))
    assert states(alice)[-3:] == [I.DISCONNECTED, I.CONNECTING, I.REGISTERED]
    # The gap came before our JOIN again, as a TCP client's CHATHISTORY does.
    order = [e.text or e.kind for e in alice.events
             if e.room == "#room" and (e.kind == I.MESSAGE or (e.kind == I.JOIN and e.own))]
    assert order == [I.JOIN, "before", "missed 1", "missed 2", I.JOIN, "typed while down"]
    assert restarted - stopped >= 10
    assert alice.stats["gone"] == 0


def test_quick_restart_is_noticed_by_the_boot_id(network):
    """Down for half a second (the heartbeat barely pauses): another boot, registered anew."""
    alice = _in_room(network, "alice")[0]
    old_token = alice.token
    network.server.sigterm()
    network.net.run(0.5)
    network.start()
    took = network.run_until(lambda: alice.token not in (None, old_token)
                             and alice.rooms == ["#room"], 5)
    assert took <= 1.5
    assert I.DISCONNECTED in states(alice) and states(alice)[-1] == I.REGISTERED
    assert any("restarted" in e.text for e in alice.events if e.kind == I.ERROR)


def test_restart_without_boot_is_noticed_by_the_silence(network):
    """Today's server (no boot, no cookie): silence, then its heartbeat again: registered anew."""
    network.server.sigterm()
    network.start(front_cls=UDPFrontEnd)
    alice = _in_room(network, "alice")[0]
    alice.say("#room", "one")
    network.net.run(0.3)
    network.server.sigterm()
    took = network.run_until(lambda: alice.state == I.DISCONNECTED, 10)
    assert took <= 3.5
    alice.say("#room", "two")
    network.net.run(5)
    network.start(front_cls=UDPFrontEnd)
    took = network.run_until(lambda: ("alice", "two") in said(alice), 10)
    assert took <= 2.0
    network.net.run(1)
    assert said(alice) == [("alice", "one"), ("alice", "two")]
    got = seqs(alice)
    assert got == sorted(set(got))


def test_a_new_epoch_starts_the_room_afresh(network):
    """A restart with --db=:memory: numbers from 1 again: no repair, no duplicates, no loss."""
    alice, bob = _in_room(network, "alice", "bob")
    for i in range(5):
        bob.say("#room", f"old {i}")
    network.run_until(lambda: len(said(alice)) == 5, 5)
    network.server.sigterm()
    network.run_until(lambda: alice.state == I.DISCONNECTED, 10)
    network.start(fresh=True)
    network.run_until(lambda: alice.rooms == ["#room"] and bob.rooms == ["#room"], 10)
    bob.say("#room", "new")
    network.run_until(lambda: ("bob", "new") in said(alice), 5)
    network.net.run(1)
    assert said(alice) == [("bob", f"old {i}") for i in range(5)] + [("bob", "new")]
    assert alice.stats["gone"] == 0
    assert not any("lost" in e.text for e in alice.events if e.kind == I.ERROR)
    new_joins = [e.seq for e in alice.events if e.kind == I.JOIN and e.own]
    assert new_joins[-1] < new_joins[0] + 7  # the new numbering, shown as it is


def test_a_network_blip_keeps_the_session(network):
    """Nothing passes for 4 s, the server lives: the same token afterwards, the line sent once."""
    alice, bob = _in_room(network, "alice", "bob")
    gate_in, gate_out = Gate(), Gate()
    alice.fault_in, alice.fault_out = gate_in, gate_out
    token = alice.token
    gate_in.open = gate_out.open = False
    network.run_until(lambda: alice.state == I.DISCONNECTED, 10)
    alice.say("#room", "still here")
    network.net.run(0.5)
    gate_in.open = gate_out.open = True
    network.run_until(lambda: alice.state == I.REGISTERED, 5)
    network.run_until(lambda: ("alice", "still here") in said(bob), 5)
    network.net.run(1)
    assert alice.token == token
    assert said(bob).count(("alice", "still here")) == 1
    assert said(alice) == [("alice", "still here")]


def test_what_waits_for_the_server_is_bounded(network):
    """While reconnecting at most max_queued commands are kept; past that, one ERROR each."""
    network.server.sigterm()
    network.start()
    alice = network.session("alice", max_queued=3)
    network.run_until(lambda: alice.state == I.REGISTERED, 5)
    network.server.sigterm()
    network.run_until(lambda: alice.state == I.DISCONNECTED, 10)
    for i in range(5):
        alice.say("alice", f"note {i}")
    refused = [e for e in alice.events if e.kind == I.ERROR and e.text.startswith("Not sent")]
    assert len(refused) == 2


def test_close_while_reconnecting_leaves_no_timers(network):
    """close() during a reconnect: CLOSED at once, and nothing left on the clock."""
    alice = _in_room(network, "alice")[0]
    network.server.sigterm()
    network.run_until(lambda: alice.state == I.DISCONNECTED, 10)
    alice.close()
    assert alice.state == I.CLOSED
    assert alice._timers == {}


# ----------------------------------------------------------------- history on join


def test_history_on_join_shows_earlier_messages_once_before_the_join(network):
    """bob said three lines; alice joins: they come before her JOIN, in order, once."""
    bob = _in_room(network, "bob")[0]
    for i in range(3):
        bob.say("#room", f"earlier {i}")
    network.net.run(0.3)
    bob.set_nick("robert")
    network.net.run(0.3)
    alice = network.session("alice")
    network.run_until(lambda: alice.state == I.REGISTERED, 5)
    alice.join("#room")
    network.run_until(lambda: alice.rooms == ["#room"], 5)
    bob.say("#room", "now")
    network.run_until(lambda: ("robert", "now") in said(alice), 5)
    network.net.run(0.5)
    events = [(e.kind, e.nick, e.text) for e in alice.events if e.room == "#room"
              and e.seq is not None]
    assert events == [(I.MESSAGE, "bob", f"earlier {i}") for i in range(3)] + [
        (I.JOIN, "alice", ""), (I.MESSAGE, "robert", "now")]
    got = seqs(alice)
    assert got == sorted(set(got))
