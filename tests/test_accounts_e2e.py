"""
Accounts end to end: a real ``twistd -n chat`` with a real SQLite file, real sockets.

REGISTER on the wire, a new connection logging in with SASL PLAIN, NickServ's
IDENTIFY and GHOST, NickServ over UDP, and a real client (WeeChat, Debian's
``weechat-headless``) logging in with SASL PLAIN.  Passwords never appear in a
command line: WeeChat's is written to its configuration file.
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from tests.serverproc import LineClient, free_port
from tests.tlsfiles import make_client_cert, make_tls_files

PASSWORD = "e2e-passphrase"


def plain(name: str, password: str) -> str:
    return base64.b64encode(f"\0{name}\0{password}".encode()).decode()


def notice_from_nickserv(line: str) -> bool:
    return line.startswith(":NickServ!NickServ@services. NOTICE ")


@pytest.fixture
def server(chat_server, tmp_path):
    return chat_server(f"--db={tmp_path / 'chat.sqlite'}")


def test_register_then_log_in_with_sasl_plain_on_a_new_connection(server):
    """REGISTER before CAP END, quit, reconnect, SASL PLAIN: 900 and 903 before 001."""
    first = LineClient(server.host, server.port)
    first.send("CAP LS 302", "CAP REQ :draft/account-registration", "NICK teacher",
               "USER teacher 0 * :Teacher", f"REGISTER * teacher@example.org :{PASSWORD}")
    assert first.wait_for(lambda line: " REGISTER " in line).endswith(
        "REGISTER SUCCESS teacher :Account created")
    first.wait_for(lambda line: " 900 " in line)
    first.send("CAP END")
    first.wait_for(lambda line: " 001 " in line)
    first.send("QUIT :bye")
    first.close()

    again = LineClient(server.host, server.port)
    again.send("CAP LS 302")
    offered = again.wait_for(lambda line: " CAP * LS " in line)
    assert "sasl=PLAIN,EXTERNAL" in offered.split()
    again.send("CAP REQ :sasl", "NICK teacher_", "USER teacher 0 * :Teacher",
               "AUTHENTICATE PLAIN")
    assert again.wait_for(lambda line: line.startswith("AUTHENTICATE")) == "AUTHENTICATE +"
    again.send("AUTHENTICATE " + plain("teacher", "wrong"))
    assert " 904 " in again.wait_for(lambda line: " 90" in line)
    again.send("AUTHENTICATE PLAIN")
    again.wait_for(lambda line: line == "AUTHENTICATE +")
    again.send("AUTHENTICATE " + plain("teacher", PASSWORD), "CAP END")
    assert " 900 * teacher_!teacher@127.0.0.1 teacher " in again.wait_for(
        lambda line: " 900 " in line)
    again.wait_for(lambda line: " 903 " in line)
    again.wait_for(lambda line: " 001 " in line)
    again.close()


def test_nickserv_register_identify_and_ghost(server):
    """NickServ REGISTER; another connection IDENTIFYs, GHOSTs the first; its peers see why."""
    owner = LineClient(server.host, server.port).register("maria")
    owner.join("#class")
    owner.send(f"PRIVMSG NickServ :REGISTER {PASSWORD}")
    assert owner.wait_for(notice_from_nickserv).endswith(":Account maria registered")
    owner.wait_for(lambda line: " 900 " in line)
    peer = LineClient(server.host, server.port).register("pupil")
    peer.join("#class")

    laptop = LineClient(server.host, server.port).register("maria_")
    laptop.send(f"NS IDENTIFY maria {PASSWORD}")
    laptop.wait_for(lambda line: " 900 " in line)
    assert laptop.wait_for(notice_from_nickserv).endswith(":You are now logged in as maria")
    laptop.send("NS GHOST maria")
    assert laptop.wait_for(notice_from_nickserv).endswith(":maria was ghosted")
    quit_line = peer.wait_for(lambda line: " QUIT " in line)
    assert quit_line.startswith(":maria!") and quit_line.endswith(
        ":GHOST command used by maria_")
    owner.wait_for(lambda line: line.startswith("ERROR "))
    laptop.send("NICK maria")
    assert laptop.wait_for(lambda line: " NICK " in line).endswith(" NICK maria")
    laptop.send("PRIVMSG NickServ :INFO")
    info = [laptop.wait_for(notice_from_nickserv) for _ in range(5)]
    assert info[0].endswith(":Account: maria")
    assert info[2].endswith(":Logged in now: maria")
    for client in (owner, peer, laptop):
        client.close()


def test_nickserv_nick_is_reserved_and_whois_shows_a_service(server):
    """NICK NickServ is refused (432); WHOIS NickServ answers 311 with host services."""
    client = LineClient(server.host, server.port).register("curious")
    client.send("NICK NickServ")
    assert " 432 " in client.wait_for(lambda line: " 432 " in line or " NICK " in line)
    client.send("WHOIS nickserv")
    assert client.wait_for(lambda line: " 311 " in line).split()[3:6] == [
        "NickServ", "NickServ", "services."]
    client.close()


class TLSLineClient(LineClient):
    """LineClient over TLS (checking the test CA), with a client certificate."""

    def __init__(self, port: int, ca, client_cert) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(client_cert.cert), str(client_cert.key))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.timeout = 10.0
        self.buffer = b""
        self.seen = []


def test_cert_add_over_tls_then_sasl_external(chat_server, tmp_path):
    """NickServ CERT ADD takes the TLS client certificate; a new connection logs in by EXTERNAL."""
    files = make_tls_files(tmp_path / "tls")
    mine = make_client_cert(tmp_path / "tls", "teacher")
    port = free_port()
    chat_server(f"--db={tmp_path / 'chat.sqlite'}", f"--listen={files.listen(port)}")
    first = TLSLineClient(port, files.ca_cert, mine).register("certy")
    first.send(f"NS REGISTER {PASSWORD}")
    first.wait_for(lambda line: " 900 " in line)
    first.send("NS CERT ADD")
    assert first.wait_for(lambda line: "Certificate" in line).endswith(
        f":Certificate {mine.sha256} added")
    first.send("QUIT")
    first.close()

    again = TLSLineClient(port, files.ca_cert, mine)
    again.send("CAP REQ :sasl", "NICK other", "USER other 0 * :Other", "AUTHENTICATE EXTERNAL")
    again.wait_for(lambda line: line == "AUTHENTICATE +")
    again.send("AUTHENTICATE +")
    assert " 900 * other!other@127.0.0.1 certy " in again.wait_for(lambda line: " 90" in line)
    again.wait_for(lambda line: " 903 " in line)
    again.send("CAP END")
    again.wait_for(lambda line: " 001 " in line)
    again.close()

    stranger = TLSLineClient(port, files.ca_cert, make_client_cert(tmp_path / "tls", "x"))
    stranger.send("CAP REQ :sasl", "NICK x", "USER x 0 * :X", "AUTHENTICATE EXTERNAL")
    stranger.wait_for(lambda line: line == "AUTHENTICATE +")
    stranger.send("AUTHENTICATE +")
    assert " 904 " in stranger.wait_for(lambda line: " 90" in line)
    stranger.close()


@pytest.mark.skipif(shutil.which("weechat-headless") is None,
                    reason="weechat-headless is not installed (Debian package weechat-headless)")
def test_weechat_logs_in_with_sasl_plain(server, tmp_path):
    """A real WeeChat with ``sasl_mechanism plain`` logs in; NickServ INFO shows it logged in."""
    maker = LineClient(server.host, server.port).register("wbot")
    maker.send(f"NS REGISTER {PASSWORD}")
    maker.wait_for(lambda line: " 900 " in line)
    maker.send("QUIT")
    maker.close()
    home = tmp_path / "weechat"
    home.mkdir()
    # The password goes in WeeChat's configuration file, never on its command line.
    (home / "irc.conf").write_text(
        "[server]\n"
        f't.addresses = "{server.host}/{server.port}"\n'
        't.nicks = "wbot"\n'
        't.sasl_mechanism = plain\n'
        't.sasl_username = "wbot"\n'
        f't.sasl_password = "{PASSWORD}"\n'
        't.sasl_fail = disconnect\n'
        't.autojoin = "#sasl"\n')
    weechat = subprocess.Popen(["weechat-headless", "--dir", str(home), "-r",
                                "/connect t;/wait 15 /quit"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    observer = LineClient(server.host, server.port).register("observer")
    try:
        observer.join("#sasl")
        observer.wait_for(lambda line: line.startswith(":wbot!") and "JOIN #sasl" in line,
                          timeout=20)
        deadline = time.monotonic() + 10
        logged_in = ""
        while time.monotonic() < deadline and not logged_in.endswith(":Logged in now: wbot"):
            observer.send("NS INFO wbot")
            for _ in range(3):
                logged_in = observer.wait_for(notice_from_nickserv)
        assert logged_in.endswith(":Logged in now: wbot")
    finally:
        weechat.terminate()
        weechat.wait(10)
        observer.close()
