"""
Start a real ``redis-server`` on loopback for the cluster's tests (issue #15).

Not a test module.  Tests use the ``redis_server`` (one per session) and ``redis_factory``
(one or more per test, e.g. with persistence, to restart or kill) fixtures from
conftest.py; ``bench/redis_clients.py`` uses :class:`RedisProcess` directly.  Its own
proof: tests/test_redis_fixture.py.

No config file is read (not /etc/redis/redis.conf, whose port 6379 and data directory
belong to the machine): every setting is on the command line, the data directory is the
test's temporary one, and the process is stopped by its pid.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.serverproc import stop_child

#: What a test that needs Redis says when it skips.
MISSING = "redis-server is not installed (Debian package redis-server)"


def redis_server_path() -> str | None:
    """The ``redis-server`` on PATH (or Debian's /usr/bin one), else None."""
    found = shutil.which("redis-server")
    if found is None and Path("/usr/bin/redis-server").exists():
        found = "/usr/bin/redis-server"
    return found


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _encode(*args: str | bytes) -> bytes:
    """One command in RESP (the Redis protocol): an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def command(host: str, port: int, *args: str | bytes, timeout: float = 2.0) -> bytes:
    """
    Send one command on a fresh connection; the first reply line (``+PONG``, ``:3``...).

    Enough for PING, FLUSHALL, SHUTDOWN and checks in tests, with no client library; the
    tests of the cluster itself use the chosen library (docs/cluster.md).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_encode(*args))
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]


class RedisProcess:
    """
    One ``redis-server`` child on ``host:port`` with its own data directory.

    ``appendonly=True`` turns the append-only file on (``appendfsync always``, so that a
    kill -9 keeps every acknowledged write): the persistence a cluster runs with, and what
    a restart test needs.  Without it nothing is ever written to disk.
    """

    def __init__(self, workdir: Path, port: int | None = None, host: str = "127.0.0.1",
                 appendonly: bool = False) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_tcp_port(host)
        # A port we picked may be taken by someone else before Redis binds it: then the
        # first start may pick another one (a restart keeps the port, clients need it).
        self._may_move = port is None
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0, as ``--cluster`` will take it."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def command(self) -> list[str]:
        """The command line: every setting given here, no config file read."""
        binary = redis_server_path()
        if binary is None:
            raise RuntimeError(MISSING)
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly
                       else ["--appendonly", "no"])
        return [binary, "--port", str(self.port), "--bind", self.host,
                "--dir", str(self.workdir), "--save", "", *persistence,
                "--daemonize", "no", "--logfile", str(self.log_path),
                # Its own pid file would be /var/run/redis_<port>.pid; the child's pid is ours.
                "--pidfile", str(self.workdir / f"redis-{self.port}.pid")]

    def start(self, timeout: float = 10.0) -> RedisProcess:
        """Start the server and wait until it answers PING (bounded by ``timeout``)."""
        for _attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError:
                if not (self._may_move and self._port_taken()):
                    raise
                self.port = free_tcp_port(self.host)
                self.log_path = self.workdir / f"redis-{self.port}.log"
        return self._start(timeout)

    def _port_taken(self) -> bool:
        """Did the server exit because its port was taken (its log says so)?"""
        return "Address already in use" in self.log()

    def _start(self, timeout: float) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command, cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n"
                                   f"{self.log()}")
            try:
                if self.ping():
                    self._may_move = False
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {timeout} s:\n"
                           f"{self.log()}")

    def ping(self) -> bool:
        """True when the server answers PING now."""
        return command(self.host, self.port, "PING", timeout=0.5) == b"+PONG"

    def flush(self) -> None:
        """Empty every database (between tests sharing the session's server)."""
        reply = command(self.host, self.port, "FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """
        Stop the child by pid (``sig``, then SIGKILL after ``timeout``); its exit code.

        SIGTERM makes Redis flush its append-only file and exit 0; ``kill()`` is the crash.
        """
        if self.proc is None:
            return None
        return stop_child(self.proc, sig, timeout)

    def kill(self) -> int | None:
        """kill -9: the crash a fault test needs (nothing flushed beyond what fsync did)."""
        return self.stop(signal.SIGKILL)

    def restart(self, timeout: float = 10.0) -> RedisProcess:
        """Stop (SIGTERM) and start again on the same port and data directory."""
        self.stop()
        return self.start(timeout)

    def log(self) -> str:
        """What the server logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
