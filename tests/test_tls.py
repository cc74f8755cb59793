"""
TLS end to end: ``--listen ssl:...`` next to the plaintext port (issue #6).

A throwaway CA and server certificate are made at run time (tests/tlsfiles.py).
The clients are Twisted's, configured as the terminal client configures them:
``optionsForClientTLS`` (verifying, ``--tls``) or ``CertificateOptions(verify=False)``
(``--tls --insecure``).
"""

from __future__ import annotations

import re
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS
from twisted.protocols.basic import LineReceiver

from tests.serverproc import LineClient, ServerProcess, free_port
from tests.tlsfiles import make_tls_files

pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL (a twistchat dependency)")
pytest.importorskip("service_identity", reason="TLS needs service_identity")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """One server: plaintext on --port, TLS on a second port, metrics on a third."""
    workdir = tmp_path_factory.mktemp("tls")
    files = make_tls_files(workdir / "pki")
    tls_port, metrics_port = free_port(), free_port()
    server = ServerProcess(workdir, "--listen", files.listen(tls_port),
                           "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1").start()
    server.tls_port = tls_port
    server.metrics_port = metrics_port
    server.files = files
    yield server
    server.stop()


class _Client(LineReceiver):
    """Registers with NICK/USER; records lines; fires ``welcomed`` on 001, ``lost`` at the end."""

    delimiter = b"\r\n"

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.lines: list = []
        self._waiting: list = []  # (predicate, Deferred)
        self.welcomed = defer.Deferred()
        self.lost = defer.Deferred()  # fires with the reason (an exception), never errbacks

    def connectionMade(self) -> None:
        self.sendLine(b"CAP LS 302")
        self.sendLine(f"NICK {self.nick}".encode())
        self.sendLine(f"USER {self.nick} 0 * :{self.nick}".encode())
        self.sendLine(b"CAP END")

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        self.lines.append(text)
        if " 001 " in text and not self.welcomed.called:
            self.welcomed.callback(text)
        for waiter in [w for w in self._waiting if w[0](text)]:
            self._waiting.remove(waiter)
            waiter[1].callback(text)

    def wait_for(self, predicate) -> defer.Deferred:
        """A Deferred that fires with the next line satisfying ``predicate`` (10 s at most)."""
        d = defer.Deferred()
        self._waiting.append((predicate, d))
        return _within(d)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.lost.callback(reason.value)


def _within(d: defer.Deferred, seconds: float = 10.0) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


async def _connect(server, options, nick: str) -> _Client:
    """Connect over TLS with ``options``, or in plaintext to the main port if it is None."""
    client = _Client(nick)
    if options is None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port, timeout=10)
    else:
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", server.tls_port, options, timeout=10)
    await _within(endpoint.connect(protocol.Factory.forProtocol(lambda: client)))
    return client


@pytest_twisted.ensureDeferred
async def test_verifying_client_with_the_ca_registers(tls_server):
    """A client that verifies the certificate against the test CA (``--tls``) gets 001."""
    ca = Certificate.loadPEM(tls_server.files.ca_cert.read_bytes())
    client = await _connect(tls_server, optionsForClientTLS("localhost", trustRoot=ca), "vera")
    welcome = await _within(client.welcomed)
    assert welcome.endswith("vera!vera@127.0.0.1")
    client.transport.loseConnection()
    await _within(client.lost)


@pytest_twisted.ensureDeferred
async def test_verifying_client_without_the_ca_is_refused(tls_server):
    """Verifying against the system's roots only, the handshake fails: no 001, a verify error."""
    client = await _connect(tls_server, optionsForClientTLS("localhost"), "nora")
    reason = await _within(client.lost)
    assert not client.welcomed.called
    assert "certificate verify failed" in str(reason), reason


@pytest_twisted.ensureDeferred
async def test_verifying_client_checks_the_name(tls_server):
    """The CA alone is not enough: a certificate for another name is refused."""
    ca = Certificate.loadPEM(tls_server.files.ca_cert.read_bytes())
    client = await _connect(tls_server, optionsForClientTLS("chat.example.org", trustRoot=ca),
                            "nina")
    await _within(client.lost)
    assert not client.welcomed.called


@pytest_twisted.ensureDeferred
async def test_insecure_client_registers(tls_server):
    """``--tls --insecure`` (no verification) still gets an encrypted session and 001."""
    client = await _connect(tls_server, CertificateOptions(verify=False), "ivan")
    await _within(client.welcomed)
    assert client.transport.getPeerCertificate() is not None  # it is TLS, just unverified
    client.transport.loseConnection()
    await _within(client.lost)


@pytest_twisted.ensureDeferred
async def test_tls_and_plaintext_share_rooms_and_advertise_nothing_wrong(tls_server):
    """A TLS user and a plaintext user talk in one room; CAP LS offers no STARTTLS or STS."""
    ca = Certificate.loadPEM(tls_server.files.ca_cert.read_bytes())
    tls_user = await _connect(tls_server, optionsForClientTLS("localhost", trustRoot=ca), "tina")
    await _within(tls_user.welcomed)
    plain = await _connect(tls_server, None, "paul")
    await _within(plain.welcomed)
    joined = (tls_user.wait_for(lambda line: " 366 " in line),
              plain.wait_for(lambda line: " 366 " in line))
    tls_user.sendLine(b"JOIN #both")
    plain.sendLine(b"JOIN #both")
    await defer.gatherResults(joined)
    said = plain.wait_for(lambda line: "PRIVMSG" in line)
    tls_user.sendLine(b"PRIVMSG #both :over TLS")
    assert await said == ":tina!tina@127.0.0.1 PRIVMSG #both :over TLS"

    scrape = urllib.request.urlopen(
        f"http://127.0.0.1:{tls_server.metrics_port}/metrics", timeout=5).read().decode()
    assert re.search(r'^twistchat_connections\{transport="tls"\} 1$', scrape, re.M), scrape

    cap_ls = [line for line in tls_user.lines if " CAP " in line and " LS " in line]
    assert cap_ls, tls_user.lines
    offered = cap_ls[0].rsplit(":", 1)[-1].split()
    assert not {"tls", "sts", "starttls"} & {c.split("=")[0].lower() for c in offered}
    for client in (plain, tls_user):
        client.transport.loseConnection()
        await _within(client.lost)


def test_plaintext_on_the_tls_port_is_an_event_not_a_crash(tls_server):
    """Plain IRC sent to the TLS port: the connection ends, the server logs one line, lives on."""
    raw = LineClient("127.0.0.1", tls_server.tls_port, timeout=5)
    raw.send("NICK oops", "USER oops 0 * :oops")
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        raw.wait_for(lambda line: " 001 " in line, timeout=5)
    raw.close()
    LineClient("127.0.0.1", tls_server.port).register("still").close()
    assert "Traceback" not in tls_server.log()
