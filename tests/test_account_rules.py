"""
The core's account rules (issue #14): visibility, ``~a:`` extbans, reserved nicks, opers.

Unit tests on the registry with a hand-driven clock (``tests.test_registry``'s
helpers), and front-end tests on an in-memory TCP server (``tests.memory``).
Logging in happens through ``Registry.log_in`` here, the seam SASL and NickServ
call (another branch of #14 brings them to the wire).
"""

from __future__ import annotations

import pytest

from tests.memory import MemoryServer, first
from tests.test_registry import joined, make
from twistchat.core.accounts import Account
from twistchat.core.events import TAG_ACCOUNT, TAG_EXTENDED, Event, deliver


def codes(conn):
    """The commands of everything ``conn`` was handed (Gated lines by their message)."""
    out = []
    for payload in conn.got:
        message = getattr(payload, "message", payload)
        out.append(message.command)
    return out


def logged_in(registry, nick, account, *rooms):
    """A registered user ``nick`` logged in as ``account`` (made if need be), in ``rooms``."""
    if registry.accounts.find(account) is None:
        registry.accounts.add(Account(account, "hash"))
    user, conn = joined(registry, nick, *rooms)
    deliver(registry.log_in(user, account))
    conn.got.clear()
    return user, conn


# -------------------------------------------------------------- visibility


def test_join_event_carries_the_account_in_its_extended_form():
    """extended-join: ``JOIN #r <account> :realname`` for a logged-in user, ``*`` otherwise."""
    registry, _ = make()
    teacher, _ = logged_in(registry, "teacher", "Teacher")
    anon, _ = joined(registry, "anon")
    events = []
    registry.log.subscribe(events.append)
    registry.join(teacher, "#class")
    registry.join(anon, "#class")
    assert events[0].extended.params == ("#class", "Teacher", "teacher")
    assert events[1].extended.params == ("#class", "*", "anon")


def test_room_and_private_events_carry_the_senders_account():
    """Every event a logged-in user causes carries its account (account-tag); others none."""
    registry, _ = make()
    teacher, _ = logged_in(registry, "teacher", "Teacher", "#class")
    anon, _ = joined(registry, "anon", "#class")
    events = []
    registry.log.subscribe(events.append)
    registry.message(teacher, "PRIVMSG", "#class", "hello")
    registry.message(teacher, "PRIVMSG", "anon", "psst")
    registry.topic(teacher, "#class", "maths")
    registry.message(anon, "PRIVMSG", "#class", "hi")
    registry.change_nick(teacher, "miss")
    assert [(e.message.command, e.account) for e in events] == [
        ("PRIVMSG", "Teacher"), ("PRIVMSG", "Teacher"), ("TOPIC", "Teacher"),
        ("PRIVMSG", None), ("NICK", "Teacher")]
    tagged = events[0].line(TAG_ACCOUNT)
    assert tagged.startswith(b"@account=Teacher :teacher!")
    assert not events[3].line(TAG_ACCOUNT).startswith(b"@")
    assert not events[0].line(TAG_EXTENDED).startswith(b"@")


def test_event_account_is_shown_only_to_the_account_view():
    """An Event's ``account`` is a tag of the TAG_ACCOUNT view alone."""
    from twistchat.wire import Message
    event = Event("#r", 1, 0, "m1", Message("PRIVMSG", ("#r", "x"), "a!a@h"), account="acc")
    assert event.tags_for(TAG_ACCOUNT) == {"account": "acc"}
    assert event.tags_for(0) == {}


def test_whois_says_330_for_a_logged_in_user_only():
    """RPL_WHOISACCOUNT: ``330 <asker> <nick> <account> :is logged in as``."""
    registry, _ = make()
    logged_in(registry, "teacher", "Teacher")
    joined(registry, "anon")
    asker, conn = joined(registry, "asker")
    deliver(registry.whois(asker, "teacher"))
    found = [m.params for m in conn.got if m.command == "330"]
    assert found == [("asker", "teacher", "Teacher", "is logged in as")]
    conn.got.clear()
    deliver(registry.whois(asker, "anon"))
    assert "330" not in codes(conn)


def test_whox_a_field_is_the_account_or_zero():
    """WHOX ``%na``: the account name, ``0`` for a user not logged in (the whox spec)."""
    registry, _ = make()
    logged_in(registry, "teacher", "Teacher", "#class")
    joined(registry, "anon", "#class")
    asker, conn = joined(registry, "asker")
    deliver(registry.who(asker, "#class", options="%na"))
    rows = sorted(m.params[1:] for m in conn.got if m.command == "354")
    assert rows == [("anon", "0"), ("teacher", "Teacher")]


def test_log_out_takes_the_account_off_new_events():
    """After log_out: WHOX says 0 again, new events carry no account, JOIN says ``*``."""
    registry, _ = make()
    teacher, _ = logged_in(registry, "teacher", "Teacher", "#class")
    deliver(registry.log_out(teacher))
    events = []
    registry.log.subscribe(events.append)
    registry.message(teacher, "PRIVMSG", "#class", "hello")
    registry.join(teacher, "#other")
    assert [e.account for e in events] == [None, None]
    assert events[1].extended.params[1] == "*"


# ----------------------------------------------------------------- extbans


def test_isupport_advertises_extban_account():
    """ISUPPORT ``EXTBAN=~,a``: prefix ``~``, the one type ``a``."""
    registry, _ = make()
    assert "EXTBAN=~,a" in registry.isupport()


def test_account_ban_keeps_the_account_out_under_any_nick():
    """``+b ~a:student`` refuses every user logged in as student (474), whatever the nick."""
    registry, _ = make()
    op, _ = joined(registry, "op", "#class")
    deliver(registry.mode(op, "#class", "+b", ["~a:Student"]))
    assert "~a:Student" in registry.find_channel("#class").bans
    student, conn = logged_in(registry, "student", "student")
    deliver(registry.join(student, "#class"))
    assert codes(conn) == ["474"]
    conn.got.clear()
    deliver(registry.change_nick(student, "someone_else"))
    conn.got.clear()
    deliver(registry.join(student, "#class"))
    assert codes(conn) == ["474"]
    # Not logged in, the same nick is no one's account: not banned.
    anon, conn = joined(registry, "anon")
    deliver(registry.join(anon, "#class"))
    assert "JOIN" in codes(conn)


def test_account_ban_matches_masks_and_case():
    """The account part is a mask, folded like nicks: ``~a:stud*`` bans ``Student1``."""
    registry, _ = make()
    op, _ = joined(registry, "op", "#class")
    deliver(registry.mode(op, "#class", "+b", ["~a:STUD*"]))
    student, conn = logged_in(registry, "s1", "Student1")
    deliver(registry.join(student, "#class"))
    assert codes(conn) == ["474"]
    teacher, conn = logged_in(registry, "t", "teacher")
    deliver(registry.join(teacher, "#class"))
    assert "JOIN" in codes(conn)


def test_account_ban_silences_a_member_who_logs_in():
    """A member who logs in as a banned account may not speak (404), as with any ban."""
    registry, _ = make()
    op, _ = joined(registry, "op", "#class")
    student, conn = joined(registry, "student", "#class")
    deliver(registry.mode(op, "#class", "+b", ["~a:student"]))
    registry.accounts.add(Account("student"))
    deliver(registry.log_in(student, "student"))
    conn.got.clear()
    deliver(registry.message(student, "PRIVMSG", "#class", "hi"))
    assert codes(conn) == ["404"]


def test_account_exception_and_invite_exception():
    """``+e ~a:x`` lifts a host ban for account x; ``+I ~a:x`` lets x into a +i room."""
    registry, _ = make()
    op, _ = joined(registry, "op", "#r", "#inv")
    deliver(registry.mode(op, "#r", "+be", ["*!*@*", "~a:teacher"]))
    deliver(registry.mode(op, "#inv", "+iI", ["~a:teacher"]))
    teacher, conn = logged_in(registry, "t", "teacher")
    anon, anon_conn = joined(registry, "anon")
    deliver(registry.join(teacher, "#r"))
    deliver(registry.join(teacher, "#inv"))
    assert codes(conn).count("JOIN") == 2
    deliver(registry.join(anon, "#r"))
    deliver(registry.join(anon, "#inv"))
    assert codes(anon_conn) == ["474", "473"]


@pytest.mark.parametrize("mask", ["~x:foo", "~a:", "~a", "~ab:foo", "~"])
def test_bad_extbans_are_refused_with_696(mask):
    """An unknown extban type, or ``~a:`` without a name: 696 ERR_INVALIDMODEPARAM, not set."""
    registry, _ = make()
    op, conn = joined(registry, "op", "#r")
    deliver(registry.mode(op, "#r", "+b", [mask]))
    errors = [m.params for m in conn.got if m.command == "696"]
    assert len(errors) == 1 and errors[0][1:4] == ("#r", "b", mask)
    assert registry.find_channel("#r").bans == {}


def test_an_account_ban_is_removed_in_any_case():
    """``-b ~a:STUDENT`` removes ``~a:student``, and the MODE line names it as set."""
    registry, _ = make()
    op, conn = joined(registry, "op", "#r")
    deliver(registry.mode(op, "#r", "+b", ["~a:student"]))
    conn.got.clear()
    deliver(registry.mode(op, "#r", "-b", ["~a:STUDENT"]))
    assert registry.find_channel("#r").bans == {}
    assert [m.message.params for m in conn.got if isinstance(m, Event)] == [
        ("#r", "-b", "~a:student")]


# ------------------------------------------------- front-end: who sees what


@pytest.fixture
def server():
    """An in-memory TCP server with an account, Teacher."""
    server = MemoryServer()
    server.registry.accounts.add(Account("Teacher", "hash"))
    return server


def log_in(server, client, name="Teacher"):
    deliver(server.registry.log_in(client.proto.user, name))


def test_account_caps_are_offered():
    """account-notify and account-tag are in CAP LS, with checks in test_advertised."""
    client = MemoryServer().connect()
    words = " ".join(m.params[-1] for m in client.ask("CAP LS 302") if m.command == "CAP")
    assert "account-notify" in words.split() and "account-tag" in words.split()


def test_account_notify_reaches_capable_peers_only(server):
    """ACCOUNT <name> / ACCOUNT * to peers with account-notify; nothing to the others."""
    teacher = server.user("teacher", "#class")
    notified = server.user("watcher", "#class", caps="account-notify")
    plain = server.user("plain", "#class")
    for client in (teacher, notified):
        client.take()
    log_in(server, teacher)
    got = notified.take()
    assert [(m.command, m.params, m.source.split("!")[0]) for m in got] == [
        ("ACCOUNT", ("Teacher",), "teacher")]
    assert plain.take() == []
    assert [m.command for m in teacher.take()] == ["900"]
    deliver(server.registry.log_out(teacher.proto.user))
    assert [(m.command, m.params) for m in notified.take()] == [("ACCOUNT", ("*",))]
    assert plain.take() == []


def test_account_tag_on_a_logged_in_users_messages(server):
    """account-tag: ``@account=Teacher`` on PRIVMSG; without the cap (message-tags or not), none."""
    teacher = server.user("teacher", "#class")
    tagged = server.user("tagged", "#class", caps="account-tag")
    tags_only = server.user("mt", "#class", caps="message-tags")
    plain = server.user("plain", "#class")
    log_in(server, teacher)
    for client in (tagged, tags_only, plain):
        client.take()
    teacher.send("PRIVMSG #class :hello", "PRIVMSG tagged :psst")
    got = [m for m in tagged.take() if m.command == "PRIVMSG"]
    assert [m.tags.get("account") for m in got] == ["Teacher", "Teacher"]
    assert "account" not in first(tags_only.take(), "PRIVMSG").tags
    assert first(plain.take(), "PRIVMSG").tags == {}


def test_account_tag_on_tagmsg_and_statusmsg(server):
    """Lines that are no room event (TAGMSG, ``PRIVMSG @#room``) carry the tag the same way."""
    teacher = server.user("teacher", "#class", caps="message-tags")
    both = server.user("both", caps="account-tag message-tags")
    tags_only = server.user("mt", caps="message-tags")
    plain = server.user("plain", caps="account-tag")
    for client in (both, tags_only, plain):
        client.send("JOIN #class")
    teacher.send("MODE #class +o both", "MODE #class +o mt", "MODE #class +o plain")
    log_in(server, teacher)
    for client in (both, tags_only, plain):
        client.take()
    teacher.send("@+typing=active TAGMSG #class")
    assert first(both.take(), "TAGMSG").tags.get("account") == "Teacher"
    tagmsg = first(tags_only.take(), "TAGMSG")
    assert "account" not in tagmsg.tags and tagmsg.tags["+typing"] == "active"
    teacher.send("PRIVMSG @#class :ops only")
    assert first(both.take(), "PRIVMSG").tags.get("account") == "Teacher"
    assert "account" not in first(tags_only.take(), "PRIVMSG").tags
    assert first(plain.take(), "PRIVMSG").tags == {"account": "Teacher"}


def test_extended_join_on_the_wire_names_the_account(server):
    """A capable peer sees ``JOIN #class Teacher :realname`` once the joiner is logged in."""
    ext = server.user("ext", "#class", caps="extended-join")
    teacher = server.user("teacher")
    log_in(server, teacher)
    ext.take()
    teacher.send("JOIN #class")
    assert first(ext.take(), "JOIN").params == ("#class", "Teacher", "teacher Real")


# ----------------------------------------------------------- reserved nicks

NOTICE_30 = "This nickname is registered. Identify within 30 seconds or it will be changed"


def notices(conn):
    """The (source, text) of the NOTICEs ``conn`` was handed."""
    return [(m.source, m.params[1]) for m in conn.got
            if getattr(m, "command", None) == "NOTICE"]


def reserved(**limits):
    """A registry with the account ``Teacher`` (its nick reserved) and a hand-driven clock."""
    from twistchat.core.model import Limits
    registry, clock = make(limits=Limits(**limits))
    registry.accounts.add(Account("Teacher", "hash"))
    return registry, clock


def squatter(registry, nick="teacher", *rooms):
    """A user who registered with ``nick``, its output kept (the NickServ NOTICE in it)."""
    from tests.test_registry import Conn
    conn = Conn()
    user = registry.connect(conn, "127.0.9.9")
    deliver(registry.register(user, nick, "x", "x"))
    for room in rooms:
        deliver(registry.join(user, room))
    return user, conn


def test_registering_on_a_reserved_nick_is_told_at_once_with_the_grace():
    """The NOTICE from NickServ comes with the welcome; the deadline is now + nick_grace."""
    registry, clock = reserved()
    user, conn = squatter(registry)
    assert notices(conn) == [("NickServ!NickServ@services.", NOTICE_30)]
    assert user.nick_deadline == clock.now + 30.0


def test_rename_comes_exactly_at_the_deadline_not_before():
    """``now >= deadline`` renames (Guest1): a NICK the user and its peers see, then a NOTICE."""
    registry, clock = reserved()
    user, conn = squatter(registry, "Teacher", "#class")
    _, peer = joined(registry, "peer", "#class")
    conn.got.clear()
    deadline = user.nick_deadline
    assert registry.enforce_reservations(deadline - 0.001) == []
    clock.now = deadline
    deliver(registry.enforce_reservations(deadline))
    assert user.nick == "Guest1" and user.nick_deadline is None
    nick_lines = [p.message for p in peer.got if isinstance(p, Event)]
    assert [(m.command, m.params, m.source) for m in nick_lines] == [
        ("NICK", ("Guest1",), "Teacher!x@127.0.9.9")]
    assert [getattr(p, "message", p).command for p in conn.got] == ["NICK", "NOTICE"]
    assert registry.find_user("teacher") is None and registry.find_user("guest1") is user
    assert registry.enforce_reservations(deadline + 100) == []  # done with


def test_logging_in_as_the_owner_lifts_the_deadline():
    """log_in as the account: no rename, however late; another account does not help."""
    registry, clock = reserved()
    registry.accounts.add(Account("other", "hash"))
    user, _ = squatter(registry)
    deliver(registry.log_in(user, "other"))
    assert user.nick_deadline is not None
    deliver(registry.log_in(user, "teacher"))
    assert user.nick_deadline is None
    assert registry.enforce_reservations(clock.now + 1000) == []
    assert user.nick == "teacher"


def test_another_accounts_login_is_renamed_too():
    """Logged in, but as someone else: renamed at the deadline all the same."""
    registry, clock = reserved()
    registry.accounts.add(Account("other", "hash"))
    user, _ = squatter(registry)
    deliver(registry.log_in(user, "other"))
    deliver(registry.enforce_reservations(clock.now + 30))
    assert user.nick == "Guest1"


def test_the_owner_logged_in_is_not_told_anything():
    """SASL before 001 (log_in before register): no NOTICE, no deadline."""
    from tests.test_registry import Conn
    registry, _ = reserved()
    conn = Conn()
    user = registry.connect(conn, "127.0.9.9")
    deliver(registry.log_in(user, "Teacher"))
    deliver(registry.register(user, "TEACHER", "t", "t"))
    assert notices(conn) == [] and user.nick_deadline is None


def test_changing_to_a_reserved_nick_and_away_from_it():
    """NICK to a reserved nick: told at once; NICK to a free one: the deadline is gone."""
    registry, clock = reserved()
    user, conn = joined(registry, "anon")
    deliver(registry.change_nick(user, "Teacher"))
    assert notices(conn) == [("NickServ!NickServ@services.", NOTICE_30)]
    deliver(registry.change_nick(user, "anon2"))
    assert user.nick_deadline is None
    assert registry.enforce_reservations(clock.now + 100) == []
    assert user.nick == "anon2"


def test_hopping_between_reserved_nicks_keeps_the_first_deadline():
    """Teacher -> other reserved nick -> teacher: one deadline, the NOTICE says what is left."""
    registry, clock = reserved()
    registry.accounts.add(Account("Principal", "hash"))
    user, conn = squatter(registry)
    deadline = user.nick_deadline
    clock.now += 20
    conn.got.clear()
    deliver(registry.change_nick(user, "principal"))
    assert user.nick_deadline == deadline
    assert notices(conn)[0][1] == ("This nickname is registered. Identify within 10 seconds "
                                   "or it will be changed")
    deliver(registry.enforce_reservations(deadline))
    assert user.nick == "Guest1"


def test_guest_nicks_skip_those_in_use_and_reserved():
    """Guest1 is online and Guest2 an account: the squatter becomes Guest3."""
    registry, clock = reserved()
    registry.accounts.add(Account("Guest2", "hash"))
    joined(registry, "Guest1")
    user, _ = squatter(registry)
    deliver(registry.enforce_reservations(clock.now + 30))
    assert user.nick == "Guest3"


def test_logging_out_on_ones_own_nick_starts_the_grace():
    """The nick is the account's: after log_out, the user has nick_grace to log in again."""
    registry, clock = reserved()
    user, conn = logged_in(registry, "Teacher", "Teacher")
    deliver(registry.log_out(user))
    assert notices(conn) == [("NickServ!NickServ@services.", NOTICE_30)]
    deliver(registry.enforce_reservations(clock.now + 30))
    assert user.nick == "Guest1"


def test_users_who_quit_are_forgotten():
    """A squatter who quits before the deadline: nothing to do, nothing kept."""
    registry, clock = reserved()
    user, _ = squatter(registry)
    deliver(registry.quit(user))
    assert registry.enforce_reservations(clock.now + 30) == []
    assert registry.reservations.pending == {}


def test_the_grace_is_the_limit_given():
    """Limits(nick_grace=1.0): told "1 seconds", renamed one second later."""
    registry, clock = reserved(nick_grace=1.0)
    user, conn = squatter(registry)
    assert notices(conn)[0][1] == ("This nickname is registered. Identify within 1 seconds "
                                   "or it will be changed")
    assert registry.enforce_reservations(clock.now + 0.999) == []
    deliver(registry.enforce_reservations(clock.now + 1.0))
    assert user.nick == "Guest1"


def test_the_service_timer_renames_over_the_wire():
    """--nick-grace's timer (service.reservation_timer) on a TCP client: NOTICE, then NICK."""
    from twistchat.service import RESERVATION_CHECK_INTERVAL, reservation_timer
    server = MemoryServer(registry_limits={"nick_grace": 2.0})
    server.registry.accounts.add(Account("Teacher", "hash"))
    timer = reservation_timer(server.registry, server.clock)
    timer.startService()
    client = server.connect()
    got = client.ask("NICK teacher", "USER t 0 * :T")
    notice = first(got, "NOTICE")
    assert notice.source == "NickServ!NickServ@services."
    assert notice.params == ("teacher", "This nickname is registered. Identify within 2 "
                                        "seconds or it will be changed")
    server.clock.advance(RESERVATION_CHECK_INTERVAL)
    assert [m for m in client.take() if m.command == "NICK"] == []
    server.clock.advance(RESERVATION_CHECK_INTERVAL)
    nick = first(client.take(), "NICK")
    assert nick.params == ("Guest1",) and nick.source.startswith("teacher!")
    timer.stopService()
    # Only the front-end's own sweep (the connection is still open) is left.
    assert [c for c in server.clock.getDelayedCalls() if "IRCFactory.sweep" not in repr(c)] == []


def test_nick_grace_flag_reaches_the_limits_and_refuses_zero():
    """--nick-grace=1.5 is Limits.nick_grace; 30 by default; 0 or less is refused."""
    from twisted.python.usage import UsageError

    from twistchat.core.model import Limits
    from twistchat.service import Options
    options = Options()
    options.parseOptions(["--nick-grace=1.5"])
    assert Limits(**options.limits("registry")).nick_grace == 1.5
    assert Limits().nick_grace == 30.0
    for bad in ("0", "-1"):
        with pytest.raises(UsageError):
            Options().parseOptions([f"--nick-grace={bad}"])


# ------------------------------------------------------ operators by account


def account_opers():
    """A registry whose opers file has an account entry and a (cheap) password entry."""
    from tests.test_operators import entries
    from twistchat.core.operators import load_opers
    opers = {**load_opers("teach account:Teacher  # the teacher opers by logging in\n"),
             **entries(admin="pw")}
    registry, clock = make(opers=opers)
    registry.accounts.add(Account("Teacher", "hash"))
    registry.accounts.add(Account("student", "hash"))
    return registry


def test_opers_file_account_lines():
    """``name account:NAME`` is an account entry beside hash lines; ``account:`` alone is not."""
    from tests.test_operators import CHEAP
    from twistchat.core.operators import AccountOper, load_opers
    from twistchat.core.passwords import ScryptHash, hash_password
    got = load_opers(f"admin {hash_password('pw', CHEAP)}\nteach account:Teacher\n")
    assert got["teach"] == AccountOper("Teacher") and isinstance(got["admin"], ScryptHash)
    with pytest.raises(ValueError, match="line 2: operator 'x': 'account:' needs an account"):
        load_opers("teach account:Teacher\nx account:\n")
    with pytest.raises(ValueError, match="listed twice"):
        load_opers("teach account:a\nteach account:b\n")


def test_oper_by_account_for_the_logged_in_account_only():
    """Logged in as Teacher (any case): 381 and +o, whatever password; others get 464."""
    from tests.test_commands import line
    from twistchat.core.commands import dispatch
    registry = account_opers()
    anon, anon_conn = joined(registry, "anon")
    student, student_conn = logged_in(registry, "stu", "student")
    teacher, conn = logged_in(registry, "miss", "teacher")
    deliver(dispatch(registry, anon, line("OPER", "teach", "x")))
    deliver(dispatch(registry, student, line("OPER", "teach", "x")))
    assert codes(anon_conn) == ["464"] and codes(student_conn)[:1] == ["464"]
    assert anon.oper is None and student.oper is None
    deliver(dispatch(registry, teacher, line("OPER", "teach", "anything")))
    assert codes(conn)[:2] == ["381", "MODE"] and teacher.oper == "teach"


def test_oper_by_account_still_needs_two_parameters_and_counts_failures():
    """``OPER teach`` alone: 461; failed account OPERs use up the address's attempts too."""
    from tests.test_commands import line
    from twistchat.core.commands import dispatch
    from twistchat.core.operators import OPER_FAILURES
    registry = account_opers()
    teacher, conn = logged_in(registry, "miss", "teacher")
    deliver(dispatch(registry, teacher, line("OPER", "teach")))
    assert codes(conn) == ["461"]
    anon, anon_conn = joined(registry, "anon")
    for _ in range(OPER_FAILURES):
        deliver(dispatch(registry, anon, line("OPER", "teach", "x")))
    anon_conn.got.clear()
    registry.accounts.add(Account("anon", "hash"))
    deliver(registry.log_in(anon, "anon"))
    anon_conn.got.clear()
    deliver(dispatch(registry, anon, line("OPER", "admin", "pw")))  # right, but over the limit
    assert codes(anon_conn) == ["464"] and anon.oper is None
