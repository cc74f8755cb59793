"""
Issue #12 through the real server (``twistd -n chat`` on loopback): nothing a client
said is lost, however it leaves.
"""

from __future__ import annotations

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
