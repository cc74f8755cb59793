"""
``--metrics``: Prometheus text format over twisted.web (issue #6).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from twisted.internet.testing import MemoryReactorClock

from tests.memory import MemoryServer
from tests.serverproc import LineClient, free_port
from twistchat.logging_setup import ListenerService
from twistchat.metrics import DROP_REASONS, Metrics, TransportCounters
from twistchat.service import Options, makeService

# name{labels} value -- the sample line of the text format 0.0.4.
SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (\S+)$')


def parse(text: str) -> dict:
    """Samples of a scrape, ``{'name{labels}': float}``; asserts the format on the way."""
    samples, typed = {}, set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge"), line
            assert name not in typed, f"two TYPE lines for {name}"
            assert (kind == "counter") == name.endswith("_total"), line
            typed.add(name)
        elif line.startswith("# HELP "):
            continue
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert match.group(1) in typed, f"{match.group(1)} has no TYPE line"
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(4))
    return samples


def scrape(port: int) -> tuple:
    """GET /metrics: (content type, text)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode("utf-8")


def test_counters_are_plain_ints_without_a_dict():
    """The hot path bumps slot attributes: no per-instance dict, nothing allocated per message."""
    metrics = Metrics()
    for counters in (metrics, metrics.tcp):
        assert not hasattr(counters, "__dict__")
    assert isinstance(metrics.tcp, TransportCounters)
    assert all(isinstance(n, int) for n in metrics.drops().values())


def test_render_counts_what_the_protocol_did():
    """In memory: two users, one room, lines in and out, a flood drop -- all in the text."""
    # burst 3: NICK, USER and JOIN pass; then one line may wait, and the next floods.
    server = MemoryServer(flood_burst=3, flood_rate=0.001, flood_queue=1)
    metrics = server.factory.metrics
    alice = server.user("alice", "#room")
    server.user("bob", "#room")
    lines_in = metrics.tcp.lines_in
    alice.send("PRIVMSG #room :held back", "PRIVMSG #room :flood")
    assert alice.closed
    alice.proto.connectionLost()  # StringTransport does not call it
    samples = parse(metrics.render())
    assert samples['twistchat_connections{transport="tcp"}'] == 1  # alice was dropped
    assert samples['twistchat_connections_accepted_total{transport="tcp"}'] == 2
    assert samples["twistchat_registered_users"] == 1
    assert samples["twistchat_rooms"] == 1
    assert samples['twistchat_messages_in_total{transport="tcp"}'] == lines_in + 2
    assert samples['twistchat_drops_total{reason="flood"}'] == 1
    assert set(DROP_REASONS) == {k.split('"')[1] for k in samples
                                 if k.startswith("twistchat_drops")}


def test_metrics_are_off_by_default():
    """No ``--metrics``: only the IRC listener; with it, one more listener."""
    for argv, listeners in (([], 1), (["--metrics", "tcp:0:interface=127.0.0.1"], 2)):
        options = Options()
        options.parseOptions(argv)
        top = makeService(options, reactor=MemoryReactorClock())
        assert sum(isinstance(s, ListenerService) for s in top) == listeners
        assert isinstance(top.metrics, Metrics) and top.metrics is top.irc_factory.metrics


def test_scrape_while_two_clients_talk(chat_server, tmp_path):
    """The real server: /metrics counts two connected users talking in one room."""
    metrics_port = free_port()
    server = chat_server("--metrics", f"tcp:{metrics_port}:interface=127.0.0.1")
    alice = LineClient(server.host, server.port).register("alice")
    bob = LineClient(server.host, server.port).register("bob")
    for client in (alice, bob):
        client.join("#lobby")
    for n in range(5):
        alice.send(f"PRIVMSG #lobby :hello {n}")
        bob.wait_for(lambda line, n=n: f":hello {n}" in line)
        bob.send(f"PRIVMSG #lobby :hi back {n}")
        alice.wait_for(lambda line, n=n: f":hi back {n}" in line)

    content_type, text = scrape(metrics_port)
    (tmp_path / "scrape.txt").write_text(text)  # kept for the closing note
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = parse(text)
    assert samples['twistchat_connections{transport="tcp"}'] == 2
    assert samples["twistchat_registered_users"] == 2
    assert samples["twistchat_rooms"] == 1
    # each: NICK, USER, JOIN, 5 PRIVMSG; the readiness probe of the fixture sent nothing.
    assert samples['twistchat_messages_in_total{transport="tcp"}'] >= 16
    # each message reaches the other user; plus the welcome burst, JOIN replies...
    assert samples['twistchat_messages_out_total{transport="tcp"}'] > 10 + 2 * 5
    assert samples["twistchat_start_time_seconds"] > 1.6e9

    bob.send("QUIT :bye")
    alice.wait_for(lambda line: " QUIT " in line)
    samples = parse(scrape(metrics_port)[1])
    assert samples['twistchat_connections{transport="tcp"}'] == 1
    assert samples["twistchat_registered_users"] == 1
    alice.close()


def test_metrics_site_serves_only_metrics(chat_server):
    """Anything but /metrics is a 404; the scrape leaves no access-log line."""
    metrics_port = free_port()
    server = chat_server("--metrics", f"tcp:{metrics_port}:interface=127.0.0.1")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/", timeout=5)
    assert caught.value.code == 404
    scrape(metrics_port)
    assert "GET /metrics" not in server.log()
    assert f"listening on tcp:{metrics_port}:interface=127.0.0.1" in server.log()


@pytest_twisted.ensureDeferred
async def test_history_writes_are_counted_with_their_lag(tmp_path):
    """The SQLite store reports lines written and how far behind the disk was."""
    from twisted.internet import task

    from twistchat.store import HistoryRecord, SQLiteStore

    clock = task.Clock()
    clock.advance(1_800_000_010)
    metrics = Metrics()
    store = SQLiteStore(str(tmp_path / "h.sqlite3"), clock=clock)
    store.metrics = metrics
    for seq in (1, 2, 3):
        store.append(HistoryRecord("#r", seq, 1_800_000_000_000 + seq, f"m{seq}", "PRIVMSG",
                                   "a!a@h", ("#r", "x")))
    try:
        assert await store.flush() is True
    finally:
        await store.stop()
    samples = parse(metrics.render())
    assert samples["twistchat_history_events_written_total"] == 3
    assert 9.9 < samples["twistchat_history_write_lag_seconds"] < 10.0
