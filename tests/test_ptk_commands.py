"""
The client's command table (clients/ptk/commands.py): each command sends what it should,
/help lists the table, Tab completes each command's argument.
"""

from __future__ import annotations

import pytest

from clients.ptk.commands import COMMANDS, NICK, ROOM, WINDOW
from tests.test_ptk_app import joined, make_state
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent

RAW = [
    ("/whois bob", "WHOIS bob"),
    ("/list", "LIST"),
    ("/list #l*", "LIST #l*"),
    ("/away lunch time", "AWAY :lunch time"),
    ("/back", "AWAY"),
    ("/quote PRIVMSG bob :raw hi", "PRIVMSG bob :raw hi"),
    ("/kick bob", "KICK #lobby bob"),
    ("/kick bob too loud", "KICK #lobby bob :too loud"),
    ("/kick #other bob", "KICK #other bob"),
    ("/ban bob", "MODE #lobby +b bob!*@*"),
    ("/ban *!*@bad.host", "MODE #lobby +b *!*@bad.host"),
    ("/unban bob", "MODE #lobby -b bob!*@*"),
    ("/op bob carol", "MODE #lobby +oo bob carol"),
    ("/deop bob", "MODE #lobby -o bob"),
    ("/voice bob", "MODE #lobby +v bob"),
    ("/devoice bob", "MODE #lobby -v bob"),
    ("/mode", "MODE #lobby"),
    ("/mode +m", "MODE #lobby +m"),
    ("/mode #other +t", "MODE #other +t"),
    ("/mode alice +i", "MODE alice +i"),
    ("/invite bob", "INVITE bob #lobby"),
    ("/invite bob #other", "INVITE bob #other"),
]


@pytest.mark.parametrize("typed,line", RAW)
def test_commands_send_their_irc_line(typed, line):
    state, session = make_state()
    joined(state)
    state.submit(typed)
    assert session.calls == [("send_line", (line,))]


@pytest.mark.parametrize("typed", ["/kick", "/ban", "/op", "/invite", "/quote", "/unignore",
                                   "/query", "/connect", "/connect a b c"])
def test_commands_without_their_argument_say_how(typed):
    state, session = make_state()
    joined(state)
    state.submit(typed)
    assert session.calls == []
    assert state.window.lines[-1].event.kind == I.ERROR


def test_room_commands_in_the_server_window_ask_for_a_room():
    state, session = make_state()
    for typed in ("/kick bob", "/op bob", "/mode +m", "/invite bob"):
        state.submit(typed)
    assert session.calls == []
    assert all("room" in line.event.text for line in state.window.lines)


def test_help_is_the_table_that_runs_the_commands():
    state, _ = make_state()
    state.submit("/help")
    shown = [line.event.text for line in state.window.lines]
    assert len(shown) == len(COMMANDS) + 1
    for entry, text in zip(COMMANDS.values(), shown[:-1], strict=True):
        assert text.startswith(entry.usage) and entry.help in text
    for name in ("query", "close", "away", "back", "whois", "list", "quote", "clear", "ignore",
                 "unignore", "kick", "ban", "unban", "mode", "invite", "op", "voice", "me",
                 "topic", "names", "connect", "windows"):
        assert name in COMMANDS


def test_query_opens_a_window_and_me_there_is_an_action_to_the_nick():
    state, session = make_state()
    joined(state)
    state.submit("/query bob hi there")
    assert state.window.name == "bob"
    state.submit("/me waves")
    state.submit("plain")
    assert session.calls == [("say", ("bob", "hi there")), ("action", ("bob", "waves")),
                             ("say", ("bob", "plain"))]


def test_close_leaves_a_room_and_closes_a_query():
    state, session = make_state()
    session.rooms = ["#lobby"]
    joined(state)
    state.submit("/query bob")
    state.submit("/close")
    assert state.find("bob") is None
    state.switch(1)
    state.submit("/close")
    assert session.calls == [("part", ("#lobby", ""))]
    assert state.find("#lobby") is None
    state.submit("/close")
    assert "stays open" in state.window.lines[-1].event.text


def test_topic_without_text_shows_the_known_topic():
    state, session = make_state()
    joined(state)
    state.on_event(ChatEvent(I.TOPIC, "#lobby", text="all about twisted", time_ms=2))
    state.submit("/topic")
    assert state.window.lines[-1].event.text == "Topic of #lobby: all about twisted"
    assert session.calls == []
    state.submit("/topic new one")
    assert session.calls == [("topic", ("#lobby", "new one"))]


def test_ignore_hides_a_nick_until_unignore():
    state, _ = make_state()
    joined(state, "#lobby", "troll")
    state.submit("/ignore troll")
    before = len(state.window.lines)
    state.on_event(ChatEvent(I.MESSAGE, "#lobby", "troll", "noise", time_ms=3))
    assert len(state.window.lines) == before
    state.submit("/unignore troll")
    state.on_event(ChatEvent(I.MESSAGE, "#lobby", "troll", "back", time_ms=4))
    assert state.window.lines[-1].event.text == "back"


def test_clear_empties_the_window():
    state, _ = make_state()
    joined(state)
    state.submit("/clear")
    assert not state.window.lines


def test_windows_lists_unread_and_mentions():
    state, _ = make_state()
    joined(state)
    joined(state, "#dev")
    state.switch(0)
    state.on_event(ChatEvent(I.MESSAGE, "#dev", "bob", "alice: look", time_ms=5))
    state.on_event(ChatEvent(I.MESSAGE, "#dev", "bob", "more", time_ms=6))
    state.submit("/windows")
    listed = [line.event.text for line in list(state.window.lines)[-3:]]
    assert listed[2] == "3: #dev  2 unread, 1 mentions"
    assert listed[0].startswith("1: *") and "(shown)" in listed[0]


def test_connect_calls_the_program_hook():
    state, _ = make_state()
    asked = []
    state.connect = lambda host, port: asked.append((host, port))
    state.submit("/connect 127.0.0.2 6697")
    state.submit("/connect 127.0.0.3")
    assert asked == [("127.0.0.2", 6697), ("127.0.0.3", None)]


def test_tab_completes_each_commands_argument():
    state, _ = make_state()
    joined(state, "#lobby", "bob", "carol")
    state.on_event(ChatEvent(I.JOIN, "#dev", "alice", own=True, time_ms=1))
    state.switch(1)
    assert state.complete("/whois b", 8)[0] == "/whois bob "
    assert state.complete("/op c", 5)[0] == "/op carol "
    assert state.complete("/join #d", 8)[0] == "/join #dev "
    assert state.complete("/part ", 6)[0] == "/part #lobby "
    assert state.complete("/close #d", 9)[0] == "/close #dev "
    for entry in COMMANDS.values():
        assert entry.completes in ("", NICK, ROOM, WINDOW)
