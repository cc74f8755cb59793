"""
The terminal client end to end in a real terminal: tmux runs the server and
clients, keys go in with send-keys, screens come out with capture-pane.

Each test uses a tmux server of its own (``tmux -L <name>``) and kills only
that one.  Skipped, with the reason, where tmux is not installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.serverproc import REPO, LineClient, free_port, source_env

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (apt-get install tmux; .ci/run does)")


class Tmux:
    """A private tmux server: one window per program, screens read as text."""

    def __init__(self) -> None:
        self.socket = f"twistchat-test-{uuid.uuid4().hex[:8]}"
        self.started = False

    def run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                             timeout=10, check=check)
        return out.stdout

    def start(self, name: str, argv: list, width: int = 110, height: int = 30) -> str:
        """Run ``argv`` (in the repository, this source tree) in a new window called ``name``."""
        env = source_env()
        command = " ".join(f"{k}={shlex.quote(env[k])}" for k in ("PYTHONPATH",))
        command = (
            f"cd {shlex.quote(str(REPO))} && env {command} TERM=xterm-256color {shlex.join(argv)}"
        )
        if not self.started:
            self.run(
                "new-session",
                "-d",
                "-s",
                "e2e",
                "-n",
                name,
                "-x",
                str(width),
                "-y",
                str(height),
                command,
            )
            self.run("set-option", "-g", "remain-on-exit", "on")
            self.started = True
        else:
            self.run("new-window", "-d", "-t", "e2e", "-n", name, command)
        return f"e2e:{name}"

    def keys(self, target: str, *keys: str) -> None:
        self.run("send-keys", "-t", target, *keys)

    def type(self, target: str, text: str) -> None:
        """Type ``text`` literally, then Enter."""
        self.run("send-keys", "-t", target, "-l", text)
        self.run("send-keys", "-t", target, "Enter")

    def screen(self, target: str) -> str:
        return self.run("capture-pane", "-p", "-t", target, check=False)

    def dead(self, target: str) -> bool:
        return (
            self.run("display-message", "-p", "-t", target, "#{pane_dead}", check=False).strip()
            == "1"
        )

    def wait_screen(self, target: str, *needles: str, timeout: float = 15.0) -> str:
        """Poll the screen until every needle shows (bounded); the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(target)
            if all(n in screen for n in needles):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{needles} not on {target} within {timeout} s:\n{screen}")
            time.sleep(0.1)

    def wait_dead(self, target: str, timeout: float = 8.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.dead(target):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{target} still running after {timeout} s:\n{self.screen(target)}"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """Kill this test's tmux server (only it) and remove its socket file."""
        if self.started:
            path = self.run("display-message", "-p", "#{socket_path}", check=False).strip()
            self.run("kill-server", check=False)
            if path.endswith(self.socket):
                try:
                    os.unlink(path)
                except OSError:
                    pass


@pytest.fixture
def tmux():
    t = Tmux()
    yield t
    t.kill()


def client(port: int, nick: str, *extra: str) -> list:
    return [
        sys.executable,
        "-m",
        "clients.ptk",
        "127.0.0.1",
        "--port",
        str(port),
        "--nick",
        nick,
        *extra,
    ]


def udp_client_available() -> bool:
    try:
        import twistchat.client.udp  # noqa: F401
    except ImportError:
        return False
    return True


def test_two_tcp_clients_see_both_lines_and_ctrl_x_ends(tmux, chat_server, tmp_path):
    """
    Server + two TCP clients in tmux: both lines on both screens; Ctrl-X ends the program, QUIT
    seen.
    """
    server = chat_server()
    a = tmux.start("alice", client(server.port, "alice", "--log", str(tmp_path / "alice.log")))
    b = tmux.start("bob", client(server.port, "bob"))
    tmux.wait_screen(a, "alice joined #lobby", "connected")
    tmux.wait_screen(b, "bob joined #lobby", "connected")
    tmux.type(a, "hello from alice")
    tmux.wait_screen(b, "<alice> hello from alice")
    tmux.type(b, "/me waves at alice")
    for target in (a, b):
        screen = tmux.wait_screen(target, "<alice> hello from alice", "* bob waves at alice")
    # A raw client sends terminal escapes: shown escaped, the screen is not cleared.
    mallory = LineClient("127.0.0.1", server.port).register("mallory")
    mallory.send("JOIN #lobby", "PRIVMSG #lobby :\x1b[2J\x1b]0;owned\x07boo")
    tmux.wait_screen(a, "<mallory> \\x1b[2J\\x1b]0;owned\\x07boo", "<alice> hello from alice")
    mallory.close()
    print(f"\n--- alice's screen ---\n{tmux.screen(a)}")
    assert "| alice | 2:#lobby |" in tmux.screen(a)
    assert "| bob | 2:#lobby |" in screen
    tmux.keys(b, "C-x")
    tmux.wait_dead(b)
    tmux.wait_screen(a, "bob quit (Quit: Client Quit)")
    tmux.keys(a, "C-x")
    tmux.wait_dead(a)
    assert "Traceback" not in (tmp_path / "alice.log").read_text()


def test_udp_client_sees_the_tcp_client(tmux, chat_server):
    """
    A UDP client and a TCP client on one server: each sees both lines (skipped until the UDP
    client exists).
    """
    if not udp_client_available():
        pytest.skip("twistchat.client.udp (the UDP client session) is not in this version yet")
    server = chat_server()
    a = tmux.start("tcp", client(server.port, "alice"))
    u = tmux.start("udp", client(server.port, "carol", "--proto", "udp"))
    tmux.wait_screen(a, "alice joined #lobby")
    tmux.wait_screen(u, "carol joined #lobby")
    tmux.type(a, "from tcp")
    tmux.type(u, "from udp")
    for target in (a, u):
        tmux.wait_screen(target, "<alice> from tcp", "<carol> from udp")
    tmux.keys(u, "C-x")
    tmux.wait_dead(u)
    tmux.keys(a, "C-x")
    tmux.wait_dead(a)


def test_serve_runs_a_server_in_the_client_and_port_taken_joins(tmux):
    """
    --serve starts the chat service in-process; a second --serve on that port says so and joins
    it.
    """
    port = free_port()
    host = tmux.start("host", client(port, "hostess", "--serve"))
    tmux.wait_screen(host, f"Serving chat on 127.0.0.1:{port}", "hostess joined #lobby")
    guest = tmux.start("guest", client(port, "guest", "--serve"))
    tmux.wait_screen(guest, f"Port {port} on 127.0.0.1 is taken: joining the server already there.")
    tmux.wait_screen(guest, "guest joined #lobby")
    tmux.type(guest, "hi host")
    tmux.wait_screen(host, "<guest> hi host")
    tmux.keys(host, "C-x")
    tmux.wait_dead(host)
    tmux.wait_screen(guest, "Disconnected")
    tmux.keys(guest, "C-x")
    tmux.wait_dead(guest)


def test_wrong_port_is_one_clear_line_not_a_traceback(tmux):
    """
    Nothing listening: one 'Cannot connect' line on screen, no traceback; Ctrl-X still ends it.
    """
    port = free_port()
    target = tmux.start("lonely", client(port, "alice"))
    screen = tmux.wait_screen(
        target, f"Cannot connect to 127.0.0.1:{port}: connection refused. Retrying."
    )
    assert "Traceback" not in screen
    time.sleep(1.0)
    assert tmux.screen(target).count("Cannot connect") == 1
    tmux.keys(target, "C-x")
    tmux.wait_dead(target)


def test_page_up_stops_at_the_top_at_120x35(tmux, chat_server):
    """
    62 lines in a 120x35 terminal (issue #17): two PageUps show the first line at the top
    and a full screen below it, no blank rows.
    """
    server = chat_server("--flood-burst", "100")
    a = tmux.start("alice", client(server.port, "alice"), width=120, height=35)
    tmux.wait_screen(a, "alice joined #lobby", "connected")
    bob = LineClient("127.0.0.1", server.port).register("bob")
    bob.send("JOIN #lobby", *(f"PRIVMSG #lobby :line {i:02d}" for i in range(62)))
    tmux.wait_screen(a, "<bob> line 61")
    bob.close()
    tmux.keys(a, "PPage")
    tmux.wait_screen(a, "(scrolled back")
    tmux.keys(a, "PPage")
    time.sleep(0.5)
    rows = tmux.screen(a).split("\n")[:33]  # the transcript: all but the status and input lines
    print("\n".join(rows))
    assert all(row.strip() for row in rows), "a blank row in the transcript"
    assert "alice joined #lobby" in rows[0]  # the room's first line, at the top
    assert "<bob> line 61" not in "\n".join(rows)
    tmux.keys(a, "C-x")
    tmux.wait_dead(a)


def test_bold_and_colour_render_as_styles(tmux, chat_server):
    """
    \\x02bold\\x02 and \\x0304red\\x03 from another client (issue #17): capture-pane -e shows
    SGR bold and a foreground colour, not backslash escapes; an ESC is still escaped.
    """
    import re

    server = chat_server()
    a = tmux.start("alice", client(server.port, "alice"), width=120, height=35)
    tmux.wait_screen(a, "alice joined #lobby", "connected")
    bob = LineClient("127.0.0.1", server.port).register("bob")
    bob.send("JOIN #lobby", "PRIVMSG #lobby :\x02boldword\x02 \x0304redword\x03 \x1b[2J")
    tmux.wait_screen(a, "<bob> boldword redword \\x1b[2J")
    bob.close()
    styled = tmux.run("capture-pane", "-p", "-e", "-t", a)
    assert "\\x02" not in styled and "\\x03" not in styled
    # SGR 1 (bold) just before the bold word; a 256-colour or true-colour foreground before red.
    assert re.search(r"\x1b\[(?:[0-9;]*;)?1(?:;[0-9;]*)?m(\x1b\[[0-9;]*m)*boldword", styled), styled
    assert re.search(r"\x1b\[[0-9;]*38;[25];[0-9;]*m(\x1b\[[0-9;]*m)*redword", styled), styled
    tmux.keys(a, "C-x")
    tmux.wait_dead(a)


def test_ctcp_version_is_answered_without_opening_a_window(tmux, chat_server):
    """A CTCP VERSION to the real client (#17): a NOTICE comes back; no window opens."""
    server = chat_server()
    a = tmux.start("alice", client(server.port, "alice"), width=120, height=35)
    tmux.wait_screen(a, "alice joined #lobby", "connected")
    bob = LineClient("127.0.0.1", server.port).register("bob")
    bob.send("PRIVMSG alice :\x01VERSION\x01")
    reply = bob.wait_for(lambda line: " NOTICE bob " in line)
    assert reply.endswith(":\x01VERSION twistchat\x01")
    bob.send("PRIVMSG alice :after the version")  # lines stay in order: this one comes later
    tmux.wait_screen(a, "3:bob(1!)")
    screen = tmux.screen(a)
    assert "VERSION" not in screen
    bob.close()
    tmux.keys(a, "C-x")
    tmux.wait_dead(a)
