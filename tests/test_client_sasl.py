"""
The client sessions' SASL PLAIN login (twistchat.client.sasl), against the real
front-ends in memory (issue #14).

TCP: a :class:`~twistchat.client.tcp.TCPChatSession` wired to a
``tests.memory.MemoryServer`` with an authenticator on a fast hasher, bytes
moved by :meth:`Wire.pump` on one ``task.Clock``.  UDP: a
:class:`~twistchat.client.udp.UDPChatSession` in ``tests.udpnet.UDPWorld``.
Spec: https://ircv3.net/specs/extensions/sasl-3.1 (400-byte chunks, ``+``).
"""

from __future__ import annotations

import base64

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from tests.accountfakes import quick_accounts
from tests.memory import MemoryServer
from tests.test_auth import QuickHasher
from tests.udpnet import UDPWorld
from twistchat.auth import Authenticator
from twistchat.client import interfaces as I
from twistchat.client.sasl import CHUNK, Credentials, SaslLogin, plain_response
from twistchat.client.tcp import TCPChatSession
from twistchat.client.udp import UDPChatSession
from twistchat.client.udp_commands import CommandWindow
from twistchat.core.registry import Registry
from twistchat.frontends.udp import UDPFrontEnd
from twistchat.wire import Message, parse

PASSWORD = "correct horse battery"
FAST_RETRY = {"initialDelay": 0.1, "maxDelay": 0.5, "factor": 1.5, "jitter": lambda: 0}


class Wire:
    """An endpoint joining a client session to a MemoryServer; ``pump`` moves the bytes."""

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.links: list = []  # (client protocol, client transport, server-side MemoryClient)
        self.sent: list[str] = []  # every line the client wrote, in order

    def connect(self, factory):
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6667))
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        far = self.server.connect()
        self.links.append((proto, transport, far))
        proto.makeConnection(transport)
        return defer.succeed(proto)

    def pump(self) -> None:
        """Deliver both ways until neither side has more to say."""
        for _ in range(200):
            moved = False
            for proto, transport, far in self.links:
                data = transport.value()
                if data:
                    transport.clear()
                    self.sent += [line.decode() for line in data.split(b"\r\n") if line]
                    if not far.closed:
                        far.proto.dataReceived(data)
                    moved = True
                out = far.transport.value()
                if out and transport.connected:
                    far.transport.clear()
                    proto.dataReceived(out)
                    moved = True
            if not moved:
                return
        raise AssertionError("the two sides never stopped talking")

    def drop(self) -> None:
        """The newest connection breaks (both ends see it)."""
        proto, transport, far = self.links[-1]
        transport.connected = False
        far.proto.connectionLost(Failure(ConnectionDone()))
        proto.connectionLost(Failure(ConnectionDone()))

    def server_user(self, nick: str):
        return self.server.registry.find_user(nick)


def session_on(server: MemoryServer, credentials: Credentials | None, nick: str = "teach"):
    wire = Wire(server)
    session = TCPChatSession("127.0.0.1", 6667, nick, ["#room"], reactor=server.clock,
                             endpoint=wire, retry=FAST_RETRY, sasl=credentials)
    events: list = []
    session.set_handler(events.append)
    return wire, session, events


def texts(events, kind):
    return [e.text for e in events if e.kind == kind]


@pytest.fixture
def server():
    return MemoryServer(authenticator=lambda r: quick_accounts(r, ("teacher", PASSWORD)))


@pytest.fixture
def logged():
    """Every Twisted log event while the test runs."""
    seen: list = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def close(server: MemoryServer, session) -> None:
    session.close()
    server.clock.advance(2)


# ------------------------------------------------------------------ the response


def test_plain_response_is_empty_authzid_account_password_in_base64():
    """RFC 4616: ``\\0account\\0password``, one chunk when it is shorter than 400."""
    assert plain_response(Credentials("teacher", "pw")) == [
        base64.b64encode(b"\0teacher\0pw").decode()]


def test_a_response_of_exactly_400_bytes_is_followed_by_a_plus():
    """sasl-3.1: a chunk of 400 means more follow; so a 400-byte last chunk gets ``+``."""
    password = "x" * (300 - len("\0teacher\0"))  # 300 bytes raw: 400 of base64
    chunks = plain_response(Credentials("teacher", password))
    assert [len(c) for c in chunks] == [CHUNK, 1] and chunks[1] == "+"


def test_a_long_response_is_cut_in_400_byte_chunks():
    """509 bytes raw, 680 of base64: 400 then 280, joined they are the whole response."""
    password = "p" * 500
    chunks = plain_response(Credentials("teacher", password))
    assert [len(c) for c in chunks] == [CHUNK, 280]
    assert base64.b64decode("".join(chunks)) == b"\0teacher\0" + password.encode()


def test_credentials_never_show_the_password():
    """repr, str and the login's repr name the account only."""
    creds = Credentials("teacher", PASSWORD)
    for text in (repr(creds), str(creds), repr(SaslLogin(creds))):
        assert PASSWORD not in text and "teacher" in text


def test_an_authenticate_line_not_plus_is_not_answered():
    """Only ``AUTHENTICATE +`` gets the response; another AUTHENTICATE is not ours."""
    login = SaslLogin(Credentials("teacher", PASSWORD))
    login.start()
    assert login.on_message(Message("AUTHENTICATE", ("xyz",))) is None
    assert login.on_message(Message("AUTHENTICATE", ("+",))).send == tuple(
        plain_response(login.credentials))
    assert login.on_message(Message("AUTHENTICATE", ("+",))) is None  # once only


# ------------------------------------------------------------------- over TCP


def test_tcp_logs_in_before_cap_end(server, logged):
    """CAP REQ with sasl, AUTHENTICATE PLAIN, the response, 900/903, then CAP END and 001."""
    wire, session, events = session_on(server, Credentials("teacher", PASSWORD))
    session.start()
    wire.pump()
    verbs = [line.split()[0] for line in wire.sent]
    assert verbs[:3] == ["CAP", "NICK", "USER"]
    req = next(line for line in wire.sent if line.startswith("CAP REQ"))
    assert "sasl" in req.split(":", 1)[1].split()
    start = wire.sent.index("AUTHENTICATE PLAIN")
    assert wire.sent[start + 1] == "AUTHENTICATE " + plain_response(session._registration
                                                                   .credentials)[0]
    assert wire.sent.index("CAP END") > start + 1
    assert session.state == I.REGISTERED
    assert session.account == "teacher"
    assert wire.server_user("teach").account == "teacher"
    assert "Logged in as teacher." in texts(events, I.INFO)
    assert not texts(events, I.ERROR)
    everything = [repr(e) for e in events] + [repr(e) for e in logged]
    assert not [t for t in everything if PASSWORD in t]
    close(server, session)


def test_tcp_wrong_password_is_one_error_line_and_stays_connected(server):
    """904: one ERROR line naming the account, CAP END, registered without an account."""
    wire, session, events = session_on(server, Credentials("teacher", "wrong password"))
    session.start()
    wire.pump()
    assert texts(events, I.ERROR) == [
        "Login as teacher failed (wrong account or password): connected without an account."]
    assert session.state == I.REGISTERED and session.account is None
    assert wire.server_user("teach").account is None
    assert "CAP END" in wire.sent
    session.join("#other")
    wire.pump()
    assert "#other" in session.rooms  # chat goes on
    close(server, session)


def test_tcp_a_long_password_goes_in_two_chunks(server):
    """A 500-byte password: ``AUTHENTICATE`` 400 bytes then 280; the server logs us in."""
    password = "p" * 500
    server.authenticator.create("longpw", password)
    wire, session, events = session_on(server, Credentials("longpw", password))
    session.start()
    wire.pump()
    sent = [line.split()[1] for line in wire.sent if line.startswith("AUTHENTICATE")]
    assert [len(a) for a in sent] == [5, CHUNK, 280]
    assert session.account == "longpw"
    close(server, session)


def test_tcp_a_400_byte_response_ends_with_plus_and_logs_in(server):
    """The edge: a response of exactly one chunk is followed by ``AUTHENTICATE +``."""
    password = "x" * (300 - len("\0edge\0"))
    server.authenticator.create("edge", password)
    wire, session, events = session_on(server, Credentials("edge", password))
    session.start()
    wire.pump()
    sent = [line.split()[1] for line in wire.sent if line.startswith("AUTHENTICATE")]
    assert [len(a) for a in sent] == [5, CHUNK, 1] and sent[-1] == "+"
    assert session.account == "edge"
    close(server, session)


def test_tcp_logs_in_again_on_every_reconnect(server):
    """The connection breaks; the next one logs in again before CAP END."""
    wire, session, events = session_on(server, Credentials("teacher", PASSWORD))
    session.start()
    wire.pump()
    wire.drop()
    assert session.account is None
    server.clock.advance(1)
    wire.pump()
    assert len(wire.links) == 2
    assert session.state == I.REGISTERED
    assert wire.sent.count("AUTHENTICATE PLAIN") == 2
    assert texts(events, I.INFO).count("Logged in as teacher.") == 2
    assert session.account == "teacher"
    assert wire.server_user("teach").account == "teacher"
    close(server, session)


def test_tcp_server_without_sasl_says_so_once_and_registers():
    """No ``sasl`` in CAP LS: one ERROR line, no AUTHENTICATE, registered."""
    server = MemoryServer()
    wire, session, events = session_on(server, Credentials("teacher", PASSWORD))
    session.start()
    wire.pump()
    assert texts(events, I.ERROR) == [
        "Login as teacher failed (the server offers no SASL): connected without an account."]
    assert not [line for line in wire.sent if line.startswith("AUTHENTICATE")]
    assert session.state == I.REGISTERED
    close(server, session)


def test_tcp_without_credentials_asks_no_sasl(server):
    """No ``sasl=``: the capability is not requested, nothing is said about accounts."""
    wire, session, events = session_on(server, None)
    session.start()
    wire.pump()
    req = [line for line in wire.sent if line.startswith("CAP REQ")]
    assert req and "sasl" not in req[0].split(":", 1)[1].split()
    assert not texts(events, I.ERROR)
    assert session.state == I.REGISTERED
    close(server, session)


def test_tcp_unknown_account_reads_as_wrong_account_or_password(server):
    """An account that does not exist: the same 904 line as a wrong password."""
    wire, session, events = session_on(server, Credentials("nobody", PASSWORD))
    session.start()
    wire.pump()
    assert texts(events, I.ERROR) == [
        "Login as nobody failed (wrong account or password): connected without an account."]
    close(server, session)


# ------------------------------------------------------------------- over UDP


@pytest.fixture
def udp_world():
    """A UDP front-end with accounts (``teacher`` made) on a FakeNet."""
    world = UDPWorld()
    world.stop()  # its front-end has no accounts: replaced by one that has
    registry = Registry(server_name="srv", clock=world.clock.seconds)
    auth = quick_accounts(registry, ("teacher", PASSWORD))
    world.registry = registry
    world.front = UDPFrontEnd(registry, world.clock, world.broadcast, world.limits,
                              authenticator=auth)
    world.port = world.net.bind(world.front, "127.0.0.1", 6667)
    yield world
    world.stop()


def udp_session(world, credentials, nick="teach", rooms=("#room",)):
    session = UDPChatSession("127.0.0.1", 6667, nick, list(rooms), reactor=world.clock,
                             net=world.net, sasl=credentials)
    session.events = []
    session.set_handler(session.events.append)
    session.start()
    return session


def udp_close(world, session) -> None:
    session.close()
    world.net.run(1.5)


def test_udp_logs_in_after_the_session_opens_before_joining(udp_world, logged):
    """AUTHENTICATE PLAIN, the response, 900/903 in the numbered stream; then the JOIN."""
    session = udp_session(udp_world, Credentials("teacher", PASSWORD))
    assert udp_world.net.run_until(lambda: session.account == "teacher", limit=5)
    assert udp_world.net.run_until(lambda: "#room" in session.rooms, limit=5)
    user = udp_world.registry.find_user("teach")
    assert user.account == "teacher"
    assert texts(session.events, I.INFO).count("Logged in as teacher.") == 1
    assert not texts(session.events, I.ERROR)
    everything = [repr(e) for e in session.events] + [repr(e) for e in logged]
    assert not [t for t in everything if PASSWORD in t]
    udp_close(udp_world, session)


def test_udp_wrong_password_is_one_error_line_and_chats_on(udp_world):
    """904 over UDP: the same line as on TCP; the room is joined all the same."""
    session = udp_session(udp_world, Credentials("teacher", "wrong password"))
    assert udp_world.net.run_until(lambda: "#room" in session.rooms, limit=5)
    udp_world.net.run(0.5)
    assert texts(session.events, I.ERROR) == [
        "Login as teacher failed (wrong account or password): connected without an account."]
    assert udp_world.registry.find_user("teach").account is None
    udp_close(udp_world, session)


def test_udp_a_long_password_goes_in_two_chunks(udp_world):
    """A 500-byte password over UDP: 400 then 280 bytes of base64, logged in."""
    password = "p" * 500
    udp_world.front.services.authenticator.create("longpw", password)
    session = udp_session(udp_world, Credentials("longpw", password))
    assert udp_world.net.run_until(lambda: session.account == "longpw", limit=5)
    udp_close(udp_world, session)


def test_udp_server_without_accounts_says_so_once():
    """AUTHENTICATE is 421 where the front-end has no accounts: one ERROR line, chat goes on."""
    world = UDPWorld()
    try:
        session = udp_session(world, Credentials("teacher", PASSWORD))
        assert world.net.run_until(lambda: "#room" in session.rooms, limit=5)
        world.net.run(0.5)
        assert texts(session.events, I.ERROR) == [
            "Login as teacher failed (the server offers no SASL): connected without an account."]
        udp_close(world, session)
    finally:
        world.stop()


def test_udp_logs_in_again_after_a_server_restart(udp_world):
    """A new front-end (a new boot) on the same address: the new session logs in again."""
    session = udp_session(udp_world, Credentials("teacher", PASSWORD))
    assert udp_world.net.run_until(lambda: session.account == "teacher", limit=5)
    old = udp_world.registry
    udp_world.front.shut_down()
    udp_world.port.stopListening()
    registry = Registry(server_name="srv", clock=udp_world.clock.seconds, accounts=old.accounts)
    auth = Authenticator(registry.accounts, QuickHasher(), registry.clock)
    udp_world.registry = registry
    udp_world.front = UDPFrontEnd(registry, udp_world.clock, udp_world.broadcast,
                                  udp_world.limits, authenticator=auth)
    udp_world.port = udp_world.net.bind(udp_world.front, "127.0.0.1", 6667)
    assert udp_world.net.run_until(
        lambda: (registry.find_user("teach") is not None
                 and registry.find_user("teach").account == "teacher"), limit=20)
    assert udp_world.net.run_until(lambda: "#room" in session.rooms, limit=5)
    assert texts(session.events, I.INFO).count("Logged in as teacher.") == 2
    udp_close(udp_world, session)


def test_an_old_sessions_authenticate_is_not_sent_into_the_new_one():
    """CommandWindow.requeue drops AUTHENTICATE lines (the new session starts its own)."""
    sent: list = []
    window = CommandWindow(sent.append, 8, {"retransmits": 0})
    window.queue(Message("AUTHENTICATE", ("PLAIN",)))
    window.queue(Message("PRIVMSG", ("#r", "hi")))
    window.pump("old", 0.0)
    window.requeue([Message("AUTHENTICATE", ("PLAIN",)), Message("JOIN", ("#r",))])
    window.pump("new", 1.0)
    assert [parse(d).command for d in sent[2:]] == ["AUTHENTICATE", "JOIN", "PRIVMSG"]


# ------------------------------------------------------- registration, by hand


class Sent:
    """A stand-in connection: records what Registration sends."""

    registered = False

    def __init__(self) -> None:
        self.lines: list[tuple] = []

    def send(self, *args) -> None:
        self.lines.append(args)


def by_hand(*server_lines: str):
    from twistchat.client.tcp_register import Registration

    steps: list = []
    reg = Registration(Credentials("teacher", PASSWORD), steps.append)
    proto = Sent()
    reg.begin(proto, "teach", "teach", "T", None)
    for line in server_lines:
        msg = parse(line)
        if msg.command == "CAP":
            reg.on_cap(proto, msg)
        else:
            assert reg.on_sasl(proto, msg), line
    return proto.lines, [s.text for s in steps if s.text]


def test_a_nak_of_sasl_is_one_line_then_cap_end():
    """CAP NAK of the request holding sasl: the login is given up, CAP END sent."""
    sent, said = by_hand(":srv CAP * LS :sasl=PLAIN server-time",
                         ":srv CAP * NAK :server-time sasl")
    assert sent[-2:] == [("CAP", "REQ", "server-time sasl"), ("CAP", "END")]
    assert said == ["Login as teacher failed (the server refused the sasl capability): "
                    "connected without an account."]


def test_a_server_with_only_external_is_not_asked_for_sasl():
    """``sasl=EXTERNAL``: PLAIN is not there; one line, sasl not requested."""
    sent, said = by_hand(":srv CAP * LS :sasl=EXTERNAL")
    assert ("CAP", "END") in sent and not [s for s in sent if "sasl" in " ".join(s)]
    assert said == ["Login as teacher failed (the server offers no SASL PLAIN): "
                    "connected without an account."]


def test_a_rate_limited_login_says_try_again_later():
    """904 with the server's reason after a colon (twistchat's words): that reason is shown."""
    _, said = by_hand(":srv CAP * LS :sasl", ":srv CAP * ACK :sasl", "AUTHENTICATE +",
                      ":srv 904 teach :SASL authentication failed: Too many failed attempts; "
                      "try again later")
    assert said == ["Login as teacher failed (too many failed attempts; try again later): "
                    "connected without an account."]


def test_905_and_906_end_the_login_with_their_reason():
    """905 (too long) and 906 (aborted): named, CAP END sent."""
    for code, why in (("905", "the response was too long"), ("906", "aborted")):
        sent, said = by_hand(":srv CAP * LS :sasl", ":srv CAP * ACK :sasl", "AUTHENTICATE +",
                             f":srv {code} teach :whatever")
        assert sent[-1] == ("CAP", "END")
        assert said == [f"Login as teacher failed ({why}): connected without an account."]
