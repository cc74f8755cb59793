"""
The shipped systemd units (contrib/systemd/): verified, rated, and their command lines run.

``systemd-analyze`` (Debian package ``systemd``) checks the files; there is no
systemd to start them, so the ExecStart lines run here as subprocesses under
the hardening a process can apply to itself (tests/unitrun.py), and
``systemd-socket-activate`` (same package) stands in for the .socket unit.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests import unitrun
from tests.serverproc import REPO, LineClient, free_port, twistd_path
from tests.tlsfiles import make_tls_files

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)")
MAX_EXPOSURE = 2.0


def _unit_copies(tmp_path: Path) -> Path:
    """The units in a directory of their own, ExecStart pointed at this venv's twistd.

    ``systemd-analyze verify`` checks that the ExecStart binary exists, and
    /opt/twistchat is not installed here; nothing else in the files changes.
    """
    out = tmp_path / "units"
    (out / "twistchat.service.d").mkdir(parents=True)
    for source, target in ((unitrun.SERVICE, out / "twistchat.service"),
                           (unitrun.SOCKET, out / "twistchat.socket"),
                           (unitrun.SOCKET_DROPIN,
                            out / "twistchat.service.d" / "twistchat-socket.conf"),
                           (unitrun.TLS_DROPIN,
                            out / "twistchat.service.d" / "twistchat-tls.conf")):
        target.write_text(source.read_text().replace(unitrun.INSTALLED_TWISTD, twistd_path()))
    return out


@needs_analyze
def test_units_verify_clean(tmp_path):
    """``systemd-analyze verify`` on the service, the socket and both drop-ins: no complaint."""
    units = _unit_copies(tmp_path)
    for unit in ("twistchat.service", "twistchat.socket"):
        out = subprocess.run([ANALYZE, "verify", str(units / unit)], capture_output=True,
                             text=True, timeout=60, cwd=units)
        assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), \
            f"{unit}:\n{out.stdout}{out.stderr}"


@needs_analyze
def test_service_exposure_is_at_most_2(tmp_path):
    """``systemd-analyze security --offline=true`` rates the shipped unit 2.0 or lower."""
    out = subprocess.run([ANALYZE, "security", "--offline=true", str(unitrun.SERVICE)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if "--offline" in out.stderr and "unrecognized" in out.stderr:
        pytest.skip(f"this systemd-analyze has no --offline (systemd 250+): {out.stderr.strip()}")
    match = re.search(r"Overall exposure level for twistchat\.service: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, out.stdout


def test_unit_keeps_the_promised_settings():
    """The settings issue #6 names are in the unit (a rename would not go unnoticed)."""
    text = unitrun.SERVICE.read_text()
    for setting in ("DynamicUser=yes", "StateDirectory=twistchat", "ProtectSystem=strict",
                    "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                    "NoNewPrivileges=yes", "RestrictAddressFamilies=",
                    "SystemCallFilter=@system-service",
                    "CapabilityBoundingSet=\n", "LockPersonality=yes",
                    "Restart=on-failure"):
        assert setting in text, setting


class UnitProcess:
    """A unit's ExecStart as a sandboxed child, stopped by pid."""

    def __init__(self, argv: list, workdir: Path, log_path: Path, launcher: list = (),
                 mdwe: bool = None) -> None:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO),
               "JOURNAL_STREAM": "8:4242"}  # as systemd sets it: stdout is the journal
        env.update(unitrun.unit_environment(unitrun.SERVICE))
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([*launcher, *argv], cwd=workdir, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=unitrun.sandbox(mdwe))

    def wait_listening(self, port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nothing listens on {port} after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> tuple:
        """SIGTERM by pid; (exit code, seconds it took).  SIGKILL if it overstays."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode, time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def unit_run(tmp_path):
    """Start sandboxed unit command lines; each is stopped by pid at the end."""
    started, states = [], []

    def start(argv, launcher=(), mdwe=None):
        state = unitrun.state_directory()
        states.append(state)
        process = UnitProcess(argv, state, tmp_path / f"unit-{len(started)}.log", launcher, mdwe)
        process.state = state
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for state in states:
        shutil.rmtree(state, ignore_errors=True)


def _assert_journal_lines(log: str) -> None:
    """Every line is one event with a syslog priority prefix; no traceback anywhere."""
    lines = log.splitlines()
    assert lines
    for line in lines:
        assert re.match(r"^<[0-7]>\[[\w.\-]+\] \S", line), f"not one event per line: {line!r}"
    assert "Traceback" not in log


def test_execstart_as_written_serves_irc_and_stops_on_sigterm(unit_run):
    """The unit's ExecStart (loopback and a free port swapped in) serves IRC, then stops cleanly."""
    port = free_port()
    argv = unitrun.localize(unitrun.exec_start(unitrun.SERVICE), twistd_path(), port)
    server = unit_run(argv)
    server.wait_listening(port)
    alice = LineClient("127.0.0.1", port).register("alice")
    bob = LineClient("127.0.0.1", port).register("bob")
    for client in (alice, bob):
        client.join("#ops")
    alice.send("PRIVMSG #ops :from the unit")
    assert bob.wait_for(lambda line: "PRIVMSG" in line).endswith("PRIVMSG #ops :from the unit")
    code, took = server.stop()
    assert unitrun.clean_exit(code), server.log()
    assert took < 5, f"SIGTERM took {took:.1f} s"
    log = server.log()
    _assert_journal_lines(log)
    assert f"<6>[twistchat.listen] listening on tcp:{port}:interface=127.0.0.1" in log
    assert "registered 127.0.0.1 as alice" in log
    # History went to the state directory (WorkingDirectory=) and was flushed before exit.
    stored = b"".join(p.read_bytes() for p in server.state.glob("twistchat.sqlite3*"))
    assert b"from the unit" in stored, sorted(p.name for p in server.state.iterdir())


def _tls_welcome(unit_run, mdwe: bool) -> tuple:
    """Run the TLS drop-in's ExecStart; (bytes a verifying TLS client got, server)."""
    port, tls_port = free_port(), free_port()
    state = unitrun.state_directory()
    try:
        files = make_tls_files(state / "pki")
        # LoadCredential=: systemd copies the files into %d, readable by the service's user.
        credentials = state / "credentials"
        credentials.mkdir()
        shutil.copy(files.server_key, credentials / "key.pem")
        shutil.copy(files.server_cert, credentials / "cert.pem")
        for path in (credentials, *credentials.iterdir()):
            shutil.chown(path, unitrun.run_as(), unitrun.run_as())
        argv = unitrun.localize(unitrun.exec_start(unitrun.SERVICE, unitrun.TLS_DROPIN),
                                twistd_path(), port, tls_port, credentials)
        server = unit_run(argv, mdwe=mdwe)
        server.wait_listening(tls_port)
        context = ssl.create_default_context(cafile=str(files.ca_cert))
        received = b""
        try:
            with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"NICK unit\r\nUSER unit 0 * :unit\r\n")
                    deadline = time.monotonic() + 10
                    while b" 001 " not in received and time.monotonic() < deadline:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        received += chunk
        except (ssl.SSLError, OSError):
            pass
        return received, server
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_execstart_with_tls_runs_under_the_units_memory_settings(unit_run):
    """The TLS drop-in's ExecStart serves TLS under the unit's hardening.

    MemoryDenyWriteExecute= too.
    """
    if unitrun.unit_sets("MemoryDenyWriteExecute") and not unitrun.mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+): cannot emulate "
                    "MemoryDenyWriteExecute=yes outside systemd")
    received, server = _tls_welcome(unit_run, mdwe=None)
    assert b" 001 unit " in received, server.log()
    code, _ = server.stop()
    assert unitrun.clean_exit(code), server.log()
    _assert_journal_lines(server.log())


def test_memory_deny_write_execute_still_breaks_tls(unit_run):
    """Why the unit says MemoryDenyWriteExecute=no: under it, pyOpenSSL's cffi callbacks fail."""
    if not unitrun.mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    received, server = _tls_welcome(unit_run, mdwe=True)
    server.stop()
    if b" 001 unit " in received:
        pytest.fail("TLS now works without writable+executable memory: set "
                    "MemoryDenyWriteExecute=yes in contrib/systemd/twistchat.service")
    assert "write+execute memory" in server.log()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed (Debian package systemd)")
def test_socket_activation_through_the_systemd_endpoint(unit_run):
    """twistchat.socket + its drop-in: the server adopts the socket systemd opened, and serves."""
    port = free_port()
    socket_text = unitrun.SOCKET.read_text()
    assert "ListenStream=0.0.0.0:6667" in socket_text and "Accept=no" in socket_text
    argv = unitrun.localize(unitrun.exec_start(unitrun.SERVICE, unitrun.SOCKET_DROPIN),
                            twistd_path(), port)
    assert "--listen=systemd:domain=INET:index=0" in argv and "--no-default-listener" in argv
    # systemd names the descriptor after the socket unit; Twisted wants LISTEN_FDNAMES set.
    launcher = [shutil.which("systemd-socket-activate"), f"--listen=127.0.0.1:{port}",
                "--fdname=twistchat.socket", "-E", "PYTHONPATH", "-E", "JOURNAL_STREAM",
                "-E", "PYTHONUNBUFFERED", "-E", "PYTHONDONTWRITEBYTECODE"]
    server = unit_run(argv, launcher=launcher)
    server.wait_listening(port)  # systemd-socket-activate holds the port from the start
    client = LineClient("127.0.0.1", port, timeout=20).register("sockact")
    client.join("#sa")
    client.close()
    code, took = server.stop()
    assert unitrun.clean_exit(code) and took < 5, server.log()
    log = server.log()
    assert f"listening on systemd:domain=INET:index=0 (127.0.0.1:{port})" in log
    assert "registered 127.0.0.1 as sockact" in log
