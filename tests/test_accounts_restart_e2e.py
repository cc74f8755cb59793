"""
Issue #14's "How it must be shown", end to end: a real ``twistd -n chat`` on a
real SQLite file, stopped with SIGTERM and started again on the same file, and
real sockets.

Accounts are made on the wire (``REGISTER * * <password>``, draft/account-
registration), never by writing the database.  Not repeated here (see those
modules): REGISTER / SASL / IDENTIFY / GHOST / EXTERNAL on one server run
(tests/test_accounts_e2e.py), the grace rename (tests/test_account_rules_e2e.py),
the room and marker records through makeService in-process
(tests/test_rooms_stored.py), the flood against ``Authenticator`` alone
(tests/test_auth_flood.py).

1. The teacher's story across a restart: room registered with ChanServ, topic,
   +m, an address ban and a ``~a:`` ban; after the restart she logs in with SASL
   PLAIN before 001, the server ops her on JOIN, topic, modes and bans are back,
   and the student's account is still kept out (474).
2. A read marker (MARKREAD) survives the restart.
3. 1,000 wrong SASL PLAIN passwords against one account on the wire, while another
   client's PING round trip is timed: from one address on one connection (line
   limit raised), from one address reconnecting (default flags), and from 200
   loopback addresses (the per-account limit).  Numbers: bench/README.md.
4. NickServ IDENTIFY (no SASL) after a restart.
5. An account and a registered room outlive a SIGKILL once the writer thread ran;
   a dropped account and its room stay gone after a restart.

Every read has a deadline (LineClient / Probe: 10 s).
"""

from __future__ import annotations

import base64
import gc
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.probe import Probe, codes, one
from tests.serverproc import LineClient, ServerProcess
from twistchat.auth import ACCOUNT_BURST, ACCOUNT_RATE, ADDRESS_BURST, ADDRESS_RATE
from twistchat.wire import Message, parse

PASSWORD = "restart-passphrase"
TRY_AGAIN = "SASL authentication failed: Too many failed attempts; try again later"


def plain(name: str, password: str) -> str:
    """The SASL PLAIN response (RFC 4616, no authzid), base64."""
    return base64.b64encode(f"\0{name}\0{password}".encode()).decode()


class BoundLineClient(LineClient):
    """A LineClient whose socket has the given loopback source address (127.0.0.2, ...)."""

    def __init__(self, host: str, port: int, source: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0))
        self.timeout = timeout
        self.buffer = b""
        self.seen = []


class SaslProbe(Probe):
    """
    A Probe that logs in with SASL PLAIN before registering (sasl-3.1).

    ``CAP REQ :sasl [caps]``, NICK/USER, ``AUTHENTICATE PLAIN``, the server's
    ``AUTHENTICATE +``, the credentials; 900 and 903, then ``CAP END`` and 001.
    ``before_welcome`` keeps the lines read up to 001 (a failed login raises).
    """

    def __init__(self, server: ServerProcess, nick: str, account: str, password: str,
                 caps: str = "", source: str | None = None) -> None:
        self.client = (BoundLineClient(server.host, server.port, source) if source
                       else LineClient(server.host, server.port))
        Probe.open.append(self)
        self.nick = nick
        self.marks = iter(range(1_000_000))
        self.client.send(f"CAP REQ :{' '.join(['sasl', *caps.split()])}",
                         f"NICK {nick}", f"USER {nick} 0 * :{nick} Real", "AUTHENTICATE PLAIN")
        assert self.client.wait_for(lambda line: line.startswith("AUTHENTICATE")) \
            == "AUTHENTICATE +"
        self.client.send("AUTHENTICATE " + plain(account, password))
        result = self.client.wait_for(lambda line: " 903 " in line or " 904 " in line)
        assert " 903 " in result, self.client.seen[-5:]
        self.client.send("CAP END")
        self.client.wait_for(lambda line: " 001 " in line)
        self.before_welcome = [parse(line.encode(), max_body=8192)
                               for line in self.client.seen]
        self.welcome = self.ask()


def register(server: ServerProcess, nick: str, password: str = PASSWORD) -> Probe:
    """A connection on ``nick`` that made the account ``nick`` with REGISTER (and is in)."""
    probe = Probe(server, caps="draft/account-registration", nick=nick)
    answer = probe.ask(f"REGISTER * * {password}")
    assert one(answer, "REGISTER").params[:2] == ("SUCCESS", nick), [str(m) for m in answer]
    assert "900" in codes(answer)
    return probe


def leave(probe: Probe) -> None:
    """QUIT and wait for the server's ERROR: the user is gone before the next step."""
    probe.client.send("QUIT :bye")
    probe.client.wait_for(lambda line: line.startswith("ERROR"))
    probe.close()
    Probe.open.remove(probe)


def restart(server: ServerProcess) -> None:
    """
    SIGTERM (a clean stop writes the queued account changes), then start on the same file.

    twistd ends a SIGTERM'd run by killing itself with the signal again (exit -15);
    "Server Shut Down." is what says the stop was clean.
    """
    assert server.stop() in (0, -signal.SIGTERM), server.log()[-2000:]
    assert server.log().rstrip().endswith("Server Shut Down."), server.log()[-2000:]
    server.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server on one SQLite file for the module; the tests restart it in place."""
    workdir = tmp_path_factory.mktemp("restart")
    started = ServerProcess(workdir, f"--db={workdir / 'chat.sqlite3'}").start()
    yield started
    started.stop()


def test_the_teachers_room_survives_a_sigterm_restart(server):
    """
    Registered #class, its topic, +m and both bans come back after SIGTERM; the teacher
    (SASL PLAIN before 001) is opped by the server on JOIN, a guest who came first is not,
    and the student's account is refused (474) under another nick: on the empty room
    (made on JOIN from the saved state) and on the room in use.  Who set the topic and
    the bans, and when (333, 367), are kept too.
    """
    student = register(server, "pupil")
    leave(student)
    teacher = register(server, "teacher")
    names = one(teacher.join("#class"), "353")
    assert names.params[-1] == "@teacher"  # first in: operator
    registered = teacher.ask("PRIVMSG ChanServ :REGISTER #class")
    notice = one(registered, "NOTICE")
    assert notice.source == "ChanServ!ChanServ@services.", str(notice)
    assert notice.params[-1] == "#class is now registered to your account teacher.", str(notice)
    for line in ("TOPIC #class :Fractions today", "MODE #class +m",
                 "MODE #class +b *!*@127.0.0.7", "MODE #class +b ~a:pupil"):
        answer = teacher.ask(line)
        assert codes(answer) == [line.split()[0]], [str(m) for m in answer]
    set_by = one(teacher.ask("TOPIC #class"), "333").params[2:]
    banned_by = sorted(m.params[2:] for m in teacher.ask("MODE #class +b") if m.command == "367")
    teacher.ask("PART #class")
    leave(teacher)

    restart(server)

    kid = SaslProbe(server, "kid", "pupil", PASSWORD)
    refused = kid.join("#class")  # no one there: the room is made from the file, then refused
    assert codes(refused) == ["474"], [str(m) for m in refused]
    assert refused[0].params[1] == "#class"
    guest = Probe(server, nick="guest")
    joined = guest.join("#class")
    assert one(joined, "332").params[-1] == "Fractions today"
    assert one(joined, "353").params[-1] == "guest"  # a registered room ops no one for being first
    assert "404" in codes(guest.ask("PRIVMSG #class :hello"))  # +m holds

    teacher = SaslProbe(server, "teacher", "teacher", PASSWORD)
    before = codes(teacher.before_welcome)
    assert before.index("900") < before.index("903") < before.index("001")
    joined = teacher.join("#class")
    opped = [m for m in joined if m.command == "MODE"]
    assert len(opped) == 1 and opped[0].params == ("#class", "+o", "teacher"), \
        [str(m) for m in joined]
    assert opped[0].source == one(teacher.before_welcome, "001").source  # the server's
    assert one(joined, "332").params[-1] == "Fractions today"
    assert one(joined, "333").params[2:] == set_by
    assert set_by[0].startswith("teacher!")
    assert guest.client.wait_for(lambda line: " MODE #class +o teacher" in line)
    modes = one(teacher.ask("MODE #class"), "324")
    assert "m" in modes.params[2], str(modes)
    bans = teacher.ask("MODE #class +b")
    assert sorted(m.params[2] for m in bans if m.command == "367") == \
        ["*!*@127.0.0.7", "~a:pupil"]
    assert sorted(m.params[2:] for m in bans if m.command == "367") == banned_by
    assert codes(bans)[-1] == "368"

    refused = kid.join("#class")  # the room in use
    assert codes(refused) == ["474"], [str(m) for m in refused]
    assert refused[0].params[1] == "#class"


def test_a_read_marker_survives_a_restart(server):
    """MARKREAD set after logging in is the marker another login gets after SIGTERM."""
    reader = register(server, "reader")
    leave(reader)
    reader = SaslProbe(server, "reader", "reader", PASSWORD, caps="draft/read-marker")
    stamp = "timestamp=2025-01-02T03:04:05.678Z"
    set_ = reader.ask(f"MARKREAD #notes {stamp}")
    assert [(m.command, m.params) for m in set_] == [("MARKREAD", ("#notes", stamp))]
    leave(reader)

    restart(server)

    reader = SaslProbe(server, "reader", "reader", PASSWORD, caps="draft/read-marker")
    got = reader.ask("MARKREAD #notes")
    assert [(m.command, m.params) for m in got] == [("MARKREAD", ("#notes", stamp))]
    joined = reader.join("#notes")  # and after JOIN, before 366 (read-marker spec)
    marker = one(joined, "MARKREAD")
    assert marker.params == ("#notes", stamp)
    assert codes(joined).index("MARKREAD") < codes(joined).index("366")
    # The marker is the account's: the same nick not logged in has none.
    leave(reader)
    anonymous = Probe(server, caps="draft/read-marker", nick="reader")
    assert one(anonymous.ask("MARKREAD #notes"), "MARKREAD").params == ("#notes", "*")


def test_nickserv_identify_works_after_a_restart(server):
    """
    A client without SASL: ``NS IDENTIFY`` after SIGTERM logs in (900); a wrong password
    fails.  In the account's registered room, joined before logging in, the server ops
    the founder when it logs in.
    """
    maker = register(server, "plainuser")
    maker.join("#plain")
    assert one(maker.ask("PRIVMSG ChanServ :REGISTER #plain"), "NOTICE").params[-1] == \
        "#plain is now registered to your account plainuser."
    leave(maker)

    restart(server)

    client = Probe(server, nick="someone")
    assert one(client.join("#plain"), "353").params[-1] == "someone"  # not op: not logged in
    wrong = client.ask(f"NS IDENTIFY plainuser not-{PASSWORD}")
    assert "900" not in codes(wrong)
    assert one(wrong, "NOTICE").params[-1] == "Invalid account name or password"
    answer = client.ask(f"NS IDENTIFY plainuser {PASSWORD}")
    logged_in = one(answer, "900")
    assert logged_in.params[2] == "plainuser", str(logged_in)
    notices = [m for m in answer if m.command == "NOTICE"]
    assert notices and notices[-1].source == "NickServ!NickServ@services."
    assert notices[-1].params[-1] == "You are now logged in as plainuser"
    opped = [m for m in answer if m.command == "MODE"]
    assert [m.params for m in opped] == [("#plain", "+o", "someone")], [str(m) for m in answer]
    assert opped[0].source == one(client.welcome, "001").source  # the server's
    whois = client.ask("WHOIS someone")
    assert one(whois, "330").params[2] == "plainuser"
    # The one-argument form: the account is the nick one is on (the reserved nick).
    owner = Probe(server, nick="plainuser")
    answer = owner.ask(f"PRIVMSG NickServ :IDENTIFY {PASSWORD}")
    assert one(answer, "900").params[2] == "plainuser"


# ------------------------------------------------------------------ the flood

ATTEMPTS = 1000
RTT_LIMIT = 0.050
FLOOD_SECONDS = 60.0  # the whole flood must end within this
# The default line-flood limit (--flood-burst 20, --flood-rate 5 per second): a
# connection's CAP REQ, NICK and USER, then 8 guesses of 2 lines, then QUIT fit
# in its burst.
DEFAULT_BURST_GUESSES = 8


@pytest.fixture
def quiet_heap():
    """
    No collection of the whole test run's heap while the pinger times round trips: its
    thread shares this process (and its GIL) with the attacker, and a full collection
    in a long suite stalls both for tens of milliseconds, which is not the server's lag.
    """
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


class Pinger(threading.Thread):
    """Another client, PINGing every ``every`` seconds and timing each PONG, until stopped."""

    def __init__(self, server: ServerProcess, every: float) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.client = LineClient(server.host, server.port).register("pinger")
        self.rtts: list[float] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            n = 0
            while not self.stopping.is_set():
                n += 1
                started = time.perf_counter()
                token = f"t{n}"
                self.client.send(f"PING {token}")
                self.client.wait_for(
                    lambda line, token=token: " PONG " in line and line.endswith(token),
                    timeout=5)
                self.rtts.append(time.perf_counter() - started)
                self.stopping.wait(self.every)
        except BaseException as e:  # reported by the test
            self.error = e

    def finish(self) -> list[float]:
        self.stopping.set()
        self.join(10)
        self.client.close()
        if self.error is not None:
            raise self.error
        return self.rtts


class Attacker:
    """
    One address's SASL PLAIN guesses: retries after each 904 on one connection, a new
    connection after ``per_connection`` guesses (None: never) or when the server closes
    one.  One connection at a time: far below the per-address connection limit.
    """

    def __init__(self, server: ServerProcess, account: str,
                 per_connection: int | None = None, sources: Iterator[str] | None = None) -> None:
        self.server, self.account, self.per_connection = server, account, per_connection
        self.sources = sources  # a loopback source address for each connection
        self.client: LineClient | None = None
        self.answers: dict[str, int] = {}
        self.connections = 0
        self.closed_by_server = 0
        self._guesses_here = 0

    def _connect(self) -> LineClient:
        self.connections += 1
        self._guesses_here = 0
        client = (BoundLineClient(self.server.host, self.server.port, next(self.sources))
                  if self.sources is not None else LineClient(self.server.host, self.server.port))
        client.send("CAP REQ :sasl", f"NICK guesser{self.connections}", "USER g 0 * :G")
        client.wait_for(lambda line: " CAP " in line and " ACK " in line)
        return client

    def _hang_up(self) -> None:
        assert self.client is not None
        self.client.send("QUIT")
        self.client.wait_for(lambda line: line.startswith("ERROR"))
        self.client.close()
        self.client = None

    def guess(self, n: int) -> None:
        """One wrong password; its 904 text counted."""
        if self.client is not None and self._guesses_here == self.per_connection:
            self._hang_up()
        for _ in range(2):
            if self.client is None:
                self.client = self._connect()
            try:
                self.client.send("AUTHENTICATE PLAIN")
                self.client.wait_for(lambda line: line == "AUTHENTICATE +")
                self.client.send("AUTHENTICATE " + plain(self.account, f"guess {n}"))
                line = self.client.wait_for(lambda line: " 90" in line)
            except (ConnectionError, OSError):
                self.closed_by_server += 1
                self.client.close()
                self.client = None
                continue
            self._guesses_here += 1
            message = parse(line.encode(), max_body=8192)
            key = f"{message.command} {message.params[-1]}"
            self.answers[key] = self.answers.get(key, 0) + 1
            return
        raise AssertionError("the server closed two connections in a row")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def sasl_result(client: LineClient, account: str, password: str) -> Message:
    """One SASL PLAIN exchange on ``client``: the 903 or 904 it ends with."""
    client.send("CAP REQ :sasl", "NICK owner", "USER o 0 * :O", "AUTHENTICATE PLAIN")
    client.wait_for(lambda line: line == "AUTHENTICATE +")
    client.send("AUTHENTICATE " + plain(account, password))
    line = client.wait_for(lambda line: " 903 " in line or " 904 " in line)
    return parse(line.encode(), max_body=8192)


def flood(tmp_path: Path, name: str, flags: tuple[str, ...], ping_every: float,
          per_connection: int | None, min_pings: int) -> None:
    """
    The flood against a fresh server (its own login buckets); its numbers printed (and
    appended to $TWISTCHAT_FLOOD_REPORT if set), then checked.
    """
    server = ServerProcess(tmp_path, f"--db={tmp_path / 'flood.sqlite3'}", *flags).start()
    try:
        leave(register(server, "victim"))
        pinger = Pinger(server, ping_every)
        attacker = Attacker(server, "victim", per_connection)
        pinger.start()
        time.sleep(max(0.2, 3 * ping_every))  # a few round trips before the flood
        started = time.monotonic()
        try:
            for n in range(ATTEMPTS):
                attacker.guess(n)
                assert time.monotonic() - started < FLOOD_SECONDS, f"only {n} guesses in time"
            elapsed = time.monotonic() - started
            time.sleep(max(0.1, ping_every))
        finally:
            rtts = pinger.finish()
            attacker.close()
        same_address = LineClient(server.host, server.port)
        refused = sasl_result(same_address, "victim", PASSWORD)
        owner = BoundLineClient(server.host, server.port, "127.0.0.2")
        accepted = sasl_result(owner, "victim", PASSWORD)
        for client in (same_address, owner):
            client.close()
    finally:
        server.stop()

    limited = attacker.answers.get(f"904 {TRY_AGAIN}", 0)
    invalid = attacker.answers.get("904 SASL authentication failed", 0)
    hashed_at_most = ADDRESS_BURST + int(elapsed * ADDRESS_RATE) + 1
    ordered = sorted(rtts)
    report = (f"{name}: {ATTEMPTS} wrong SASL PLAIN passwords in {elapsed:.2f} s on "
              f"{attacker.connections} connection(s) ({attacker.closed_by_server} closed by "
              f"the server): {limited} refused 'try again later', {invalid} checked and "
              f"wrong; PING rtt worst {ordered[-1] * 1000:.1f} ms, median "
              f"{ordered[len(ordered) // 2] * 1000:.2f} ms over {len(rtts)} pings; "
              f"right password from 127.0.0.1 {refused.command}, from 127.0.0.2 "
              f"{accepted.command}")
    print("\n" + report)
    out = os.environ.get("TWISTCHAT_FLOOD_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(report + "\n")
    assert sum(attacker.answers.values()) == ATTEMPTS, attacker.answers
    assert set(attacker.answers) <= {f"904 {TRY_AGAIN}", "904 SASL authentication failed"}, \
        attacker.answers
    assert invalid <= hashed_at_most, attacker.answers
    assert limited >= ATTEMPTS - hashed_at_most, attacker.answers
    # The per-account bucket: the flood spent at most what the per-address one let by.
    assert hashed_at_most < ACCOUNT_BURST + int(elapsed * ACCOUNT_RATE), \
        "the flood could have emptied the account's bucket: the owner's login proves nothing"
    assert len(rtts) >= min_pings, f"the pinger did not get its turns: {len(rtts)}"
    assert ordered[-1] < RTT_LIMIT, ordered[-5:]
    assert refused.command == "904" and refused.params[-1] == TRY_AGAIN, str(refused)
    assert accepted.command == "903", str(accepted)


def test_a_thousand_wrong_sasl_passwords_on_one_connection(tmp_path, quiet_heap):
    """
    1,000 wrong SASL PLAIN passwords for one account from 127.0.0.1, one after another
    on one connection: all but the per-address burst (and its refill) are answered 904
    "try again later" without hashing; another client's PING (every 10 ms) round trip
    stays under 50 ms throughout; afterwards the right password from 127.0.0.1 is
    refused too (the per-address limit), while the owner from 127.0.0.2 logs in (the
    per-account bucket still has tokens: the flood only spent those the per-address
    one let through).

    The line-flood limit (--flood-burst/--flood-rate, 20 lines then 5 per second per
    connection) is raised for this server: at the defaults it, not the login limits,
    would slow the guesser (to 2.5 guesses a second per connection), and the pinger's
    100 PINGs a second would be held back too.
    """
    flood(tmp_path, "one connection, line limit raised",
          ("--flood-burst=100000", "--flood-rate=100000"),
          ping_every=0.01, per_connection=None, min_pings=50)


def test_a_thousand_wrong_sasl_passwords_at_the_default_limits(tmp_path, quiet_heap):
    """
    The same flood against the default flags: the guesser opens a new connection each
    time its line burst is spent (8 guesses), one at a time; the login limits still
    refuse all but the per-address burst, and the pinger (a PING every 150 ms, within
    its own line rate) stays under 50 ms.
    """
    flood(tmp_path, "new connection every 8 guesses, default flags", (),
          ping_every=0.15, per_connection=DEFAULT_BURST_GUESSES, min_pings=8)


def test_a_thousand_wrong_sasl_passwords_from_200_addresses(tmp_path, quiet_heap):
    """
    The per-account limit, on the wire: 1,000 wrong passwords from 200 loopback
    addresses (127.0.1.1 on, 5 each: every address's burst).  Only the account's burst
    (10, then one per 10 s) reaches argon2; the rest are "try again later".  That
    limit holds for everyone, the owner included: right after the flood the right
    password from a fresh address (127.0.0.2) is refused too, and once one token has
    refilled (10 s) it logs in.  The pinger stays under 50 ms meanwhile.
    """
    server = ServerProcess(tmp_path, f"--db={tmp_path / 'botnet.sqlite3'}").start()
    try:
        leave(register(server, "victim"))
        pinger = Pinger(server, 0.15)
        sources = (f"127.0.{n // 250 + 1}.{n % 250 + 1}" for n in range(ATTEMPTS))
        attacker = Attacker(server, "victim", per_connection=ADDRESS_BURST, sources=sources)
        pinger.start()
        time.sleep(0.45)
        started = time.monotonic()
        try:
            for n in range(ATTEMPTS):
                attacker.guess(n)
                assert time.monotonic() - started < FLOOD_SECONDS, f"only {n} guesses in time"
            ended = time.monotonic()
            time.sleep(0.15)
        finally:
            rtts = pinger.finish()
            attacker.close()
        owner = BoundLineClient(server.host, server.port, "127.0.0.2")
        locked_out = sasl_result(owner, "victim", PASSWORD)
        owner.close()
        time.sleep(max(0.0, ended + 1 / ACCOUNT_RATE + 0.5 - time.monotonic()))
        owner = BoundLineClient(server.host, server.port, "127.0.0.2")
        refilled = sasl_result(owner, "victim", PASSWORD)
        owner.close()
    finally:
        server.stop()

    elapsed = ended - started
    limited = attacker.answers.get(f"904 {TRY_AGAIN}", 0)
    invalid = attacker.answers.get("904 SASL authentication failed", 0)
    hashed_at_most = ACCOUNT_BURST + int(elapsed * ACCOUNT_RATE) + 1
    ordered = sorted(rtts)
    report = (f"200 addresses: {ATTEMPTS} wrong SASL PLAIN passwords in {elapsed:.2f} s on "
              f"{attacker.connections} connections: {limited} refused 'try again later', "
              f"{invalid} checked and wrong; PING rtt worst {ordered[-1] * 1000:.1f} ms over "
              f"{len(rtts)} pings; the owner from 127.0.0.2 right after: {locked_out.command}, "
              f"{1 / ACCOUNT_RATE:.0f} s later: {refilled.command}")
    print("\n" + report)
    out = os.environ.get("TWISTCHAT_FLOOD_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(report + "\n")
    assert attacker.connections == ATTEMPTS // ADDRESS_BURST
    assert sum(attacker.answers.values()) == ATTEMPTS, attacker.answers
    assert set(attacker.answers) <= {f"904 {TRY_AGAIN}", "904 SASL authentication failed"}, \
        attacker.answers
    assert ACCOUNT_BURST <= invalid <= hashed_at_most, attacker.answers
    assert limited >= ATTEMPTS - hashed_at_most, attacker.answers
    assert len(rtts) >= 8, f"the pinger did not get its turns: {len(rtts)}"
    assert ordered[-1] < RTT_LIMIT, ordered[-5:]
    assert locked_out.command == "904" and locked_out.params[-1] == TRY_AGAIN, str(locked_out)
    assert refilled.command == "903", str(refilled)


def test_an_account_outlives_a_sigkill_after_the_flush_interval(server):
    """
    No clean stop: REGISTER, a room registered with ChanServ and its topic, a second for
    the writer thread (``--history-flush`` 0.2 s by default), SIGKILL; started again on
    the same file, the account logs in with SASL and its room has the topic.
    """
    maker = register(server, "survivor")
    maker.join("#den")
    maker.ask("PRIVMSG ChanServ :REGISTER #den", "TOPIC #den :Kept without a clean stop")
    leave(maker)
    time.sleep(1.0)
    server.stop(sig=signal.SIGKILL)
    server.start()
    back = SaslProbe(server, "survivor", "survivor", PASSWORD)
    assert one(back.before_welcome, "900").params[2] == "survivor"
    assert one(back.join("#den"), "332").params[-1] == "Kept without a clean stop"


def test_a_dropped_account_and_its_room_stay_gone_after_a_restart(server):
    """
    NickServ DROP deletes the account and forgets its registered room; after SIGTERM
    neither is back: SASL for it fails (904), the first in the room is its operator as in
    any room, and the name can be registered again.
    """
    owner = register(server, "dropper")
    owner.join("#gone")
    owner.ask("PRIVMSG ChanServ :REGISTER #gone", "TOPIC #gone :Soon forgotten")
    owner.ask("PART #gone")
    dropped = owner.ask(f"NS DROP {PASSWORD}")
    assert "901" in codes(dropped), [str(m) for m in dropped]
    leave(owner)

    restart(server)

    client = LineClient(server.host, server.port)
    assert sasl_result(client, "dropper", PASSWORD).command == "904"
    client.close()
    first = Probe(server, nick="newcomer")
    joined = first.join("#gone")
    assert "332" not in codes(joined)
    assert one(joined, "353").params[-1] == "@newcomer"
    leave(first)
    again = register(server, "dropper")
    assert one(again.ask("PRIVMSG NickServ :INFO"), "NOTICE").params[-1] == "Account: dropper"
