"""
ChanServ (twistchat.services.chanserv, issue #14): its commands straight on a registry,
each permission refused where it should be.
"""

from __future__ import annotations

import pytest

from tests.test_registry import joined, make
from tests.test_roomreg import lines
from twistchat.core.accounts import Account, AccountDirectory
from twistchat.core.events import deliver
from twistchat.core.roomreg import MAX_AMODES, MAX_ROOMS_PER_ACCOUNT, RegisteredRoom
from twistchat.services import chanserv
from twistchat.services.chanserv import SOURCE


def setup(*names):
    """A registry knowing accounts ``names``."""
    directory = AccountDirectory([Account(n, "hash") for n in names])
    registry, clock = make(accounts=directory)
    return registry, clock


def user(registry, nick, *rooms, account=None):
    """``nick`` in ``rooms``, logged in as ``account`` (if given); its connection cleared."""
    person, conn = joined(registry, nick, *rooms)
    if account is not None:
        deliver(registry.log_in(person, account))
    conn.got.clear()
    return person, conn


def cs(registry, person, text):
    """Send ``text`` to ChanServ as ``person``; deliver the answer."""
    deliver(chanserv.handle(registry, person, text))


def said(conn) -> list[str]:
    """The texts of ChanServ's NOTICEs to ``conn`` (the rest dropped); forgotten after."""
    return [params[1] for command, source, params in lines(conn)
            if command == "NOTICE" and source == SOURCE]


def founded():
    """#class, registered by the teacher (its op); a student in it; the aide outside."""
    registry, clock = setup("Teacher", "Aide", "Student")
    teacher, tconn = user(registry, "teacher", "#class", account="Teacher")
    student, sconn = user(registry, "student", "#class", account="Student")
    cs(registry, teacher, "REGISTER #class")
    assert said(tconn) == ["#class is now registered to your account Teacher."]
    sconn.got.clear()
    return registry, clock, (teacher, tconn), (student, sconn)


def test_register_makes_the_user_founder_and_keeps_the_room_as_it_was():
    """REGISTER: founder's account, the state at registration kept; it comes back after empty."""
    registry, _ = setup("Teacher")
    teacher, conn = user(registry, "teacher", "#class", account="Teacher")
    deliver(registry.topic(teacher, "#class", "Welcome"))
    cs(registry, teacher, "register #Class")
    room = registry.registered_rooms.find("#class")
    assert (room.founder, room.topic) == ("Teacher", "Welcome")
    deliver(registry.part(teacher, "#class"))
    deliver(registry.join(teacher, "#class"))
    assert registry.find_channel("#class").topic == "Welcome"


@pytest.mark.parametrize(("case", "expected"), [
    ("not logged in", "You must be logged in to an account to do that."),
    ("not in the room", "You must be in #class to register it."),
    ("not an operator", "You must be an operator of #class to register it."),
    ("registered already", "#class is already registered (founder Teacher)."),
    ("no room given", "Syntax: REGISTER #room"),
    ("bad room name", "class is not a valid room name."),
])
def test_register_is_refused(case, expected):
    """REGISTER needs an account, the room, operator status, and a room not yet registered."""
    registry, _ = setup("Teacher", "Student")
    teacher, _ = user(registry, "teacher", "#class", account="Teacher")
    if case == "registered already":
        cs(registry, teacher, "REGISTER #class")
    student, conn = user(registry, "student", *(() if case == "not in the room" else ("#class",)),
                         account=None if case == "not logged in" else "Student")
    if case == "registered already":
        deliver(registry.mode(teacher, "#class", "+o", ["student"]))
        conn.got.clear()
    text = {"no room given": "REGISTER", "bad room name": "REGISTER class"}.get(
        case, "REGISTER #class")
    cs(registry, student, text)
    assert said(conn) == [expected]
    assert [r.founder for r in registry.registered_rooms] == (
        ["Teacher"] if case == "registered already" else [])


def test_an_account_registers_at_most_max_rooms():
    """MAX_ROOMS_PER_ACCOUNT rooms are fine; one more is refused."""
    registry, _ = setup("Teacher")
    rooms = [f"#r{n}" for n in range(MAX_ROOMS_PER_ACCOUNT + 1)]
    teacher, conn = user(registry, "teacher", *rooms[:MAX_ROOMS_PER_ACCOUNT], account="Teacher")
    for room in rooms[:MAX_ROOMS_PER_ACCOUNT]:
        cs(registry, teacher, f"REGISTER {room}")
    assert len(registry.registered_rooms) == MAX_ROOMS_PER_ACCOUNT
    deliver(registry.part(teacher, rooms[0]))
    deliver(registry.join(teacher, rooms[-1]))
    conn.got.clear()
    cs(registry, teacher, f"REGISTER {rooms[-1]}")
    assert said(conn) == [f"An account may register at most {MAX_ROOMS_PER_ACCOUNT} rooms."]


def test_op_and_deop_by_the_founder_are_shown_as_chanserv_modes():
    """OP/DEOP/VOICE/DEVOICE: a MODE from ChanServ to the room."""
    registry, _, (teacher, tconn), (student, sconn) = founded()
    cs(registry, teacher, "OP #class student")
    assert lines(sconn) == [("MODE", SOURCE, ("#class", "+o", "student"))]
    cs(registry, teacher, "DEOP #class student")
    cs(registry, teacher, "VOICE #class student")
    assert lines(sconn) == [("MODE", SOURCE, ("#class", "-o", "student")),
                            ("MODE", SOURCE, ("#class", "+v", "student"))]
    cs(registry, teacher, "VOICE #class student")
    tconn.got.clear()
    cs(registry, teacher, "DEOP #class")  # herself
    assert ("MODE", SOURCE, ("#class", "-o", "teacher")) in lines(tconn)
    cs(registry, teacher, "OP #class")  # and back: the founder's access is hers
    assert registry.find_channel("#class").members[teacher] == "o"


@pytest.mark.parametrize(("who", "text", "expected"), [
    ("student", "OP #class", "You do not have access to OP in #class."),
    ("student", "VOICE #class", "You do not have access to VOICE in #class."),
    ("student", "DEVOICE #class teacher", "You do not have access to DEVOICE in #class."),
    ("outsider", "OP #class", "You must be logged in to an account to do that."),
    ("teacher", "OP #class nobody", "No such nick nobody."),
    ("teacher", "OP #class outsider", "outsider is not in #class."),
    ("teacher", "OP #class teacher", "teacher already has +o in #class."),
    ("teacher", "OP #free", "#free is not registered."),
])
def test_op_is_refused(who, text, expected):
    """Access o (founder, AMODE +o) to change others; the target must be in the room."""
    registry, _, (teacher, tconn), (student, sconn) = founded()
    outsider, oconn = user(registry, "outsider", "#free")
    person, conn = {"teacher": (teacher, tconn), "student": (student, sconn),
                    "outsider": (outsider, oconn)}[who]
    conn.got.clear()
    cs(registry, person, text)
    assert lines(conn) == [("NOTICE", SOURCE, (person.nick, expected))]


def test_voice_access_may_voice_itself_only():
    """An AMODE +v account may VOICE itself, not OP itself nor voice others."""
    registry, _, (teacher, _), (student, sconn) = founded()
    cs(registry, teacher, "AMODE #class +v Student")
    deliver(registry.mode(teacher, "#class", "-v", ["student"]))
    sconn.got.clear()
    cs(registry, student, "VOICE #class")
    assert lines(sconn) == [("MODE", SOURCE, ("#class", "+v", "student"))]
    cs(registry, student, "OP #class")
    cs(registry, student, "VOICE #class teacher")
    assert said(sconn) == ["You do not have access to OP in #class.",
                           "You do not have access to VOICE in #class."]


def test_amode_gives_now_and_on_every_join():
    """AMODE +o: the member logged in as the account gets +o now, and again when it rejoins."""
    registry, _, (teacher, tconn), (student, sconn) = founded()
    cs(registry, teacher, "AMODE #class +o student")
    got = lines(tconn)
    assert ("NOTICE", SOURCE, ("teacher", "AMODE +o Student in #class.")) in got
    assert ("MODE", SOURCE, ("#class", "+o", "student")) in got
    deliver(registry.part(student, "#class"))
    deliver(registry.join(student, "#class"))
    assert registry.find_channel("#class").members[student] == "o"
    cs(registry, teacher, "AMODE #class +v Student")  # o becomes v: -o+v at once
    assert ("MODE", SOURCE, ("#class", "-o+v", "student", "student")) in lines(sconn)
    tconn.got.clear()
    cs(registry, teacher, "AMODE #class")
    assert said(tconn) == ["AMODE list of #class; founder: Teacher", "+v Student",
                           f"End of AMODE list (1 of at most {MAX_AMODES})."]
    cs(registry, teacher, "AMODE #class -v Student")
    assert ("MODE", SOURCE, ("#class", "-v", "student")) in lines(sconn)
    assert registry.registered_rooms.find("#class").amodes == {}


@pytest.mark.parametrize(("who", "text", "expected"), [
    ("student", "AMODE #class +o Student", "Only the founder of #class may change its AMODE list."),
    ("student", "AMODE #class", "You do not have access to see the AMODE list in #class."),
    ("teacher", "AMODE #class +q Student", "The mode must be +o, -o, +v or -v."),
    ("teacher", "AMODE #class +o ghost", "No such account ghost."),
    ("teacher", "AMODE #class +o teacher", "Teacher founded #class: always its operator."),
    ("teacher", "AMODE #class -o Student", "Student has no +o in #class."),
    ("teacher", "AMODE #class +o", "Syntax: AMODE #room [+o|-o|+v|-v account]"),
])
def test_amode_is_refused(who, text, expected):
    """Changes are the founder's; the mode, the account must make sense."""
    registry, _, teacher, student = founded()
    person, conn = teacher if who == "teacher" else student
    cs(registry, person, text)
    assert said(conn) == [expected]
    assert registry.registered_rooms.find("#class").amodes == {}


def test_the_amode_list_holds_at_most_max_amodes():
    """MAX_AMODES accounts fit; one more is refused; changing one held still works."""
    names = [f"Aide{n}" for n in range(MAX_AMODES + 1)]
    registry, _ = setup("Teacher", *names)
    teacher, conn = user(registry, "teacher", "#class", account="Teacher")
    cs(registry, teacher, "REGISTER #class")
    for name in names[:MAX_AMODES]:
        cs(registry, teacher, f"AMODE #class +v {name}")
    conn.got.clear()
    cs(registry, teacher, f"AMODE #class +v {names[-1]}")
    cs(registry, teacher, f"AMODE #class +o {names[0]}")
    assert said(conn) == [f"The AMODE list of #class is full ({MAX_AMODES}).",
                          f"AMODE +o {names[0]} in #class."]


def test_topic_sets_a_live_room_and_an_empty_one():
    """TOPIC: from ChanServ to the room; on an empty room, kept for when it is made again."""
    registry, clock, (teacher, tconn), (student, sconn) = founded()
    cs(registry, teacher, "TOPIC #class Bring a calculator")
    assert lines(sconn) == [("TOPIC", SOURCE, ("#class", "Bring a calculator"))]
    assert registry.find_channel("#class").topic_by == teacher.source
    assert said(tconn) == ["Topic of #class set: Bring a calculator"]
    cs(registry, student, "TOPIC #class no homework")
    assert said(sconn) == ["You do not have access to set the topic in #class."]
    deliver(registry.part(student, "#class"))
    deliver(registry.part(teacher, "#class"))
    clock.now += 60
    cs(registry, teacher, "TOPIC #class Test on Friday")
    assert said(tconn) == ["Topic of #class set: Test on Friday"]
    deliver(registry.join(student, "#class"))
    channel = registry.find_channel("#class")
    assert (channel.topic, channel.topic_time) == ("Test on Friday", int(clock.now))


def test_info_tells_founder_and_access():
    """INFO: anyone may ask; an unregistered room says so."""
    registry, _, _, (student, sconn) = founded()
    cs(registry, student, "INFO #class")
    cs(registry, student, "INFO #free")
    assert said(sconn) == ["#class is registered.", "Founder: Teacher",
                           "Registered: 2027-01-15 08:00:00 UTC", "AMODE entries: 0",
                           "Your access: none", "#free is not registered."]


def test_drop_is_the_founders_and_leaves_the_room_unregistered():
    """DROP: refused to others; after it, the room is forgotten when it empties."""
    registry, _, (teacher, tconn), (student, sconn) = founded()
    cs(registry, student, "DROP #class")
    assert said(sconn) == ["Only the founder of #class may drop it."]
    deliver(registry.topic(teacher, "#class", "kept?"))
    cs(registry, teacher, "DROP #class")
    assert said(tconn) == ["#class is no longer registered."]
    assert registry.registered_rooms.find("#class") is None
    deliver(registry.part(student, "#class"))
    deliver(registry.part(teacher, "#class"))
    deliver(registry.join(student, "#class"))
    channel = registry.find_channel("#class")
    assert (channel.topic, channel.members[student]) == ("", "o")  # as any new room


def test_help_and_unknown_commands():
    """HELP lists every command; an unknown one points to HELP; empty text is HELP."""
    registry, _ = setup()
    person, conn = user(registry, "someone")
    cs(registry, person, "help")
    got = said(conn)
    for verb in ("REGISTER", "OP", "DEOP", "VOICE", "DEVOICE", "AMODE", "TOPIC", "INFO",
                 "DROP", "HELP"):
        assert any(line.startswith(verb + " ") for line in got), verb
    cs(registry, person, "")
    assert said(conn) == got
    cs(registry, person, "frobnicate #x")
    assert said(conn) == ["Unknown command frobnicate.  /msg ChanServ HELP lists them."]


def test_a_registered_room_made_by_chanserv_survives_a_restart():
    """REGISTER + AMODE through records into a fresh registry: the aide is op on joining."""
    registry, _, (teacher, _), (student, _) = founded()
    cs(registry, teacher, "AMODE #class +o Student")
    records = [room.to_record() for room in registry.registered_rooms]
    fresh, _ = make(accounts=AccountDirectory([Account("Teacher"), Account("Student")]))
    for record in records:
        fresh.registered_rooms.add(RegisteredRoom.from_record(record))
    student, conn = user(fresh, "student", account="Student")
    deliver(fresh.join(student, "#class"))
    assert ("MODE", "srv", ("#class", "+o", "student")) in lines(conn)
