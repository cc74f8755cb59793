"""
Starting ``twistd chat``: a bad option in one line, and no pid file in the foreground.

Issue #12, item 12.  The first tests parse options in this process; the rest
run the real ``twistd`` in a temporary directory, on loopback, every process
stopped by pid, every wait bounded.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from twisted.python import usage
from twisted.scripts._twistd_unix import ServerOptions

from tests.serverproc import ServerProcess, free_port, source_env, twistd_path
from twistchat.service import Options

# A bad value, the option its line must name, and a word of the reason.
BAD_VALUES = [
    ("--port=abc", "--port", "invalid literal for int()"),       # int's ValueError
    ("--max-line=0", "--max-line", "must be at least 1"),         # a range coercer
    ("--flood-rate=fast", "--flood-rate", "could not convert"),   # float's ValueError
    ("--port=70000", "--port", "0-65535"),                        # postOptions' UsageError
    ("--proto=carrier-pigeon", "--proto", "tcp, udp or both"),    # postOptions' UsageError
    ("--no-such-option", "no-such-option", "not recognized"),     # getopt's error
]


def _twistd(*args: str, cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([twistd_path(), *args], capture_output=True, text=True,
                          env=source_env(), timeout=timeout, cwd=cwd)


def _lines(out: subprocess.CompletedProcess) -> list:
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


def test_options_alone_still_raise_usage_error():
    """Used outside twistd (no parent), Options raises UsageError naming the option."""
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--port=abc"])


def test_options_under_twistd_exit_with_the_one_line():
    """As twistd's subcommand, a coercer's ValueError becomes SystemExit: option, reason, hint."""
    with pytest.raises(SystemExit) as caught:
        ServerOptions().parseOptions(["-n", "chat", "--port=abc"])
    assert str(caught.value) == (
        "twistd chat: --port: invalid literal for int() with base 10: 'abc'\n"
        "Run 'twistd -n chat --help' for every option and its default.")


@pytest.mark.parametrize("argv, expected", [
    (["-n", "chat"], ""),                                       # foreground: no pid file
    (["--nodaemon", "chat"], ""),
    (["-n", "--pidfile=", "chat"], ""),                         # the systemd unit's form
    (["-n", "--pidfile=run/x.pid", "chat"], os.path.abspath("run/x.pid")),  # named: kept
    (["chat"], os.path.abspath("twistd.pid")),                  # a daemon: twistd's default
])
def test_pid_file_only_for_daemons_or_when_named(argv, expected):
    """``-n`` drops twistd's default ./twistd.pid; a named --pidfile and daemons keep theirs."""
    config = ServerOptions()
    config.parseOptions(argv + ["--db=:memory:"])
    assert config["pidfile"] == expected


@pytest.mark.parametrize("arg, option, reason", BAD_VALUES)
def test_bad_value_fails_in_at_most_three_lines(tmp_path, arg, option, reason):
    """The real twistd: a bad value exits non-zero in <= 3 lines naming the option, no --help."""
    out = _twistd("-n", "chat", arg, cwd=tmp_path)
    lines = _lines(out)
    assert out.returncode != 0
    assert 1 <= len(lines) <= 3, lines
    assert lines[0].startswith("twistd chat: ") and option in lines[0] and reason in lines[0], lines
    assert "twistd -n chat --help" in lines[-1]
    assert not any(line.startswith("Usage:") for line in lines)
    assert list(tmp_path.iterdir()) == []  # no pid file, no database


def test_help_still_prints_everything(tmp_path):
    """``twistd -n chat --help`` still prints the whole help, and exits 0."""
    out = _twistd("-n", "chat", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) > 50
    assert "--port=" in out.stdout and "[default: 6667]" in out.stdout


class ForegroundServer(ServerProcess):
    """``twistd -n chat`` exactly as the README runs it: no --pidfile."""

    @property
    def command(self) -> list:
        return [twistd_path(), "-n", "chat", f"--interface={self.host}",
                f"--port={self.port}", *self.args]


def test_second_server_in_the_same_directory_names_the_address(tmp_path):
    """
    Two ``twistd -n chat`` in one directory, one port: the second fails in one
    line naming the address (not "Another twistd server is running"), leaves no
    pid file, and once the first stops a third starts there.
    """
    port = free_port()
    first = ForegroundServer(tmp_path, port=port).start()
    try:
        assert not (tmp_path / "twistd.pid").exists()
        out = _twistd("-n", "chat", "--interface=127.0.0.1", f"--port={port}",
                      cwd=tmp_path, timeout=30)
        text = out.stdout + out.stderr
        assert out.returncode != 0, text
        assert "Another twistd server" not in text
        failures = [line for line in _lines(out) if "cannot listen" in line]
        assert len(failures) == 1, text
        assert f"127.0.0.1:{port}" in failures[0] and "in use" in failures[0], text
        assert not (tmp_path / "twistd.pid").exists()
    finally:
        assert first.stop() in (0, -15), first.log()  # -15: twistd re-raises SIGTERM
    third = ForegroundServer(tmp_path, port=port).start()
    assert third.stop() in (0, -15), third.log()


def test_named_pid_file_is_written_and_removed(tmp_path):
    """``twistd -n --pidfile=PATH chat``: PATH holds the server's pid while it runs."""
    pidfile = tmp_path / "chat.pid"

    class Named(ServerProcess):
        @property
        def command(self) -> list:
            return [twistd_path(), "-n", f"--pidfile={pidfile}", "chat",
                    f"--interface={self.host}", f"--port={self.port}", "--db=:memory:"]

    server = Named(tmp_path).start()
    try:
        assert pidfile.read_text() == str(server.proc.pid)
    finally:
        assert server.stop() in (0, -15), server.log()
    assert not pidfile.exists()


def _taken_port():
    """A loopback port this test holds open, so a server cannot listen there."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, holder.getsockname()[1]


def test_daemon_whose_port_is_taken_exits_and_removes_its_pid_file(tmp_path):
    """
    ``twistd chat`` (a daemon) on a taken port: the parent returns 1 naming the
    address, and no pid file is left (it used to wait forever on its child).
    """
    holder, port = _taken_port()
    with holder:
        out = _twistd("--pidfile=chat.pid", "--logfile=chat.log", "chat",
                      "--interface=127.0.0.1", f"--port={port}", "--proto=tcp",
                      "--db=:memory:", cwd=tmp_path, timeout=30)
    assert out.returncode == 1, out
    assert "cannot listen on tcp:" in out.stdout + out.stderr
    assert f"127.0.0.1:{port}: Address already in use" in (tmp_path / "chat.log").read_text()
    assert not (tmp_path / "chat.pid").exists()


def test_foreground_with_a_named_pid_file_removes_it_when_the_port_is_taken(tmp_path):
    """``twistd -n --pidfile=PATH chat`` that cannot listen: one line, status 1, no PATH left."""
    holder, port = _taken_port()
    with holder:
        out = _twistd("-n", "--pidfile=chat.pid", "chat", "--interface=127.0.0.1",
                      f"--port={port}", "--proto=tcp", "--db=:memory:", cwd=tmp_path)
    assert out.returncode == 1, out
    assert [line for line in _lines(out) if "cannot listen" in line]
    assert not (tmp_path / "chat.pid").exists()
