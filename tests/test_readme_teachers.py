"""
The README's "For teachers and moderators" commands, run as written against a real server.

Each indented command line of that section is turned into the raw line a
client sends (``/msg X text`` → ``PRIVMSG X :text``, ``/quote LINE`` → LINE,
``/join`` → JOIN, ``/mode`` → MODE) and sent by the teacher over a real
socket; none may be answered with an error numeric, a FAIL, or a service's
refusal, so the walkthrough cannot drift from what the server does (#14).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.probe import Probe, codes
from tests.serverproc import ServerProcess

README = Path(__file__).resolve().parent.parent / "README.md"
PASSWORD = "correct-horse"  # the section's example password


def section_commands() -> list[str]:
    """The indented ``/command`` lines of the section, comments cut off."""
    text = README.read_text().split("### For teachers and moderators", 1)[1]
    text = text.split("\n### ", 1)[0]
    lines = [line.strip().split("  #", 1)[0].strip() for line in text.splitlines()
             if line.startswith("    /")]
    return lines


def raw(command: str) -> str:
    """What an IRC client sends for a typed ``/command``."""
    verb, _, rest = command[1:].partition(" ")
    if verb == "quote":
        return rest
    if verb == "msg":
        target, _, text = rest.partition(" ")
        return f"PRIVMSG {target} :{text}"
    return f"{verb.upper()} {rest}"


def refusals(replies) -> list[str]:
    """Error numerics, FAILs, and service notices that refuse."""
    bad = []
    for m in replies:
        if m.command.isdigit() and m.command[0] in "45":
            bad.append(str(m))
        elif m.command == "FAIL":
            bad.append(str(m))
        elif m.command == "NOTICE" and m.source.endswith("@services.") and any(
                word in m.params[-1] for word in ("Syntax", "not ", "No such", "must", "cannot")):
            bad.append(str(m))
    return bad


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = ServerProcess(tmp_path_factory.mktemp("teachers"),
                            f"--db={tmp_path_factory.mktemp('db') / 'chat.sqlite3'}",
                            "--register-burst=10").start()  # four accounts, one address
    yield started
    started.stop()


def test_the_walkthrough_runs_as_written(server):
    """Both ways of making an account work; the room commands are all accepted, and hold."""
    commands = section_commands()
    making = [c for c in commands if "REGISTER" in c and "ChanServ" not in c]
    room = [c for c in commands if c not in making]
    assert len(making) == 2 and any(c.startswith("/msg ChanServ REGISTER") for c in room)
    for name in ("student7", "student1"):  # the accounts the section bans and voices
        student = Probe(server, nick=name)
        assert "900" in codes(student.ask(f"REGISTER * * {PASSWORD}-{name}"))
        student.close()
    colleague = Probe(server, nick="colleague")  # the classic way, for a second account
    assert "900" in codes(colleague.ask(raw(making[1])))
    teacher = Probe(server, nick="teacher")
    assert "900" in codes(teacher.ask(raw(making[0])))
    for command in room:
        replies = teacher.ask(raw(command))
        assert not refusals(replies), (command, refusals(replies))
    info = teacher.ask("PRIVMSG ChanServ :INFO #class")
    assert "Founder: teacher" in [m.params[-1] for m in info if m.command == "NOTICE"]
    banned = Probe(server, nick="other7")  # student7's account under another nick
    banned.ask(f"PRIVMSG NickServ :IDENTIFY student7 {PASSWORD}-student7")
    assert "474" in codes(banned.ask("JOIN #class"))
    voiced = Probe(server, nick="student1")
    voiced.ask(f"PRIVMSG NickServ :IDENTIFY {PASSWORD}-student1")
    got = voiced.ask("JOIN #class")
    assert any(m.command == "MODE" and m.params[1:] == ("+v", "student1") for m in got), got
