"""
Starting ``twistd chat``: a bad option in one line.

Issue #12, item 12.  The first tests parse options in this process; the rest
run the real ``twistd`` in a temporary directory, on loopback, every process
stopped by pid, every wait bounded.
"""

from __future__ import annotations

import subprocess

import pytest
from twisted.python import usage
from twisted.scripts._twistd_unix import ServerOptions

from tests.serverproc import source_env, twistd_path
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


def test_help_still_prints_everything(tmp_path):
    """``twistd -n chat --help`` still prints the whole help, and exits 0."""
    out = _twistd("-n", "chat", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) > 50
    assert "--port=" in out.stdout and "[default: 6667]" in out.stdout
