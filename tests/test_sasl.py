"""
SASL (AUTHENTICATE PLAIN and EXTERNAL) and REGISTER on the IRC front-end, in memory.

Specs: https://ircv3.net/specs/extensions/sasl-3.1 and sasl-3.2 (900-908, 400-byte
chunks, ``+``, ``*``), https://ircv3.net/specs/extensions/account-registration.
"""

from __future__ import annotations

import base64

import pytest

from tests.accountfakes import WaitingHasher, quick_accounts, with_cert
from tests.memory import MemoryServer, numerics
from twistchat.auth import ADDRESS_BURST, MAX_QUEUED, Authenticator
from twistchat.core.accounts import Account
from twistchat.services.registration import MIN_PASSWORD_CHARS, REGISTER_BURST, REGISTER_RATE
from twistchat.services.sasl import CHUNK as SASL_CHUNK
from twistchat.services.sasl import MAX_RESPONSE as MAX_SASL_RESPONSE

PASSWORD = "correct horse"


@pytest.fixture
def server():
    return MemoryServer(authenticator=lambda r: quick_accounts(r, ("teacher", PASSWORD)))


def plain(authcid: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


def sasl_client(server, caps: str = "sasl"):
    """A connection that negotiated ``caps`` and sent NICK/USER, still before CAP END."""
    client = server.connect()
    client.send("CAP LS 302", f"CAP REQ :{caps}", "NICK teach", "USER t 0 * :T")
    client.take()
    return client


def said(messages):
    return [(m.command, *m.params[1:]) for m in messages]


# ----------------------------------------------------------------- the offer


def test_cap_ls_302_offers_sasl_mechanisms_and_registration():
    """``sasl=PLAIN,EXTERNAL`` and ``draft/account-registration=before-connect`` (302 values)."""
    client = MemoryServer(authenticator=quick_accounts).connect()
    words = " ".join(m.params[-1] for m in client.ask("CAP LS 302"))
    assert "sasl=PLAIN,EXTERNAL" in words.split()
    assert "draft/account-registration=before-connect" in words.split()


def test_without_an_authenticator_no_sasl_is_offered_or_granted():
    """A front-end without accounts: no sasl in CAP LS, CAP REQ sasl NAKed, NS unknown."""
    client = MemoryServer().connect()
    words = " ".join(m.params[-1] for m in client.ask("CAP LS 302")).split()
    assert not any(w.startswith(("sasl", "draft/account-registration")) for w in words)
    assert [m.params[1] for m in client.ask("CAP REQ :sasl")] == ["NAK"]
    client.send("CAP END", "NICK a", "USER a 0 * :A")
    client.take()
    assert numerics(client.ask("NS HELP")) == ["421"]
    assert numerics(client.ask("PRIVMSG NickServ :HELP")) == ["401"]


def test_authenticate_needs_the_sasl_capability(server):
    """AUTHENTICATE without CAP REQ sasl: 421, as for a verb the client does not have."""
    client = server.connect()
    assert numerics(client.ask("AUTHENTICATE PLAIN")) == ["421"]


# ---------------------------------------------------------------------- PLAIN


def test_plain_logs_in_before_registration_then_cap_end_registers(server):
    """``AUTHENTICATE PLAIN``, ``+``, the response: 900 then 903; CAP END: 001."""
    client = sasl_client(server)
    assert said(client.ask("AUTHENTICATE PLAIN")) == [("AUTHENTICATE",)]
    got = client.ask("AUTHENTICATE " + plain("teacher", PASSWORD))
    assert numerics(got) == ["900", "903"]
    assert got[0].params == ("*", "teach!t@127.0.0.1", "teacher",
                             "You are now logged in as teacher")
    assert got[1].params[-1] == "SASL authentication successful"
    assert numerics(client.ask("CAP END"))[0] == "001"
    assert server.registry.find_user("teach").account == "teacher"


def test_authenticate_plus_is_the_server_challenge():
    """The server's empty challenge is ``AUTHENTICATE +``, without a source (as the spec shows)."""
    client = sasl_client(MemoryServer(authenticator=quick_accounts))
    (line,) = client.ask("AUTHENTICATE PLAIN")
    assert line.command == "AUTHENTICATE" and line.params == ("+",) and line.source is None


def test_plain_authzid_may_only_name_the_same_account(server):
    """authzid == authcid (any case) is accepted; another account's name fails with 904."""
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN")
    assert numerics(client.ask("AUTHENTICATE " + plain("teacher", PASSWORD, "TEACHER"))) \
        == ["900", "903"]
    server.authenticator.create("student", PASSWORD)
    other = sasl_client(server)
    other.send("AUTHENTICATE PLAIN")
    assert numerics(other.ask("AUTHENTICATE " + plain("student", PASSWORD, "teacher"))) \
        == ["904"]


def test_a_wrong_password_fails_with_904_and_may_be_tried_again(server):
    """904 ERR_SASLFAIL; no account; a second exchange on the same connection succeeds."""
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN")
    got = client.ask("AUTHENTICATE " + plain("teacher", "wrong"))
    assert said(got) == [("904", "SASL authentication failed")]
    client.send("AUTHENTICATE PLAIN")
    assert numerics(client.ask("AUTHENTICATE " + plain("teacher", PASSWORD))) == ["900", "903"]


def test_malformed_responses_fail_with_904(server):
    """Not base64, not three NUL-separated parts, or an empty authcid: 904."""
    for response in ("!!!notbase64", base64.b64encode(b"teacher").decode(),
                     plain("", PASSWORD)):
        client = sasl_client(server)
        client.send("AUTHENTICATE PLAIN")
        assert numerics(client.ask("AUTHENTICATE " + response)) == ["904"], response


def test_an_unknown_mechanism_gets_908_then_904(server):
    """908 RPL_SASLMECHS lists ``PLAIN,EXTERNAL``, then 904."""
    client = sasl_client(server)
    got = client.ask("AUTHENTICATE SCRAM-SHA-256")
    assert said(got) == [("908", "PLAIN,EXTERNAL", "are available SASL mechanisms"),
                         ("904", "SASL authentication failed")]


def test_authenticate_star_aborts_with_906(server):
    """``AUTHENTICATE *`` mid-exchange: 906; the next AUTHENTICATE starts afresh."""
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN")
    assert said(client.ask("AUTHENTICATE *")) == [("906", "SASL authentication aborted")]
    assert said(client.ask("AUTHENTICATE PLAIN")) == [("AUTHENTICATE",)]


def test_logged_in_already_gets_907(server):
    """A second AUTHENTICATE after logging in: 907 ERR_SASLALREADY."""
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("teacher", PASSWORD))
    assert numerics(client.ask("AUTHENTICATE PLAIN")) == ["907"]


def test_a_response_of_exactly_400_bytes_waits_for_plus():
    """A 400-byte chunk means more follow; ``AUTHENTICATE +`` ends the response."""
    password = "p" * 291  # "\0teacher\0" + 291 bytes = 300 bytes = 400 base64 characters
    server = MemoryServer(authenticator=lambda r: quick_accounts(r, ("teacher", password)))
    response = plain("teacher", password)
    assert len(response) == SASL_CHUNK
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN")
    assert client.ask("AUTHENTICATE " + response) == []
    assert numerics(client.ask("AUTHENTICATE +")) == ["900", "903"]


def test_a_response_split_in_chunks_is_joined():
    """Chunks of 400 then a shorter one: the server joins them."""
    password = "q" * 500
    server = MemoryServer(authenticator=lambda r: quick_accounts(r, ("teacher", password)))
    response = plain("teacher", password)
    chunks = [response[i:i + SASL_CHUNK] for i in range(0, len(response), SASL_CHUNK)]
    assert len(chunks) == 2 and len(chunks[1]) < SASL_CHUNK
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + chunks[0])
    assert numerics(client.ask("AUTHENTICATE " + chunks[1])) == ["900", "903"]


def test_a_chunk_over_400_bytes_gets_905(server):
    """One AUTHENTICATE parameter of 401 bytes: 905 ERR_SASLTOOLONG, the exchange ends."""
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN")
    assert numerics(client.ask("AUTHENTICATE " + "A" * (SASL_CHUNK + 1))) == ["905"]
    assert said(client.ask("AUTHENTICATE PLAIN")) == [("AUTHENTICATE",)]  # a new one


def test_a_response_over_the_limit_gets_905_and_at_the_limit_is_read(server):
    """MAX_SASL_RESPONSE bytes of base64 are read (here: 904, not PLAIN); one chunk more: 905."""
    full = MAX_SASL_RESPONSE // SASL_CHUNK
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN", *["AUTHENTICATE " + "A" * SASL_CHUNK] * full)
    assert numerics(client.ask("AUTHENTICATE +")) == ["904"]
    client.send("AUTHENTICATE PLAIN", *["AUTHENTICATE " + "A" * SASL_CHUNK] * full)
    assert numerics(client.ask("AUTHENTICATE AAAA")) == ["905"]


def test_too_many_failures_say_try_again_later(server):
    """Past the per-address burst of failures: 904 with a text saying to try later."""
    client = sasl_client(server)
    for _ in range(ADDRESS_BURST):
        client.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("teacher", "wrong"))
    client.take()
    client.send("AUTHENTICATE PLAIN")
    got = client.ask("AUTHENTICATE " + plain("teacher", PASSWORD))
    assert numerics(got) == ["904"] and "try again later" in got[0].params[-1]


def test_cap_end_during_a_check_waits_for_it():
    """CAP END while the password is being checked: 900, 903, then 001, in that order."""
    hasher = WaitingHasher()
    server = MemoryServer(authenticator=lambda r: Authenticator(r.accounts, hasher, r.clock))
    server.registry.accounts.add(Account("teacher", "quick$" + PASSWORD[::-1]))
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("teacher", PASSWORD))
    client.take()
    assert client.ask("CAP END", "PING x") == []  # held behind the check
    hasher.finish()
    got = numerics(client.take())
    assert got[:3] == ["900", "903", "001"]
    assert server.registry.find_user("teach").account == "teacher"


def test_cap_end_mid_exchange_aborts_it_with_906_and_registers(server):
    """sasl-3.1: registration completed mid-exchange (no response yet): 906, then 001."""
    client = sasl_client(server)
    client.send("AUTHENTICATE PLAIN")
    got = numerics(client.ask("CAP END"))
    assert got[:2] == ["906", "001"]
    assert server.registry.find_user("teach").account is None


def test_authenticate_after_registration_logs_in(server):
    """sasl-3.2 allows an exchange after 001: 900, 903."""
    client = sasl_client(server)
    client.send("CAP END")
    client.send("AUTHENTICATE PLAIN")
    assert numerics(client.ask("AUTHENTICATE " + plain("teacher", PASSWORD))) == ["900", "903"]


def test_a_labeled_authenticate_gets_its_labels():
    """labeled-response: the challenge and the later 900/903 batch carry the label."""
    server = MemoryServer(authenticator=lambda r: quick_accounts(r, ("teacher", PASSWORD)))
    client = sasl_client(server, "sasl labeled-response batch")
    (challenge,) = client.ask("@label=a1 AUTHENTICATE PLAIN")
    assert challenge.tags.get("label") == "a1"
    got = client.ask("@label=a2 AUTHENTICATE " + plain("teacher", PASSWORD))
    assert got[0].command == "BATCH" and got[0].tags.get("label") == "a2"
    assert numerics(got) == ["900", "903"]


# -------------------------------------------------------------------- EXTERNAL


def test_external_logs_in_with_a_registered_certificate(server):
    """EXTERNAL: the SHA-256 of the TLS client certificate finds the account."""
    fp = "ab" * 32
    account = server.registry.accounts.find("teacher")
    account.certfps.add(fp)
    server.registry.accounts.changed(account)
    client = sasl_client(server)
    with_cert(client, fp)
    assert said(client.ask("AUTHENTICATE EXTERNAL")) == [("AUTHENTICATE",)]
    got = client.ask("AUTHENTICATE +")
    assert numerics(got) == ["900", "903"] and got[0].params[2] == "teacher"


def test_external_fails_without_a_known_certificate_or_with_another_authzid(server):
    """No certificate, an unknown one, or an authzid naming someone else: 904."""
    account = server.registry.accounts.find("teacher")
    account.certfps.add("cd" * 32)
    server.registry.accounts.changed(account)
    for fp, authzid in ((None, "+"), ("ef" * 32, "+"),
                        ("cd" * 32, base64.b64encode(b"student").decode())):
        client = sasl_client(server)
        with_cert(client, fp)
        client.send("AUTHENTICATE EXTERNAL")
        assert numerics(client.ask("AUTHENTICATE " + authzid)) == ["904"], (fp, authzid)
    plain_tcp = sasl_client(server)  # no TLS at all
    plain_tcp.send("AUTHENTICATE EXTERNAL")
    assert numerics(plain_tcp.ask("AUTHENTICATE +")) == ["904"]


# -------------------------------------------------------------------- REGISTER


def reg_client(server, nick="newbie", caps="draft/account-registration"):
    client = server.connect()
    client.send(f"CAP REQ :{caps}", f"NICK {nick}", f"USER {nick} 0 * :N")
    client.take()
    return client


def test_register_before_connect_makes_the_account_and_logs_in(server):
    """``REGISTER * * <password>`` before CAP END: REGISTER SUCCESS, 900; CAP END: 001."""
    client = reg_client(server)
    got = client.ask("REGISTER * newbie@example.org :a long passphrase")
    assert [(m.command, *m.params) for m in got][0] == (
        "REGISTER", "SUCCESS", "newbie", "Account created")
    assert numerics(got) == ["900"]
    assert numerics(client.ask("CAP END"))[0] == "001"
    account = server.registry.accounts.find("newbie")
    assert account.email == "newbie@example.org" and account.credential
    assert server.registry.find_user("newbie").account == "newbie"


def test_register_after_registration_by_nick(server):
    """``REGISTER <nick> * <password>`` after 001 works too."""
    client = reg_client(server)
    client.send("CAP END")
    client.take()
    got = client.ask("REGISTER newbie * :a long passphrase")
    assert got[0].params[:2] == ("SUCCESS", "newbie") and numerics(got) == ["900"]


def fails(client, line):
    (got,) = client.ask(line)
    assert got.command == "FAIL" and got.params[0] == "REGISTER", got
    return got.params[1:]


def test_register_refusals_have_the_spec_codes(server):
    """ACCOUNT_EXISTS, ACCOUNT_NAME_MUST_BE_NICK, WEAK_PASSWORD, INVALID_EMAIL, NEED_NICK."""
    taken = reg_client(server, "teacher")
    assert fails(taken, "REGISTER * * :a long passphrase")[0] == "ACCOUNT_EXISTS"
    client = reg_client(server)
    assert fails(client, "REGISTER other * :a long passphrase")[:2] == \
        ("ACCOUNT_NAME_MUST_BE_NICK", "other")
    short = "x" * (MIN_PASSWORD_CHARS - 1)
    assert fails(client, f"REGISTER * * {short}")[0] == "WEAK_PASSWORD"
    assert fails(client, "REGISTER * not-an-email :a long passphrase")[:2] == \
        ("INVALID_EMAIL", "not-an-email")
    nameless = server.connect()
    nameless.send("CAP REQ :draft/account-registration")
    nameless.take()
    assert fails(nameless, "REGISTER * * :a long passphrase")[0] == "NEED_NICK"
    # A password of exactly MIN_PASSWORD_CHARS is enough.
    got = client.ask("REGISTER * * " + "y" * MIN_PASSWORD_CHARS)
    assert got[0].params[0] == "SUCCESS"
    assert fails(client, "REGISTER * * :another passphrase")[0] == "ALREADY_AUTHENTICATED"


def test_register_when_registration_is_closed_is_disallowed(server):
    """``--registration=closed`` (registry.registration_open False): FAIL REGISTER DISALLOWED."""
    server.registry.registration_open = False
    client = reg_client(server)
    assert fails(client, "REGISTER * * :a long passphrase")[0] == "DISALLOWED"
    assert server.registry.accounts.find("newbie") is None


def test_register_when_the_hashing_queue_is_full_is_temporarily_unavailable():
    """The auth layer's queue full (``busy``): FAIL REGISTER TEMPORARILY_UNAVAILABLE."""
    hasher = WaitingHasher()
    server = MemoryServer(authenticator=lambda r: Authenticator(r.accounts, hasher, r.clock))
    for i in range(MAX_QUEUED):
        server.authenticator.create(f"waiting{i}", "a long passphrase")
    client = reg_client(server)
    assert fails(client, "REGISTER * * :a long passphrase")[0] == "TEMPORARILY_UNAVAILABLE"
    hasher.finish()


def test_register_works_without_the_capability(server):
    """REGISTER without draft/account-registration (irssi's /quote REGISTER): it still works."""
    client = reg_client(server, caps="sasl")
    got = client.ask("REGISTER * * :a long passphrase")
    assert [(m.command, *m.params[:2]) for m in got][0] == ("REGISTER", "SUCCESS", "newbie")


def test_accounts_made_from_one_address_are_limited_then_refill(server):
    """REGISTER_BURST accounts from one address, then TEMPORARILY_UNAVAILABLE until it refills."""
    for i in range(REGISTER_BURST):
        client = reg_client(server, f"maker{i}")
        assert client.ask("REGISTER * * :a long passphrase")[0].params[0] == "SUCCESS"
    late = reg_client(server, "late")
    assert fails(late, "REGISTER * * :a long passphrase")[0] == "TEMPORARILY_UNAVAILABLE"
    elsewhere = server.connect("127.0.0.9")
    elsewhere.send("CAP REQ :draft/account-registration", "NICK other", "USER o 0 * :O")
    elsewhere.take()
    assert elsewhere.ask("REGISTER * * :a long passphrase")[0].params[0] == "SUCCESS"
    server.clock.advance(1 / REGISTER_RATE)
    again = reg_client(server, "later")
    assert again.ask("REGISTER * * :a long passphrase")[0].params[0] == "SUCCESS"


def test_a_refused_registration_costs_no_token(server):
    """Refusals (a taken name, a weak password) do not use up the address's registrations."""
    taken = reg_client(server, "teacher")
    for _ in range(REGISTER_BURST + 2):
        assert fails(taken, "REGISTER * * :a long passphrase")[0] == "ACCOUNT_EXISTS"
    client = reg_client(server)
    assert client.ask("REGISTER * * :a long passphrase")[0].params[0] == "SUCCESS"


def test_lines_sent_after_register_run_once_it_is_answered():
    """
    REGISTER, JOIN, ChanServ REGISTER and QUIT pipelined in one write (a script, a
    bouncer): nothing after REGISTER runs before the account exists and the user is
    logged in, then everything runs in order, QUIT last.
    """
    hasher = WaitingHasher()
    server = MemoryServer(authenticator=lambda r: Authenticator(r.accounts, hasher, r.clock))
    client = server.user("teacher")
    client.send("REGISTER * * :a long passphrase", "JOIN #class",
                "PRIVMSG ChanServ :REGISTER #class", "QUIT :done")
    assert client.take() == [] and not client.closed  # all waits behind the hash
    assert server.registry.find_channel("#class") is None
    hasher.finish()
    got = client.take()
    order = [m.command for m in got if m.command in ("REGISTER", "900", "JOIN", "NOTICE")]
    assert order == ["REGISTER", "900", "JOIN", "NOTICE"], [str(m) for m in got]
    notice = next(m for m in got if m.command == "NOTICE")
    assert notice.params[-1] == "#class is now registered to your account teacher."
    assert client.closed  # the QUIT ran last
