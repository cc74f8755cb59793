"""
The TCP chat session (twistchat.client.tcp): in memory on task.Clock, then
against the real ``twistd -n chat`` on loopback, with reconnection and TLS.

In-memory tests play the server by hand on a StringTransport; the fake
endpoint records every connection the session's ClientService makes.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from tests.serverproc import ServerProcess, free_port
from twistchat.client import SessionUnavailable, ctcp, open_session
from twistchat.client import interfaces as I
from twistchat.client.interfaces import IChatSession
from twistchat.client.tcp import TCPChatSession
from twistchat.wire import format_server_time, parse, sanitize_nick

FAST_RETRY = {"initialDelay": 0.1, "maxDelay": 0.5, "factor": 1.5, "jitter": lambda: 0}


class FakeEndpoint:
    """Connects at once to a StringTransport; records (protocol, transport) pairs."""

    def __init__(self) -> None:
        self.connections: list = []
        self.fail_with = None

    def connect(self, factory):
        if self.fail_with is not None:
            return defer.fail(self.fail_with)
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6667))
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        self.connections.append((proto, transport))
        return defer.succeed(proto)

    @property
    def proto(self):
        return self.connections[-1][0]

    @property
    def transport(self):
        return self.connections[-1][1]

    def feed(self, *lines: str) -> None:
        """The server sends ``lines`` on the newest connection."""
        for line in lines:
            self.proto.dataReceived(line.encode("utf-8") + b"\r\n")

    def sent(self) -> list:
        """Lines the session wrote since the last call (as text)."""
        data = self.transport.value()
        self.transport.clear()
        return [line.decode("utf-8") for line in data.split(b"\r\n") if line]

    def drop(self) -> None:
        """The server goes away (unless the session closed the transport already)."""
        if self.transport.connected:
            self.transport.connected = False
            self.proto.connectionLost(Failure(ConnectionDone()))


class Recorder(list):
    """Collects events; ``kinds()`` and ``of(kind)`` for assertions."""

    def __call__(self, event) -> None:
        self.append(event)

    def of(self, kind: str) -> list:
        return [e for e in self if e.kind == kind]

    def texts(self, kind: str) -> list:
        return [e.text for e in self if e.kind == kind]


@pytest.fixture
def clock():
    c = task.Clock()
    c.advance(1_800_000_000)
    return c


def make_session(clock, **kwargs):
    endpoint = FakeEndpoint()
    session = TCPChatSession(
        "127.0.0.1",
        6667,
        kwargs.pop("nick", "alice"),
        kwargs.pop("rooms", ("#lobby",)),
        reactor=clock,
        endpoint=endpoint,
        retry=FAST_RETRY,
        **kwargs,
    )
    events = Recorder()
    session.set_handler(events)
    return session, endpoint, events


def register(
    endpoint, nick="alice", caps="server-time echo-message message-tags batch draft/chathistory"
):
    """Play a server's side of registration, offering ``caps``; return lines sent."""
    endpoint.sent()
    endpoint.feed(f":srv CAP * LS :{caps}")
    req = endpoint.sent()
    if req and req[0].startswith("CAP REQ"):
        endpoint.feed(f":srv CAP * ACK :{parse(req[0]).params[-1]}")
    endpoint.feed(
        f":srv 001 {nick} :Welcome", f":srv 005 {nick} CHANTYPES=# NICKLEN=30 :are supported"
    )
    return req + endpoint.sent()


def no_delayed_calls(clock) -> bool:
    return not [c for c in clock.getDelayedCalls() if c.active()]


# ---------------------------------------------------------------- in memory


def test_session_provides_the_interface(clock):
    """TCPChatSession provides IChatSession (catches swapped wiring)."""
    session, _, _ = make_session(clock)
    assert verifyObject(IChatSession, session)
    assert session.transport_name == "tcp"


def test_registration_negotiates_caps_then_joins(clock):
    """CAP LS 302, NICK, USER; REQ what is offered and wanted; CAP END; on 001 JOIN the rooms."""
    session, endpoint, events = make_session(clock)
    started = session.start()
    first = endpoint.sent()
    assert first[0] == "CAP LS 302" and first[1] == "NICK alice" and first[2].startswith("USER ")
    endpoint.feed(":srv CAP * LS :server-time echo-message sasl=PLAIN message-tags unknown-cap")
    assert endpoint.sent() == ["CAP REQ :server-time echo-message message-tags"]
    assert not started.called
    endpoint.feed(":srv CAP * ACK :server-time echo-message message-tags")
    assert endpoint.sent() == ["CAP END"]
    endpoint.feed(":srv 001 alice :Welcome")
    assert started.called and session.state == I.REGISTERED
    assert session.caps == {"server-time", "echo-message", "message-tags"}
    sent = endpoint.sent()
    assert "JOIN #lobby" in sent and any(s.startswith("PING ") for s in sent)
    endpoint.feed(":alice!a@h JOIN #lobby")
    assert session.rooms == ["#lobby"]
    assert [e.text for e in events.of(I.STATE)] == ["registered"]


def test_taken_nick_gets_underscores_then_digits(clock):
    """433 at registration: alice_, alice__, then alice + digits; 001 confirms the nick."""
    session, endpoint, _ = make_session(clock)
    session.start()
    endpoint.sent()
    tried = []
    for _ in range(3):
        endpoint.feed(":srv 433 * alice :Nickname is already in use")
        tried += [line.split()[1] for line in endpoint.sent() if line.startswith("NICK")]
    assert tried[:2] == ["alice_", "alice__"]
    assert tried[2].startswith("alice") and tried[2][5:].isdigit()
    endpoint.feed(f":srv 001 {tried[2]} :Welcome")
    assert session.nick == tried[2]


def test_server_lines_become_events_with_server_time(clock):
    """PRIVMSG, CTCP ACTION, private messages, NOTICE, JOIN/PART/QUIT/NICK/TOPIC map to events."""
    session, endpoint, events = make_session(clock)
    session.start()
    register(endpoint)
    stamp = format_server_time(1_700_000_000_123)
    endpoint.feed(
        f"@time={stamp};msgid=a1 :bob!b@h PRIVMSG #lobby :hi alice",
        ":bob!b@h PRIVMSG #lobby :\x01ACTION waves\x01",
        ":bob!b@h PRIVMSG alice :psst",
        ":srv NOTICE alice :server says",
        ":carol!c@h JOIN #lobby",
        ":carol!c@h NICK carla",
        ":carla!c@h TOPIC #lobby :new topic",
        ":carla!c@h PART #lobby :bye",
        ":bob!b@h QUIT :Quit: gone",
    )
    message, action, private = (
        events.of(I.MESSAGE)[0],
        events.of(I.ACTION)[0],
        events.of(I.MESSAGE)[1],
    )
    assert (message.room, message.nick, message.text, message.time_ms) == (
        "#lobby",
        "bob",
        "hi alice",
        1_700_000_000_123,
    )
    assert (action.room, action.text) == ("#lobby", "waves")
    assert (private.room, private.nick, private.own) == ("bob", "bob", False)
    assert events.of(I.NOTICE)[0].room is None
    assert events.of(I.NICK)[0].nick == "carol" and events.of(I.NICK)[0].text == "carla"
    assert events.of(I.TOPIC)[0].text == "new topic"
    assert events.of(I.PART)[0].text == "bye"
    assert events.of(I.QUIT)[0].room is None and events.of(I.QUIT)[0].nick == "bob"


def test_ctcp_requests_are_answered_quietly_and_others_shown_once(clock):
    """
    VERSION, PING, TIME, CLIENTINFO to us: a NOTICE reply and no event (#17); another CTCP,
    or a reply, is one INFO for the server window (room None), never a conversation.
    """
    session, endpoint, events = make_session(clock)
    session.start()
    register(endpoint)
    endpoint.sent()
    endpoint.feed(
        ":bob!b@h PRIVMSG alice :\x01VERSION\x01",
        ":bob!b@h PRIVMSG alice :\x01PING 42\x01",
        ":bob!b@h PRIVMSG alice :\x01TIME\x01",
        ":bob!b@h PRIVMSG alice :\x01CLIENTINFO\x01",
    )
    assert endpoint.sent() == [
        "NOTICE bob :\x01VERSION twistchat\x01",
        "NOTICE bob :\x01PING 42\x01",
        "NOTICE bob :" + ctcp.reply("TIME", "", clock.seconds()),
        "NOTICE bob :\x01CLIENTINFO ACTION CLIENTINFO PING TIME VERSION\x01",
    ]
    before = len(events)
    endpoint.feed(
        ":bob!b@h PRIVMSG alice :\x01FINGER\x01",
        ":bob!b@h PRIVMSG #lobby :\x01VERSION\x01",
        ":bob!b@h NOTICE alice :\x01VERSION irssi 1.4\x01",
    )
    assert endpoint.sent() == []
    new = events[before:]
    assert [(e.kind, e.room, e.text) for e in new] == [
        (I.INFO, None, "CTCP FINGER from bob"),
        (I.INFO, None, "CTCP VERSION from bob to #lobby"),
        (I.INFO, None, "CTCP VERSION reply from bob: irssi 1.4"),
    ]
    assert [e for e in events if e.kind in (I.MESSAGE, I.NOTICE)] == []


def test_names_reply_is_one_event(clock):
    """353 lines gather until 366, then one NAMES event with every name."""
    session, endpoint, events = make_session(clock)
    session.start()
    register(endpoint)
    endpoint.feed(
        ":srv 353 alice = #lobby :@alice bob",
        ":srv 353 alice = #lobby :carol",
        ":srv 366 alice #lobby :End of /NAMES list",
    )
    assert events.of(I.NAMES)[0].names == ("@alice", "bob", "carol")


def test_own_lines_shown_once_with_or_without_echo(clock):
    """With echo-message the echo is our line (own); without, the session shows it at once."""
    session, endpoint, events = make_session(clock)
    session.start()
    register(endpoint)  # echo-message offered and acked
    session.say("#lobby", "hello")
    assert endpoint.sent() == ["PRIVMSG #lobby :hello"]
    assert events.of(I.MESSAGE) == []
    endpoint.feed(":alice!a@h PRIVMSG #lobby hello")
    assert [(e.text, e.own) for e in events.of(I.MESSAGE)] == [("hello", True)]

    plain, endpoint2, events2 = make_session(clock)
    plain.start()
    register(endpoint2, caps="server-time")
    plain.action("#lobby", "dances")
    assert endpoint2.sent() == ["PRIVMSG #lobby :\x01ACTION dances\x01"]
    assert [(e.kind, e.text, e.own) for e in events2.of(I.ACTION)] == [(I.ACTION, "dances", True)]


def test_long_and_multiline_text_is_split_into_valid_lines(clock):
    """Each line of text is a message; a long one is cut on UTF-8 boundaries within 512 bytes."""
    session, endpoint, _ = make_session(clock)
    session.start()
    register(endpoint)
    session.say("#lobby", "one\r\ntwo\n\nthree\0")
    assert [parse(s).params[1] for s in endpoint.sent()] == ["one", "two", "three"]
    session.say("#lobby", "é" * 700)
    sent = endpoint.sent()
    assert len(sent) == 3
    assert all(len(line.encode()) + 2 <= 512 for line in sent)
    assert "".join(parse(s).params[1] for s in sent) == "é" * 700


def test_ping_answered_and_lag_measured(clock):
    """Server PING gets PONG; our PING's PONG sets lag."""
    session, endpoint, _ = make_session(clock, ping_interval=30)
    session.start()
    sent = register(endpoint)
    token = parse([s for s in sent if s.startswith("PING")][0]).params[0]
    endpoint.feed(":srv PING :srv-token")
    assert endpoint.sent() == ["PONG srv-token"]
    clock.advance(0.25)
    endpoint.feed(f":srv PONG srv {token}")
    assert session.lag == pytest.approx(0.25)


def test_silent_server_is_dropped_and_reconnected(clock):
    """No PONG within ping_timeout: the session drops the link and reconnects with backoff."""
    session, endpoint, events = make_session(clock, ping_interval=10, ping_timeout=20)
    session.start()
    register(endpoint)
    clock.advance(10)
    clock.advance(10)  # PING unanswered for 20 s
    assert not endpoint.transport.connected
    endpoint.drop()
    assert session.state == I.DISCONNECTED
    clock.advance(1)
    assert len(endpoint.connections) == 2
    assert any("No answer" in t for t in events.texts(I.ERROR))


def test_garbage_from_the_server_never_raises(clock):
    """
    Invalid UTF-8, NUL, over-long lines, short commands, escape sequences: events, no exception.
    """
    session, endpoint, events = make_session(clock)
    session.start()
    register(endpoint)
    proto = endpoint.proto
    for data in (
        b"\xff\xfe PRIVMSG #lobby :x\r\n",
        b":a PRIVMSG #lobby :a\0b\r\n",
        b"x" * 20000 + b"\r\n",
        b"y" * 20000,
        b"more of it\r\n",
        b"@ \r\n",
        b":srv 353\r\n",
        b":srv 366\r\n",
        b"PRIVMSG\r\n",
        b"JOIN\r\n",
        b"BATCH\r\n",
        b"BATCH -nope\r\n",
        b"CAP\r\n",
        b":srv 001\r\n",
        b"KICK #x\r\n",
        b":srv 433\r\n",
        b"MODE #lobby\r\n",
        b":srv 352 a b\r\n",
        b":a!b@c NICK\r\n",
        b"PONG\r\n",
        b"\r\n",
        b"   \r\n",
        b":\r\n",
        b"FAIL\r\n",
    ):
        proto.dataReceived(data)
    endpoint.feed(":bob!b@h PRIVMSG #lobby :\x1b[2J\x1b]0;pwned\x07 still fine")
    assert (
        events.of(I.MESSAGE)[-1].text == "\x1b[2J\x1b]0;pwned\x07 still fine"
    )  # the UI escapes it
    assert session.state == I.REGISTERED
    assert not endpoint.transport.disconnecting
    assert any("Ignored" in t for t in events.texts(I.ERROR))


def test_history_fills_the_gap_after_reconnect_without_duplicates(clock):
    """
    After a reconnect: CHATHISTORY AFTER the last msgid; our JOIN, then history, then what was
    held, each once.
    """
    session, endpoint, events = make_session(clock)
    session.start()
    register(endpoint)
    endpoint.feed("@msgid=m0 :alice!a@h JOIN #lobby", "@msgid=m1 :bob!b@h PRIVMSG #lobby :before")
    endpoint.drop()
    clock.advance(1)
    sent = register(endpoint)
    assert "JOIN #lobby" in sent
    endpoint.feed("@msgid=m5 :alice!a@h JOIN #lobby")
    assert endpoint.sent() == ["CHATHISTORY AFTER #lobby msgid=m1 100"]
    endpoint.feed("@msgid=m6 :bob!b@h PRIVMSG #lobby :live, held until history is in")
    endpoint.feed(
        ":srv BATCH +h1 chathistory #lobby",
        "@batch=h1;msgid=m2 :bob!b@h PRIVMSG #lobby :missed one",
        "@batch=h1;msgid=m3 :carol!c@h PRIVMSG #lobby :missed two",
        "@batch=h1;msgid=m5 :alice!a@h JOIN #lobby",
        "@batch=h1;msgid=m6 :bob!b@h PRIVMSG #lobby :live, held until history is in",
        ":srv BATCH -h1",
        "@msgid=m7 :bob!b@h PRIVMSG #lobby :after",
    )
    texts = [e.text for e in events.of(I.MESSAGE)]
    assert texts == [
        "before",
        "missed one",
        "missed two",
        "live, held until history is in",
        "after",
    ]
    joins = [e for e in events if e.kind == I.JOIN]
    assert len(joins) == 2  # first join, and the rejoin once (not again from history)
    order = [e.text or e.kind for e in events if e.kind in (I.MESSAGE, I.JOIN)]
    # Our rejoin first, then the lines we missed (#17), then those held meanwhile.
    assert (
        order.index(I.JOIN, 1)
        < order.index("missed one")
        < order.index("missed two")
        < order.index("live, held until history is in")
    )


def test_held_lines_released_when_history_never_comes(clock):
    """
    A server that advertises history but never answers: held lines come out after hold_timeout.
    """
    session, endpoint, events = make_session(clock, hold_timeout=2)
    session.start()
    register(endpoint)
    endpoint.feed("@msgid=m1 :bob!b@h PRIVMSG #lobby :before")
    endpoint.drop()
    clock.advance(1)
    register(endpoint)
    endpoint.feed("@msgid=m5 :alice!a@h JOIN #lobby", "@msgid=m6 :bob!b@h PRIVMSG #lobby :live")
    assert events.texts(I.MESSAGE) == ["before"]
    clock.advance(2)
    assert events.texts(I.MESSAGE) == ["before", "live"]


def test_lost_during_registration_retries_with_one_error_line(clock):
    """The server closing before 001 (again and again): one ERROR line, retries keep coming."""
    session, endpoint, events = make_session(clock)
    session.start()
    for _ in range(3):
        endpoint.drop()
        clock.advance(1)
    assert len(endpoint.connections) == 4
    assert len([t for t in events.texts(I.ERROR) if "before registration" in t]) == 1
    register(endpoint)
    assert session.state == I.REGISTERED


def test_refused_connection_is_one_clear_line(clock):
    """
    Connection refused: 'Cannot connect to host:port: connection refused', once, while retrying.
    """
    session, endpoint, events = make_session(clock)
    endpoint.fail_with = ConnectionRefusedError()
    session.start()
    clock.advance(1)
    clock.advance(1)
    assert events.texts(I.ERROR) == [
        "Cannot connect to 127.0.0.1:6667: connection refused. Retrying."
    ]
    assert session.state == I.DISCONNECTED
    closed = session.close()
    assert closed.called and session.state == I.CLOSED
    assert no_delayed_calls(clock)


def test_close_sends_quit_and_leaves_no_timers(clock):
    """close(): QUIT with the reason; when the server closes, CLOSED; no delayed call remains."""
    session, endpoint, events = make_session(clock)
    session.start()
    register(endpoint)
    closed = session.close("see you")
    assert endpoint.sent() == ["QUIT :see you"]
    endpoint.drop()
    clock.advance(0)
    assert closed.called and session.state == I.CLOSED
    clock.advance(5)
    assert len(endpoint.connections) == 1
    assert no_delayed_calls(clock)


def test_commands_while_disconnected_say_so(clock):
    """say() with no connection: an ERROR event, nothing raised; join() is remembered for later."""
    session, endpoint, events = make_session(clock)
    session.say("#lobby", "anyone?")
    session.join("#later")
    assert events.texts(I.ERROR) == ["Not connected: not sent."]
    session.start()
    sent = register(endpoint)
    assert "JOIN #lobby" in sent and "JOIN #later" in sent


def test_failure_reasons_are_short_sentences():
    """Connection failures read as a few words, not exception reprs."""
    from twisted.internet.error import DNSLookupError, TCPTimedOutError

    from twistchat.client.tcp_link import reason_text as _reason_text

    assert _reason_text(Failure(DNSLookupError("nosuch.example"))) == "no such host"
    assert _reason_text(Failure(TCPTimedOutError())) == "timed out"
    assert _reason_text(Failure(ConnectionDone())) == "closed by the server"


def test_sanitize_nick_from_login_names():
    """Login names become valid nicks: bad characters replaced, no leading digit."""
    assert sanitize_nick("alice") == "alice"
    assert sanitize_nick("j.doe") == "j_doe"
    assert sanitize_nick("1root") == "_1root"
    assert sanitize_nick("") == "guest"


def test_open_session_picks_the_transport():
    """open_session gives a TCP or a UDP session, both providing IChatSession."""
    from twistchat.client.interfaces import IChatSession
    from twistchat.client.udp import UDPChatSession

    tcp = open_session("tcp", "127.0.0.1", 6667, "alice")
    udp = open_session("udp", "127.0.0.1", 6667, "alice")
    assert isinstance(tcp, TCPChatSession) and isinstance(udp, UDPChatSession)
    assert IChatSession.providedBy(tcp) and IChatSession.providedBy(udp)
    with pytest.raises(SessionUnavailable):
        open_session("carrier-pigeon", "127.0.0.1", 6667, "alice")


# ------------------------------------------------------- the real server


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Let the reactor run until ``predicate()`` is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


def real_session(port, nick, **kwargs):
    session = TCPChatSession(
        "127.0.0.1",
        port,
        nick,
        kwargs.pop("rooms", ("#lobby",)),
        reactor=reactor,
        retry=FAST_RETRY,
        **kwargs,
    )
    events = Recorder()
    session.set_handler(events)
    return session, events


@pytest_twisted.ensureDeferred
async def test_two_sessions_chat_through_the_real_server(chat_server):
    """Two sessions on twistd: each sees the other's line and action, with server time."""
    server = chat_server()
    alice, a_events = real_session(server.port, "alice")
    bob, b_events = real_session(server.port, "bob")
    try:
        await alice.start()
        await bob.start()
        assert "server-time" in alice.caps and "echo-message" in alice.caps
        await wait_for(
            lambda: any(e.kind == I.JOIN and e.nick == "bob" for e in a_events), what="bob's join"
        )
        alice.say("#lobby", "hello bob")
        bob.action("#lobby", "waves")
        await wait_for(
            lambda: (
                b_events.texts(I.MESSAGE) == ["hello bob"] and a_events.texts(I.ACTION) == ["waves"]
            ),
            what="both lines",
        )
        line = b_events.of(I.MESSAGE)[0]
        assert line.nick == "alice" and abs(line.time_ms / 1000 - time.time()) < 30
        assert a_events.of(I.MESSAGE)[0].own  # the echo
        await wait_for(lambda: alice.lag is not None, what="lag")
    finally:
        await bob.close("bye")
        await wait_for(
            lambda: any(e.kind == I.QUIT and e.nick == "bob" for e in a_events), what="bob's QUIT"
        )
        assert a_events.of(I.QUIT)[0].text == "Quit: bye"
        await alice.close()


@pytest_twisted.ensureDeferred
async def test_session_reconnects_and_rejoins_after_server_restart(tmp_path):
    """
    Kill twistd: DISCONNECTED; start it again on the same port: REGISTERED, rooms rejoined, chat
    works.
    """
    port = free_port()
    server = ServerProcess(tmp_path, port=port).start()
    alice, events = real_session(port, "alice", rooms=("#lobby", "#dev"))
    other = None
    try:
        await alice.start()
        await wait_for(lambda: set(alice.rooms) == {"#lobby", "#dev"}, what="joins")
        server.stop()
        await wait_for(lambda: alice.state == I.DISCONNECTED, what="disconnect")
        server = ServerProcess(tmp_path, port=port).start()
        await wait_for(lambda: alice.state == I.REGISTERED, timeout=15, what="reconnect")
        await wait_for(
            lambda: len([e for e in events if e.kind == I.JOIN and e.own]) == 4, what="rejoins"
        )
        other, other_events = real_session(port, "bob", rooms=("#dev",))
        await other.start()
        alice.say("#dev", "back again")
        await wait_for(
            lambda: other_events.texts(I.MESSAGE) == ["back again"], what="message after reconnect"
        )
        states = [e.text for e in events if e.kind == I.STATE]
        assert (
            states[:1] == [I.REGISTERED] and I.DISCONNECTED in states and states[-1] == I.REGISTERED
        )
    finally:
        if other is not None:
            await other.close()
        await alice.close()
        server.stop()


@pytest_twisted.ensureDeferred
async def test_gap_after_reconnect_filled_from_server_history(chat_server):
    """Alice's link drops while Bob talks: after the reconnect she has every line once, in order."""
    server = chat_server("--history-on-join", "0")
    alice, a_events = real_session(server.port, "alice")
    bob, _ = real_session(server.port, "bob")
    try:
        await alice.start()
        await bob.start()
        if "draft/chathistory" not in alice.caps:
            pytest.skip("this server does not offer draft/chathistory")
        bob.say("#lobby", "before")
        await wait_for(lambda: a_events.texts(I.MESSAGE) == ["before"], what="first line")
        alice._proto.transport.abortConnection()
        for i in range(3):
            bob.say("#lobby", f"gap {i}")
        await wait_for(lambda: alice.state == I.DISCONNECTED, what="disconnect")
        await wait_for(lambda: alice.state == I.REGISTERED, what="reconnect")
        bob.say("#lobby", "after")
        await wait_for(
            lambda: "after" in a_events.texts(I.MESSAGE), what="live line after reconnect"
        )
        assert a_events.texts(I.MESSAGE) == ["before", "gap 0", "gap 1", "gap 2", "after"]
        # Our rejoin first, then the gap from CHATHISTORY, then live lines (#17).
        order = [
            e.text if e.kind == I.MESSAGE else "JOIN"
            for e in a_events
            if e.kind == I.MESSAGE or (e.kind == I.JOIN and e.own)
        ]
        assert order == ["JOIN", "before", "JOIN", "gap 0", "gap 1", "gap 2", "after"]
    finally:
        await bob.close()
        await alice.close()


@pytest_twisted.ensureDeferred
async def test_history_on_join_shown_once_across_reconnects(chat_server):
    """The server's history on JOIN is shown, and not again when a reconnect replays it."""
    server = chat_server()
    bob, _ = real_session(server.port, "bob")
    alice = None
    try:
        await bob.start()
        bob.say("#lobby", "old news")
        await task.deferLater(reactor, 0.3, lambda: None)  # stored (history-flush 0.2 s)
        alice, a_events = real_session(server.port, "alice")
        await alice.start()
        await wait_for(lambda: a_events.texts(I.MESSAGE) == ["old news"], what="history on join")
        alice._proto.transport.abortConnection()
        await wait_for(lambda: alice.state == I.DISCONNECTED, what="disconnect")
        await wait_for(lambda: alice.state == I.REGISTERED, what="reconnect")
        bob.say("#lobby", "fresh")
        await wait_for(lambda: "fresh" in a_events.texts(I.MESSAGE), what="live line")
        assert a_events.texts(I.MESSAGE) == ["old news", "fresh"]
    finally:
        await bob.close()
        if alice is not None:
            await alice.close()


@pytest_twisted.ensureDeferred
async def test_wrong_port_is_one_clear_line():
    """
    Nothing listens: one 'Cannot connect ... connection refused' line, no traceback; close()
    ends it.
    """
    session, events = real_session(free_port(), "alice")
    started = session.start()
    started.addErrback(lambda f: None)
    await wait_for(lambda: events.of(I.ERROR), what="error line")
    await task.deferLater(reactor, 0.5, lambda: None)  # a few more retries
    assert events.texts(I.ERROR) == [
        f"Cannot connect to 127.0.0.1:{session.port}: connection refused. Retrying."
    ]
    await session.close()
    assert session.state == I.CLOSED


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """twistd with a TLS listener and a throwaway CA (tests/tlsfiles.py)."""
    pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL")
    pytest.importorskip("service_identity", reason="TLS needs service_identity")
    from tests.tlsfiles import make_tls_files

    workdir = tmp_path_factory.mktemp("tls-client")
    files = make_tls_files(workdir / "pki")
    tls_port = free_port()
    server = ServerProcess(workdir, "--listen", files.listen(tls_port)).start()
    server.tls_port, server.files = tls_port, files
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
async def test_tls_verified_insecure_and_refused(tls_server):
    """
    --tls with the CA registers; --insecure registers; an untrusted certificate is one TLS error
    line.
    """
    port = tls_server.tls_port
    verified, _ = real_session(port, "sec", tls=True, trust_root=str(tls_server.files.ca_cert))
    insecure, _ = real_session(port, "insec", tls=True, insecure=True)
    untrusted, bad_events = real_session(port, "nope", tls=True)
    untrusted.start().addErrback(lambda f: None)
    try:
        await verified.start()
        await insecure.start()
        assert verified.state == insecure.state == I.REGISTERED
        await wait_for(lambda: bad_events.of(I.ERROR), what="TLS error")
        assert untrusted.state != I.REGISTERED
        assert "TLS failed" in bad_events.texts(I.ERROR)[0]
    finally:
        await verified.close()
        await insecure.close()
        await untrusted.close()
