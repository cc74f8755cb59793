"""
``python -m twistchat.accounts``: add, list, change and delete accounts in the server's file.

test-case-name: tests.test_accounts_tool

Subcommands ``add NAME [--email E]``, ``passwd NAME``, ``list`` and ``del
NAME``, each with ``--db FILE`` (default ``twistchat.sqlite3``, as ``twistd
chat --db``).  A password is read from the terminal without echo (twice), or
as the first line of standard input when that is not a terminal (a pipe,
``< file``); never from the command line, where other users' ``ps`` would see
it.  It is hashed with argon2id, as the server's :class:`twistchat.auth.Argon2Hasher`
does (argon2-cffi's default profile), and only the hash is written.

A running server reads accounts when it starts, and again on SIGHUP (``kill
-HUP PID``, ``systemctl reload``): changes made here while it runs take effect
then (the tool reminds you when the file is in use).  Until then that server
neither knows an account added here nor forgets one deleted here.  The file's
history and its epoch are left alone.

Design: docs/accounts.md (issue #14).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

import argon2

from twistchat.auth import MAX_PASSWORD_BYTES
from twistchat.core.accounts import Account
from twistchat.passwordinput import read_password
from twistchat.store import AccountFile, StoreError
from twistchat.wire import casefold, is_valid_nick

__all__ = ["DEFAULT_DB", "main"]

DEFAULT_DB = "twistchat.sqlite3"  # twistd chat's --db default
NICKLEN = 30  # twistd chat's --nicklen default: an account name is the nick it reserves

_RESTART_NOTE = ("note: a server has {db} open (or stopped uncleanly); it reads accounts at "
                 "start and on SIGHUP: send it SIGHUP (kill -HUP PID) for this to take effect "
                 "now, else it takes effect when it next starts")


class _Refused(Exception):
    """A request the tool refuses: bad input (status 2) or the wrong state (status 1)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _check_name(name: str) -> str:
    if not is_valid_nick(name, NICKLEN):
        raise _Refused(f"account name {name!r}: it must be a valid nick of at most {NICKLEN} "
                       "characters (a letter or one of []\\`_^{|} first, then those, digits "
                       "or '-')")
    return name


def _check_email(email: str) -> str:
    if email and (any(c.isspace() for c in email) or email.count("@") != 1
                  or email.startswith("@") or email.endswith("@")):
        raise _Refused(f"email {email!r}: expected one address like name@example.org")
    return email


def _read_password(stdin: TextIO) -> str:
    """The password from the terminal (twice, no echo) or the first line of ``stdin``."""
    try:
        password = read_password(stdin)
    except ValueError as e:
        raise _Refused(str(e)) from None
    if not password:
        raise _Refused("the password is empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise _Refused(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return password


def _hash(password: str) -> str:
    # The server's Argon2Hasher uses argon2.PasswordHasher() with its defaults too,
    # so what is made here verifies there (and would be rehashed by the same rules).
    return argon2.PasswordHasher().hash(password)


def _parser() -> argparse.ArgumentParser:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=DEFAULT_DB, metavar="FILE",
                    help=f"the server's database (twistd chat --db; default: {DEFAULT_DB})")
    parser = argparse.ArgumentParser(
        prog="python -m twistchat.accounts",
        description="Manage twistchat accounts in the server's SQLite file. Passwords are "
                    "read from the terminal (no echo) or stdin's first line, never from the "
                    "command line. A running server reads accounts when it starts and on "
                    "SIGHUP: changes take effect then.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", parents=[db], help="add an account (asks its password)")
    add.add_argument("name", help="the account name, also the nick it reserves")
    add.add_argument("--email", default="", help="the account's email address (optional)")
    passwd = commands.add_parser("passwd", parents=[db],
                                 help="set an account's password (asks it)")
    passwd.add_argument("name")
    commands.add_parser("list", parents=[db], help="list the accounts (no passwords)")
    delete = commands.add_parser("del", parents=[db], help="delete an account")
    delete.add_argument("name")
    return parser


def _run(args: argparse.Namespace, file: AccountFile, stdin: TextIO, stdout: TextIO) -> None:
    accounts = file.load_accounts().accounts
    if args.command == "list":
        for key in sorted(accounts):
            try:
                account = Account.from_record(accounts[key])
            except (KeyError, TypeError, ValueError):
                print(f"{key}\t(unreadable record)", file=stdout)
                continue
            created = time.strftime("%Y-%m-%d", time.gmtime(account.created))
            login = "password" if account.credential else "certificate only"
            print(f"{account.name}\t{account.email or '-'}\t{created}\t{login}"
                  f"\t{len(account.certfps)} cert(s)", file=stdout)
        return
    name = _check_name(args.name)
    key = casefold(name)
    if args.command == "add":
        email = _check_email(args.email)
        if key in accounts:
            raise _Refused(f"account {accounts[key].get('name', name)} exists", 1)
        account = Account(name, _hash(_read_password(stdin)), email, time.time())
        file.save_account(key, account.to_record())
        print(f"account {name} added", file=stdout)
    elif args.command == "passwd":
        if key not in accounts:
            raise _Refused(f"no account {name}", 1)
        account = Account.from_record(accounts[key])
        account.credential = _hash(_read_password(stdin))
        file.save_account(key, account.to_record())
        print(f"password of {account.name} changed", file=stdout)
    elif args.command == "del":
        if key not in accounts:
            raise _Refused(f"no account {name}", 1)
        file.save_account(key, None)
        print(f"account {accounts[key].get('name', name)} deleted", file=stdout)


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin,
         stdout: TextIO = sys.stdout) -> int:
    """Run one subcommand: 0 done, 1 refused (exists, no such account, file), 2 bad input."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "add":
            _check_name(args.name)
            _check_email(args.email)
        elif not os.path.exists(args.db):  # only add makes a file: a mistyped --db says so
            raise _Refused(f"no database {args.db} (is --db right?)", 1)
        with AccountFile(args.db) as file:
            _run(args, file, stdin, stdout)
            if file.server_running and args.command != "list":
                print(_RESTART_NOTE.format(db=args.db), file=sys.stderr)
    except _Refused as e:
        print(f"accounts: {e}", file=sys.stderr)
        return e.status
    except StoreError as e:
        print(f"accounts: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
