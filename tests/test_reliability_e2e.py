"""
Issue #12 through the real server (``twistd -n chat`` on loopback): nothing a client
said is lost, however it leaves.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.serverproc import LineClient


@pytest.mark.parametrize("ending", ["QUIT then close", "close only"])
def test_every_line_held_by_flood_control_reaches_the_room(chat_server, ending):
    """
    40 lines and (QUIT :bye) in one write, then close: the room gets all 40, in order.

    Item 1: with a burst of 5 and 20 lines a second, 35 lines are still held
    back when the connection closes; they are the sender's words and run at
    the flood rate before the QUIT takes effect (whose reason is the client's).
    """
    server = chat_server("--flood-burst=5", "--flood-rate=20")
    witness = LineClient(server.host, server.port).register("witness").join("#room")
    flooder = LineClient(server.host, server.port).register("flooder").join("#room")
    time.sleep(0.5)  # the flooder's burst refills after registering and joining
    lines = [f"PRIVMSG #room :m{i:02d}" for i in range(1, 41)]
    if ending == "QUIT then close":
        lines.append("QUIT :bye")
    flooder.send(*lines)
    flooder.close()
    got = []
    while True:
        line = witness.wait_for(lambda text: " PRIVMSG #room " in text or " QUIT " in text,
                                timeout=15)
        if " QUIT " in line:
            break
        got.append(line.split(" ", 3)[3].removeprefix(":"))  # one word: maybe no colon
    assert got == [f"m{i:02d}" for i in range(1, 41)]
    assert line.endswith("Quit: bye" if ending == "QUIT then close"
                         else "Quit: Connection closed")
    witness.close()


def test_sigterm_records_every_users_quit_and_writes_to_no_closed_port(chat_server, tmp_path):
    """
    Item 5: SIGTERM with TCP and UDP users in a room: every QUIT is in history, no traceback.

    Users quit before the listeners close and before the history store stops,
    so each QUIT is a recorded room event and nothing is written to a closed
    UDP port.
    """
    from tests.test_udp_e2e import RawSession

    db = tmp_path / "history.sqlite3"
    server = chat_server("--proto=both", f"--db={db}")
    alice = LineClient(server.host, server.port).register("alice").join("#room")
    bob = RawSession(server.port, "bob")
    bob.send("JOIN #room", sequenced=True)
    alice.wait_for(lambda line: line.startswith(":bob!") and " JOIN " in line)
    alice.send("PRIVMSG #room :last words before the restart")
    time.sleep(0.5)
    assert server.stop() in (0, -15)  # twistd re-raises SIGTERM after a clean stop
    alice.close()
    bob.sock.close()
    log = server.log()
    assert "Traceback" not in log and "Unhandled" not in log
    with sqlite3.connect(db) as conn:
        quits = conn.execute("SELECT source, params FROM history WHERE target = '#room' "
                             "AND command = 'QUIT' ORDER BY seq").fetchall()
    assert sorted(source.split("!")[0] for source, _ in quits) == ["alice", "bob"]
    assert all("Server shutting down" in params for _, params in quits)
