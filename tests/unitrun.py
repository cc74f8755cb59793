"""
Run the shipped systemd unit's command line outside systemd, as close to the unit as we can.

Not a test module: ``tests.test_systemd`` and ``tests.test_ops`` use it.

There is no systemd (PID 1) in a test run, so :func:`sandbox` applies by hand
the parts of the unit's hardening that a plain process can apply to itself:
``UMask=0077``, ``NoNewPrivileges=yes``, ``MemoryDenyWriteExecute=yes`` (the
kernel's ``PR_SET_MDWE``, Linux 6.3+, where it exists), an empty
``CapabilityBoundingSet=`` and, when the tests run as root, a user of its own
(nobody, standing in for ``DynamicUser=yes``).
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.serverproc import REPO

UNIT_DIR = REPO / "contrib" / "systemd"
SERVICE = UNIT_DIR / "twistchat.service"
SOCKET = UNIT_DIR / "twistchat.socket"
SOCKET_DROPIN = UNIT_DIR / "twistchat-socket.conf"
TLS_DROPIN = UNIT_DIR / "twistchat-tls.conf"
INSTALLED_TWISTD = "/opt/twistchat/bin/twistd"
NOBODY = 65534

_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1
_libc = ctypes.CDLL(None, use_errno=True)


def service_entries(path: Path, key: str) -> list:
    """The values of ``key=`` in the [Service] section, in order (no line continuations)."""
    values, section = [], None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            name, value = line.split("=", 1)
            if name.strip() == key:
                values.append(value.strip())
    return values


def exec_start(*paths: Path) -> list:
    """The ExecStart argv that systemd would run: an empty ExecStart= resets, the last wins."""
    command = None
    for path in paths:
        for value in service_entries(path, "ExecStart"):
            command = shlex.split(value) if value else None
    assert command, f"no ExecStart in {paths}"
    return command


def unit_environment(path: Path) -> dict:
    """The variables the unit's Environment= lines set."""
    env = {}
    for value in service_entries(path, "Environment"):
        for assignment in shlex.split(value):
            name, _, val = assignment.partition("=")
            env[name] = val
    return env


def localize(argv: list, twistd: str, port: int, tls_port: int = None,
             credentials: Path = None) -> list:
    """
    The unit's command for this test run: this venv's twistd, loopback, free ports.

    Only those words change (and ``%d``, systemd's credentials directory);
    every other argument stays as written.
    """
    out = []
    for word in argv:
        if word == INSTALLED_TWISTD:
            word = twistd
        elif word == "--interface=0.0.0.0":
            word = "--interface=127.0.0.1"  # tests listen on loopback only
        elif word == "--port=6667":
            word = f"--port={port}"
        elif word.startswith("--listen=ssl:6697:"):
            assert tls_port and credentials, word
            word = word.replace("ssl:6697:", f"ssl:{tls_port}:").replace(
                "interface=0.0.0.0", "interface=127.0.0.1").replace("%d", str(credentials))
        out.append(word)
    assert out[0] == twistd, f"ExecStart does not start with {INSTALLED_TWISTD}: {argv}"
    return out


def mdwe_supported() -> bool:
    """Whether this kernel has PR_SET_MDWE (tried in a child, which it would change)."""
    probe = ("import ctypes, sys; "
             f"sys.exit(ctypes.CDLL(None).prctl({_PR_SET_MDWE}, "
             f"{_PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0))")
    return subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0


def _drop_to_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


_can_run_as_nobody = None


def run_as() -> int:
    """
    The uid the sandboxed server runs as: nobody when we are root and nobody can
    run this Python (a Python under /root cannot), else ourselves.  Root without
    capabilities (empty bounding set, see :func:`sandbox`) is the fallback.
    """
    global _can_run_as_nobody
    if os.geteuid() != 0:
        return os.geteuid()
    if _can_run_as_nobody is None:
        try:
            _can_run_as_nobody = subprocess.run(
                [sys.executable, "-c", "import twisted"], preexec_fn=_drop_to_nobody,
                cwd="/", capture_output=True, timeout=30).returncode == 0
        except OSError:
            _can_run_as_nobody = False
    return NOBODY if _can_run_as_nobody else 0


def unit_sets(setting: str) -> bool:
    """Whether the service unit turns a boolean setting on, e.g. ``MemoryDenyWriteExecute``."""
    values = service_entries(SERVICE, setting)
    return bool(values) and values[-1].lower() in ("yes", "true", "on", "1")


def clean_exit(code: int) -> bool:
    """
    Whether a twistd exit status is a clean stop after SIGTERM.

    twistd re-raises the signal that stopped its reactor, so a clean stop reads
    as -SIGTERM; systemd counts SIGTERM as success (SuccessExitStatus=, systemd.service(5)).
    """
    return code in (0, -signal.SIGTERM)


def sandbox(mdwe: bool = None):
    """
    A ``preexec_fn`` applying the unit's hardening that a process can apply to itself.

    ``mdwe``: refuse writable+executable memory (default: as the unit says).
    """
    as_nobody = run_as() == NOBODY
    if mdwe is None:
        mdwe = unit_sets("MemoryDenyWriteExecute")

    def apply() -> None:
        os.umask(0o077)  # UMask=0077
        if os.geteuid() == 0:
            # CapabilityBoundingSet= (empty): after exec even uid 0 holds no capability.
            for cap in range(64):
                _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
            if as_nobody:
                _drop_to_nobody()  # DynamicUser=yes, approximately
        _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # NoNewPrivileges=yes
        if mdwe:  # MemoryDenyWriteExecute=yes
            _libc.prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)

    return apply


def state_directory() -> Path:
    """A directory owned by the sandbox user, mode 0700 (StateDirectory=, StateDirectoryMode=)."""
    # pytest's tmp_path lives under a root-only directory; the unit's user could not reach it.
    path = Path(tempfile.mkdtemp(prefix="twistchat-state-", dir="/tmp"))
    os.chown(path, run_as(), run_as())
    path.chmod(0o700)
    return path
