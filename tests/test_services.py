"""
NickServ (twistchat.services) and the core's GHOST and reserved service nicks.

Unit tests on the core (tests.test_registry's helpers), then NickServ through the
in-memory TCP front-end and the in-memory UDP world (the same routing).
"""

from __future__ import annotations

import base64

import pytest

from tests.accountfakes import quick_accounts, with_cert
from tests.memory import MemoryServer, numerics
from tests.test_registry import joined, make
from tests.udpnet import Raw, UDPWorld
from twistchat.core.accounts import Account, evict_ghost, ghost_refusal
from twistchat.core.events import Disconnect, deliver
from twistchat.services.nickserv import MAX_CERTFPS

PASSWORD = "correct-horse"  # NickServ splits its commands on spaces
FP = "ab" * 32


# ------------------------------------------------------------- core rules


def test_service_nicks_are_reserved_in_any_case():
    """NICK NickServ / chanserv: 432, before and after registration."""
    registry, _ = make()
    user, conn = joined(registry, "alice")
    for nick in ("NickServ", "nickserv", "CHANSERV"):
        (reply,) = registry.change_nick(user, nick)
        assert reply.payload.command == "432" and "services" in reply.payload.params[-1]


def test_whois_of_a_service_shows_a_service():
    """WHOIS NickServ: 311 with host services., 312, 318 (not 401)."""
    registry, _ = make()
    user, conn = joined(registry, "alice")
    got = [d.payload for d in registry.whois(user, "nickserv")]
    assert [m.command for m in got] == ["311", "312", "318"]
    assert got[0].params[1:4] == ("NickServ", "NickServ", "services.")


def test_ghost_disconnects_the_session_holding_the_owned_nick():
    """Peers see QUIT "GHOST command used by <nick>"; the nick is free; the ghost is closed."""
    registry, _ = make()
    registry.accounts.add(Account("teacher"))
    ghost, ghost_conn = joined(registry, "teacher", "#class")
    owner, _ = joined(registry, "teacher_", "#other")
    peer, peer_conn = joined(registry, "student", "#class")
    peer_conn.got.clear()
    assert ghost_refusal(registry, owner, "teacher") == "You are not logged in"
    owner.account = "teacher"
    assert ghost_refusal(registry, owner, "teacher") is None
    deliver(evict_ghost(registry, owner, "teacher"))
    quits = [p for p in peer_conn.got if getattr(p, "message", p).command == "QUIT"]
    assert [getattr(q, "message", q).params for q in quits] == [("GHOST command used by teacher_",)]
    assert any(isinstance(p, Disconnect) for p in ghost_conn.got)
    assert registry.find_user("teacher") is None


def test_ghost_refuses_what_is_not_yours():
    """Another's nick, yourself, or nobody: refused with a reason, nothing happens."""
    registry, _ = make()
    registry.accounts.add(Account("teacher"))
    owner, _ = joined(registry, "teacher")
    owner.account = "teacher"
    joined(registry, "student")
    assert "not yours" in ghost_refusal(registry, owner, "student")
    assert "yourself" in ghost_refusal(registry, owner, "teacher")
    assert "not online" in ghost_refusal(registry, owner, "nobody")
    assert evict_ghost(registry, owner, "student") == []


def test_ghost_of_another_session_of_the_same_account():
    """A session logged in to your account under another nick may be ghosted too."""
    registry, _ = make()
    registry.accounts.add(Account("teacher"))
    owner, _ = joined(registry, "teacher")
    other, _ = joined(registry, "laptop")
    owner.account = other.account = "teacher"
    assert ghost_refusal(registry, owner, "laptop") is None


# ------------------------------------------------------------ NickServ, TCP


@pytest.fixture
def server():
    return MemoryServer(authenticator=lambda r: quick_accounts(r, ("teacher", PASSWORD)))


def notices(messages):
    """The texts of NickServ's NOTICEs (checking they come from NickServ!NickServ@services.)."""
    out = []
    for m in messages:
        if m.command == "NOTICE":
            assert m.source == "NickServ!NickServ@services."
            out.append(m.params[-1])
    return out


def test_register_names_the_account_after_the_nick_and_logs_in(server):
    """REGISTER <password> [email]: the account, a NOTICE, 900."""
    client = server.user("newbie")
    got = client.ask("PRIVMSG NickServ :REGISTER a-long-passphrase newbie@example.org")
    assert notices(got) == ["Account newbie registered"] and numerics(got) == ["900"]
    assert server.registry.accounts.find("newbie").email == "newbie@example.org"
    got = client.ask("NS REGISTER another-passphrase")
    assert notices(got) == ["You are already logged in"]


def test_register_refusals_are_told(server):
    """A taken name, a short password, closed registration: a NOTICE saying why."""
    taken = server.user("teacher")
    assert notices(taken.ask("NS REGISTER a-long-passphrase")) == ["That account already exists"]
    client = server.user("newbie")
    assert "at least" in notices(client.ask("NS REGISTER short"))[0]
    server.registry.registration_open = False
    assert notices(client.ask("NS REGISTER a-long-passphrase")) == \
        ["Registration is closed on this server"]


def test_identify_with_the_nick_or_an_account_name(server):
    """IDENTIFY <password> (account = nick) and IDENTIFY <account> <password>: 900 and a NOTICE."""
    client = server.user("teacher")
    got = client.ask(f"PRIVMSG NickServ :IDENTIFY {PASSWORD}")
    assert numerics(got) == ["900"] and notices(got) == ["You are now logged in as teacher"]
    other = server.user("laptop")
    got = other.ask(f"NS IDENTIFY teacher {PASSWORD}")
    assert numerics(got) == ["900"]
    assert notices(other.ask(f"NS IDENTIFY teacher {PASSWORD}")) == \
        ["You are already logged in as teacher"]


def test_identify_with_a_wrong_password_is_refused_then_rate_limited(server):
    """A wrong password: "Invalid ..."; past the burst: "try again later"."""
    client = server.user("teacher")
    assert notices(client.ask("NS IDENTIFY wrong")) == ["Invalid account name or password"]
    for _ in range(10):
        client.ask("NS IDENTIFY wrong")
    assert "try again later" in notices(client.ask(f"NS IDENTIFY {PASSWORD}"))[0]
    assert server.registry.find_user("teacher").account is None


def test_logout_says_901(server):
    """LOGOUT: 901 and a NOTICE (and the nick's grace period starts); again: not logged in."""
    client = server.user("teacher")
    client.ask(f"NS IDENTIFY {PASSWORD}")
    got = client.ask("NS LOGOUT")
    assert numerics(got) == ["901"] and notices(got) == [
        "This nickname is registered. Identify within 30 seconds or it will be changed",
        "You are now logged out"]
    assert notices(client.ask("NS LOGOUT")) == ["You are not logged in"]


def test_ghost_through_nickserv(server):
    """GHOST <nick>: the ghost's connection closes, peers see the GHOST quit, the nick is free."""
    ghost = server.user("teacher", "#class")
    peer = server.user("student", "#class")
    owner = server.user("teacher_")
    owner.ask(f"NS IDENTIFY teacher {PASSWORD}")
    got = owner.ask("NS GHOST teacher")
    assert notices(got) == ["teacher was ghosted"]
    assert ghost.closed
    assert [m.params for m in peer.take() if m.command == "QUIT"] == \
        [("GHOST command used by teacher_",)]
    assert numerics(owner.ask("NICK teacher")) == []
    assert notices(owner.ask("NS GHOST student")) == ["student is not yours to GHOST"]


def test_cert_add_list_del(server):
    """CERT ADD <fp> / ADD (the TLS certificate in use) / LIST / DEL; SASL EXTERNAL then works."""
    client = server.user("teacher")
    assert notices(client.ask("NS CERT LIST")) == ["You are not logged in"]
    client.ask(f"NS IDENTIFY {PASSWORD}")
    assert notices(client.ask("NS CERT ADD " + FP.upper())) == [f"Certificate {FP} added"]
    assert notices(client.ask("NS CERT ADD")) == \
        ["You did not connect with a TLS client certificate"]
    with_cert(client, "cd" * 32)
    assert notices(client.ask("NS CERT ADD")) == [f"Certificate {'cd' * 32} added"]
    assert notices(client.ask("NS CERT LIST")) == [f"Certificate: {'ab' * 32}",
                                                   f"Certificate: {'cd' * 32}"]
    assert server.registry.accounts.by_certfp(FP).name == "teacher"
    assert notices(client.ask("NS CERT ADD nothex")) == \
        ["Give a SHA-256 fingerprint (64 hex digits)"]
    assert notices(client.ask(f"NS CERT DEL {FP}")) == [f"Certificate {FP} removed"]
    assert server.registry.accounts.by_certfp(FP) is None


def test_cert_add_is_limited_per_account(server):
    """At most MAX_CERTFPS certificates; one more is refused."""
    client = server.user("teacher")
    client.ask(f"NS IDENTIFY {PASSWORD}")
    for i in range(MAX_CERTFPS):
        assert notices(client.ask(f"NS CERT ADD {i:064x}"))[0].endswith("added")
    assert "at most" in notices(client.ask(f"NS CERT ADD {'f' * 64}"))[0]


def test_info_tells_more_to_the_owner(server):
    """INFO [account]: name, registration time, who is logged in; e-mail only to the owner."""
    client = server.user("teacher")
    assert notices(client.ask("NS INFO nobody")) == ["nobody is not registered"]
    stranger = notices(client.ask("NS INFO teacher"))
    assert stranger[0] == "Account: teacher" and not any("E-mail" in n for n in stranger)
    client.ask(f"NS IDENTIFY {PASSWORD}")
    mine = notices(client.ask("NS INFO"))
    assert "Logged in now: teacher" in mine and any(n.startswith("E-mail") for n in mine)


def test_drop_needs_the_password_and_logs_everyone_out(server):
    """DROP <password>: a wrong one is refused; the right one drops the account, 901."""
    client = server.user("teacher")
    client.ask(f"NS IDENTIFY {PASSWORD}")
    assert notices(client.ask("NS DROP wrong")) == ["Invalid account name or password"]
    got = client.ask(f"NS DROP {PASSWORD}")
    assert numerics(got) == ["901"] and notices(got) == ["Account teacher dropped"]
    assert server.registry.accounts.find("teacher") is None


def test_help_and_unknown_commands(server):
    """HELP lists the commands; an unknown one says to ask HELP; an empty line too."""
    client = server.user("alice")
    assert notices(client.ask("NS HELP"))[0] == "NickServ commands:"
    assert notices(client.ask("NS FROB")) == ["Unknown command FROB; say HELP for help"]
    assert notices(client.ask("PRIVMSG NickServ :  ")) == ["Say HELP for a list of commands"]


def test_nickserv_before_registration_is_451(server):
    """PRIVMSG NickServ and NS need registration like any other message."""
    client = server.connect()
    assert numerics(client.ask("PRIVMSG NickServ :HELP")) == ["451"]
    assert numerics(client.ask("NS HELP")) == ["451"]


def test_messages_to_nickserv_are_not_relayed_or_logged(server):
    """A password to NickServ never becomes an event of the room log (so never stored)."""
    client = server.user("teacher")
    events = []
    server.registry.log.subscribe(events.append)
    client.ask(f"PRIVMSG NickServ :IDENTIFY {PASSWORD}")
    assert events == []
    client.ask("PRIVMSG teacher :to myself")  # a private message is an event: the probe works
    assert events


# ------------------------------------------------------------ NickServ, UDP


@pytest.fixture
def mixed_accounts():
    """TCP and UDP front-ends on one registry, both with the same authenticator."""
    server = MemoryServer(authenticator=lambda r: quick_accounts(r, ("teacher", PASSWORD)))
    w = UDPWorld(registry=server.registry, clock=server.clock,
                 authenticator=server.authenticator)
    yield server, w
    w.stop()


def test_nickserv_over_udp_registers_and_identifies(mixed_accounts):
    """PRIVMSG NickServ and NS from a UDP session: NickServ's NOTICEs and 900 by unicast."""
    server, w = mixed_accounts
    bob = Raw(w)
    assert any(m.command == "001" for m in bob.register("bob"))
    got = bob.command("PRIVMSG NickServ :REGISTER a-long-passphrase")
    assert notices(got) == ["Account bob registered"] and numerics(got) == ["900"]
    carol = Raw(w, "127.0.0.2")
    carol.register("carol")
    got = carol.command(f"NS IDENTIFY teacher {PASSWORD}")
    assert notices(got) == ["You are now logged in as teacher"] and numerics(got) == ["900"]
    assert server.registry.find_user("carol").account == "teacher"


def test_a_udp_session_ghosts_a_tcp_one(mixed_accounts):
    """GHOST across front-ends: a UDP session evicts the TCP session holding its nick."""
    server, w = mixed_accounts
    ghost = server.user("teacher")
    bob = Raw(w)
    bob.register("bob")
    bob.command(f"NS IDENTIFY teacher {PASSWORD}")
    assert notices(bob.command("NS GHOST teacher")) == ["teacher was ghosted"]
    assert ghost.closed and server.registry.find_user("teacher") is None


def test_sasl_plain_and_register_over_udp(mixed_accounts):
    """A UDP session (no CAP) may REGISTER and log in with SASL PLAIN after it opened."""
    server, w = mixed_accounts
    bob = Raw(w)
    bob.register("bob")
    got = bob.command("REGISTER * * :a-long-passphrase")
    assert [(m.command, *m.params[:2]) for m in got if m.command == "REGISTER"] == [
        ("REGISTER", "SUCCESS", "bob")] and numerics(got) == ["900"]
    carol = Raw(w, "127.0.0.2")
    carol.register("carol")
    assert [(m.command, m.params) for m in carol.command("AUTHENTICATE PLAIN")
            if m.command != "ACK"] == [("AUTHENTICATE", ("+",))]
    response = base64.b64encode(f"\0teacher\0{PASSWORD}".encode()).decode()
    assert numerics(carol.command("AUTHENTICATE " + response)) == ["900", "903"]
    assert server.registry.find_user("carol").account == "teacher"
    assert numerics(carol.command("AUTHENTICATE EXTERNAL")) == ["907"]  # logged in already


def test_sasl_external_over_udp_fails(mixed_accounts):
    """UDP has no TLS, so no certificate: EXTERNAL fails with 904."""
    server, w = mixed_accounts
    dave = Raw(w)
    dave.register("dave")
    dave.command("AUTHENTICATE EXTERNAL")
    assert numerics(dave.command("AUTHENTICATE +")) == ["904"]


def test_udp_without_an_authenticator_knows_no_account_verbs():
    """A UDP front-end without accounts: NS, AUTHENTICATE, REGISTER are 421; NickServ is 401."""
    w = UDPWorld()
    try:
        bob = Raw(w)
        bob.register("bob")
        for line in ("NS HELP", "AUTHENTICATE PLAIN", "REGISTER * * :a-long-passphrase"):
            assert numerics(bob.command(line)) == ["421"], line
        assert numerics(bob.command("PRIVMSG NickServ :HELP")) == ["401"]
    finally:
        w.stop()
