"""
How the command-line tools read a password: never from argv.

From the terminal, asked twice without echo; otherwise the first line of
stdin (a script, a pipe), so nothing shows in ``ps`` or the shell's history.
Used by ``python -m twistchat.operhash`` and ``python -m twistchat.accounts``.
"""

from __future__ import annotations

import getpass
from typing import TextIO

__all__ = ["read_password"]


def read_password(stdin: TextIO, prompt: str = "Password: ") -> str:
    """Typed twice on a terminal, or ``stdin``'s first line; ValueError if the two differ."""
    if stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")
