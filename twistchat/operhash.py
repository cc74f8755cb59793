"""
``python -m twistchat.operhash NAME``: print an ``--opers`` file line for operator NAME.

test-case-name: tests.test_operators

The password is read from the terminal without echo (getpass), or as the first
line of standard input when that is not a terminal (``... < file``, a pipe);
never from the command line, where other users' ``ps`` would show it.  The
line printed is ``NAME scrypt$n$r$p$salt$hash`` (core/passwords.py), to append
to the file ``twistd chat --opers FILE`` reads.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from twistchat.core.passwords import hash_password
from twistchat.passwordinput import read_password

__all__ = ["main", "oper_line"]


def oper_line(name: str, password: str) -> str:
    """The opers-file line of operator ``name`` with ``password`` (a fresh salt)."""
    if not name or any(c.isspace() or c == "#" for c in name):
        raise ValueError(f"operator name {name!r}: no spaces or '#', not empty")
    if not password:
        raise ValueError("the password is empty")
    return f"{name} {hash_password(password)}"


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin,
         stdout: TextIO = sys.stdout) -> int:
    """Print NAME's line; 2 with a message on stderr when the name or password is bad."""
    parser = argparse.ArgumentParser(
        prog="python -m twistchat.operhash",
        description="Print a 'name scrypt-hash' line for twistd chat --opers FILE. "
                    "The password is read from the terminal (no echo) or stdin's first line.")
    parser.add_argument("name", help="the operator name OPER will be given")
    args = parser.parse_args(argv)
    try:
        line = oper_line(args.name, read_password(stdin, "Operator password: "))
    except ValueError as e:
        print(f"operhash: {e}", file=sys.stderr)
        return 2
    print(line, file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
