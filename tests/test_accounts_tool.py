"""
The account tool (``python -m twistchat.accounts``) and the service's account wiring (#14).

The tool runs as a real child process with the password on its stdin; the
service is built in-process by ``makeService`` on a file the tool wrote, and
once as a real ``twistd -n chat``.
"""

from __future__ import annotations

import getpass
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import argon2
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.python import usage

from tests.serverproc import REPO, source_env
from twistchat import accounts as tool
from twistchat.auth import MAX_PASSWORD_BYTES, AuthFailed
from twistchat.core.accounts import Account
from twistchat.service import AccountsOnSighup, Options, makeService
from twistchat.store import AccountFile, SQLiteStore

PASSWORD = "correct horse battery staple"


def run_tool(*args: str, password: str | None = None) -> subprocess.CompletedProcess:
    """``python -m twistchat.accounts ARGS`` with ``password`` as stdin's first line."""
    return subprocess.run([sys.executable, "-m", "twistchat.accounts", *args],
                          input=None if password is None else password + "\n",
                          capture_output=True, text=True, env=source_env(), cwd=REPO,
                          timeout=60)


def stored(db: Path) -> dict:
    with AccountFile(str(db)) as file:
        return file.load_accounts().accounts


def file_bytes(db: Path) -> bytes:
    """The database and any WAL beside it."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_add_reads_the_password_from_stdin_never_argv(tmp_path):
    """
    While ``add`` waits for its password, ``ps`` (/proc/PID/cmdline) shows no password;
    the file holds an argon2id hash that verifies, not the password.
    """
    db = tmp_path / "chat.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-m", "twistchat.accounts", "add", "Alice", "--email",
         "alice@example.org", "--db", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=source_env(), cwd=REPO)
    try:
        time.sleep(0.5)  # importing, then blocked on stdin
        cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
        out, err = child.communicate(PASSWORD.encode() + b"\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert b"add\0Alice" in cmdline and PASSWORD.encode() not in cmdline
    assert out.decode() == "account Alice added\n"
    record = stored(db)["alice"]
    assert record["name"] == "Alice" and record["email"] == "alice@example.org"
    assert record["credential"].startswith("$argon2id$")
    assert argon2.PasswordHasher().verify(record["credential"], PASSWORD)
    assert PASSWORD.encode() not in file_bytes(db)


def test_passwd_list_and_del(tmp_path):
    """passwd replaces the hash (any case of the name); list shows no hash; del removes."""
    db = str(tmp_path / "chat.sqlite3")
    assert run_tool("add", "alice", "--db", db, password=PASSWORD).returncode == 0
    assert run_tool("add", "bob", "--db", db, password="another one").returncode == 0
    before = stored(Path(db))["alice"]["credential"]
    changed = run_tool("passwd", "ALICE", "--db", db, password="new password")
    assert changed.returncode == 0 and changed.stdout == "password of alice changed\n"
    after = stored(Path(db))["alice"]["credential"]
    assert after != before and argon2.PasswordHasher().verify(after, "new password")
    listed = run_tool("list", "--db", db)
    assert listed.returncode == 0
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["alice", "bob"]
    assert "$argon2" not in listed.stdout
    gone = run_tool("del", "Bob", "--db", db)
    assert gone.returncode == 0 and gone.stdout == "account bob deleted\n"
    assert set(stored(Path(db))) == {"alice"}


@pytest.mark.parametrize(("args", "password", "status", "message"), [
    (["add", "alice"], PASSWORD, 1, "account alice exists"),
    (["passwd", "nobody"], PASSWORD, 1, "no account nobody"),
    (["del", "nobody"], None, 1, "no account nobody"),
    (["add", "bad name"], PASSWORD, 2, "must be a valid nick"),
    (["add", "1abc"], PASSWORD, 2, "must be a valid nick"),
    (["add", "a" * 31], PASSWORD, 2, "at most 30"),
    (["add", "carol", "--email", "not an address"], PASSWORD, 2, "email"),
    (["add", "carol"], "", 2, "the password is empty"),
    (["add", "carol"], "x" * (MAX_PASSWORD_BYTES + 1), 2, f"longer than {MAX_PASSWORD_BYTES}"),
])
def test_refusals(tmp_path, args, password, status, message):
    """Each refusal: its status, one line on stderr naming the reason, the file unchanged."""
    db = str(tmp_path / "chat.sqlite3")
    assert run_tool("add", "alice", "--db", db, password=PASSWORD).returncode == 0
    done = run_tool(*args, "--db", db, password=password)
    assert done.returncode == status
    assert message in done.stderr and done.stderr.count("\n") == 1
    assert set(stored(Path(db))) == {"alice"}


def test_longest_names_and_passwords_are_accepted(tmp_path):
    """A 30-character name and a password of exactly MAX_PASSWORD_BYTES bytes: added."""
    db = str(tmp_path / "chat.sqlite3")
    done = tool.main(["add", "a" * 30, "--db", db], stdin=io.StringIO("\u00e9" * (
        MAX_PASSWORD_BYTES // 2) + "\n"), stdout=io.StringIO())
    assert done == 0 and set(stored(Path(db))) == {"a" * 30}


def test_a_terminal_is_asked_twice(tmp_path, monkeypatch):
    """On a terminal the password is asked twice with getpass; two different ones: refused."""
    class Tty(io.StringIO):
        def isatty(self):
            return True

    answers = iter(["one", "two"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    db = str(tmp_path / "chat.sqlite3")
    assert tool.main(["add", "alice", "--db", db], stdin=Tty(), stdout=io.StringIO()) == 2
    assert not os.path.exists(db) or stored(Path(db)) == {}


@pytest.mark.parametrize("command", [["list"], ["del", "alice"], ["passwd", "alice"]])
def test_only_add_makes_a_file(tmp_path, command):
    """list, del and passwd on a --db that does not exist: status 1, and no file made."""
    db = tmp_path / "typo.sqlite3"
    done = run_tool(*command, "--db", str(db), password=PASSWORD)
    assert done.returncode == 1 and "no database" in done.stderr
    assert not db.exists()


def test_a_foreign_file_is_refused(tmp_path):
    """--db naming another program's SQLite file: status 1, one sentence, nothing written."""
    import sqlite3

    db = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    done = run_tool("list", "--db", str(db))
    assert done.returncode == 1 and "another program" in done.stderr


@pytest_twisted.ensureDeferred
async def test_the_tool_says_a_running_server_reads_at_start(tmp_path):
    """On a file a server has open, a change comes with the note that it applies at next start."""
    db = str(tmp_path / "chat.sqlite3")
    store = SQLiteStore(db, reactor=reactor)  # marks the file running, as a server does
    try:
        done = run_tool("add", "alice", "--db", db, password=PASSWORD)
    finally:
        await store.stop()
    assert done.returncode == 0
    assert "takes effect when it next starts" in done.stderr


# --- the service ---------------------------------------------------------------


def make(db: str, *flags: str):
    options = Options()
    options.parseOptions(["--proto=tcp", f"--db={db}", *flags])
    return makeService(options, reactor=reactor)


@pytest_twisted.ensureDeferred
async def test_the_service_loads_accounts_the_tool_added(tmp_path):
    """
    makeService on a file the tool wrote: the account is in the registry, its password
    checks through top.authenticator (real argon2id), and a new account is saved to the file.
    """
    db = str(tmp_path / "chat.sqlite3")
    assert run_tool("add", "Alice", "--db", db, password=PASSWORD).returncode == 0
    top = make(db)
    try:
        assert top.registry.registration_open is True
        assert [a.name for a in top.registry.accounts] == ["Alice"]
        assert set(top.account_state.accounts) == {"alice"}
        account = await top.authenticator.check_password("127.0.0.1", "alice", PASSWORD)
        assert account.name == "Alice"
        with pytest.raises(AuthFailed):
            await top.authenticator.check_password("127.0.0.1", "alice", "wrong")
        top.registry.accounts.add(Account("bob", "", "", 1.0))  # the saver reaches the store
        top.registry.accounts.remove("alice")
        assert set(top.store.load_accounts().accounts) == {"bob"}
    finally:
        await top.store.stop()
    assert set(stored(Path(db))) == {"bob"}


@pytest_twisted.ensureDeferred
async def test_sighup_reload_brings_the_directory_to_the_file(tmp_path):
    """
    The tool adds, changes and deletes while the service runs; the reload (what SIGHUP
    calls) adds, changes and removes in the registry's directory, writes nothing back,
    and keeps an account this server made meanwhile.
    """
    db = str(tmp_path / "chat.sqlite3")
    for name in ("alice", "bob"):
        assert run_tool("add", name, "--db", db, password=PASSWORD).returncode == 0
    top = make(db)
    (reloader,) = [s for s in top if isinstance(s, AccountsOnSighup)]
    directory = top.registry.accounts
    try:
        old_alice = directory.find("alice").credential
        assert run_tool("add", "carol", "--db", db, password=PASSWORD).returncode == 0
        assert run_tool("passwd", "alice", "--db", db, password="new one").returncode == 0
        assert run_tool("del", "bob", "--db", db).returncode == 0
        directory.add(Account("dave", "", "", 1.0))  # made by this server, still queued
        assert await reloader.reload() == (1, 1, 1)
        assert sorted(a.name for a in directory) == ["alice", "carol", "dave"]
        assert directory.find("alice").credential != old_alice
        account = await top.authenticator.check_password("127.0.0.1", "carol", PASSWORD)
        assert account.name == "carol"
        assert await reloader.reload() == (0, 0, 0)  # nothing new: nothing done
    finally:
        await top.store.stop()
    assert set(stored(Path(db))) == {"alice", "carol", "dave"}


def test_registration_flag(tmp_path):
    """--registration=closed reaches the registry; anything but open|closed is refused."""
    assert make(":memory:", "--registration=closed").registry.registration_open is False
    assert make(":memory:").registry.registration_open is True
    with pytest.raises(usage.UsageError, match="--registration must be open or closed"):
        Options().parseOptions(["--registration=maybe", "--db=:memory:"])


def test_a_real_server_starts_with_the_accounts(tmp_path, chat_server):
    """twistd -n chat on a file the tool wrote: starts, logs the accounts loaded, stops cleanly."""
    db = tmp_path / "chat.sqlite3"
    for name in ("alice", "bob"):
        assert run_tool("add", name, "--db", str(db), password=PASSWORD).returncode == 0
    server = chat_server(f"--db={db}")
    deadline = time.monotonic() + 10
    while "Accounts: 2 loaded" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"Accounts: 2 loaded from {db}" in server.log()
    assert server.stop() in (0, -15), server.log()  # -15: twistd re-raises SIGTERM
    assert set(stored(db)) == {"alice", "bob"}
    assert PASSWORD.encode() not in file_bytes(db)


def test_a_real_server_rereads_accounts_on_sighup(tmp_path, chat_server):
    """twistd -n chat: the tool adds an account while it runs; SIGHUP reads it in; SIGTERM ok."""
    import signal

    db = tmp_path / "chat.sqlite3"
    server = chat_server(f"--db={db}")
    added = run_tool("add", "alice", "--db", str(db), password=PASSWORD)
    assert added.returncode == 0 and "SIGHUP" in added.stderr
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    wanted = "1 added, 0 changed, 0 removed, 1 in all"
    while wanted not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wanted in server.log()
    assert server.proc.poll() is None  # SIGHUP did not end it
    assert server.stop() in (0, -15), server.log()
