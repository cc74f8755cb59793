"""
History across restarts: the real twistd, a real SQLite file, SIGTERM and SIGKILL.
"""

import signal
import subprocess
import time

from tests.serverproc import LineClient, ServerProcess, source_env, twistd_path

CAPS = "server-time batch message-tags draft/chathistory"


def history_client(server, nick):
    client = LineClient(server.host, server.port)
    client.send(f"CAP REQ :{CAPS}", f"NICK {nick}", f"USER {nick} 0 * :{nick}", "CAP END")
    client.wait_for(lambda line: " 001 " in line)
    return client


def replayed(client, until):
    """Read lines up to the one matching ``until``; return the PRIVMSG lines of batches."""
    lines = []
    while True:
        line = client.read_line(time.monotonic() + 10)
        if "PRIVMSG" in line and "batch=" in line:
            lines.append(line)
        if until(line):
            return lines


def tags_of(line):
    head = line[1:].split(" ", 1)[0]
    return dict(item.partition("=")[::2] for item in head.split(";"))


def test_history_survives_sigterm_restart(tmp_path):
    """
    Talk, stop with SIGTERM, start again on the same file: a new client's history on
    join and CHATHISTORY give every line, in order, original times, rising seqs.
    """
    db = tmp_path / "chat.sqlite3"
    first = ServerProcess(tmp_path, f"--db={db}").start()
    try:
        alice = LineClient(first.host, first.port).register("alice")
        alice.join("#class")
        for i in range(20):
            alice.send(f"PRIVMSG #class :note {i}")
        alice.send("PING done")
        alice.wait_for(lambda line: "PONG" in line and "done" in line)
        alice.close()
    finally:
        # twistd shuts down cleanly, then dies by the same signal so callers see why (-15).
        assert first.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    second = ServerProcess(tmp_path, f"--db={db}", "--history-on-join=50", port=first.port).start()
    try:
        bob = history_client(second, "bob")
        bob.send("JOIN #class")
        on_join = replayed(bob, lambda line: line.startswith(":") and " BATCH -" in line)
        assert [line.rsplit(":", 1)[1] for line in on_join] == [f"note {i}" for i in range(20)]
        bob.send("CHATHISTORY LATEST #class * 100")
        lines = replayed(bob, lambda line: " BATCH -" in line)
        assert [line.rsplit(":", 1)[1] for line in lines] == [f"note {i}" for i in range(20)]
        times = [tags_of(line)["time"] for line in lines]
        assert times == sorted(times) and times == [tags_of(line)["time"] for line in on_join]
        # A new line after the restart continues the room's sequence (no reuse).
        bob.send("PRIVMSG #class :after restart", "CHATHISTORY LATEST #class * 2")
        last_two = replayed(bob, lambda line: " BATCH -" in line)
        assert last_two[-1].endswith(":after restart")
        assert tags_of(last_two[-1])["msgid"] not in [tags_of(line)["msgid"] for line in lines]
    finally:
        second.stop()
    import sqlite3

    with sqlite3.connect(db) as conn:
        seqs = [row[0] for row in conn.execute(
            "SELECT seq FROM history WHERE target = '#class' ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 23


def test_unclean_kill_loses_at_most_the_last_flush_interval(tmp_path):
    """SIGKILL: lines acknowledged longer than the flush interval ago are on disk."""
    db = tmp_path / "chat.sqlite3"
    server = ServerProcess(tmp_path, f"--db={db}", "--history-flush=0.2").start()
    try:
        alice = LineClient(server.host, server.port).register("alice")
        alice.join("#r")
        for i in range(10):
            alice.send(f"PRIVMSG #r :kept {i}")
        alice.send("PING acked")
        alice.wait_for(lambda line: "acked" in line)
        time.sleep(1.0)  # five flush intervals
    finally:
        server.stop(signal.SIGKILL)
    again = ServerProcess(tmp_path, f"--db={db}", port=server.port).start()
    try:
        bob = history_client(again, "bob")
        bob.send("JOIN #r")
        replayed(bob, lambda line: " 366 " in line)
        bob.send("CHATHISTORY LATEST #r * 50")
        lines = replayed(bob, lambda line: " BATCH -" in line)
        assert [line.rsplit(":", 1)[1] for line in lines] == [f"kept {i}" for i in range(10)]
    finally:
        again.stop()


def test_corrupt_database_fails_in_one_clear_line(tmp_path):
    """A database file that is not SQLite: exit non-zero, one line naming the file."""
    db = tmp_path / "broken.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    out = subprocess.run([twistd_path(), "-n", "--pidfile=", "chat", "--port=0", f"--db={db}"],
                         capture_output=True, text=True, env=source_env(), timeout=60,
                         cwd=tmp_path)
    assert out.returncode != 0
    text = (out.stdout + out.stderr).strip()
    assert str(db) in text and "Traceback" not in text
    assert len([line for line in text.splitlines() if str(db) in line]) == 1
