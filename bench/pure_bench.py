#!/usr/bin/env python3
"""Benchmarks of the pure layers, without sockets: where a regression is, in µs per operation.

The fan-out benchmark (fanout_bench.py) says how fast the whole server is; this
one says which layer costs what, as h11's bench/benchmarks/benchmarks.py does
for h11.  Nothing here opens a socket or starts a reactor: the IRC protocol
runs on null transports and a task.Clock.

    python bench/pure_bench.py                # every benchmark, ~0.3 s each
    python bench/pure_bench.py -k fanout      # those whose name contains "fanout"
    python bench/pure_bench.py --json out.json

Each benchmark runs batches of its operation until ``--time`` seconds have
passed (at least one batch), three times, and reports the best µs per
operation (the least disturbed by the rest of the machine), and where it
makes sense µs per delivery.  The whole run is bounded by ``--deadline``.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from twistchat.core import commands  # noqa: E402
from twistchat.core.events import (  # noqa: E402
    NO_TAGS,
    TAG_CLIENT,
    TAG_MSGID,
    TAG_SEQ,
    TAG_TIME,
    Event,
    deliver,
    format_server_time,
)
from twistchat.core.registry import Limits, Registry  # noqa: E402
from twistchat.frontends.irc import ConnectionLimits, IRCFactory  # noqa: E402
from twistchat.store import MemoryStore, SQLiteStore, record_from_event  # noqa: E402
from twistchat.wire import Message, encode, parse  # noqa: E402

MEMBERS = 500  # the fan-out benchmark's room
TEXT = "x" * 60  # its message text
NOW = 1_800_000_000.0


class NullTransport(StringTransport):
    """A transport that keeps nothing: the cost of a write stops at our side."""

    def write(self, data: bytes) -> None:
        pass


class Room:
    """A registry, an IRC factory and ``n`` registered clients in #bench, on null transports."""

    def __init__(self, n: int = MEMBERS, caps: str = "", listeners=()) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.registry = Registry(server_name="bench", clock=self.clock.seconds,
                                 limits=Limits(max_per_ip=n + 1))
        for listener in listeners:
            self.registry.log.subscribe(listener)
        # The flood limit is not what is measured here: one client sends every line.
        limits = ConnectionLimits(flood_burst=10**9)
        self.factory = IRCFactory(self.registry, self.clock, limits)
        self.protos = []
        for i in range(n):
            transport = NullTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + i))
            proto = self.factory.buildProtocol(transport.getPeer())
            proto.makeConnection(transport)
            lines = [f"CAP REQ :{caps}", "CAP END"] if caps else []
            lines += [f"NICK b{i}", f"USER b{i} 0 * :b", "JOIN #bench"]
            proto.dataReceived("".join(line + "\r\n" for line in lines).encode())
            self.protos.append(proto)
        self.users = [p.user for p in self.protos]
        self.channel = self.registry.find_channel("#bench")
        assert len(self.channel.members) == n


def bench(name, op, *, per=1, note="", setup=None):
    """One benchmark: ``op(k)`` does ``k`` operations; ``per`` deliveries each."""
    return dict(name=name, op=op, per=per, note=note, setup=setup)


def make_benchmarks(tmp: str) -> list:
    """Every benchmark, each a closure over what it needs, built lazily by ``setup``."""
    out = []

    # -- wire ---------------------------------------------------------------
    plain = f"PRIVMSG #bench :{TEXT}\r\n".encode()
    tagged = (f"@time=2026-11-24T10:00:00.000Z;msgid=ab12cd34;+draft/reply=xyz "
              f":nick!user@host PRIVMSG #bench :{TEXT}\r\n").encode()
    numeric = b":twistchat.local 353 alice = #bench :alice bob carol dave eve mallory\r\n"
    for label, line in (("plain PRIVMSG", plain), ("tagged PRIVMSG", tagged),
                        ("numeric with source", numeric)):
        out.append(bench(f"wire.parse {label}",
                         lambda k, line=line: [parse(line) for _ in range(k)]))

    msg = Message("PRIVMSG", ("#bench", TEXT), "nick!user@127.0.0.1")
    msg_tags = Message("PRIVMSG", ("#bench", TEXT), "nick!user@127.0.0.1",
                       {"time": "2026-11-24T10:00:00.000Z", "msgid": "ab12cd34",
                        "+typing": "active"})
    out.append(bench("wire.encode PRIVMSG", lambda k: [encode(msg) for _ in range(k)]))
    out.append(bench("wire.encode PRIVMSG + 3 tags",
                     lambda k: [encode(msg_tags) for _ in range(k)]))
    out.append(bench("events.format_server_time",
                     lambda k: [format_server_time(1_800_000_000_123 + i) for i in range(k)]))

    # -- events: a room event formatted once per tag view --------------------
    def fresh_events(k):
        return [Event("#bench", i, 1_800_000_000_123, f"m{i:x}", msg, {"+typing": "active"})
                for i in range(k)]

    for label, view in (("plain", NO_TAGS), ("server-time", TAG_TIME),
                        ("server-time+message-tags", TAG_TIME | TAG_MSGID | TAG_CLIENT),
                        ("UDP seq+time", TAG_SEQ | TAG_TIME)):
        def first_line(k, view=view):
            events = fresh_events(k)
            t0 = time.perf_counter()
            for e in events:
                e.line(view)
            return time.perf_counter() - t0
        out.append(bench(f"Event.line first, {label}", first_line,
                         note="formats the line (once per event and view)"))
    cached = fresh_events(1)[0]
    cached.line(NO_TAGS)
    out.append(bench("Event.line cached", lambda k: [cached.line(NO_TAGS) for _ in range(k)],
                     note="every member after the first with the same view"))

    # -- registry: the fan-out decision for a 500-member room ----------------
    state = {}

    def room_setup():
        state["room"] = Room()

    def message(k):
        registry, user = state["room"].registry, state["room"].users[0]
        for _ in range(k):
            registry.message(user, "PRIVMSG", "#bench", TEXT)
    out.append(bench(f"Registry.message to {MEMBERS} members", message, setup=room_setup,
                     note="numbers the event, returns one Delivery"))

    def dispatch(k):
        registry, user = state["room"].registry, state["room"].users[0]
        line = Message("PRIVMSG", ("#bench", TEXT))
        for _ in range(k):
            commands.dispatch(registry, user, line)
    out.append(bench("commands.dispatch PRIVMSG", dispatch, setup=room_setup,
                     note="the command table, then Registry.message"))

    # -- the store's share of a message (service.py's listener) --------------
    def store_setup():
        from twisted.internet.task import Clock as StoreClock
        clock = StoreClock()
        state["sqlite"] = SQLiteStore(os.path.join(tmp, "bench.sqlite3"),
                                      reactor=clock, clock=clock)
        state["memory"] = MemoryStore(clock=clock, max_per_target=100_000)
        state["event"] = fresh_events(1)[0]

    def record(k):
        event = state["event"]
        for _ in range(k):
            record_from_event(event)
    out.append(bench("store.record_from_event", record, setup=store_setup))

    def sqlite_append(k):
        store, events = state["sqlite"], fresh_events(k)  # rising seqs; made before timing
        store._pending.clear()  # the queue only: no flush runs without a reactor
        t0 = time.perf_counter()
        for event in events:
            store.append(record_from_event(event))
        return time.perf_counter() - t0
    out.append(bench("record_from_event + SQLiteStore.append", sqlite_append, setup=store_setup,
                     note="queue only; the writer thread is not timed"))

    def memory_append(k):
        store, events = state["memory"], fresh_events(k)  # rising seqs; made before timing
        store._records.clear()
        t0 = time.perf_counter()
        for event in events:
            store.append(record_from_event(event))
        return time.perf_counter() - t0
    out.append(bench("record_from_event + MemoryStore.append", memory_append, setup=store_setup))

    # -- fan-out: one event to every member's connection ---------------------
    def fanout(k):
        room = state["room"]
        registry, sender = room.registry, room.users[0]
        t0 = time.perf_counter()
        for _ in range(k):
            deliver(registry.message(sender, "PRIVMSG", "#bench", TEXT))
        return time.perf_counter() - t0
    out.append(bench(f"Registry.message + deliver, {MEMBERS} plain clients", fanout,
                     per=MEMBERS - 1, setup=room_setup,
                     note="per delivery: IRCProtocol.deliver to a null transport"))

    def mixed_setup():
        room = Room()
        # Half the room with IRCv3 tags (two views), as a modern client mix.
        for proto in room.protos[::2]:
            proto.dataReceived(b"CAP REQ :server-time message-tags echo-message\r\n")
        state["room"] = room
    out.append(bench(f"Registry.message + deliver, {MEMBERS} mixed clients", fanout,
                     per=MEMBERS - 1, setup=mixed_setup,
                     note="half with server-time+message-tags"))

    def line_in(k):
        room = state["room"]
        sender = room.protos[0]
        data = plain
        t0 = time.perf_counter()
        for _ in range(k):
            sender.dataReceived(data)
        return time.perf_counter() - t0

    def line_in_setup():
        state["room"] = Room(listeners=[lambda e: None])

    def line_in_small_setup():
        state["room"] = Room(2, listeners=[lambda e: None])
    out.append(bench("one PRIVMSG line in, 2 members", line_in, setup=line_in_small_setup,
                     note="the per-message work, one delivery"))
    out.append(bench(f"one PRIVMSG line in, {MEMBERS} members", line_in, per=MEMBERS - 1,
                     setup=line_in_setup,
                     note="LineReceiver, flood check, parse, dispatch, registry, deliver"))

    def line_in_store_setup():
        store_setup()
        store = state["sqlite"]

        def record_it(event):
            store.append(record_from_event(event))
            if len(store._pending) > 50_000:
                store._pending.clear()
        state["room"] = Room(listeners=[record_it])
    out.append(bench(f"one PRIVMSG line in, {MEMBERS} members, SQLite queue", line_in,
                     per=MEMBERS - 1, setup=line_in_store_setup,
                     note="as above, with service.py's history listener"))
    return out


def run_one(b: dict, seconds: float, repeats: int = 3) -> dict:
    """Best µs per operation over ``repeats`` rounds of about ``seconds`` each."""
    if b["setup"] is not None:
        b["setup"]()
    op = b["op"]

    def timed(k):
        t0 = time.perf_counter()
        result = op(k)
        elapsed = time.perf_counter() - t0
        # An op may time its own core (leaving its setup out) and return that.
        return result if isinstance(result, float) else elapsed

    k = 1
    while True:  # calibrate: a batch of about a tenth of the round
        if timed(k) >= seconds / 10 or k >= 10**7:
            break
        k *= 4
    best = None
    for _ in range(repeats):
        done, spent = 0, 0.0
        while spent < seconds:
            spent += timed(k)
            done += k
        per_op = spent / done
        best = per_op if best is None else min(best, per_op)
    us = best * 1e6
    return dict(name=b["name"], us_per_op=us, ops_per_s=1e6 / us,
                us_per_delivery=us / b["per"] if b["per"] > 1 else None, note=b["note"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", metavar="TEXT", help="only benchmarks whose name contains TEXT")
    p.add_argument("--time", type=float, default=0.3, help="seconds per round (default 0.3)")
    p.add_argument("--deadline", type=float, default=120.0,
                   help="bound on the whole run, s (default 120); later benchmarks are skipped")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    a = p.parse_args(argv)
    end = time.monotonic() + a.deadline
    results = []
    with tempfile.TemporaryDirectory(prefix="twistchat-bench-") as tmp:
        for b in make_benchmarks(tmp):
            if a.k and a.k.lower() not in b["name"].lower():
                continue
            if time.monotonic() > end:
                print(f"deadline: skipped {b['name']}", file=sys.stderr)
                continue
            r = run_one(b, a.time)
            results.append(r)
            per = f"{r['us_per_delivery']:8.3f}" if r["us_per_delivery"] is not None else " " * 8
            print(f"{r['us_per_op']:10.3f} µs/op {per} µs/deliv  {r['name']}"
                  + (f"  ({r['note']})" if r["note"] else ""), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"python": sys.version.split()[0], "results": results},
                                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
