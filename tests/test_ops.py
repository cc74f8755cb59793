"""
Operating the server: listen failures in one line, SIGTERM, logs that fit the journal (issue #6).
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from tests import unitrun
from tests.serverproc import LineClient, ServerProcess, free_port, source_env, twistd_path
from twistchat.logging_setup import format_line

JOURNAL_LINE = re.compile(r"^<[0-7]>\[[\w.\-]+\] \S")


def _run_twistd(*args: str, cwd: Path, preexec_fn=None,
                timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([twistd_path(), "-n", "--pidfile=", "chat", *args], cwd=cwd,
                          env=source_env(), capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec_fn)


def _the_error_line(out: subprocess.CompletedProcess) -> str:
    """The one line that says why; fails if there is a traceback or more than one such line."""
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if "cannot listen" in line]
    assert len(lines) == 1, text
    return lines[0]


def test_port_taken_exits_non_zero_with_one_line(tmp_path):
    """Another socket holds the port: exit status 1 and one line naming the address and why."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = _run_twistd("--interface=127.0.0.1", f"--port={port}", cwd=tmp_path)
    assert out.returncode == 1
    line = _the_error_line(out)
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1: 127.0.0.1:{port}: " \
           "Address already in use" in line, line


def test_second_listener_taken_names_that_listener(tmp_path):
    """The failing --listen is the one named, not the default port that opened fine."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        out = _run_twistd("--interface=127.0.0.1", f"--port={free_port()}",
                          "--listen", f"tcp:{taken}:interface=127.0.0.1", cwd=tmp_path)
    assert out.returncode == 1
    assert f"cannot listen on tcp:{taken}:interface=127.0.0.1" in _the_error_line(out)


def test_udp_port_taken_exits_non_zero_with_one_line(tmp_path):
    """The UDP front-end's port is held by another socket: one line naming it, status 1."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        out = _run_twistd("--interface=127.0.0.1", f"--port={port}", "--proto=both", cwd=tmp_path)
    assert out.returncode == 1
    line = _the_error_line(out)
    assert f"cannot listen on udp:{port}:interface=127.0.0.1: 127.0.0.1:{port}: " \
           "Address already in use" in line, line


def test_port_not_permitted_exits_non_zero_with_one_line(tmp_path):
    """A port below ip_unprivileged_port_start, without CAP_NET_BIND_SERVICE: one line, status 1."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 1:
        pytest.skip(f"net.ipv4.ip_unprivileged_port_start is {start}: every port is permitted")
    # The unit's sandbox: no capabilities (even as root), no new privileges.
    tmp_path.chmod(0o755)
    out = _run_twistd("--interface=127.0.0.1", "--port=1", cwd=tmp_path,
                      preexec_fn=unitrun.sandbox(mdwe=False))
    assert out.returncode == 1
    line = _the_error_line(out)
    assert "cannot listen on tcp:1:interface=127.0.0.1: 127.0.0.1:1: Permission denied" in line


def test_unusable_tls_files_exit_non_zero_with_one_line(tmp_path):
    """An ssl: listener whose key file does not exist: one line on stderr naming it, status 1."""
    missing = tmp_path / "no-such-key.pem"
    description = f"ssl:{free_port()}:privateKey={missing}:certKey={missing}:interface=127.0.0.1"
    out = _run_twistd("--interface=127.0.0.1", f"--port={free_port()}", "--listen", description,
                      cwd=tmp_path)
    assert out.returncode == 1
    line = _the_error_line(out)
    assert line.startswith(f"twistd chat: cannot listen on {description}: "), line
    assert "No such file" in line


def test_sigterm_stops_within_seconds(chat_server):
    """SIGTERM with clients connected and talking: the server exits cleanly within 5 s."""
    server = chat_server()
    alice = LineClient(server.host, server.port).register("alice")
    bob = LineClient(server.host, server.port).register("bob")
    for client in (alice, bob):
        client.join("#bye")
    alice.send("PRIVMSG #bye :last words")
    bob.wait_for(lambda line: "last words" in line)
    started = time.monotonic()
    code = server.stop(signal.SIGTERM, timeout=10)
    took = time.monotonic() - started
    assert unitrun.clean_exit(code), server.log()
    assert took < 5, f"took {took:.1f} s"
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        alice.wait_for(lambda line: False, timeout=5)  # the server closed the connection
    log = server.log()
    assert "Server Shut Down." in log and "Traceback" not in log


class JournalServer(ServerProcess):
    """The server with the unit's logger (one line per event, syslog priority prefix)."""

    @property
    def command(self) -> list:
        command = super().command
        return [command[0], "--logger=twistchat.logging_setup.journal_observer", *command[1:]]


def test_client_errors_are_one_line_events_with_peer_and_reason(tmp_path, monkeypatch):
    """Flood, bad bytes, an over-long line, a reset: each an INFO event with peer and reason.

    No traceback.
    """
    monkeypatch.setenv("JOURNAL_STREAM", "8:4242")  # as systemd sets it when stdout is the journal
    server = JournalServer(tmp_path, "--flood-burst=5", "--flood-rate=1",
                           "--flood-queue=2").start()
    try:
        flooder = LineClient(server.host, server.port).register("flooder")
        flooder.send(*[f"PRIVMSG flooder :{n}" for n in range(20)])
        flooder.wait_for(lambda line: line.startswith("ERROR") and "Excess Flood" in line)
        flooder.close()

        messy = LineClient(server.host, server.port).register("messy")
        messy.sock.sendall(b"PRIVMSG messy :\xff\xfe not utf-8\r\n")
        messy.wait_for(lambda line: "INVALID_UTF8" in line)
        messy.send("PRIVMSG messy :" + "x" * 2000)
        messy.wait_for(lambda line: " 417 " in line)
        # An abortive close (RST): the reason is the kernel's, the event is ours.
        messy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        messy.close()

        LineClient(server.host, server.port).register("witness").close()
        deadline = time.monotonic() + 10
        while "disconnect 127.0.0.1 witness" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    log = server.log()
    for line in log.splitlines():
        assert JOURNAL_LINE.match(line), f"not one event per line: {line!r}"
    assert "Traceback" not in log and "Unhandled" not in log
    assert "<6>[twistchat.frontends.irc.IRCProtocol] drop 127.0.0.1: Excess Flood" in log
    assert ("<6>[twistchat.frontends.irc.IRCProtocol] disconnect 127.0.0.1 flooder: Excess Flood"
            in log)
    assert re.search(r"<6>\[twistchat\.frontends\.irc\.IRCProtocol\] "
                     r"disconnect 127\.0\.0\.1 messy: \S", log)
    assert f"<6>[twistchat.listen] listening on tcp:{server.port}:interface=127.0.0.1" in log


def _failure() -> Failure:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        return Failure()


def test_a_failure_is_folded_into_one_line():
    """Our own bug (log.failure) still gives one line: message, exception, innermost frames."""
    event = {"log_format": "error handling {verb}", "verb": "PRIVMSG",
             "log_level": LogLevel.critical, "log_namespace": "twistchat.frontends.irc",
             "log_failure": _failure(), "log_time": 0.0}
    line = format_line(event, journal=True)
    assert "\n" not in line
    assert line.startswith(
        "<2>[twistchat.frontends.irc] error handling PRIVMSG: ZeroDivisionError: ")
    assert "(at test_ops.py:" in line


def test_outside_the_journal_lines_carry_a_timestamp():
    """Without $JOURNAL_STREAM (a terminal, a file) each line starts with the time and level."""
    event = {"log_format": "connect {peer}\nsecond line", "peer": "::1",
             "log_level": LogLevel.info, "log_namespace": "twistchat.frontends.irc",
             "log_time": 0.0}
    line = format_line(event, journal=False)
    assert re.match(r"^1970-01-01T00:00:00\S* \[twistchat\.frontends\.irc#info\] "
                    r"connect ::1 second line$", line)
