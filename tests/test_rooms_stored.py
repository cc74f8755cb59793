"""
Registered rooms and read markers reach the history file and come back (issue #14).

makeService on a real SQLite file: a room registered through ChanServ and a
read marker set with MARKREAD are in the file after a clean stop, and a second
service on the same file (a restart) has them.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from tests.test_registry import Conn
from twistchat.core.accounts import Account
from twistchat.core.events import deliver
from twistchat.service import Options, makeService
from twistchat.services import chanserv


def make(db: str):
    options = Options()
    options.parseOptions(["--proto=tcp", f"--db={db}"])
    return makeService(options, reactor=reactor)


def teacher_in(registry, room):
    """A logged-in operator of ``room`` (its first member), as ChanServ REGISTER needs."""
    user = registry.connect(Conn(), "127.0.0.1")
    deliver(registry.register(user, "teacher", "teacher", "Teacher"))
    deliver(registry.join(user, room))
    deliver(registry.log_in(user, "teacher"))
    return user


@pytest_twisted.ensureDeferred
async def test_a_registered_room_and_a_read_marker_survive_a_restart(tmp_path):
    db = str(tmp_path / "chat.sqlite3")
    top = make(db)
    try:
        registry = top.registry
        registry.accounts.add(Account("teacher", "", "", 1.0))
        teacher = teacher_in(registry, "#class")
        deliver(chanserv.handle(registry, teacher, "REGISTER #class"))
        deliver(registry.topic(teacher, "#class", "Fractions today"))
        deliver(registry.mode(teacher, "#class", "+mb", ("*!*@127.0.0.7",)))
        registry.read_markers.advance("teacher", "#class", 1_700_000_000_000)
    finally:
        await top.store.stop()
    again = make(db)
    try:
        room = again.registry.registered_rooms.find("#class")
        assert room is not None and room.founder == "teacher"
        assert room.topic == "Fractions today" and "m" in room.flags
        assert list(room.bans) == ["*!*@127.0.0.7"]
        assert again.registry.read_markers.get("teacher", "#CLASS") == 1_700_000_000_000
    finally:
        await again.store.stop()
