"""
The UDP front-end end to end: the real ``twistd -n chat --proto=both`` on loopback.

Broadcasts go to 127.255.255.255 only (../shared/DESIGN.md, "Testing rules").
Root-only tests (nftables loss, network namespaces) skip with the reason when
they cannot run.  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task, threads
from twisted.protocols.basic import LineReceiver

from tests.serverproc import REPO, ServerProcess, source_env
from twistchat.client import interfaces as I
from twistchat.client.udp import FaultInjector, UDPChatSession, discover
from twistchat.wire import parse

BROADCAST = "127.255.255.255"
FAST = ["--proto=both", f"--broadcast={BROADCAST}", "--db=:memory:",
        "--flood-burst=100000", "--flood-rate=100000"]


@pytest.fixture
def server(tmp_path):
    """Start ``twistd -n chat`` with extra flags; stopped by pid at the end."""
    started = []

    def start(*args):
        proc = ServerProcess(tmp_path, *FAST, *args).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def sessions():
    """UDP sessions made by the test, closed at the end (their QUIT is bounded)."""
    made = []

    def make(srv, nick, **kw):
        s = UDPChatSession("127.0.0.1", srv.port, nick, reactor=reactor, **kw)
        s.events = []
        s.set_handler(s.events.append)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.state != I.CLOSED:
            pytest_twisted.blockon(s.close())


async def until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait (without blocking the reactor) until ``predicate()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


def transcript(s, room="#room", start=0) -> bytes:
    """A room as the screen shows it, as bytes: one line per event from seq ``start``."""
    return b"".join(
        f"{e.seq} {e.time_ms} {e.kind} {e.nick} {e.text}\n".encode()
        for e in s.events if e.room == room and e.seq is not None and e.seq >= start)


def messages(s, room="#room") -> list:
    return [(e.nick, e.text) for e in s.events if e.room == room and e.kind == I.MESSAGE]


class IRCUser(LineReceiver):
    """A bare IRC client with server-time: registers, joins, records every line."""

    delimiter = b"\n"

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.lines = []
        self.welcome = defer.Deferred()

    def connectionMade(self):
        self.sendLine(b"CAP REQ :server-time")
        self.sendLine(f"NICK {self.nick}".encode())
        self.sendLine(f"USER {self.nick} 0 * :{self.nick}".encode())
        self.sendLine(b"CAP END")

    def lineReceived(self, line):
        message = parse(line.rstrip(b"\r"), max_body=4096)
        self.lines.append(message)
        if message.command == "PING":
            self.sendLine(b"PONG :" + message.params[0].encode())
        if message.command == "001" and not self.welcome.called:
            self.welcome.callback(self)

    def say(self, line: str) -> None:
        self.sendLine(line.encode())


async def irc_user(port: int, nick: str) -> IRCUser:
    proto = IRCUser(nick)
    await endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    await proto.welcome
    return proto


@pytest_twisted.ensureDeferred
async def test_two_udp_sessions_and_an_irc_user_see_one_transcript(server, sessions):
    """Two UDP sessions and one IRC connection in one room end with the same transcript."""
    srv = server()
    alice, bob = sessions(srv, "alice"), sessions(srv, "bob")
    await alice.start()
    await bob.start()
    irc = await irc_user(srv.port, "carol")
    alice.join("#room")
    await until(lambda: alice.rooms == ["#room"], what="alice in #room")
    bob.join("#room")
    irc.say("JOIN #room")
    await until(lambda: len([e for e in alice.events if e.kind == I.JOIN]) == 3, what="joins")
    for i in range(20):
        alice.say("#room", f"a{i}")
        bob.say("#room", f"b{i}")
        irc.say(f"PRIVMSG #room :c{i}")
    await until(lambda: len(messages(alice)) == 60 and len(messages(bob)) == 60,
                what="60 messages each")
    await until(lambda: len([m for m in irc.lines if m.command == "PRIVMSG"]) == 40,
                what="irc sees the other 40")
    start = max(e.seq for s in (alice, bob) for e in s.events if e.kind == I.JOIN and e.own)
    assert transcript(alice, start=start) == transcript(bob, start=start)
    # The IRC user's view, in server order (it does not see its own lines echoed).
    seen_by_irc = [(m.source.split("!")[0], m.params[1]) for m in irc.lines
                   if m.command == "PRIVMSG"]
    assert seen_by_irc == [m for m in messages(alice) if m[0] != "carol"]
    assert set(m for m in messages(alice) if m[0] == "carol") == {("carol", f"c{i}")
                                                                   for i in range(20)}
    irc.transport.loseConnection()


def _raw_exchange(port: int, payloads: list, wait: float = 0.5) -> list:
    """Send datagrams from one fresh socket; return what came back within ``wait`` s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for data in payloads:
            sock.sendto(data, ("127.0.0.1", port))
        sock.settimeout(wait)
        got = []
        try:
            while True:
                got.append(sock.recvfrom(4096)[0])
        except TimeoutError:
            return got


@pytest_twisted.ensureDeferred
async def test_forged_tokens_and_addresses_are_refused(server, sessions):
    """A made-up token, or alice's token from another address, gets nothing and runs nothing."""
    srv = server()
    alice = sessions(srv, "alice")
    await alice.start()
    alice.join("#room")
    await until(lambda: alice.rooms == ["#room"])
    token = alice.token.encode()
    forged = [b"@token=" + b"f" * 32 + b";cseq=1 PRIVMSG #room :forged",
              b"@token=" + token + b";cseq=1 PRIVMSG #room :stolen token",
              b"@token=" + token + b" PRIVMSG #room :stolen, unsequenced",
              b"PRIVMSG #room :no token at all"]
    got = await threads.deferToThread(_raw_exchange, srv.port, forged)
    assert got == []
    await task.deferLater(reactor, 0.3, lambda: None)
    assert messages(alice) == []
    alice.say("#room", "real")
    await until(lambda: messages(alice) == [("alice", "real")])


@pytest_twisted.ensureDeferred
async def test_over_long_bad_utf8_and_malformed_datagrams_get_errors(server):
    """417 for > 1200 bytes, FAIL for a padded NICK that is not UTF-8; the server lives on."""
    srv = server()
    got = await threads.deferToThread(_raw_exchange, srv.port, [b"x" * 1300])
    assert [parse(d).command for d in got] == ["417"]
    bad = b"@pad=" + b"x" * 1180 + b" NICK \xff\xfe\r\n"
    got = await threads.deferToThread(_raw_exchange, srv.port, [bad])
    assert [parse(d).params[1] for d in got] == ["INVALID_UTF8"]
    assert sum(map(len, got)) <= len(bad)
    socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()  # still serving


@pytest_twisted.ensureDeferred
async def test_silent_session_expires_with_quit(server, sessions):
    """A UDP session that stops sending is expired after the timeout; its room sees QUIT."""
    srv = server("--udp-session-timeout=1", "--heartbeat=0.2")
    alice, bob = sessions(srv, "alice"), sessions(srv, "bob")
    await alice.start()
    await bob.start()
    alice.join("#room")
    await until(lambda: alice.rooms == ["#room"])
    bob.join("#room")
    await until(lambda: bob.rooms == ["#room"])
    alice._cancel_timers()  # alice goes silent: no keepalive, no QUIT
    alice._uport.stopListening()
    alice._bport.stopListening()
    alice._uport = alice._bport = None
    alice.state = I.CLOSED
    await until(lambda: any(e.kind == I.QUIT and e.nick == "alice" for e in bob.events),
                timeout=5, what="alice's QUIT")
    quit_event = [e for e in bob.events if e.kind == I.QUIT][0]
    assert quit_event.room == "#room" and "timed out" in quit_event.text


@pytest_twisted.ensureDeferred
async def test_discovery_by_beacon(server):
    """With no HOST, a client finds the server from its heartbeat beacon."""
    srv = server("--heartbeat=0.2")
    found = await discover(reactor, broadcast_port=srv.port + 1, address=BROADCAST, timeout=5)
    assert found == ("127.0.0.1", srv.port, "twistchat.local", "twistchat")


async def _three_clients_thousand_messages(srv, sessions, fault) -> list:
    """3 UDP clients each say 1,000 lines in #room; return them once all have all 3,000."""
    clients = [sessions(srv, nick, fault_in=fault(i), fault_out=fault(i + 10))
               for i, nick in enumerate(("alice", "bob", "carol"))]
    for c in clients:
        await c.start()
        c.join("#room")
    await until(lambda: all(c.rooms == ["#room"] for c in clients), what="joins")
    await until(lambda: all(len([e for e in c.events if e.kind == I.JOIN]) >= 1 for c in clients))
    for k in range(1000):
        for c in clients:
            c.say("#room", f"{c.nick} says {k}")
        if k % 50 == 49:
            await task.deferLater(reactor, 0.01, lambda: None)
    await until(lambda: all(len(messages(c)) >= 3000 for c in clients), timeout=40,
                what="3,000 messages at every client")
    await task.deferLater(reactor, 0.3, lambda: None)  # any late duplicate would show now
    return clients


def _assert_same_complete_transcripts(clients) -> None:
    start = max(e.seq for c in clients for e in c.events if e.kind == I.JOIN and e.own)
    views = [transcript(c, start=start) for c in clients]
    assert views[0] == views[1] == views[2]
    for c in clients:
        said = [text for nick, text in messages(c) if nick == c.nick]
        assert said == [f"{c.nick} says {k}" for k in range(1000)]  # none missing, none doubled
        assert len(messages(c)) == 3000
        seqs = [e.seq for e in c.events if e.room == "#room" and e.seq is not None]
        assert seqs == sorted(set(seqs))


@pytest_twisted.ensureDeferred
async def test_3_clients_1000_messages_with_seeded_loss_duplication_reordering(server, sessions):
    """10% loss (both ways), 5% duplicates, 10% reordered per client: same complete transcripts."""
    srv = server()
    clients = await _three_clients_thousand_messages(
        srv, sessions,
        lambda seed: FaultInjector(reactor, seed, loss=0.10, duplicate=0.05, reorder=0.10))
    _assert_same_complete_transcripts(clients)
    assert all(c.stats["repairs_asked"] > 0 for c in clients)


NFT = shutil.which("nft")


def _nft(*args: str, stdin: str = None) -> subprocess.CompletedProcess:
    return subprocess.run([NFT, *args], input=stdin, capture_output=True, text=True, timeout=10)


@pytest.fixture
def nft_loss():
    """A nftables table of this test's own that drops 10% of the UDP datagrams of a port."""
    if os.geteuid() != 0:
        pytest.skip("nftables loss needs root")
    if NFT is None:
        pytest.skip("nftables loss needs the nft command (Debian package nftables)")
    table = f"twistchat_test_{os.getpid()}"
    made = []

    def drop(port: int) -> str:
        rules = f"""
table inet {table} {{
    chain out {{
        type filter hook output priority 0; policy accept;
        ip daddr 127.0.0.0/8 udp dport {port} numgen random mod 10 0 counter drop
        ip daddr 127.0.0.0/8 udp sport {port} numgen random mod 10 0 counter drop
    }}
}}
"""
        result = _nft("-f", "-", stdin=rules)
        if result.returncode != 0:
            pytest.skip(f"nft cannot add a table here: {result.stderr.strip()}")
        made.append(table)
        return table

    yield drop
    for name in made:
        _nft("delete", "table", "inet", name)


@pytest_twisted.ensureDeferred
async def test_3_clients_1000_messages_under_real_10_percent_loss(server, sessions, nft_loss):
    """nftables drops 10% of datagrams to and from the server port: same complete transcripts."""
    srv = server()
    table = nft_loss(srv.port)
    clients = await _three_clients_thousand_messages(
        srv, sessions, lambda seed: FaultInjector(reactor, seed, duplicate=0.05, reorder=0.10))
    _assert_same_complete_transcripts(clients)
    counters = _nft("list", "table", "inet", table).stdout
    dropped = sum(int(part.split()[0]) for part in counters.split("packets ")[1:])
    assert dropped > 300  # the loss was real


IP = shutil.which("ip")
# The test's own subnet: its addresses exist only inside the namespaces the fixture below
# creates (and deletes); nothing here is sent from, or to, the host's own network.
NETNS_SUBNET = "10.251.77"


@pytest.fixture
def namespaces():
    """Three network namespaces on a bridge in a fourth, subnet NETNS_SUBNET.0/24, removed after."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if IP is None:
        pytest.skip("network namespaces need the ip command (iproute2)")
    tag = f"tc{os.getpid() % 100000}"
    names = {"br": f"{tag}br", "srv": f"{tag}s", "c1": f"{tag}c1", "c2": f"{tag}c2"}
    made = []

    def ip(*args):
        result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")

    try:
        for ns in names.values():
            ip("netns", "add", ns)
            made.append(ns)
        ip("-n", names["br"], "link", "add", "br0", "type", "bridge")
        ip("-n", names["br"], "link", "set", "br0", "up")
        for i, key in enumerate(("srv", "c1", "c2"), start=1):
            ns = names[key]
            ip("-n", names["br"], "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", names["br"], "link", "set", f"p{i}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{NETNS_SUBNET}.{i}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        for ns in made:
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)
        pytest.skip(f"cannot build network namespaces here: {e}")
    yield names
    for ns in made:
        subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)


def test_broadcast_between_network_namespaces(namespaces, tmp_path):
    """Server in one namespace, clients in two others on a bridge: broadcast delivery works."""
    port = 6667
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    # No --broadcast: the server finds its interface's broadcast address (NETNS_SUBNET.255).
    server = subprocess.Popen(
        [IP, "netns", "exec", namespaces["srv"], twistd, "-n", "--pidfile=", "chat",
         "--proto=udp", f"--interface={NETNS_SUBNET}.1", f"--port={port}", "--db=:memory:"],
        cwd=tmp_path, env=source_env(), stdout=open(tmp_path / "server.log", "wb"),
        stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        clients = [subprocess.Popen(
            [IP, "netns", "exec", namespaces[ns], sys.executable, "-m", "tests.udp_netns_client",
             f"{NETNS_SUBNET}.1", str(port), nick, "#lan", f"hello from {nick}", "2", "15"],
            cwd=REPO, env=source_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for ns, nick in (("c1", "one"), ("c2", "two"))]
        outputs = [c.communicate(timeout=30) for c in clients]
        views = [[json.loads(line) for line in out.decode().splitlines() if line.strip()]
                 for out, err in outputs]
        said = [[(v[2], v[3]) for v in view if v[1] == I.MESSAGE] for view in views]
        for got in said:
            assert sorted(got) == [("one", "hello from one"), ("two", "hello from two")], \
                (outputs, (tmp_path / "server.log").read_text())
        assert said[0] == said[1]  # the same order on both screens
        log = (tmp_path / "server.log").read_text()
        assert f"{NETNS_SUBNET}.255" in log  # it broadcast on the namespace's own subnet
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


# ------------------------------------------------------- repair reads only what is yours


class RawSession:
    """
    A bare UDP session on one loopback socket (blocking, every wait bounded).

    Registers in the two steps of docs/udp-protocol.md, "Registration" (a
    padded NICK earns a COOKIE; the same NICK with it earns the 001), takes
    the token from the 001 and uses it once (PING) so the server sends it
    everything; then sends lines with it.  ``got`` keeps every datagram
    received, parsed, ``raw`` as bytes, in order.
    """

    def __init__(self, port: int, nick: str, timeout: float = 5.0) -> None:
        self.server = ("127.0.0.1", port)
        self.nick = nick
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.got = []
        self.raw = []
        self.token = None
        self.cseq = 0
        deadline = time.monotonic() + timeout
        cookie = None
        while cookie is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no COOKIE for {nick}: {self.got}")
            self.sock.sendto(self._padded_nick(), self.server)
            for message in self.receive(0.5):
                if message.command == "COOKIE":
                    cookie = message.params[1]
        while self.token is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no 001 for {nick}: {self.got}")
            self.sock.sendto(self._padded_nick(cookie), self.server)
            for message in self.receive(0.5):
                if message.command == "001":
                    self.token = message.tags["token"]
        self.receive()  # the rest of the welcome that fits
        self.send("PING :proof")  # the token proves the address: unicast lines flow now
        self.receive()

    def _padded_nick(self, cookie: str | None = None) -> bytes:
        """The registration NICK, padded to 1200 bytes; with ``cookie``, step 2."""
        head = b"@" + (f"cookie={cookie};".encode() if cookie else b"") + b"pad="
        nick_line = f" NICK {self.nick}\r\n".encode()
        return head + b"x" * (1200 - len(head) - len(nick_line)) + nick_line

    def receive(self, quiet: float = 0.4, most: float = 5.0) -> list:
        """Datagrams until ``quiet`` s pass without one (at most ``most`` s); also kept in got."""
        new = []
        deadline = time.monotonic() + most
        while time.monotonic() < deadline:
            self.sock.settimeout(quiet)
            try:
                data = self.sock.recvfrom(4096)[0]
            except TimeoutError:
                break
            new.append((data, parse(data)))
        self.got += [m for _, m in new]
        self.raw += [d for d, _ in new]
        return [m for _, m in new]

    def send(self, line: str, sequenced: bool = False) -> None:
        tags = f"@token={self.token}"
        if sequenced:
            self.cseq += 1
            tags += f";cseq={self.cseq}"
        self.sock.sendto(f"{tags} {line}".encode(), self.server)

    def close(self) -> None:
        if self.token is not None:
            self.send("QUIT")
        self.sock.close()


@pytest.fixture
def raw_sessions():
    """RawSession(port, nick) made by the test, each sent QUIT and closed at the end."""
    made = []

    def make(port, nick):
        s = RawSession(port, nick)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _drops(metrics_port: int, reason: str, timeout: float = 5.0) -> float:
    """The ``twistchat_drops_total`` sample for ``reason`` in a scrape of /metrics."""
    from tests.test_metrics import parse as parse_metrics
    from tests.test_metrics import scrape

    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = parse_metrics(scrape(metrics_port)[1])
            return samples[f'twistchat_drops_total{{reason="{reason}"}}']
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("sequenced", [False, True], ids=["unsequenced", "sequenced"])
def test_repair_of_a_room_not_joined_is_denied_and_counted(server, raw_sessions, sequenced):
    """REPAIR #tcponly from a UDP session not in it: only FAIL NOT_ALLOWED, and a drop counted."""
    from tests.serverproc import LineClient, free_port

    metrics_port = free_port()
    srv = server("--metrics", f"tcp:{metrics_port}:interface=127.0.0.1")
    carol = LineClient(srv.host, srv.port).register("carol")
    try:
        carol.join("#tcponly")
        carol.send("TOPIC #tcponly :tcp-only topic", "PRIVMSG #tcponly :tcp-only secret")
        carol.send("PING :sync")
        carol.wait_for(lambda text: " PONG " in text)
        dave = raw_sessions(srv.port, "dave")
        dave.send("REPAIR #tcponly 1 100", sequenced=sequenced)
        answer = [m for m in dave.receive() if m.command != "ACK"]
        assert [(m.command, m.params[:3]) for m in answer] == \
            [("FAIL", ("REPAIR", "NOT_ALLOWED", "#tcponly"))]
        assert not any(b"secret" in d or b"JOIN" in d for d in dave.raw)
        assert _drops(metrics_port, "udp_repair_denied") >= 1
    finally:
        carol.close()


def test_repair_star_gives_only_the_sessions_own_lines(server, raw_sessions):
    """REPAIR * 1 100 from bob: bob's own numbered lines only, never alice's private message."""
    from tests.serverproc import LineClient

    srv = server()
    alice = raw_sessions(srv.port, "alice")
    bob = raw_sessions(srv.port, "bob")
    carol = LineClient(srv.host, srv.port).register("carol")
    try:
        carol.send("PRIVMSG alice :for-alice-only", "PRIVMSG bob :for-bob")
        assert any(m.command == "PRIVMSG" and m.params == ("alice", "for-alice-only")
                   for m in alice.receive()), alice.got  # alice did get it
        bob.receive()
        bob.send("REPAIR * 1 100")
        repaired = bob.receive()
        assert repaired, "bob's repair returned nothing"
        assert not any(b"for-alice-only" in d for d in bob.raw)
        useqs = [int(m.tags["useq"]) for m in repaired]
        assert useqs == list(range(1, len(useqs) + 1))  # bob's stream from its 001 on
        for m in repaired:
            if m.command.isdigit():
                assert m.params[0] == "bob", m
            elif m.command == "PRIVMSG":
                assert m.params == ("bob", "for-bob"), m
        assert repaired[0].command == "001" and repaired[0].tags["token"] == bob.token
        assert any(m.command == "PRIVMSG" for m in repaired)
    finally:
        carol.close()


# ------------------------------------------- a restarted server (issue #12, items 2 and 3)
# Mirrors tests/test_client_tcp.py's restart tests for the UDP client session.

DB_ARGS = [a for a in FAST if not a.startswith("--db")]


class _Gate:
    """A fault layer for one session: passes everything while ``open``; records what passed."""

    def __init__(self) -> None:
        self.open = True
        self.passed = []

    def __call__(self, data, addr, forward) -> None:
        if self.open:
            self.passed.append(data)
            forward(data, addr)


def _room_texts(s, room="#room"):
    return [e.text for e in s.events if e.room == room and e.kind == I.MESSAGE]


def _room_seqs(s, room="#room"):
    return [e.seq for e in s.events if e.room == room and e.seq is not None]


async def _tcp_user(port: int, nick: str, room: str = "#room") -> IRCUser:
    irc = await irc_user(port, nick)
    irc.say(f"JOIN {room}")
    await until(lambda: any(m.command == "366" for m in irc.lines), what=f"{nick} in {room}")
    return irc


@pytest_twisted.ensureDeferred
async def test_udp_client_notices_a_restart_keeps_what_was_typed_and_fills_the_gap(
        tmp_path, sessions):
    """
    SIGTERM twistd (--db=FILE) under a UDP client in #room: DISCONNECTED within 5 s;
    a line typed meanwhile is kept; started again, the client is REGISTERED within
    3 s, rejoined, sends the line once, and shows what a TCP user said on the new
    server before it was back: each line once, in seq order (as the TCP session does).
    """
    db = f"--db={tmp_path / 'chat.sqlite'}"
    first = ServerProcess(tmp_path, *DB_ARGS, db).start()
    port = first.port
    second = None
    irc = irc2 = None
    try:
        alice = sessions(first, "alice", rooms=("#room",))
        await alice.start()
        await until(lambda: alice.rooms == ["#room"], what="alice in #room")
        irc = await _tcp_user(port, "carol")
        irc.say("PRIVMSG #room :before")
        await until(lambda: _room_texts(alice) == ["before"], what="the first line")
        stopped = time.monotonic()
        await threads.deferToThread(first.stop)
        await until(lambda: alice.state == I.DISCONNECTED, timeout=8, what="reconnecting")
        noticed = time.monotonic() - stopped
        alice.say("#room", "typed while down")
        await task.deferLater(reactor, 1.0, lambda: None)
        second = await threads.deferToThread(
            ServerProcess(tmp_path, *DB_ARGS, db, port=port).start)
        restarted = time.monotonic()
        irc2 = await _tcp_user(port, "dave")
        irc2.say("PRIVMSG #room :said on the new server")
        await until(lambda: alice.state == I.REGISTERED, timeout=10, what="registered again")
        back = time.monotonic() - restarted
        await until(lambda: "said on the new server" in _room_texts(alice)
                    and "typed while down" in _room_texts(alice), timeout=10,
                    what="the gap and our line")
        await until(lambda: any(m.command == "PRIVMSG" and m.params[-1] == "typed while down"
                                for m in irc2.lines), what="dave hears alice's line")
        await task.deferLater(reactor, 0.5, lambda: None)  # a late duplicate would show now
        texts = _room_texts(alice)
        assert sorted(texts) == sorted(["before", "said on the new server", "typed while down"])
        seqs = _room_seqs(alice)
        assert seqs == sorted(set(seqs)), seqs
        assert [m.params[-1] for m in irc2.lines if m.command == "PRIVMSG"] \
            .count("typed while down") == 1
        states = [e.text for e in alice.events if e.kind == I.STATE]
        assert states[-2:] == [I.CONNECTING, I.REGISTERED] and I.DISCONNECTED in states
        assert noticed < 5.0, noticed
        assert back < 3.0, back
    finally:
        for user in (irc, irc2):
            if user is not None:
                user.transport.loseConnection()
        if second is not None:
            await threads.deferToThread(second.stop)
        await threads.deferToThread(first.stop)


@pytest_twisted.ensureDeferred
async def test_lines_missed_before_a_restart_come_from_history(tmp_path, sessions):
    """
    Lines a UDP client missed just before SIGTERM are repaired after the restart
    from history, shown once, before its JOIN again, with none lost; it registered
    with the cookie step and the 001 carried a boot id.
    """
    db = f"--db={tmp_path / 'chat.sqlite'}"
    first = ServerProcess(tmp_path, *DB_ARGS, db).start()
    port = first.port
    second = None
    irc = None
    gate_in, gate_out = _Gate(), _Gate()
    try:
        alice = sessions(first, "alice", rooms=("#room",), fault_in=gate_in, fault_out=gate_out)
        await alice.start()
        await until(lambda: alice.rooms == ["#room"], what="alice in #room")
        irc = await _tcp_user(port, "carol")
        irc.say("PRIVMSG #room :before")
        await until(lambda: _room_texts(alice) == ["before"], what="the first line")
        gate_in.open = False  # alice hears nothing more of this run
        for i in range(3):
            irc.say(f"PRIVMSG #room :missed {i}")
        irc.say("PING :flushed")
        await until(lambda: any(m.command == "PONG" for m in irc.lines), what="carol's lines")
        irc.transport.loseConnection()
        irc = None
        await threads.deferToThread(first.stop)
        await until(lambda: alice.state == I.DISCONNECTED, timeout=8, what="reconnecting")
        second = await threads.deferToThread(
            ServerProcess(tmp_path, *DB_ARGS, db, port=port).start)
        gate_in.open = True
        await until(lambda: alice.state == I.REGISTERED, timeout=10, what="registered again")
        await until(lambda: len(_room_texts(alice)) >= 4, timeout=10, what="the missed lines")
        await task.deferLater(reactor, 0.5, lambda: None)
        assert _room_texts(alice) == ["before", "missed 0", "missed 1", "missed 2"]
        assert alice.stats["gone"] == 0
        order = [e.text or e.kind for e in alice.events if e.room == "#room"
                 and (e.kind == I.MESSAGE or (e.kind == I.JOIN and e.own))]
        assert order == [I.JOIN, "before", "missed 0", "missed 1", "missed 2", I.JOIN]
        sent = [parse(d, max_body=2000, max_tags=2000) for d in gate_out.passed]
        assert any(m.command == "NICK" and "cookie" in m.tags for m in sent)
        assert alice._boot is not None
    finally:
        if irc is not None:
            irc.transport.loseConnection()
        if second is not None:
            await threads.deferToThread(second.stop)
        await threads.deferToThread(first.stop)


@pytest_twisted.ensureDeferred
async def test_udp_join_shows_the_rooms_recent_messages_first(server, sessions):
    """History on join: what a TCP user said before comes before our JOIN, once, in order."""
    srv = server()
    irc = await _tcp_user(srv.port, "carol")
    try:
        for i in range(3):
            irc.say(f"PRIVMSG #room :earlier {i}")
        irc.say("PING :flushed")
        await until(lambda: any(m.command == "PONG" for m in irc.lines), what="carol's lines")
        alice = sessions(srv, "alice")
        await alice.start()
        alice.join("#room")
        await until(lambda: alice.rooms == ["#room"], what="alice in #room")
        irc.say("PRIVMSG #room :now")
        await until(lambda: "now" in _room_texts(alice), what="the live line")
        await task.deferLater(reactor, 0.3, lambda: None)
        order = [e.text or e.kind for e in alice.events if e.room == "#room"
                 and (e.kind == I.MESSAGE or (e.kind == I.JOIN and e.own))]
        assert order == ["earlier 0", "earlier 1", "earlier 2", I.JOIN, "now"]
        seqs = _room_seqs(alice)
        assert seqs == sorted(set(seqs))
    finally:
        irc.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_memory_server_restarted_starts_the_rooms_afresh(tmp_path, sessions):
    """--db=:memory: restarted: numbers start over; the client shows the new numbering, no dup."""
    first = ServerProcess(tmp_path, *FAST).start()
    port = first.port
    second = None
    try:
        alice = sessions(first, "alice", rooms=("#room",))
        bob = sessions(first, "bob", rooms=("#room",))
        await alice.start()
        await bob.start()
        await until(lambda: alice.rooms == bob.rooms == ["#room"], what="both in #room")
        for i in range(5):
            bob.say("#room", f"old {i}")
        await until(lambda: len(_room_texts(alice)) == 5, what="old lines")
        await threads.deferToThread(first.stop)
        await until(lambda: alice.state == I.DISCONNECTED, timeout=8, what="reconnecting")
        second = await threads.deferToThread(ServerProcess(tmp_path, *FAST, port=port).start)
        await until(lambda: alice.state == bob.state == I.REGISTERED
                    and alice.rooms == bob.rooms == ["#room"], timeout=10, what="both back")
        bob.say("#room", "new")
        await until(lambda: "new" in _room_texts(alice), what="the new line")
        await task.deferLater(reactor, 0.5, lambda: None)
        assert _room_texts(alice) == [f"old {i}" for i in range(5)] + ["new"]
        assert not any("lost" in e.text for e in alice.events if e.kind == I.ERROR)
    finally:
        if second is not None:
            await threads.deferToThread(second.stop)
        await threads.deferToThread(first.stop)
