"""
End to end: channel commands with several targets, and the list numerics as written on the wire.

One real ``twistd -n chat`` on loopback for the module (issue #13).  ``KICK #c a,b``
and ``NAMES #a,#b`` take comma lists (the command table splits them); the raw
lines of 348/346 and of NAMES for a secret room are checked as the spec writes
them (modern.ircdocs.horse).
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.serverproc import LineClient, ServerProcess
from twistchat.wire import Message, parse

_rooms = (f"#e2e{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = ServerProcess(tmp_path_factory.mktemp("chanmodes"), "--db=:memory:").start()
    yield started
    started.stop()


class Client:
    """A registered real-socket client; ``ask`` reads every line up to the PONG of a mark."""

    def __init__(self, server: ServerProcess, nick: str) -> None:
        self.nick = nick
        self.line = LineClient(server.host, server.port)
        self.marks = itertools.count()
        self.line.register(nick)
        self.ask()  # the rest of the welcome burst

    def ask(self, *lines: str) -> list[str]:
        mark = f"m{next(self.marks)}"
        self.line.send(*lines, f"PING {mark}")
        got = []
        deadline = time.monotonic() + 10
        while True:
            raw = self.line.read_line(deadline)
            if parse(raw.encode()).command == "PONG" and raw.endswith(mark):
                return got
            got.append(raw)

    def messages(self, *lines: str) -> list[Message]:
        return [parse(raw.encode()) for raw in self.ask(*lines)]


def unsourced(raw: str) -> str:
    """A raw line without its ``:server`` source."""
    return raw.split(" ", 1)[1]


@pytest.fixture
def clients(server):
    made: list[Client] = []

    def make(*nicks: str) -> list[Client]:
        new = [Client(server, nick) for nick in nicks]
        made.extend(new)
        return new

    yield make
    for client in made:
        client.line.close()


def test_kick_takes_a_comma_list_of_nicks(clients):
    """KICK #c a,b,nosuch: one KICK per member, seen by all; 401 for the unknown nick."""
    op, amy, ben = clients("kop", "kamy", "kben")
    room = next(_rooms)
    for client in (op, amy, ben):
        client.ask(f"JOIN {room}")
    op.ask()
    got = op.messages(f"KICK {room} kamy,kben,nosuch :out")
    kicks = [m.params for m in got if m.command == "KICK"]
    assert kicks == [(room, "kamy", "out"), (room, "kben", "out")]
    assert [m.params[1] for m in got if m.command == "401"] == ["nosuch"]
    assert [m.params[1] for m in ben.messages() if m.command == "KICK"] == ["kamy", "kben"]
    names = next(m for m in op.messages(f"NAMES {room}") if m.command == "353")
    assert names.params[-1] == "@kop"


def test_names_takes_a_comma_list_of_rooms(clients):
    """NAMES #a,#b: 353 and 366 for each room, in the order named."""
    amy, ben = clients("namy", "nben")
    first, second = next(_rooms), next(_rooms)
    amy.ask(f"JOIN {first}")
    ben.ask(f"JOIN {second}")
    got = [(m.command, m.params[2] if m.command == "353" else m.params[1], m.params[-1])
           for m in ben.messages(f"NAMES {first},{second}")]
    assert got == [("353", first, "@namy"), ("366", first, "End of /NAMES list"),
                   ("353", second, "@nben"), ("366", second, "End of /NAMES list")]


def test_names_of_a_secret_room_is_at_for_members_and_empty_for_others(clients):
    """+s: ``353 nick @ #room`` to a member; NAMES #open,#secret to an outsider skips it."""
    op, outsider = clients("sop", "sout")
    secret, open_room = next(_rooms), next(_rooms)
    op.ask(f"JOIN {secret}", f"JOIN {open_room}", f"MODE {secret} +s")
    (line,) = [unsourced(raw) for raw in op.ask(f"NAMES {secret}") if " 353 " in raw]
    assert line == f"353 sop @ {secret} :@sop"
    got = outsider.messages(f"NAMES {open_room},{secret}")
    assert [(m.command, m.params[-2]) for m in got] == \
        [("353", open_room), ("366", open_room), ("366", secret)]


def test_exception_and_invite_lists_on_the_wire(clients):
    """348 and 346: ``<channel> <mask> <set by> <when>``, no ':' before the mask; then 349/347."""
    (op,) = clients("lop")
    room = next(_rooms)
    op.ask(f"JOIN {room}", f"MODE {room} +eI amy *!*@10.0.0.*")
    for letter, entry, end in (("e", "348", "349"), ("I", "346", "347")):
        got = op.ask(f"MODE {room} {letter}")
        assert len(got) == 2
        head, _, when = unsourced(got[0]).rpartition(" ")
        mask = "amy!*@*" if letter == "e" else "*!*@10.0.0.*"
        assert head == f"{entry} lop {room} {mask} lop!lop@127.0.0.1"
        assert when.isdigit()
        assert unsourced(got[1]).startswith(f"{end} lop {room} :End of channel ")
