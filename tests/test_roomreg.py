"""
Registered rooms in the core (twistchat.core.roomreg, issue #14): kept while empty and
across a restart, the founder's and AMODE accounts' op and voice, every change saved.
"""

from __future__ import annotations

import json

import pytest

from tests.test_registry import codes, joined, make
from twistchat.core.accounts import Account, AccountDirectory
from twistchat.core.events import Event, Gated, deliver
from twistchat.core.registry import Registry
from twistchat.core.roomreg import RegisteredRoom, RoomDirectory


def lines(conn) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """(command, source, params) of what ``conn`` was handed, then forget it."""
    out = []
    for payload in conn.got:
        message = payload.message if isinstance(payload, (Event, Gated)) else payload
        out.append((message.command, message.source, message.params))
    conn.got.clear()
    return out


def with_accounts(*names, saved=None, rooms=()):
    """A registry knowing accounts ``names``; room saves appended to ``saved``."""
    saver = None if saved is None else (lambda key, room: saved.append(
        (key, None if room is None else room.to_record())))
    registry, clock = make(accounts=AccountDirectory([Account(n, "hash") for n in names]),
                           rooms=RoomDirectory(rooms, saver))
    return registry, clock


def register(registry, user, name) -> RegisteredRoom:
    """Register ``name`` with ``user``'s account as founder (what ChanServ REGISTER does)."""
    room = RegisteredRoom(name, user.account, registry.clock())
    room.capture(registry.find_channel(name))
    registry.registered_rooms.add(room)
    return room


def teacher_in_class(registry):
    """The teacher, logged in, founder of #class (she made it, so she is op)."""
    teacher, conn = joined(registry, "teacher", "#class")
    deliver(registry.log_in(teacher, "Teacher"))
    register(registry, teacher, "#class")
    conn.got.clear()
    return teacher, conn


def test_state_survives_the_room_emptying():
    """Topic, +m, a ban: the room empties, comes back with them, and the founder is op again."""
    registry, clock = with_accounts("Teacher")
    teacher, conn = teacher_in_class(registry)
    deliver(registry.topic(teacher, "#class", "Fractions today"))
    deliver(registry.mode(teacher, "#class", "+mb", ["pest!*@*"]))
    deliver(registry.part(teacher, "#class"))
    assert registry.find_channel("#class") is None  # the room itself is gone...
    clock.now += 3600
    conn.got.clear()
    deliver(registry.join(teacher, "#CLASS"))  # ...and made again, as registered
    channel = registry.find_channel("#class")
    assert channel.name == "#class"  # spelled as registered
    assert (channel.topic, channel.moderated) == ("Fractions today", True)
    assert list(channel.bans) == ["pest!*@*"]
    got = lines(conn)
    assert got[0][0] == "JOIN"
    # Not op by being first: the server gives the founder +o, told to the room.
    assert got[1] == ("MODE", "srv", ("#class", "+o", "teacher"))
    assert ("332", "srv", ("teacher", "#class", "Fractions today")) in got
    assert channel.members[teacher] == "o"


def test_first_into_a_registered_room_is_not_op():
    """A student alone in the teacher's room gets no operator status."""
    registry, _ = with_accounts("Teacher")
    teacher, _ = teacher_in_class(registry)
    deliver(registry.part(teacher, "#class"))
    student, conn = joined(registry, "student", "#class")
    channel = registry.find_channel("#class")
    assert channel.members[student] == ""
    assert "MODE" not in [c for c, _, _ in lines(conn)]


def test_a_restart_restores_topic_modes_bans_and_founder_op():
    """Records through JSON into a fresh Registry, as the store and a restart do."""
    saved: list = []
    registry, _ = with_accounts("Teacher", saved=saved)
    teacher, _ = teacher_in_class(registry)
    deliver(registry.topic(teacher, "#class", "Fractions today"))
    deliver(registry.mode(teacher, "#class", "+mb", ["pest!*@*"]))
    setter, when = teacher.source, str(registry.find_channel("#class").topic_time)
    stored = json.loads(json.dumps(dict(saved)))  # key -> the last record saved
    assert list(stored) == ["#class"]

    rooms = RoomDirectory(RegisteredRoom.from_record(r) for r in stored.values())
    fresh = Registry(server_name="srv", accounts=AccountDirectory([Account("Teacher")]),
                     rooms=rooms)
    pest, pest_conn = joined(fresh, "pest")
    assert codes(fresh.join(pest, "#class")) == ["474"]  # the ban holds for the first joiner
    assert fresh.find_channel("#class") is None and fresh.room_count() == 0
    teacher, conn = joined(fresh, "teacher")
    deliver(fresh.log_in(teacher, "teacher"))
    conn.got.clear()
    deliver(fresh.join(teacher, "#class"))
    got = lines(conn)
    assert ("MODE", "srv", ("#class", "+o", "teacher")) in got
    assert ("332", "srv", ("teacher", "#class", "Fractions today")) in got
    assert ("333", "srv", ("teacher", "#class", setter, when)) in got
    deliver(fresh.mode(teacher, "#class"))
    deliver(fresh.mode(teacher, "#class", "b"))
    got = lines(conn)
    assert ("324", "srv", ("teacher", "#class", "+mnt")) in got
    assert [p[2] for c, _, p in got if c == "367"] == ["pest!*@*"]


def test_logging_in_in_the_room_gives_the_accounts_modes():
    """One logs in while in a registered room: the server gives its AMODE there."""
    registry, _ = with_accounts("Teacher", "Helper")
    teacher, conn = teacher_in_class(registry)
    room = registry.registered_rooms.find("#class")
    room.amodes["helper"] = "v"
    helper, helper_conn = joined(registry, "helper", "#class", "#other")
    assert registry.find_channel("#class").members[helper] == ""  # not logged in yet
    conn.got.clear()
    helper_conn.got.clear()
    deliver(registry.log_in(helper, "Helper"))
    assert lines(conn) == [("ACCOUNT", helper.source, ("Helper",)),  # account-notify
                           ("MODE", "srv", ("#class", "+v", "helper"))]
    assert ("MODE", "srv", ("#class", "+v", "helper")) in lines(helper_conn)
    assert registry.find_channel("#class").members[helper] == "v"
    assert registry.find_channel("#other").members[helper] == "o"  # unregistered: as it was


def test_amode_accounts_get_their_mode_on_join():
    """AMODE +o and +v accounts get theirs on JOIN; others nothing."""
    registry, _ = with_accounts("Teacher", "Aide", "Helper", "Student")
    teacher_in_class(registry)
    room = registry.registered_rooms.find("#class")
    room.amodes.update({"aide": "o", "helper": "v"})
    channel = registry.find_channel("#class")
    for nick in ("aide", "helper", "student"):
        user, _ = joined(registry, nick)
        deliver(registry.log_in(user, nick))
        deliver(registry.join(user, "#class"))
        assert channel.members[user] == {"aide": "o", "helper": "v", "student": ""}[nick]


def test_the_founder_passes_ban_invite_only_key_and_limit():
    """Ergo's rule: a persistent mode lets its holder past +b +i +k +l."""
    registry, _ = with_accounts("Teacher")
    teacher, _ = teacher_in_class(registry)
    deliver(registry.mode(teacher, "#class", "+iklb", ["sesame", "1", "*!*@*"]))
    deliver(registry.part(teacher, "#class"))
    student, _ = joined(registry, "student")
    assert codes(registry.join(student, "#class")) == ["474"]
    assert codes(registry.join(teacher, "#class"))[:2] == ["JOIN", "MODE"]
    assert codes(registry.join(student, "#class", "sesame")) == ["474"]


def test_a_banned_account_cannot_rejoin():
    """Banned and kicked, the student cannot come back, not even once the room emptied."""
    registry, _ = with_accounts("Teacher", "Student")
    teacher, _ = teacher_in_class(registry)
    student, _ = joined(registry, "student", "#class")
    deliver(registry.log_in(student, "Student"))
    deliver(registry.mode(teacher, "#class", "+b", ["student!*@*"]))
    deliver(registry.kick(teacher, "#class", "student"))
    assert codes(registry.join(student, "#class")) == ["474"]
    deliver(registry.part(teacher, "#class"))
    assert codes(registry.join(student, "#class")) == ["474"]
    assert registry.room_count() == 0


def test_every_change_of_a_registered_room_is_saved():
    """Topic, a flag, a key, a ban and its removal: each reaches the saver as it now is."""
    saved: list = []
    registry, _ = with_accounts("Teacher", saved=saved)
    teacher, _ = teacher_in_class(registry)
    saved.clear()
    deliver(registry.topic(teacher, "#class", "Algebra"))
    deliver(registry.mode(teacher, "#class", "+mk", ["sesame"]))
    deliver(registry.mode(teacher, "#class", "+b", ["pest"]))
    deliver(registry.mode(teacher, "#class", "-b", ["pest"]))
    assert [key for key, _ in saved] == ["#class"] * 4
    assert saved[0][1]["topic"] == "Algebra"
    assert (saved[1][1]["flags"], saved[1][1]["password"]) == ("mnt", "sesame")
    assert [m for m, _, _ in saved[2][1]["bans"]] == ["pest!*@*"]
    assert saved[3][1]["bans"] == []
    deliver(registry.mode(teacher, "#class", "+m"))  # nothing changes: nothing saved
    assert len(saved) == 4


def test_unregistered_rooms_behave_as_before():
    """No registration: first joiner op with no MODE, empty room forgets, nothing saved."""
    saved: list = []
    registry, _ = with_accounts("Teacher", saved=saved)
    teacher, conn = joined(registry, "teacher")
    deliver(registry.log_in(teacher, "Teacher"))
    conn.got.clear()
    deliver(registry.join(teacher, "#free"))
    assert "MODE" not in [c for c, _, _ in lines(conn)]
    assert registry.find_channel("#free").members[teacher] == "o"
    deliver(registry.topic(teacher, "#free", "hello"))
    deliver(registry.mode(teacher, "#free", "+mb", ["pest"]))
    deliver(registry.part(teacher, "#free"))
    deliver(registry.join(teacher, "#free"))
    channel = registry.find_channel("#free")
    assert (channel.topic, channel.moderated, channel.bans) == ("", False, {})
    assert saved == []


def test_records_round_trip_and_drop_what_could_not_have_been_saved():
    """to_record/from_record are inverses; unknown AMODEs, flags and a bad limit are dropped."""
    room = RegisteredRoom("#Class", "Teacher", 5.0, {"aide": "o"}, 7, "t", "a!b@c", 9, "imt",
                          "sesame", 30, {"x!*@*": ("a!b@c", 3)}, {}, {"y!*@*": ("a!b@c", 4)})
    record = json.loads(json.dumps(room.to_record()))
    assert RegisteredRoom.from_record(record) == room
    record.update(amodes={"Aide": "o", "boss": "q"}, flags="mzq", limit=0)
    again = RegisteredRoom.from_record(record)
    assert (again.amodes, again.flags, again.limit) == ({"aide": "o"}, "m", None)
    assert again.key == "#class"


def test_directory_finds_case_insensitively_and_saves_each_change():
    """add, changed, remove reach the saver; a second registration is refused."""
    saved = []
    directory = RoomDirectory(saver=lambda key, room: saved.append((key, room)))
    room = RegisteredRoom("#Class", "Teacher")
    directory.add(room)
    with pytest.raises(ValueError):
        directory.add(RegisteredRoom("#CLASS", "Other"))
    assert directory.find("#class") is room and len(directory) == 1
    assert directory.founded_by("teacher") == [room]
    directory.changed(room)
    assert directory.remove("#CLASS") is room and directory.remove("#class") is None
    assert saved == [("#class", room), ("#class", room), ("#class", None)]


def test_a_dropped_account_leaves_no_room_to_whoever_takes_its_name():
    """forget_account: the rooms it founded are unregistered, its AMODEs elsewhere removed."""
    saved = []
    directory = RoomDirectory([RegisteredRoom("#a", "Teacher"),
                               RegisteredRoom("#b", "Other", amodes={"teacher": "o"})],
                              lambda key, room: saved.append((key, room and dict(room.amodes))))
    assert [room.name for room in directory.forget_account("TEACHER")] == ["#a"]
    assert [room.name for room in directory] == ["#b"]
    assert directory.find("#b").amodes == {}
    assert saved == [("#a", None), ("#b", {})]
