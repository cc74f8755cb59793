"""
Start the real server, ``twistd -n chat``, as a subprocess on loopback.

Not a test module.  Tests use the :func:`chat_server` fixture from conftest.py,
or :class:`ServerProcess` directly when they restart a server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def twistd_path() -> str:
    """The twistd of this Python (beside sys.executable), else the one on PATH."""
    beside = Path(sys.executable).parent / "twistd"
    if beside.exists():
        return str(beside)
    found = shutil.which("twistd")
    if found is None:
        raise RuntimeError("twistd is not installed (pip install Twisted)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, whose UDP twin (the same number) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair found")


def source_env() -> dict:
    """The environment for a child that must run this source tree, not an older install."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def stop_child(proc: subprocess.Popen, sig: int = signal.SIGTERM,
               timeout: float = 10.0) -> int:
    """Stop a child we started, by its pid: ``sig``, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def catches_sigterm(pid: int) -> bool:
    """
    Whether ``pid`` has its own SIGTERM handler yet (Linux: /proc/PID/status SigCgt).

    twistd listens before its reactor runs and installs the handler only when it
    does; a SIGTERM in between kills it by default, leaving its pid file behind.
    So "accepts TCP" is not yet "ready to stop cleanly".  Without /proc: True.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return True


class ServerProcess:
    """One ``twistd -n chat`` child, stopped by pid."""

    def __init__(self, workdir: Path, *args: str, port: int = None,
                 host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.args = list(args)
        self.proc = None
        self.log_path = self.workdir / f"twistd-{self.port}.log"

    @property
    def command(self) -> list:
        return [twistd_path(), "-n", "--pidfile=", "chat", f"--interface={self.host}",
                f"--port={self.port}", *self.args]

    def start(self, timeout: float = 15.0) -> ServerProcess:
        """Start the server and wait until it accepts TCP connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=source_env(),
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            if catches_sigterm(self.proc.pid):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"twistd did not listen within {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Stop the child by pid (SIGTERM, then SIGKILL after ``timeout``); its exit code."""
        if self.proc is None:
            return 0
        code = stop_child(self.proc, sig, timeout)
        self._log.close()
        return code

    def log(self) -> str:
        """Everything the server logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class LineClient:
    """A blocking IRC client on a real socket, for end-to-end tests (bounded waits)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""
        self.seen = []

    def send(self, *lines: str) -> None:
        self.sock.sendall(b"".join(line.encode() + b"\r\n" for line in lines))

    def register(self, nick: str) -> LineClient:
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        self.wait_for(lambda line: " 001 " in line)
        return self

    def join(self, room: str) -> LineClient:
        """JOIN ``room`` and read up to the end of its NAMES reply (366)."""
        self.send(f"JOIN {room}")
        self.wait_for(lambda line: " 366 " in line)
        return self

    def read_line(self, deadline: float) -> str:
        while b"\r\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line in time; seen: {self.seen[-10:]}")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed by server; seen: {self.seen[-10:]}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        text = line.decode("utf-8", "replace")
        self.seen.append(text)
        if text.startswith("PING "):
            self.send("PONG " + text[5:])
        return text

    def wait_for(self, predicate, timeout: float = None) -> str:
        """Read lines until one satisfies ``predicate``; return it."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self.read_line(deadline)
            if predicate(line):
                return line

    def close(self) -> None:
        self.sock.close()


def build_wheel(workdir: Path) -> Path:
    """
    ``pip wheel`` of this source tree, built from a clean copy of it in ``workdir``.

    setuptools builds in the source tree, and files an earlier build left in
    build/lib would be packed too, hiding a missing package: hence the copy.
    """
    source = Path(workdir) / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", ".git", "__pycache__", ".hypothesis", "*.sqlite3*"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                          "-w", str(workdir), str(source)],
                         capture_output=True, text=True, timeout=300, cwd=workdir)
    assert out.returncode == 0, out.stderr
    return next(Path(workdir).glob("twistchat-*.whl"))
