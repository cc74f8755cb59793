"""
Two and three ``twistd chat --cluster`` nodes on one real ``redis-server`` (issue #15).

Each node is the real server started through its twistd plugin on loopback; Redis is
started by the test fixtures (tests/redisproc.py) on a free loopback port.  Users on
different nodes share rooms, one nick namespace, private messages, WHOIS and one
transcript (same msgids, same order); a node killed with -9 has its users quit
everywhere within the node timeout, and their nicks are free again.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.serverproc import LineClient, ServerProcess

TIMEOUT = "1.5"  # --node-timeout: how long a dead node's users linger


@pytest.fixture
def nodes(redis_server, tmp_path):
    """``nodes(n)``: n nodes on the session's Redis (emptied first), stopped by pid after."""
    started = []

    def start(count: int) -> list[ServerProcess]:
        for index in range(count):
            name = "abc"[index]
            node = ServerProcess(tmp_path / name, "--cluster", redis_server.url,
                                 "--node-name", name, "--node-timeout", TIMEOUT)
            started.append(node.start())
        return started[-count:]

    yield start
    for node in started:
        node.stop()


def client(node: ServerProcess, nick: str, caps: str = "") -> LineClient:
    c = LineClient(node.host, node.port)
    if caps:
        c.send(f"CAP REQ :{caps}", "CAP END")
    return c.register(nick)


def msgid(line: str) -> str:
    found = re.search(r"msgid=([^; ]+)", line)
    assert found, line
    return found.group(1)


def test_users_on_two_nodes_share_a_room_one_transcript_and_pms(nodes):
    a, b = nodes(2)
    alice = client(a, "alice", "message-tags echo-message")
    bob = client(b, "bob", "message-tags echo-message")
    alice.join("#room")
    bob.join("#room")
    assert "bob" in alice.wait_for(lambda line: " JOIN " in line and "bob!" in line)
    for n in range(5):
        alice.send(f"PRIVMSG #room :line {n}")
        bob.send(f"PRIVMSG #room :reply {n}")
    seen_by_alice = [alice.wait_for(lambda line: "PRIVMSG #room" in line) for _ in range(10)]
    seen_by_bob = [bob.wait_for(lambda line: "PRIVMSG #room" in line) for _ in range(10)]
    # One transcript: the same ten events, the same msgids, in the same order on both nodes.
    assert [msgid(line) for line in seen_by_alice] == [msgid(line) for line in seen_by_bob]
    assert [line.split(" ", 1)[1] for line in seen_by_alice] == \
        [line.split(" ", 1)[1] for line in seen_by_bob]
    bob.send("PRIVMSG alice :a private word")
    assert "a private word" in alice.wait_for(lambda line: "PRIVMSG alice" in line)
    bob.send("WHOIS alice")
    assert "alice" in bob.wait_for(lambda line: " 311 " in line)


def test_a_nick_held_on_one_node_is_433_on_another(nodes):
    a, b = nodes(2)
    alice = client(a, "alice")
    other = LineClient(b.host, b.port)
    other.send("NICK alice", "USER x 0 * :x")
    assert " 433 " in other.wait_for(lambda line: " 433 " in line)
    alice.close()


def test_a_node_killed_dash_9_has_its_users_quit_everywhere_and_nicks_freed(nodes):
    a, b, c = nodes(3)
    carol = client(a, "carol")
    dave = client(b, "dave")
    erin = client(c, "erin")
    for user in (carol, dave, erin):
        user.join("#r")
    dave.wait_for(lambda line: "erin!" in line and " JOIN " in line)
    killed_at = time.monotonic()
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    for survivor in (dave, erin):
        line = survivor.wait_for(lambda line: " QUIT " in line, timeout=15)
        assert line.startswith(":carol!")
    assert time.monotonic() - killed_at < 10
    dave.send("NICK carol")
    assert dave.wait_for(lambda line: " NICK " in line).endswith("carol")


def test_history_said_on_one_node_is_read_on_another(nodes):
    a, b = nodes(2)
    alice = client(a, "alice")
    alice.join("#hist")
    alice.send("PRIVMSG #hist :said on a")
    time.sleep(0.3)
    bob = client(b, "bob", "server-time message-tags batch draft/chathistory")
    bob.join("#hist")
    bob.send("CHATHISTORY LATEST #hist * 10")
    assert "said on a" in bob.wait_for(lambda line: "said on a" in line)
