"""
The full-screen terminal client: windows, commands, key bindings, layout.

test-case-name: tests.test_ptk_app

Thin on purpose (issue #5, "Shape"): all protocol work is the session's
(:class:`~twistchat.client.interfaces.IChatSession`, TCP or UDP); this
module keeps what the screen shows.  As in ptpython (``ptpython/layout.py``,
``key_bindings.py``), one state object, :class:`ChatState`, holds everything,
the layout is functions of it, and the key bindings come from ``load_*``
functions merged together.

Threads (STYLE.md section 4): every method of :class:`ChatState` runs in the
UI thread.  Session methods are only ever called through ``state.net`` (in
the real program ``reactor.callFromThread``); events come back through
``UIBridge.post`` to :meth:`ChatState.on_event`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import has_focus
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
from prompt_toolkit.layout import HSplit, Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from prompt_toolkit.mouse_events import MouseEventType
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import TextArea

from clients.ptk import formatting as fmt
from clients.ptk.commands import COMMANDS, NICK, ROOM, WINDOW
from clients.ptk.render import STYLE, WRAP_INDENT, Line, escape, is_mention, render_line, wrap
from twistchat.client import interfaces as I
from twistchat.client.interfaces import ChatEvent, is_room
from twistchat.wire import casefold

__all__ = ["ChatState", "ChatWindow", "COMMANDS", "build_app", "DEFAULT_SCROLLBACK"]

DEFAULT_SCROLLBACK = 2000
SERVER_WINDOW = "*"  # the window of server-wide lines (welcome, MOTD, errors)
_NICK_PREFIXES = "~&@%+"
_SPOKEN = frozenset((I.MESSAGE, I.ACTION, I.NOTICE))  # what a conversation's party says
_WRAP_PREFIX = " " * WRAP_INDENT  # where the terminal still wraps a row (a wide character)

class ChatWindow:
    """
    One window: a room, a private conversation, or the server window.

    ``scroll`` counts lines hidden below the view (0: following the end).
    ``members`` maps folded nick to nick as shown, for completion and for
    placing QUIT and NICK lines.
    """

    def __init__(self, name: str, scrollback: int) -> None:
        self.name = name
        self.lines: deque = deque(maxlen=scrollback)
        self.unread = 0
        self.mentions = 0  # unread lines that named us (or a --highlight word)
        self.members: dict = {}
        self.scroll = 0
        self.topic = ""

    @property
    def is_room(self) -> bool:
        return is_room(self.name)

    @property
    def mentioned(self) -> bool:
        return self.mentions > 0

    @property
    def is_query(self) -> bool:
        return self.name != SERVER_WINDOW and not self.is_room

    def add(self, line: Line) -> None:
        if self.scroll:
            # Scrolled back: keep the same lines in view while new ones arrive.
            self.scroll = min(self.scroll + 1, max(len(self.lines), 0))
        self.lines.append(line)


class ChatState:
    """
    Everything the screen shows, and what each user action does.

    ``session`` provides IChatSession; ``net(fn, *args)`` runs a session
    method in the network thread (tests pass a direct call).  ``label`` names
    the server in the status line.
    """

    def __init__(
        self,
        session,
        net: Callable,
        *,
        label: str = "",
        scrollback: int = DEFAULT_SCROLLBACK,
        autojoin=(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.net = net
        self.label = label
        self.scrollback = max(10, scrollback)
        self.clock = clock
        self.windows: list = [ChatWindow(SERVER_WINDOW, self.scrollback)]
        self.current = 0
        self.nick = getattr(session, "nick", "")
        self.conn_state = I.CONNECTING
        self.hint = ""
        self.hint_until = 0.0
        self.quit_reason = "Client Quit"
        self.app: Application[str] | None = None
        self.input_area: TextArea | None = None  # build_app sets it
        # The transcript's size on screen (rows, columns); the layout updates it
        # each time it draws.  A page (PageUp/PageDown) is the transcript's height.
        self.view_rows = 10
        self.view_width = 80
        self._autoswitch = {casefold(r) for r in autojoin}
        self._reply_window: ChatWindow | None = None
        self._notes: list = []
        self.ignored: dict[str, str] = {}  # folded nick -> nick: /ignore
        # /connect HOST [PORT]: set by the program (__main__), None where it cannot be done.
        self.connect: Callable[[str, int | None], None] | None = None
        # (result text, cursor, matches, index, start, suffix, original word)
        self._completion: tuple[str, int, list[str], int, int, str, str] | None = None

    # ----------------------------------------------------------------- windows

    @property
    def window(self) -> ChatWindow:
        """The window shown now."""
        return self.windows[self.current]

    def find(self, name: str) -> ChatWindow | None:
        key = casefold(name)
        for window in self.windows:
            if casefold(window.name) == key:
                return window
        return None

    def window_for(self, name: str | None) -> ChatWindow:
        """The window of ``name`` (the server window for None), created if needed."""
        if not name:
            return self.windows[0]
        window = self.find(name)
        if window is None:
            window = ChatWindow(name, self.scrollback)
            self.windows.append(window)
        return window

    def switch(self, index: int) -> None:
        """Show window ``index`` (0-based); its unread count is cleared."""
        if 0 <= index < len(self.windows):
            self.current = index
            window = self.windows[index]
            window.unread = 0
            window.mentions = 0

    def next_window(self, step: int = 1) -> None:
        """Ctrl-N / Ctrl-P: the next (previous) window, round."""
        self.switch((self.current + step) % len(self.windows))

    def close_window(self, window: ChatWindow) -> None:
        if window is self.windows[0] or window not in self.windows:
            return
        index = self.windows.index(window)
        current = self.window
        self.windows.remove(window)
        if current is window:
            self.switch(min(index, len(self.windows) - 1))
        else:
            self.current = self.windows.index(current)

    @property
    def page(self) -> int:
        """Lines per PageUp/PageDown: the transcript's height on screen (issue #17)."""
        return max(self.view_rows, 1)

    def _rows_of(self, line: Line) -> list:
        """``line`` as the screen rows it takes, wrapped at spaces (render.wrap)."""
        return wrap(render_line(line), self.view_width)

    def _line_rows(self, line: Line) -> int:
        """How many screen rows ``line`` takes."""
        return len(self._rows_of(line))

    def max_scroll(self, window: ChatWindow | None = None) -> int:
        """
        How far back ``window`` may scroll: until its first line is at the top.

        Issue #17: scrolling further showed a line or two and blank rows
        below; it stops where the oldest lines fill the screen.
        """
        window = window or self.window
        lines = window.lines
        rows = 0
        for count, line in enumerate(lines):
            rows += self._line_rows(line)
            if rows > self.page:
                return len(lines) - count
        return 0

    def scroll(self, lines: int) -> None:
        """Scroll the current window back (positive) or forward (negative)."""
        window = self.window
        window.scroll = max(0, min(window.scroll + lines, self.max_scroll(window)))

    def say_local(self, text: str, kind: str = I.INFO) -> None:
        """A line of our own (a hint, a help text) in the current window."""
        self.window.add(Line(ChatEvent(kind, text=text, time_ms=int(self.clock() * 1000))))

    def announce(self, text: str) -> None:
        """A start-up note: in the server window, and again in the first room joined."""
        line = Line(ChatEvent(I.INFO, text=text, time_ms=int(self.clock() * 1000)))
        self.windows[0].add(line)
        self._notes.append(line)

    def show_hint(self, text: str, seconds: float = 4.0) -> None:
        """A short message in the status line."""
        self.hint = text
        self.hint_until = self.clock() + seconds

    # ------------------------------------------------------------------ events

    def _add(self, window: ChatWindow, line: Line, counts: bool = False) -> None:
        window.add(line)
        if window is not self.window and counts:
            window.unread += 1
            if line.mention:
                window.mentions += 1

    def on_event(self, ev: ChatEvent) -> None:
        """One event from the session (UI thread): into the right windows."""
        self.nick = getattr(self.session, "nick", self.nick) or self.nick
        handler = self._EVENT_HANDLERS.get(ev.kind, ChatState._on_info)
        handler(self, ev)

    def _on_text(self, ev: ChatEvent) -> None:
        """MESSAGE, ACTION, NOTICE: in their room or query (the server window for None)."""
        if ev.nick and not ev.own and casefold(ev.nick) in self.ignored:
            return  # /ignore: not shown, not counted
        private = ev.room is not None and not is_room(ev.room)
        mention = not ev.own and (private or is_mention(ev.text, self.nick))
        if ev.room is None:
            target = self.windows[0]
            self._add(target, Line(ev, mention), counts=True)
            if self._reply_window is not None and self._reply_window is not target:
                self._add(self._reply_window, Line(ev, mention))
            return
        window = self.window_for(ev.room)
        if ev.nick and window.is_room:
            window.members.setdefault(casefold(ev.nick), ev.nick)
        self._add(window, Line(ev, mention), counts=True)

    def _on_join(self, ev: ChatEvent) -> None:
        window = self.window_for(ev.room)
        if ev.nick:
            window.members[casefold(ev.nick)] = ev.nick
        self._add(window, Line(ev))
        key = casefold(ev.room or "")
        if ev.own and key in self._autoswitch:
            self._autoswitch.discard(key)
            self.switch(self.windows.index(window))
            notes, self._notes = self._notes, []
            if notes:  # start-up notes (--serve) follow the user to the first room
                lines = list(window.lines)
                window.lines.clear()
                window.lines.extend(notes + lines)

    def _on_leave(self, ev: ChatEvent) -> None:
        """PART and KICK: the member goes; our own PART closes the window."""
        window = self.find(ev.room) if ev.room else None
        if window is None:
            return
        who = ev.text.partition(" ")[0] if ev.kind == I.KICK else ev.nick
        if who:
            window.members.pop(casefold(who), None)
        if ev.own and ev.kind == I.PART:
            self._add(self.windows[0], Line(ev))
            self.close_window(window)
        else:
            self._add(window, Line(ev))

    def _on_quit(self, ev: ChatEvent) -> None:
        """In the one room it was recorded in (UDP), else wherever the nick was."""
        key = casefold(ev.nick or "")
        room = self.find(ev.room) if ev.room else None
        for window in [room] if room else list(self.windows):
            if key in window.members or (window.is_query and casefold(window.name) == key):
                window.members.pop(key, None)
                self._add(window, Line(ev))

    def _on_nick(self, ev: ChatEvent) -> None:
        old, new = casefold(ev.nick or ""), ev.text
        for window in self.windows:
            if old in window.members or (ev.own and window.is_room):
                window.members.pop(old, None)
                window.members[casefold(new)] = new
                self._add(window, Line(ev))
            elif window.is_query and casefold(window.name) == old:
                window.name = new
                self._add(window, Line(ev))
        if ev.own:
            self.nick = new
            self._add(self.windows[0], Line(ev))

    def _on_topic(self, ev: ChatEvent) -> None:
        window = self.window_for(ev.room)
        window.topic = ev.text
        self._add(window, Line(ev))

    def _on_names(self, ev: ChatEvent) -> None:
        window = self.window_for(ev.room)
        bare = (n.lstrip(_NICK_PREFIXES) for n in ev.names)
        window.members = {casefold(n): n for n in bare if n}
        self._add(window, Line(ev))

    def _on_mode(self, ev: ChatEvent) -> None:
        self._add(self.window_for(ev.room), Line(ev))

    def _on_state(self, ev: ChatEvent) -> None:
        self.conn_state = ev.text
        self._reply_window = None
        if ev.text == I.CONNECTING:
            return  # the status line says so; lines only where chat stopped or resumed
        # In every room, so a gap in the transcript is visible where it is.
        for window in self.windows:
            if window is self.windows[0] or window.is_room:
                self._add(window, Line(ev))

    def _on_error(self, ev: ChatEvent) -> None:
        self._close_undelivered(ev)
        window = self.find(ev.room) if ev.room else None
        target = window or self._reply_window or self.window
        self._add(target, Line(ev))
        if target is not self.windows[0] and window is None:
            self._add(self.windows[0], Line(ev))

    def _close_undelivered(self, ev: ChatEvent) -> None:
        """
        401 ERR_NOSUCHNICK for a conversation nobody answered in: close its window.

        Issue #17: ``/msg nobody hi`` left an empty ``nobody`` window after
        "No such nick".  A window where the other party has spoken stays (they
        may come back); the error then shows there.
        """
        msg = ev.message
        if msg is None or msg.command != "401" or len(msg.params) < 2:
            return
        window = self.find(msg.params[1])
        if window is None or not window.is_query:
            return
        if any(not line.event.own and line.event.kind in _SPOKEN for line in window.lines):
            return
        back = self._reply_window
        if back is window:
            back = self._reply_window = None
        showing = self.window is window
        self.close_window(window)
        if showing and back is not None and back in self.windows:
            self.switch(self.windows.index(back))

    def _on_info(self, ev: ChatEvent) -> None:
        """INFO and kinds newer than this client."""
        window = self.find(ev.room) if ev.room else None
        if window is not None:
            self._add(window, Line(ev))
            return
        self._add(self.windows[0], Line(ev))
        if ev.message is not None and ev.message.verb in ("PRIVMSG", "NOTICE"):
            return  # a CTCP (#17): the server window only, not the room we typed in
        if self._reply_window is not None and self._reply_window is not self.windows[0]:
            self._add(self._reply_window, Line(ev))

    # ChatEvent.kind -> handler; a kind not here is shown as INFO.
    _EVENT_HANDLERS: dict[str, Callable[[ChatState, ChatEvent], None]] = {
        I.MESSAGE: _on_text,
        I.ACTION: _on_text,
        I.NOTICE: _on_text,
        I.JOIN: _on_join,
        I.PART: _on_leave,
        I.KICK: _on_leave,
        I.QUIT: _on_quit,
        I.NICK: _on_nick,
        I.TOPIC: _on_topic,
        I.NAMES: _on_names,
        I.MODE: _on_mode,
        I.STATE: _on_state,
        I.ERROR: _on_error,
    }

    # ------------------------------------------------------------------- input

    def submit(self, text: str) -> None:
        """The user pressed Enter on ``text``: a command or a line to the current window."""
        self._completion = None
        if not text.strip():
            return
        if text.startswith("/") and not text.startswith("//"):
            name, _, rest = text[1:].partition(" ")
            name = name.lower()
            entry = COMMANDS.get(name)
            if entry is None:
                self.say_local(f"Unknown command /{name}: /help lists the commands.", I.ERROR)
                return
            self._reply_window = self.window
            entry.run(self, rest.strip())
            return
        if text.startswith("//"):
            text = text[1:]
        window = self.window
        if window is self.windows[0]:
            self.say_local("This is the server window: /join #room, or Alt-2 for a room.", I.ERROR)
            return
        self.net(self.session.say, window.name, text)

    def target_room(self, arg: str) -> tuple:
        """(room, rest): ``arg``'s first word if it names a room, else the current window."""
        first, _, rest = arg.partition(" ")
        if is_room(first):
            return first, rest.strip()
        return (self.window.name if self.window.is_room else None), arg

    def autoswitch(self, room: str) -> None:
        """Show ``room``'s window once our JOIN to it arrives."""
        self._autoswitch.add(casefold(room))

    def note(self, window: ChatWindow, text: str) -> None:
        """A line of our own in ``window``."""
        self._add(window, Line(ChatEvent(I.INFO, text=text, time_ms=int(self.clock() * 1000))))

    def quit(self) -> None:
        """Leave the program now; the QUIT is sent as the reactor stops (see __main__)."""
        if self.app is not None and self.app.is_running:
            self.app.exit(result=self.quit_reason)

    # -------------------------------------------------------------- completion

    def complete(self, text: str, cursor: int) -> tuple:
        """
        Tab: complete the word before ``cursor``; Tab again cycles.

        A first word starting with ``/`` completes a command, a word starting
        with ``#`` a room, anything else a nick of this window (``nick: ``
        at the start of the line).  Returns the new (text, cursor).
        """
        state = self._completion
        if state is not None and state[0] == text and state[1] == cursor:
            _, _, matches, index, start, suffix, original = state
            index = (index + 1) % len(matches)
        else:
            start = cursor
            while start > 0 and text[start - 1] != " ":
                start -= 1
            word = text[start:cursor]
            matches, suffix = self._completions(word, start == 0, text[:start])
            if not matches or not (word or suffix == ": " or text[:start].startswith("/")):
                self._completion = None
                return text, cursor
            index = 0
            original = text[start:cursor]
        head, tail = text[:start], text[cursor:]
        new_text = head + matches[index] + suffix + tail
        new_cursor = len(head) + len(matches[index]) + len(suffix)
        self._completion = (new_text, new_cursor, matches, index, start, suffix, original)
        return new_text, new_cursor

    def _completions(self, word: str, first: bool, before: str = "") -> tuple[list[str], str]:
        """
        What ``word`` may become (a command, a room, a nick), and what follows it.

        After a command, what its table entry says it takes (issue #17: Tab
        completes each command's argument): ``/join #<Tab>`` a room, ``/whois
        <Tab>`` a nick, ``/close <Tab>`` a window.
        """
        if first and word.startswith("/"):
            return ["/" + c for c in COMMANDS if c.startswith(word[1:].lower())], " "
        folded = casefold(word)
        kind = ""
        if before.startswith("/") and not before.startswith("//"):
            entry = COMMANDS.get(before[1:].split(" ", 1)[0].lower())
            kind = entry.completes if entry is not None else ""
        if kind == WINDOW:
            return [w.name for w in self.windows[1:]
                    if casefold(w.name).startswith(folded)], " "
        if is_room(word) or (kind == ROOM and not word):
            return [
                w.name for w in self.windows if w.is_room and casefold(w.name).startswith(folded)
            ], " "
        own = casefold(self.nick or "")
        nicks = sorted(self.window.members.values(), key=casefold)
        if kind == NICK and not nicks and self.window.is_query:
            nicks = [self.window.name]
        matches = [n for n in nicks if casefold(n).startswith(folded) and casefold(n) != own]
        if word and not matches and own.startswith(folded):
            matches = [self.nick]
        return matches, ": " if first else " "

    # ------------------------------------------------------------------ status

    def status_fragments(self) -> list:
        """The status line: server, transport, nick [account], window, unread, state, lag."""
        session = self.session
        state = self.conn_state
        out = [("class:status", f" {getattr(session, 'transport_name', '?')} {self.label} | ")]
        out += escape(self.nick or "?", "class:status")
        account = getattr(session, "account", None)  # --sasl: the account we are logged in to
        if isinstance(account, str) and account and state == I.REGISTERED:
            out += escape(f" [{account}]", "class:status")
        out.append(("class:status", f" | {self.current + 1}:"))
        out += escape(self.window.name, "class:status")
        if self.window.scroll:
            out.append(("class:status", f" (scrolled back {self.window.scroll})"))
        others = [(i, w) for i, w in enumerate(self.windows) if i != self.current and w.unread]
        if others:
            out.append(("class:status", " |"))
            for i, w in others:
                style = "class:status.mention" if w.mentioned else "class:status.unread"
                out.append((style, f" {i + 1}:"))
                out += escape(w.name, style)
                out.append((style, f"({w.unread}{'!' if w.mentioned else ''})"))
        style = "class:status" if state == I.REGISTERED else "class:status.state.bad"
        state_text = {I.REGISTERED: "connected"}.get(state, state)
        out.append((style, f" | {state_text}"))
        lag = getattr(session, "lag", None)
        if lag is not None and state == I.REGISTERED:
            out.append(("class:status", f" lag {lag * 1000:.0f}ms"))
        if self.hint and self.clock() < self.hint_until:
            out.append(("class:status.hint", f" | {self.hint}"))
        out.append(("class:status", " "))
        return out

    def transcript_fragments(self, rows: int) -> list:
        """The lines that fill ``rows`` screen rows up to the scroll position, cursor at the end."""
        window = self.window
        lines = window.lines
        window.scroll = min(window.scroll, self.max_scroll(window))  # the screen may have grown
        end = len(lines) - window.scroll
        start, used = end, 0
        shown: list[list] = []  # each line's rows, newest first: rendered once per frame
        while start > 0 and used < max(rows, 1):
            start -= 1
            line_rows = self._rows_of(lines[start])
            shown.append(line_rows)
            used += len(line_rows)
        out: list[tuple[str, str]] = []
        for line_rows in reversed(shown):
            for row in line_rows:
                if out:
                    out.append(("", "\n"))
                out += row
        out.append(("[SetCursorPosition]", ""))
        return out

    def prompt(self) -> list:
        return [("class:prompt", f"[{self.window.name}] ")]


class _TranscriptControl(FormattedTextControl):
    """The transcript: formatted text that scrolls with the mouse wheel."""

    def __init__(self, state: ChatState) -> None:
        self.state = state
        super().__init__(self._text, focusable=False, show_cursor=False)

    def create_content(self, width: int, height: int | None):
        """Note the size the layout gives the transcript: PageUp and the top depend on it."""
        if height:
            self.state.view_rows = height
        self.state.view_width = width
        return super().create_content(width, height)

    def _text(self):
        return self.state.transcript_fragments(self.state.view_rows)

    def mouse_handler(self, mouse_event):
        if mouse_event.event_type == MouseEventType.SCROLL_UP:
            self.state.scroll(3)
            return None
        if mouse_event.event_type == MouseEventType.SCROLL_DOWN:
            self.state.scroll(-3)
            return None
        return NotImplemented


def load_chat_bindings(state: ChatState, input_area: TextArea) -> KeyBindings:
    """Ctrl-X, Ctrl-C, scrolling, window switching, Tab."""
    kb = KeyBindings()

    @kb.add("c-x", eager=True)
    def _(event):
        "Quit at once, from anywhere; the session sends QUIT."
        state.quit()

    @kb.add("c-c")
    def _(event):
        "Keep what was typed: Ctrl-C does not quit (Ctrl-X does)."
        state.show_hint("Ctrl-X quits (your text is kept)")

    @kb.add("pageup")
    def _(event):
        "Scroll back a page."
        state.scroll(state.page)

    @kb.add("pagedown")
    def _(event):
        "Scroll forward a page."
        state.scroll(-state.page)

    @kb.add("c-n")
    def _(event):
        "Next window."
        state.next_window(1)

    @kb.add("c-p")
    def _(event):
        "Previous window."
        state.next_window(-1)

    for digit in "123456789":

        @kb.add("escape", digit)
        def _(event, index=int(digit) - 1):
            "Alt-1..9: window 1..9."
            state.switch(index)

    # The keys mIRC, irssi and WeeChat use to type formatting (issue #17).  They
    # replace Emacs's backward-char, kill-line and undo in the one-line input.
    for key, code in (("c-b", fmt.BOLD), ("c-_", fmt.UNDERLINE), ("c-k", fmt.COLOUR)):

        @kb.add(key, filter=has_focus(input_area))
        def _(event, code=code):
            "Ctrl-B / Ctrl-_ / Ctrl-K: type the bold / underline / colour code."
            input_area.buffer.insert_text(code)

    @kb.add("tab", filter=has_focus(input_area))
    def _(event):
        "Complete a command, room or nick; Tab again for the next match."
        buffer: Buffer = input_area.buffer
        text, cursor = state.complete(buffer.text, buffer.cursor_position)
        if text != buffer.text:
            buffer.text = text
        buffer.cursor_position = cursor

    return kb


def build_app(state: ChatState, *, input=None, output=None, extra_bindings=None) -> Application:
    """
    The Application: transcript / status line / input line (STYLE.md section 4).

    ``input`` and ``output`` are for tests (``create_pipe_input()``, ``DummyOutput()``).
    """

    def accept(buffer: Buffer) -> bool:
        state.submit(buffer.text)
        return False  # clear the line; history keeps it

    input_area = TextArea(
        height=1,
        multiline=False,
        wrap_lines=False,
        history=InMemoryHistory(),
        prompt=state.prompt,
        accept_handler=accept,
    )
    transcript = Window(
        _TranscriptControl(state),
        wrap_lines=True,
        get_line_prefix=lambda lineno, wrap_count: _WRAP_PREFIX if wrap_count else "",
    )
    status = Window(FormattedTextControl(state.status_fragments), height=1, style="class:status")
    root = HSplit([transcript, status, input_area])
    bindings = [load_chat_bindings(state, input_area)]
    if extra_bindings is not None:
        bindings.append(extra_bindings)
    app: Application[str] = Application(
        layout=Layout(root, focused_element=input_area),
        key_bindings=merge_key_bindings(bindings),
        style=Style.from_dict(STYLE),
        full_screen=True,
        mouse_support=True,
        refresh_interval=1.0,  # lag and hints change without an event
        input=input,
        output=output,
    )
    state.app = app
    state.input_area = input_area
    return app
