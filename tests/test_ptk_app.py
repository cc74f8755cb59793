"""
The terminal client's logic and key bindings (clients/ptk/app.py), with
prompt_toolkit's pipe input and DummyOutput: no terminal, no network.

A recording fake session stands in for IChatSession; ``net`` calls it
directly (the real program goes through reactor.callFromThread).
"""

from __future__ import annotations

import threading

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from clients.ptk.__main__ import parse_args, port_taken
from clients.ptk.app import ChatState, build_app
from clients.ptk.reactor_thread import ReactorThread, UIBridge
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent
from twistchat.wire import parse

ENTER, CTRL_X, CTRL_C, TAB = "\r", "\x18", "\x03", "\t"
UP, DOWN, PAGE_UP, PAGE_DOWN = "\x1b[A", "\x1b[B", "\x1b[5~", "\x1b[6~"
CTRL_N, CTRL_P = "\x0e", "\x10"


class FakeSession:
    """Records every call as (method, args), as magic-wormhole's Dummy does."""

    transport_name = "tcp"

    def __init__(self, nick: str = "alice") -> None:
        self.nick = nick
        self.lag = 0.012
        self.state = I.REGISTERED
        self.rooms = []
        self.calls = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args):
            self.calls.append((name, args))

        return record


def direct(fn, *args):
    fn(*args)


def make_state(**kwargs):
    session = FakeSession()
    state = ChatState(session, direct, label="127.0.0.1:6667", autojoin=["#lobby"], **kwargs)
    return state, session


def joined(state, room="#lobby", *others):
    """The session reports our JOIN and the room's names."""
    state.on_event(ChatEvent(I.JOIN, room, "alice", own=True, time_ms=1))
    state.on_event(ChatEvent(I.NAMES, room, names=("@alice",) + others, time_ms=1))


def drive(state, *chunks: str, quit: bool = True):
    """
    Run the application on ``chunks`` of keys, then Ctrl-X; return what run() returned.

    Each chunk waits for the screen to be drawn after the one before, then
    30 ms more, as typing does.  The wait matters: after Enter the input
    line's history is loaded again only when the line is next drawn (a
    background task of prompt_toolkit's Buffer), so an Up arriving before
    that redraw finds no history.  A fixed sleep alone lost that race under
    CPU load (test_input_history_with_up_and_down).
    """
    import time

    with create_pipe_input() as pipe:
        app = build_app(state, input=pipe, output=DummyOutput())
        keys = list(chunks) + ([CTRL_X] if quit else [])

        def drawn_since(count: int, timeout: float = 2.0) -> None:
            deadline = time.monotonic() + timeout
            while app.render_counter <= count and time.monotonic() < deadline:
                time.sleep(0.005)

        def typist():
            for index, chunk in enumerate(keys):
                before = app.render_counter
                pipe.send_text(chunk)
                if index + 1 < len(keys):
                    drawn_since(before)
                    time.sleep(0.03)

        feeder = threading.Thread(target=typist, daemon=True)
        result = app.run(pre_run=feeder.start)
        feeder.join(5)
        return result


def test_enter_sends_to_the_current_room():
    """Typed text + Enter: session.say(current room, text); the input line is cleared."""
    state, session = make_state()
    joined(state)
    assert state.window.name == "#lobby"
    drive(state, "hello world" + ENTER)
    assert session.calls == [("say", ("#lobby", "hello world"))]
    assert state.input_area.text == ""


def test_ctrl_x_quits_at_once_with_typed_text_pending():
    """Ctrl-X ends run() whatever is typed; the result is the QUIT reason."""
    state, session = make_state()
    assert drive(state, "half a thought") == "Client Quit"
    assert session.calls == []


def test_ctrl_c_keeps_typed_text_and_hints():
    """Ctrl-C does not quit nor clear the input; the status line says how to quit."""
    state, _ = make_state()
    drive(state, "keep me" + CTRL_C)
    assert state.input_area.text == "keep me"
    assert "Ctrl-X" in state.hint


def test_commands_call_the_session():
    """/join /part /nick /msg /me /topic /names /who map to session calls."""
    state, session = make_state()
    joined(state, "#lobby", "bob")
    for line in ("/join dev", "/nick alicia", "/me waves", "/topic new topic", "/names", "/who bob",
                 "/msg bob psst", "/part #lobby see you"):
        state.submit(line)
    assert session.calls == [
        ("join", ("#dev",)), ("set_nick", ("alicia",)), ("action", ("#lobby", "waves")),
        ("topic", ("#lobby", "new topic")), ("names", ("#lobby",)), ("who", ("bob",)),
        ("say", ("bob", "psst")), ("part", ("#lobby", "see you")),
    ]
    assert state.window.name == "bob"  # /msg opened a conversation window


def test_unknown_command_gets_a_one_line_hint():
    """/frobnicate: one ERROR line naming /help; nothing sent."""
    state, session = make_state()
    state.submit("/frobnicate now")
    assert session.calls == []
    assert [line.event.text for line in state.window.lines] == [
        "Unknown command /frobnicate: /help lists the commands."
    ]


def test_quit_command_exits_with_reason():
    """/quit reason ends the program; the reason goes to QUIT."""
    state, _ = make_state()
    assert drive(state, "/quit gone fishing" + ENTER, quit=False) == "gone fishing"


def test_help_lists_every_command():
    """/help shows a line per command and the keys."""
    state, _ = make_state()
    state.submit("/help")
    shown = "\n".join(line.event.text for line in state.window.lines)
    for name in (
        "/join",
        "/part",
        "/nick",
        "/msg",
        "/me",
        "/topic",
        "/names",
        "/who",
        "/quit",
        "/help",
    ):
        assert name in shown
    assert "Ctrl-X" in shown


def test_help_wraps_at_word_boundaries_and_explains_nick():
    """/help at 60 columns (#17): every row ends at a whole word; /nick's text is plain words."""
    state, _ = make_state()
    state.view_rows, state.view_width = 100, 60
    state.submit("/help")
    words = set(" ".join(line.event.text for line in state.window.lines).split()) | {"---"}
    rows = "".join(t for _, t in state.transcript_fragments(100)).split("\n")
    assert max(len(row) for row in rows) <= 60 and len(rows) > len(state.window.lines)
    for row in rows:
        shown = row.split()[1:] if row[:1].isdigit() else row.split()  # less the time
        assert all(word in words for word in shown), row  # no half words
    nick_help = next(line.event.text for line in state.window.lines if "/nick" in line.event.text)
    assert "new lines only" not in nick_help and "keep the old one" in nick_help


def test_slash_slash_sends_a_literal_slash_line():
    """//shrug sends '/shrug' as text."""
    state, session = make_state()
    joined(state)
    state.submit("//shrug")
    assert session.calls == [("say", ("#lobby", "/shrug"))]


def test_input_history_with_up_and_down():
    """Up recalls earlier lines; Enter on a recalled line sends it again."""
    state, session = make_state()
    joined(state)
    drive(state, "first" + ENTER, "second" + ENTER, UP, UP, ENTER)
    assert [args[1] for _, args in session.calls] == ["first", "second", "first"]


def test_tab_completes_commands_and_nicks_and_cycles():
    """Tab: /jo -> '/join '; 'b' at line start -> 'bob: '; Tab again -> next match."""
    state, _ = make_state()
    joined(state, "#lobby", "bob", "+bert", "carol")
    assert state.complete("/jo", 3) == ("/join ", 6)
    assert state.complete("b", 1) == ("bert: ", 6)
    assert state.complete("bert: ", 6) == ("bob: ", 5)
    assert state.complete("hi car", 6) == ("hi carol ", 9)
    assert state.complete("hi zed", 6) == ("hi zed", 6)
    assert state.complete("/join #lo", 9) == ("/join #lobby ", 13)


def test_ctrl_b_underscore_k_type_the_formatting_codes():
    """Ctrl-B, Ctrl-_ and Ctrl-K insert bold, underline and colour codes in the input (#17)."""
    state, session = make_state()
    joined(state)
    drive(state, "\x02loud\x02 \x1fline\x1f \x0b4red" + ENTER)
    assert session.calls == [("say", ("#lobby", "\x02loud\x02 \x1fline\x1f \x034red"))]


def test_tab_key_in_the_application():
    """The Tab key completes in the input line."""
    state, session = make_state()
    joined(state, "#lobby", "bob")
    drive(state, "hi bo" + TAB + "there" + ENTER)
    assert session.calls == [("say", ("#lobby", "hi bob there"))]


def test_windows_switch_with_alt_digits_and_ctrl_n_p():
    """Alt-1 is the server window, Alt-2 the first room; Ctrl-N/Ctrl-P go round."""
    state, _ = make_state()
    joined(state, "#lobby")
    joined(state, "#dev")
    drive(state, "\x1b1")
    assert state.window.name == "*"
    drive(state, "\x1b3")
    assert state.window.name == "#dev"
    drive(state, CTRL_N)
    assert state.window.name == "*"
    drive(state, CTRL_P + CTRL_P)
    assert state.window.name == "#lobby"


def test_unread_counts_and_mentions_in_the_status_line():
    """Lines in other windows count as unread; one naming us marks the window with '!'."""
    state, _ = make_state()
    joined(state, "#lobby", "bob")
    joined(state, "#dev", "bob")
    state.switch(1)
    state.on_event(ChatEvent(I.MESSAGE, "#dev", "bob", "hello", 1))
    state.on_event(ChatEvent(I.MESSAGE, "#dev", "bob", "alice: ping", 1))
    dev = state.find("#dev")
    assert dev.unread == 2 and dev.mentioned
    status = "".join(text for _, text in state.status_fragments())
    assert "3:#dev(2!)" in status and "alice" in status
    state.on_event(ChatEvent(I.STATE, text=I.REGISTERED, time_ms=1))
    status = "".join(text for _, text in state.status_fragments())
    assert "lag 12ms" in status and "connected" in status
    state.switch(2)
    assert dev.unread == 0 and not dev.mentioned


def test_page_up_and_down_scroll_the_transcript():
    """PageUp scrolls back a page, PageDown forward; a new line keeps the view where it is."""
    state, _ = make_state()
    joined(state)
    for i in range(200):
        state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob", f"line {i}", 1))
    drive(state, PAGE_UP + PAGE_UP)
    page = state.page
    assert state.window.scroll == 2 * page
    state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob", "new", 1))
    assert state.window.scroll == 2 * page + 1
    shown = "".join(text for _, text in state.transcript_fragments(5))
    assert f"line {199 - 2 * page}" in shown and "new" not in shown
    drive(state, PAGE_DOWN * 5)
    assert state.window.scroll == 0


def shown_rows(state) -> list:
    """The transcript's rows as drawn now (no line here is wider than the screen)."""
    text = "".join(t for _, t in state.transcript_fragments(state.view_rows))
    return text.split("\n")


def test_page_up_stops_at_the_first_line_and_a_page_is_the_screen():
    """
    62 lines (issue #17): each PageUp moves a screen's height and never shows blank rows;
    the second stops with the first line at the top.
    """
    state, _ = make_state()
    for i in range(62):
        state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob", f"line {i}", 1))
    state.switch(1)
    drive(state, PAGE_UP)
    rows = state.view_rows  # DummyOutput: 40 rows, less the status and input lines
    assert rows == 38 and state.page == rows
    assert state.window.scroll == len(state.window.lines) - rows
    assert len(shown_rows(state)) == rows and "line 0" in shown_rows(state)[0]
    drive(state, PAGE_UP)
    assert state.window.scroll == len(state.window.lines) - rows
    assert len(shown_rows(state)) == rows and "line 0" in shown_rows(state)[0]
    drive(state, PAGE_DOWN)
    assert state.window.scroll == 0 and "line 61" in shown_rows(state)[-1]


def test_page_up_counts_wrapped_lines_as_the_rows_they_take():
    """A line wider than the screen takes several rows: the top is reached sooner."""
    state, _ = make_state()
    state.view_rows, state.view_width = 10, 40
    for i in range(8):
        state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob", f"long {i} " + " ".join(["word"] * 8),
                                 1))
    state.switch(1)
    # Each line is 58 columns: two rows at 40 wide; 5 lines fill the 10 rows.
    assert state.max_scroll() == 3
    state.scroll(state.page)
    assert state.window.scroll == 3
    text = "".join(t for _, t in state.transcript_fragments(10))
    assert "long 0" in text and "long 5" not in text


def test_mouse_wheel_scrolls():
    """Wheel up/down over the transcript scrolls three lines."""
    from prompt_toolkit.data_structures import Point
    from prompt_toolkit.mouse_events import MouseButton, MouseEvent, MouseEventType

    state, _ = make_state()
    joined(state)
    for i in range(50):
        state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob", f"line {i}", 1))
    with create_pipe_input() as pipe:
        app = build_app(state, input=pipe, output=DummyOutput())
        control = app.layout.container.children[0].content
        control.mouse_handler(
            MouseEvent(Point(0, 0), MouseEventType.SCROLL_UP, MouseButton.NONE, frozenset())
        )
        assert state.window.scroll == 3
        control.mouse_handler(
            MouseEvent(Point(0, 0), MouseEventType.SCROLL_DOWN, MouseButton.NONE, frozenset())
        )
        assert state.window.scroll == 0


def test_scrollback_is_bounded():
    """--scrollback N keeps at most N lines per window."""
    state, _ = make_state(scrollback=50)
    joined(state)
    for i in range(500):
        state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob", f"line {i}", 1))
    assert len(state.window.lines) == 50
    assert state.window.lines[-1].event.text == "line 499"


def test_nick_change_affects_new_lines_only():
    """After our NICK, old lines keep the old name; mentions use the new one."""
    state, session = make_state()
    joined(state, "#lobby", "bob")
    state.on_event(ChatEvent(I.MESSAGE, "#lobby", "alice", "old line", 1, own=True))
    session.nick = "alicia"
    state.on_event(ChatEvent(I.NICK, None, "alice", "alicia", 1, own=True))
    state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob", "alicia: hi", 1))
    lines = list(state.find("#lobby").lines)
    assert any(line.event.nick == "alice" and line.event.text == "old line" for line in lines)
    assert lines[-1].mention and state.nick == "alicia"


def test_quit_and_nick_lines_go_where_the_nick_was():
    """QUIT (room None on TCP) shows in every window the nick was in, and only there."""
    state, _ = make_state()
    joined(state, "#lobby", "bob")
    joined(state, "#dev")
    state.on_event(ChatEvent(I.QUIT, None, "bob", "Quit: bye", 1))
    assert state.find("#lobby").lines[-1].event.kind == I.QUIT
    assert state.find("#dev").lines[-1].event.kind != I.QUIT
    assert "bob" not in state.find("#lobby").members


def test_own_part_closes_the_window():
    """Our PART closes the room's window and shows another."""
    state, _ = make_state()
    joined(state, "#lobby")
    joined(state, "#dev")
    state.on_event(ChatEvent(I.PART, "#dev", "alice", "", 1, own=True))
    assert state.find("#dev") is None and state.window.name in ("*", "#lobby")


def no_such_nick(nick: str) -> ChatEvent:
    """The session's ERROR for 401 ERR_NOSUCHNICK, as the TCP session makes it."""
    msg = parse(f":irc.test 401 alice {nick} :No such nick/channel")
    return ChatEvent(I.ERROR, text=f"{nick}: No such nick/channel", time_ms=1, message=msg)


def test_msg_to_nobody_closes_the_window_after_no_such_nick():
    """/msg nobody hi, then 401 (#17): the empty window closes; the error shows where we were."""
    state, session = make_state()
    joined(state)
    state.submit("/msg nobody hi")
    assert state.window.name == "nobody"
    # Without echo-message the session shows our own line in the new window first.
    state.on_event(ChatEvent(I.MESSAGE, "nobody", "alice", "hi", 1, own=True))
    state.on_event(no_such_nick("nobody"))
    assert state.find("nobody") is None
    assert state.window.name == "#lobby"
    assert state.window.lines[-1].event.text == "nobody: No such nick/channel"
    assert state.windows[0].lines[-1].event.text == "nobody: No such nick/channel"


def test_no_such_nick_keeps_a_conversation_that_had_replies():
    """A query window where the other party spoke stays open after 401; the error shows in it."""
    state, _ = make_state()
    joined(state)
    state.on_event(ChatEvent(I.MESSAGE, "bob", "bob", "hello", 1))
    state.switch(state.windows.index(state.find("bob")))
    state.submit("still there?")
    state.on_event(no_such_nick("bob"))
    assert state.find("bob") is not None
    assert state.find("bob").lines[-1].event.kind == I.ERROR


def test_part_in_a_query_window_closes_it_with_a_word():
    """/part in a conversation window closes it and says so in the server window (#17)."""
    state, session = make_state()
    joined(state)
    state.on_event(ChatEvent(I.MESSAGE, "bob", "bob", "hello", 1))
    state.switch(state.windows.index(state.find("bob")))
    state.submit("/part")
    assert state.find("bob") is None and session.calls == []
    assert state.windows[0].lines[-1].event.text == "Closed the conversation with bob."


def test_a_ctcp_shows_in_the_server_window_only():
    """The session's INFO for a CTCP (#17): a line in the server window, no window opened."""
    state, _ = make_state()
    joined(state)
    state.submit("/names")  # the room is now where command replies go
    msg = parse(":bob!b@h PRIVMSG alice :\x01FINGER\x01")
    state.on_event(ChatEvent(I.INFO, None, "bob", "CTCP FINGER from bob", 1, message=msg))
    assert [w.name for w in state.windows] == ["*", "#lobby"]
    assert state.windows[0].lines[-1].event.text == "CTCP FINGER from bob"
    assert all("CTCP" not in line.event.text for line in state.find("#lobby").lines)


def test_text_in_the_server_window_is_refused_with_a_hint():
    """Lines typed in the server window are not sent: a hint says to /join."""
    state, session = make_state()
    state.submit("hello?")
    assert session.calls == [] and "/join" in state.window.lines[-1].event.text


def test_disconnect_shows_in_rooms_and_status():
    """STATE events: a line in each room and the status line's state."""
    state, _ = make_state()
    joined(state)
    state.on_event(ChatEvent(I.STATE, text=I.DISCONNECTED, time_ms=1))
    assert state.find("#lobby").lines[-1].event.text == I.DISCONNECTED
    assert "disconnected" in "".join(t for _, t in state.status_fragments())


def test_escape_sequences_from_the_server_reach_the_screen_escaped():
    """A line full of terminal escapes renders to the DummyOutput-backed app without raw ESC."""
    state, _ = make_state()
    joined(state)
    state.on_event(ChatEvent(I.MESSAGE, "#lobby", "bob\x1b[31m", "\x1b]0;title\x07\x1b[2J", 1))
    text = "".join(t for _, t in state.transcript_fragments(10))
    assert "\x1b" not in text and "\\x1b]0;title\\x07" in text
    drive(state, "")  # renders without error


def test_bridge_posts_events_from_another_thread():
    """UIBridge.post from a non-UI thread runs in the app's loop and redraws."""
    import asyncio

    state, _ = make_state()
    joined(state)
    with create_pipe_input() as pipe:
        app = build_app(state, input=pipe, output=DummyOutput())
        bridge = UIBridge(app)

        def from_network():
            bridge.post(state.on_event, ChatEvent(I.MESSAGE, "#lobby", "bob", "via thread", 1))
            bridge.post(lambda: pipe.send_text(CTRL_X))

        def pre_run():
            bridge.attach(asyncio.get_running_loop())
            threading.Thread(target=from_network).start()

        app.run(pre_run=pre_run)
    assert state.window.lines[-1].event.text == "via thread"


def test_bridge_survives_a_failing_ui_call():
    """An exception in a posted call is logged; later posts still run."""
    import asyncio

    state, _ = make_state()
    joined(state)
    with create_pipe_input() as pipe:
        app = build_app(state, input=pipe, output=DummyOutput())
        bridge = UIBridge(app)

        def boom():
            raise RuntimeError("bug")

        def pre_run():
            bridge.attach(asyncio.get_running_loop())
            bridge.post(boom)
            bridge.post(state.on_event, ChatEvent(I.MESSAGE, "#lobby", "bob", "still here", 1))
            bridge.post(lambda: pipe.send_text(CTRL_X))

        app.run(pre_run=pre_run)
    assert state.window.lines[-1].event.text == "still here"


def test_reactor_thread_runs_calls_and_stops_within_bound():
    """ReactorThread: a reactor of its own in a daemon thread; call() runs there; stop() joins."""
    from twisted.internet.selectreactor import SelectReactor

    net = ReactorThread(SelectReactor()).start()
    seen = []
    done = threading.Event()
    net.call(lambda: (seen.append(threading.current_thread().name), done.set()))
    assert done.wait(5)
    assert seen == ["twisted-reactor"]
    assert net.call_blocking(lambda: 42) == 42
    ran = []
    assert net.stop(lambda: ran.append(True), timeout=3)
    assert ran == [True]


def test_command_line_defaults_and_flags():
    """Defaults: port 6667, #lobby, tcp; --room without '#' gets one; --insecure implies --tls."""
    args = parse_args([])
    assert (args.host, args.port, args.room, args.proto, args.tls, args.serve) == (
        None,
        6667,
        "#lobby",
        "tcp",
        False,
        False,
    )
    args = parse_args(
        [
            "127.0.0.9",
            "--port",
            "7000",
            "--room",
            "dev",
            "--insecure",
            "--nick",
            "zed",
            "--scrollback",
            "100",
        ]
    )
    assert (args.host, args.port, args.room, args.tls, args.nick, args.scrollback) == (
        "127.0.0.9",
        7000,
        "#dev",
        True,
        "zed",
        100,
    )
    with pytest.raises(SystemExit):
        parse_args(["--port", "70000"])


def test_port_taken_detects_a_listener():
    """port_taken: True while something listens, so --serve joins it instead."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert port_taken("127.0.0.1", listener.getsockname()[1])
