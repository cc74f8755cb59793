"""
``python -m clients.ptk --sasl`` end to end (issue #14): the real server with a
``--db`` file, the real client in tmux (tests.test_ptk_tmux's harness).

The account is made on the wire with ``REGISTER`` (draft/account-registration);
the client gets the password from ``$TWISTCHAT_PASSWORD`` (or a password file),
logs in, and another client's WHOIS shows 330.  The password must be on no
screen, in no log, and in no process's command line: the shell in the tmux
window exports it from a file and ``exec``s the client, so it is never an
argument of anything.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.probe import Probe, codes
from tests.serverproc import REPO, ServerProcess, source_env
from tests.test_ptk_tmux import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (apt-get install tmux; .ci/run does)")

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def term():
    """A private tmux server, killed (only it) after the test."""
    t = Tmux()
    yield t
    t.kill()


@pytest.fixture
def server(tmp_path):
    started = [ServerProcess(tmp_path, f"--db={tmp_path / 'chat.sqlite3'}").start()]
    yield started
    for s in started:
        s.stop()


def register(server: ServerProcess, account: str) -> None:
    """Make ``account`` over the wire: REGISTER * * <password> (the nick is the account)."""
    maker = Probe(server, caps="draft/account-registration", nick=account)
    assert "900" in codes(maker.ask(f"REGISTER * * {PASSWORD}"))
    maker.client.send("QUIT :made")
    maker.client.wait_for(lambda text: text.startswith("ERROR"))
    maker.close()


def start_client(term: Tmux, name: str, secret_file: Path | None, *argv: str) -> str:
    """
    Run the client in a tmux window; ``secret_file``'s content becomes
    ``$TWISTCHAT_PASSWORD`` through the shell (no argv ever holds it).
    """
    env = source_env()
    export = f"export PYTHONPATH={shlex.quote(env['PYTHONPATH'])} TERM=xterm-256color; "
    if secret_file is not None:
        export += f'export TWISTCHAT_PASSWORD="$(cat {shlex.quote(str(secret_file))})"; '
    command = f"cd {shlex.quote(str(REPO))} && {export}exec {shlex.join(argv)}"
    if not term.started:
        term.run("new-session", "-d", "-s", "e2e", "-n", name, "-x", "110", "-y", "30", command)
        term.run("set-option", "-g", "remain-on-exit", "on")
        term.started = True
    else:
        term.run("new-window", "-d", "-t", "e2e", "-n", name, command)
    return f"e2e:{name}"


def pane_pid(term: Tmux, target: str) -> int:
    return int(term.run("display-message", "-p", "-t", target, "#{pane_pid}").strip())


def client_argv(port: int, *extra: str) -> list:
    return [sys.executable, "-m", "clients.ptk", "127.0.0.1", "--port", str(port), *extra]


def whois_account(server: ServerProcess, nick: str) -> str | None:
    """The account WHOIS ``nick`` names in 330, or None."""
    probe = Probe(server)
    try:
        replies = probe.ask(f"WHOIS {nick}")
        found = [m for m in replies if m.command == "330"]
        return found[0].params[2] if found else None
    finally:
        probe.close()


def wait_account(server: ServerProcess, nick: str, account: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while whois_account(server, nick) != account:
        assert time.monotonic() < deadline, f"WHOIS {nick} never showed 330 {account}"
        time.sleep(0.2)


def no_password_anywhere(term: Tmux, target: str, log: Path) -> None:
    """Not on the screen (every window), not in the debug log, not in the command line."""
    pid = pane_pid(term, target)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"clients.ptk" in cmdline  # the pane's process is the client itself (exec)
    assert PASSWORD.encode() not in cmdline
    for window in "123":
        term.keys(target, f"M-{window}")
        time.sleep(0.2)
        assert PASSWORD not in term.screen(target)
    assert PASSWORD not in log.read_text()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_sasl_logs_in_over_both_transports_whois_shows_330(term, server, tmp_path, proto):
    """REGISTER on the wire; the client with $TWISTCHAT_PASSWORD logs in; WHOIS: 330."""
    account = f"teach{proto}"
    register(server[0], account)
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    log = tmp_path / "client.log"
    argv = client_argv(server[0].port, "--sasl", account, "--log", str(log), "--proto", proto)
    target = start_client(term, "teach", secret, *argv)
    term.wait_screen(target, f"{account} joined #lobby", f"[{account}]")
    wait_account(server[0], account, account)
    term.keys(target, "M-1")
    term.wait_screen(target, f"Logged in as {account}.")
    no_password_anywhere(term, target, log)
    term.keys(target, "C-x")
    term.wait_dead(target)
    assert "Traceback" not in log.read_text()


def test_a_wrong_password_is_one_line_and_the_client_stays(term, server, tmp_path):
    """--password-file with a wrong password: one clear line, connected, no account."""
    register(server[0], "teacher")
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    log = tmp_path / "client.log"
    argv = client_argv(server[0].port, "--sasl", "teacher", "--password-file", str(wrong),
                       "--nick", "student", "--log", str(log))
    target = start_client(term, "student", None, *argv)
    term.wait_screen(target, "student joined #lobby")
    term.keys(target, "M-1")  # the status window: where the login's outcome is shown
    screen = term.wait_screen(target, "Login as teacher failed (wrong account or password): "
                              "connected without an account.")
    assert screen.count("Login as teacher failed") == 1
    assert whois_account(server[0], "student") is None
    term.keys(target, "M-2")
    probe = Probe(server[0])
    probe.join("#lobby")
    term.type(target, "hello after the failure")
    line = probe.client.wait_for(lambda text: "hello after the failure" in text)
    assert line.startswith(":student!")
    probe.close()
    term.keys(target, "C-x")
    term.wait_dead(target)
    assert "not-the-password" not in log.read_text()


def test_the_client_logs_in_again_after_the_server_restarts(term, server, tmp_path):
    """The server stops and starts on the same --db and port: the TCP client logs in again."""
    register(server[0], "teacher")
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD)
    log = tmp_path / "client.log"
    first = server[0]
    argv = client_argv(first.port, "--sasl", "teacher", "--log", str(log))
    target = start_client(term, "teacher", secret, *argv)
    term.wait_screen(target, "teacher joined #lobby")
    wait_account(first, "teacher", "teacher")
    first.stop()
    time.sleep(0.5)  # the accounts are written at the clean stop
    again = ServerProcess(tmp_path, f"--db={tmp_path / 'chat.sqlite3'}", port=first.port)
    server.append(again.start())
    wait_account(again, "teacher", "teacher", timeout=30)
    term.keys(target, "M-1")
    screen = term.wait_screen(target, "Logged in as teacher.")
    deadline = time.monotonic() + 10
    while screen.count("Logged in as teacher.") < 2:
        assert time.monotonic() < deadline, screen
        time.sleep(0.2)
        screen = term.screen(target)
    no_password_anywhere(term, target, log)
    term.keys(target, "C-x")
    term.wait_dead(target)
