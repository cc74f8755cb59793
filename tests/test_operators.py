"""
Server operators (issue #13): hashes, the opers file, OPER, KILL, WALLOPS, +o/+w, and a real server.
"""

import subprocess
import sys

import pytest
from twisted.python import usage

from tests.serverproc import LineClient, ServerProcess, source_env
from tests.test_commands import line, numerics
from tests.test_registry import joined, make
from tests.udpnet import Raw, UDPWorld
from twistchat.core import operators, passwords
from twistchat.core.commands import dispatch
from twistchat.core.events import Disconnect, deliver
from twistchat.core.operators import (
    OPER_FAILURES,
    OPER_RETRY_SECONDS,
    load_opers,
)
from twistchat.core.passwords import hash_password, parse_hash, verify_password
from twistchat.operhash import oper_line
from twistchat.service import Options

CHEAP = (16, 1, 1)  # scrypt cost for unit tests: microseconds, not 50 ms


def entries(**names_passwords):
    return {name: parse_hash(hash_password(pw, CHEAP)) for name, pw in names_passwords.items()}


def with_opers(**names_passwords):
    return make(opers=entries(**names_passwords))


def texts(conn, command):
    """The last parameter of every line ``command`` ``conn`` was handed."""
    return [p.params[-1] for p in conn.got if getattr(p, "command", None) == command]


def codes(conn):
    return [getattr(p, "command", None) for p in conn.got]


# ---------------------------------------------------------------- passwords


def test_hash_round_trip_and_random_salt():
    """A hash verifies its password, not another; two hashes of one password differ (salt)."""
    one, two = hash_password("s3cret", CHEAP), hash_password("s3cret", CHEAP)
    assert one != two and one.startswith("scrypt$16$1$1$")
    assert verify_password("s3cret", parse_hash(one))
    assert not verify_password("s3cret ", parse_hash(one))
    assert not verify_password("", parse_hash(two))


def test_default_cost_is_the_interactive_one():
    """Without a cost, n=2**14, r=8, p=1 (RFC 7914's interactive parameters)."""
    assert hash_password("x").split("$")[1:4] == ["16384", "8", "1"]


def test_verify_compares_in_constant_time(monkeypatch):
    """The derived key is compared with hmac.compare_digest, never ==."""
    calls = []
    real = passwords.hmac.compare_digest
    monkeypatch.setattr(passwords.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    assert verify_password("pw", parse_hash(hash_password("pw", CHEAP)))
    assert len(calls) == 1


@pytest.mark.parametrize("text, why", [
    ("bcrypt$2$1$1$c2FsdA==$" + "A" * 44, "not a scrypt"),
    ("scrypt$16$1$1$c2FsdA==", "not a scrypt"),
    ("scrypt$x$1$1$c2FsdA==$" + "A" * 44, "whole numbers"),
    ("scrypt$15$1$1$c2FsdA==$" + "A" * 44, "power of two"),
    ("scrypt$262144$1$1$c2FsdA==$" + "A" * 44, "power of two"),   # past MAX_N = 2**17
    ("scrypt$16$17$1$c2FsdA==$" + "A" * 44, "r must be"),         # past MAX_R
    ("scrypt$16$1$5$c2FsdA==$" + "A" * 44, "p must be"),          # past MAX_P
    ("scrypt$131072$16$1$c2FsdA==$" + "A" * 44, "too costly"),    # 256 MiB > 64 MiB
    ("scrypt$16$1$1$!!!$" + "A" * 44, "base64"),
    ("scrypt$16$1$1$c2FsdA==$QUJD", "shorter than 16"),
])
def test_bad_hashes_are_refused_with_the_reason(text, why):
    """Each malformed or too costly hash raises ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=why):
        parse_hash(text)


def test_the_largest_cost_allowed_parses():
    """n=2**17 with r=4 is exactly 64 MiB: the edge of MAX_MEMORY, accepted."""
    assert parse_hash("scrypt$131072$4$1$c2FsdA==$" + "A" * 44).n == 2 ** 17


# --------------------------------------------------------------- opers file


def test_opers_file_with_comments_and_blank_lines():
    """'name hash' lines; '#' comments (whole lines or trailing) and blank lines skipped."""
    one, two = hash_password("a", CHEAP), hash_password("b", CHEAP)
    text = f"# operators\n\nadmin {one}  # the boss\n  helper\t{two}\n"
    loaded = load_opers(text)
    assert list(loaded) == ["admin", "helper"]
    assert verify_password("b", loaded["helper"])


@pytest.mark.parametrize("body, why", [
    ("admin\n", "line 2: expected 'name scrypt-hash', got 1"),
    ("admin {h} extra\n", "line 2: expected 'name scrypt-hash', got 3"),
    ("root {h}\n", "line 2: operator 'root' is listed twice"),
    ("bob scrypt$16$1$1$x\n", "line 2: operator 'bob': not a scrypt"),
])
def test_opers_file_errors_name_the_line(body, why):
    """A bad line is a ValueError naming its number and what is wrong."""
    h = hash_password("a", CHEAP)
    with pytest.raises(ValueError) as caught:
        load_opers(f"root {h}\n" + body.format(h=h))
    assert str(caught.value).startswith(why)


def test_opers_option_reads_the_file(tmp_path):
    """--opers FILE: its entries reach the options; a bad file: UsageError naming file and line."""
    good = tmp_path / "opers"
    good.write_text(oper_line("admin", "pw") + "\n")
    options = Options()
    options.parseOptions(["--opers", str(good), "--db=:memory:"])
    assert list(options["oper_entries"]) == ["admin"]
    bad = tmp_path / "bad"
    bad.write_text("# ok\nadmin nothash\n")
    with pytest.raises(usage.UsageError, match=f"--opers {bad}: line 2: operator 'admin'"):
        Options().parseOptions(["--opers", str(bad), "--db=:memory:"])
    with pytest.raises(usage.UsageError, match="cannot read it"):
        Options().parseOptions(["--opers", str(tmp_path / "missing"), "--db=:memory:"])


def test_twistd_with_a_bad_opers_file_exits_naming_the_line(tmp_path):
    """The real twistd: a bad --opers file ends startup with one line naming file and line."""
    bad = tmp_path / "opers"
    bad.write_text("admin\n")
    out = subprocess.run([*ServerProcess(tmp_path).command[:4], "--db=:memory:",
                          f"--opers={bad}"], capture_output=True, text=True,
                         env=source_env(), timeout=60, cwd=tmp_path)
    lines = [x for x in (out.stdout + out.stderr).splitlines() if x.strip()]
    assert out.returncode != 0
    assert lines[0] == f"twistd chat: --opers {bad}: line 1: expected 'name scrypt-hash', " \
                       "got 1 field(s)", lines


# ------------------------------------------------------------- operhash CLI


def test_operhash_reads_the_password_from_stdin():
    """``python -m twistchat.operhash NAME`` with the password on stdin prints a line that loads."""
    out = subprocess.run([sys.executable, "-m", "twistchat.operhash", "admin"],
                         input="hunter2\n", capture_output=True, text=True,
                         env=source_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout + out.stderr
    loaded = load_opers(out.stdout)
    assert verify_password("hunter2", loaded["admin"])
    assert not verify_password("hunter2\n", loaded["admin"])


@pytest.mark.parametrize("args, stdin, why", [
    (["admin"], "\n", "the password is empty"),
    (["ad min"], "pw\n", "no spaces"),
])
def test_operhash_refuses_an_empty_password_or_a_bad_name(args, stdin, why):
    """Exit 2 and a reason on stderr; nothing printed on stdout."""
    out = subprocess.run([sys.executable, "-m", "twistchat.operhash", *args], input=stdin,
                         capture_output=True, text=True, env=source_env(), timeout=60)
    assert out.returncode == 2 and why in out.stderr and out.stdout == ""


# -------------------------------------------------------------------- OPER


def test_oper_without_any_entries_is_491():
    """No --opers file: ERR_NOOPERHOST, nothing checked."""
    registry, _ = make()
    alice, conn = joined(registry, "alice")
    deliver(operators.oper(registry, alice, "admin", "pw"))
    assert codes(conn) == ["491"] and alice.oper is None


def test_oper_right_password_is_381_and_mode_o():
    """381 RPL_YOUREOPER, then MODE alice +o from the server; 221 shows +o."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    deliver(dispatch(registry, alice, line("OPER", "admin", "pw")))
    assert codes(conn) == ["381", "MODE"]
    mode = conn.got[1]
    assert mode.source == "srv" and mode.params == ("alice", "+o")
    assert alice.oper == "admin"
    conn.got.clear()
    deliver(dispatch(registry, alice, line("MODE", "alice")))
    assert conn.got[0].params[-1] == "+o"


@pytest.mark.parametrize("name, password", [("admin", "wrong"), ("nobody", "pw")])
def test_oper_wrong_password_or_unknown_name_is_464(name, password):
    """A wrong password and an unknown name get the same 464 ERR_PASSWDMISMATCH."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    deliver(operators.oper(registry, alice, name, password))
    assert codes(conn) == ["464"] and alice.oper is None


def test_unknown_name_costs_a_hash_check_too(monkeypatch):
    """An unknown name is checked against a dummy hash, so its timing tells nothing."""
    registry, _ = with_opers(admin="pw")
    alice, _ = joined(registry, "alice")
    checked = []
    monkeypatch.setattr(operators, "verify_password", lambda pw, h: checked.append(h) or False)
    operators.oper(registry, alice, "nobody", "pw")
    assert checked == [registry.operators.unknown]
    assert registry.operators.unknown.n == 16  # the entries' cost, not the default's


def test_failure_notice_cuts_a_long_login_name():
    """The tried name is repeated in the notice, at most NOTICE_NAME_CHARS of it."""
    registry, _ = with_opers(admin="pw")
    alice, alice_conn = joined(registry, "alice")
    bob, _ = joined(registry, "bob")
    operators.oper(registry, alice, "admin", "pw")
    deliver(operators.oper(registry, bob, "x" * 300, "pw"))
    assert texts(alice_conn, "NOTICE")[-1].endswith(
        f"using login '{'x' * operators.NOTICE_NAME_CHARS}'")


def test_oper_needs_two_parameters():
    """OPER with a name only: 461 (the command table's minimum)."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    deliver(dispatch(registry, alice, line("OPER", "admin")))
    assert codes(conn) == ["461"]


def test_failed_opers_are_limited_per_address(monkeypatch):
    """3 failures, then 464 without checking, even for the right password; 60 s brings one back."""
    registry, clock = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    checked = []
    real = operators.verify_password
    monkeypatch.setattr(operators, "verify_password",
                        lambda pw, h: checked.append(pw) or real(pw, h))
    for _ in range(OPER_FAILURES):
        deliver(operators.oper(registry, alice, "admin", "wrong"))
    assert codes(conn) == ["464"] * OPER_FAILURES and len(checked) == OPER_FAILURES
    conn.got.clear()
    deliver(operators.oper(registry, alice, "admin", "pw"))
    assert codes(conn) == ["464"] and len(checked) == OPER_FAILURES  # not even hashed
    assert alice.oper is None
    # Another address is not limited.
    bob, bob_conn = joined(registry, "bob")
    deliver(operators.oper(registry, bob, "admin", "pw"))
    assert codes(bob_conn)[0] == "381"
    # Just before the wait is over: still refused; at 60 s: checked again.
    clock.now += OPER_RETRY_SECONDS - 0.5
    conn.got.clear()
    deliver(operators.oper(registry, alice, "admin", "pw"))
    assert codes(conn) == ["464"]
    clock.now += 0.5
    conn.got.clear()
    deliver(operators.oper(registry, alice, "admin", "pw"))
    assert codes(conn)[0] == "381"


def test_a_right_password_costs_no_failure():
    """Successful OPERs take nothing from the address's failure budget."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    for _ in range(OPER_FAILURES + 2):
        deliver(operators.oper(registry, alice, "admin", "pw"))
    assert codes(conn).count("381") == OPER_FAILURES + 2
    assert registry.operators.tracked() == 0  # a full bucket is forgotten


def test_failures_are_remembered_for_a_bounded_number_of_addresses(monkeypatch):
    """Past MAX_TRACKED_ADDRESSES the oldest address is forgotten first."""
    monkeypatch.setattr(operators, "MAX_TRACKED_ADDRESSES", 2)
    registry, _ = with_opers(admin="pw")
    users = [joined(registry, f"u{i}")[0] for i in range(3)]
    for user in users:
        operators.oper(registry, user, "admin", "wrong")
    assert registry.operators.tracked() == 2
    assert users[0].address not in registry.operators._failures


def test_opers_get_server_notices_of_oper_ups_and_failures():
    """*** OPER notices go to the opers online, not to the one who just opered up."""
    registry, _ = with_opers(admin="pw", helper="hp")
    alice, alice_conn = joined(registry, "alice")
    bob, bob_conn = joined(registry, "bob")
    deliver(operators.oper(registry, alice, "admin", "pw"))
    deliver(operators.oper(registry, bob, "helper", "bad"))
    deliver(operators.oper(registry, bob, "helper", "hp"))
    notices = texts(alice_conn, "NOTICE")
    assert notices[0].startswith("*** OPER: Failed OPER attempt by bob (bob!bob@")
    assert notices[1].startswith("*** OPER: bob (bob!bob@") and "'helper'" in notices[1]
    assert "hp" not in " ".join(notices) and "bad" not in " ".join(notices)
    assert texts(bob_conn, "NOTICE") == []  # bob was no oper when he failed; not told of himself


# ------------------------------------------------------------- user modes


def test_mode_plus_o_is_ignored_minus_o_drops_it():
    """MODE me +o does nothing; -o drops operator status (MODE -o, 252 and 313 follow)."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    bob, _ = joined(registry, "bob")
    deliver(dispatch(registry, bob, line("MODE", "bob", "+o")))
    assert bob.oper is None
    deliver(operators.oper(registry, alice, "admin", "pw"))
    conn.got.clear()
    deliver(dispatch(registry, alice, line("MODE", "alice", "-o")))
    assert [(p.command, p.params) for p in conn.got] == [("MODE", ("alice", "-o"))]
    assert alice.oper is None
    lusers = {d.payload.command: d.payload.params for d in registry.lusers(alice)}
    assert lusers["252"][1] == "0"


def test_mode_w_is_anyones():
    """+w/-w (WALLOPS receive) needs no operator status; 221 lists it."""
    registry, _ = make()
    bob, conn = joined(registry, "bob")
    deliver(dispatch(registry, bob, line("MODE", "bob", "+wi")))
    deliver(dispatch(registry, bob, line("MODE", "bob")))
    assert conn.got[0].params == ("bob", "+w+i")
    assert conn.got[1].params[-1] == "+iw"
    assert bob.wallops


def test_004_lists_the_user_modes():
    """RPL_MYINFO's user modes: i, B, o, w."""
    registry, _ = make()
    user = registry.connect(type("C", (), {"deliver": lambda s, p: None})(), "127.0.0.3")
    out = registry.register(user, "x", "x", "x")
    myinfo = next(d.payload for d in out if d.payload.command == "004")
    assert myinfo.params[3] == "iBow"


# ---------------------------------------------------------------- queries


def test_lusers_whois_who_show_operators():
    """LUSERS 252 counts opers online (quit ones not); WHOIS 313; WHO flag '*'."""
    registry, _ = with_opers(admin="pw", helper="hp")
    alice, _ = joined(registry, "alice", "#r")
    bob, _ = joined(registry, "bob", "#r")
    carol, _ = joined(registry, "carol")
    operators.oper(registry, alice, "admin", "pw")
    operators.oper(registry, bob, "helper", "hp")
    lusers = {d.payload.command: d.payload.params for d in registry.lusers(carol)}
    assert lusers["252"] == ("carol", "2", "operator(s) online")
    deliver(registry.quit(bob))
    lusers = {d.payload.command: d.payload.params for d in registry.lusers(carol)}
    assert lusers["252"][1] == "1"
    whois = {d.payload.command: d.payload.params for d in registry.whois(carol, "alice")}
    assert whois["313"] == ("carol", "alice", "is an IRC operator")
    assert "313" not in numerics(registry.whois(carol, "carol"))
    who = [d.payload.params for d in registry.who(carol, "#r")
           if d.payload.command == "352"]
    assert who[0][6] == "H*@"
    userhost = registry.userhost(carol, ["alice", "carol"])[0].payload.params[-1]
    assert userhost.split() == [f"alice*=+alice@{alice.host}", f"carol=+carol@{carol.host}"]


# ------------------------------------------------------------------- KILL


def test_kill_needs_an_operator():
    """KILL from a non-oper: 481 ERR_NOPRIVILEGES; nobody leaves."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    bob, _ = joined(registry, "bob")
    deliver(dispatch(registry, alice, line("KILL", "bob", "bye")))
    assert codes(conn) == ["481"] and registry.find_user("bob") is bob


def test_kill_unknown_nick_is_401_and_needs_a_reason():
    """KILL of a nick nobody has: 401; KILL without a reason: 461."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    operators.oper(registry, alice, "admin", "pw")
    deliver(dispatch(registry, alice, line("KILL", "nobody", "x")))
    deliver(dispatch(registry, alice, line("KILL", "nobody")))
    assert codes(conn) == ["401", "461"]


def test_kill_disconnects_with_killed_reason():
    """The victim gets KILL, Disconnect; peers QUIT :Killed (alice (spam)); opers a notice."""
    registry, _ = with_opers(admin="pw", helper="hp")
    alice, alice_conn = joined(registry, "alice")
    dave, dave_conn = joined(registry, "dave")
    bob, bob_conn = joined(registry, "bob", "#r")
    carol, carol_conn = joined(registry, "carol", "#r")
    operators.oper(registry, alice, "admin", "pw")
    operators.oper(registry, dave, "helper", "hp")
    for conn in (alice_conn, dave_conn, bob_conn, carol_conn):
        conn.got.clear()
    deliver(dispatch(registry, alice, line("KILL", "bob", "spam")))
    why = "Killed (alice (spam))"
    assert [getattr(p, "command", None) for p in bob_conn.got] == ["KILL", None]
    assert bob_conn.got[0].params == ("bob", why)
    assert bob_conn.got[1] == Disconnect(why, why)
    quit_line = carol_conn.got[0]
    assert quit_line.message.command == "QUIT" and quit_line.message.params == (why,)
    assert registry.find_user("bob") is None and not bob.connected
    assert deliver(registry.quit(bob, "Connection closed")) is None  # the front-end's: a no-op
    for conn in (alice_conn, dave_conn):
        assert texts(conn, "NOTICE")[-1].startswith("*** KILL: alice killed bob (bob!bob@")


def test_kill_reason_is_cut_to_kicklen():
    """A reason longer than KICKLEN bytes is cut (it ends up in a QUIT line)."""
    registry, _ = with_opers(admin="pw")
    alice, _ = joined(registry, "alice")
    bob, bob_conn = joined(registry, "bob")
    operators.oper(registry, alice, "admin", "pw")
    deliver(operators.kill(registry, alice, "bob", "é" * 300))
    kicklen = registry.limits.kicklen
    assert bob_conn.got[0].params[1] == f"Killed (alice ({'é' * (kicklen // 2)}))"


# ---------------------------------------------------------------- WALLOPS


def test_wallops_needs_an_operator():
    """WALLOPS from a non-oper: 481; nobody gets it."""
    registry, _ = with_opers(admin="pw")
    alice, conn = joined(registry, "alice")
    bob, bob_conn = joined(registry, "bob")
    bob.wallops = True
    deliver(dispatch(registry, alice, line("WALLOPS", "hi")))
    assert codes(conn) == ["481"] and bob_conn.got == []


def test_wallops_reaches_plus_w_users_and_operators():
    """:alice!... WALLOPS :text to +w users and opers (the sender too), not to others."""
    registry, _ = with_opers(admin="pw")
    alice, alice_conn = joined(registry, "alice")
    bob, bob_conn = joined(registry, "bob")
    carol, carol_conn = joined(registry, "carol")
    deliver(dispatch(registry, bob, line("MODE", "bob", "+w")))
    operators.oper(registry, alice, "admin", "pw")
    for conn in (alice_conn, bob_conn):
        conn.got.clear()
    deliver(dispatch(registry, alice, line("WALLOPS", "maintenance at noon")))
    for conn in (alice_conn, bob_conn):
        assert [(p.command, p.params, p.source) for p in conn.got] == [
            ("WALLOPS", ("maintenance at noon",), alice.source)]
    assert carol_conn.got == []
    deliver(dispatch(registry, alice, line("WALLOPS", "")))
    assert codes(alice_conn)[-1] == "461"


# ------------------------------------------------------------ real server


def _opers_file(tmp_path):
    path = tmp_path / "opers"
    path.write_text("# test operators\n" + oper_line("admin", "correct horse") + "\n")
    return path


def _last(text):
    """The last parameter of a line ('+o' whether or not written ':+o')."""
    return text.split()[-1].lstrip(":")


def _until(client, text):
    return client.wait_for(lambda x: text in x)


def test_real_server_operators(tmp_path, chat_server):
    """twistd chat --opers: OPER ok/fail, the rate limit, 313, 252, WHO *, WALLOPS, KILL, -o."""
    server = chat_server("--proto=tcp", "--db=:memory:", f"--opers={_opers_file(tmp_path)}")
    clients = []

    def client(nick, *rooms):
        c = LineClient(server.host, server.port).register(nick)
        for room in rooms:
            c.join(room)
        clients.append(c)
        return c

    try:
        alice, bob, carol = client("alice", "#r"), client("bob", "#r"), client("carol", "#r")
        bob.send("MODE bob +w")
        assert _last(_until(bob, "MODE bob")) == "+w"
        alice.send("OPER admin wrong")
        assert " 464 alice :Password incorrect" in _until(alice, " 464 ")
        alice.send("OPER admin :correct horse")
        assert " 381 alice :You are now an IRC operator" in _until(alice, " 381 ")
        assert _last(_until(alice, " MODE alice")) == "+o"
        # The rate limit (per address: all three clients are 127.0.0.1): alice's failure
        # and two of carol's use the 3, then even the right password gets 464 unchecked.
        for _ in range(2):
            carol.send("OPER admin nope")
            _until(carol, " 464 ")
        carol.send("OPER admin :correct horse")
        _until(carol, " 464 ")
        carol.send("MODE carol")
        assert _last(_until(carol, " 221 ")) == "+"
        assert "Failed OPER attempt by carol" in _until(alice, "Failed OPER")
        # WHOIS 313, LUSERS 252, WHO flag *.
        bob.send("WHOIS alice")
        assert " 313 bob alice :is an IRC operator" in _until(bob, " 313 ")
        bob.send("LUSERS")
        assert " 252 bob 1 :operator(s) online" in _until(bob, " 252 ")
        bob.send("WHO #r")
        assert " alice H*@ :0 alice" in _until(bob, " alice H")
        # WALLOPS: bob (+w) and alice (oper) get it; carol does not.
        alice.send("WALLOPS :restart at noon")
        assert _until(bob, "WALLOPS").endswith(" WALLOPS :restart at noon")
        assert _until(alice, "WALLOPS").startswith(":alice!")
        carol.send("PING :after")
        _until(carol, "PONG")
        assert not any("WALLOPS" in x for x in carol.seen)
        # KILL: bob may not; alice may.
        bob.send("KILL carol :no")
        assert " 481 bob :Permission Denied" in _until(bob, " 481 ")
        alice.send("KILL carol :spamming")
        assert "Killed (alice (spamming))" in _until(carol, "ERROR")
        with pytest.raises(ConnectionError):
            _until(carol, "never")
        assert _until(bob, " QUIT ").endswith(" QUIT :Killed (alice (spamming))")
        assert "*** KILL: alice killed carol" in _until(alice, "KILL:")
        # -o: the count drops.
        alice.send("MODE alice -o")
        assert _last(_until(alice, " MODE alice")) == "-o"
        alice.send("LUSERS")
        assert " 252 alice 0 " in _until(alice, " 252 ")
        log = server.log()
        assert "Killed (alice (spamming))" in log  # the log is there, and has no password
        assert "correct horse" not in log and "nope" not in log and "wrong" not in log
    finally:
        for c in clients:
            c.close()


def test_kill_ends_a_udp_session():
    """A UDP victim: it is told KILL, its session ends, its nick is free."""
    world = UDPWorld(opers=entries(admin="pw"))
    try:
        bob = Raw(world)
        bob.register("bob")
        bob.command("JOIN #r")  # the token used: unicast lines flow (no amplification budget)
        alice, alice_conn = joined(world.registry, "alice")
        operators.oper(world.registry, alice, "admin", "pw")
        deliver(dispatch(world.registry, alice, line("KILL", "bob", "spam")))
        world.net.run(0.01)
        assert ("KILL", ("bob", "Killed (alice (spam))")) in [
            (m.command, m.params) for m in bob.take()]
        assert not world.front.sessions and world.registry.find_user("bob") is None
        assert texts(alice_conn, "NOTICE")[-1].startswith("*** KILL: alice killed bob")
    finally:
        world.stop()
