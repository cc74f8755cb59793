"""
Soak: mixed TCP and UDP traffic against the real server, one restart in the middle (#12).

Bounded, loopback only. It starts ``twistd -n chat --proto=both`` with SQLite history on a
free 127.0.0.1 port and runs, for ``--duration`` seconds (default 600):

- *stayers*: TCP and UDP sessions (twistchat.client, the same sessions as the terminal
  client) that join ``#soak`` first and stay to the end, each saying a numbered line about
  once a second;
- *churners*: sessions that leave and join again, or close and open again (a reconnect),
  saying lines while they are in;
- a *flooder*: a TCP stayer that now and then says 30 lines at once (flood control holds
  most of them back; all must arrive);
- one server restart in the middle (SIGTERM, then the same command on the same port and
  database).

Then it stops talking, lets everything drain, stops the server (so history is on disk) and
compares each screen with the history: every stayer must have seen every line of the
others, in history's order, none missing, none doubled; every churner what it saw, in
order and once. Exit status 0 when every screen matches, 1 when one does not, 2 when the
run could not be made. ``--json FILE`` keeps the numbers.

    python bench/soak.py                      # 10 minutes
    python bench/soak.py --duration 60        # the test suite's minute (tests/test_soak.py)
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, reactor, task, threads  # noqa: E402

from tests.serverproc import ServerProcess  # noqa: E402
from twistchat.client import interfaces as I  # noqa: E402
from twistchat.client import open_session  # noqa: E402

ROOM = "#soak"
FAST_RETRY = {"initialDelay": 0.2, "maxDelay": 1.0, "factor": 1.5, "jitter": lambda: 0}


@dataclass
class Screen:
    """One session and what it showed of ``#soak``."""

    name: str
    proto: str
    kind: str  # "stayer", "churner", "flooder"
    session: object = None
    seen: list = field(default_factory=list)  # (nick, text) of others' lines, as shown
    # One list per session a churner opened: a new program shows recent history anew.
    segments: list = field(default_factory=list)
    said: int = 0
    in_room: bool = False
    reconnects: int = 0
    registered_at: list = field(default_factory=list)  # monotonic times of REGISTERED

    def on_event(self, event: I.ChatEvent) -> None:
        if event.kind == I.STATE and event.text == I.REGISTERED:
            self.registered_at.append(time.monotonic())
        if event.kind == I.JOIN and event.own and event.room == ROOM:
            self.in_room = True
        if event.kind in (I.PART, I.KICK) and event.own and event.room == ROOM:
            self.in_room = False
        if (event.kind == I.MESSAGE and event.room == ROOM and not event.own
                and event.nick != self.name):
            self.seen.append((event.nick, event.text))


def open_screen(screen: Screen, host: str, port: int) -> object:
    options = {"retry": FAST_RETRY} if screen.proto == "tcp" else {}
    session = open_session(screen.proto, host, port, screen.name, rooms=(ROOM,),
                           reactor=reactor, **options)
    session.set_handler(screen.on_event)
    screen.session = session
    return session


async def run(args) -> dict:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="twistchat-soak-"))
    db = work / "history.sqlite3"
    server_args = ("--proto=both", f"--db={db}", "--heartbeat=0.5",
                   f"--flood-burst={args.flood_burst}", "--flood-rate=10",
                   "--udp-session-timeout=20")
    server = ServerProcess(work, *server_args).start()
    host, port = server.host, server.port
    screens = []
    for i in range(args.tcp):
        screens.append(Screen(f"t{i}", "tcp", "flooder" if i == 0 else "stayer"))
    for i in range(args.udp):
        screens.append(Screen(f"u{i}", "udp", "stayer"))
    for i in range(args.churners):
        screens.append(Screen(f"c{i}", "tcp" if i % 2 == 0 else "udp", "churner"))
    started = []
    for screen in screens:
        started.append(open_screen(screen, host, port).start())
    await defer.DeferredList(started)
    await until(lambda: all(s.in_room for s in screens), 20)
    t0 = time.monotonic()
    restart_at = t0 + args.duration / 2
    restarted = None
    counter = 0
    while time.monotonic() - t0 < args.duration:
        now = time.monotonic()
        if restarted is None and now >= restart_at:
            restarted = await restart(server)
        for screen in screens:
            counter += step(screen, rng, counter, host, port)
        await sleep(1.0 / args.rate)
    # Quiet: let flood queues, repairs and reconnects settle.
    await sleep(args.drain)
    results = compare(screens, await threads.deferToThread(stop_and_read, server, db))
    results.update(duration=args.duration, restart=restarted, seed=args.seed,
                   tcp=args.tcp, udp=args.udp, churners=args.churners)
    for screen in screens:
        if screen.session is not None:
            screen.session.close("soak over")
    await sleep(0.5)
    return results


def step(screen: Screen, rng: random.Random, counter: int, host: str, port: int) -> int:
    """One tick of one screen: maybe say a line, flood, leave, join or reconnect."""
    session = screen.session
    if session is None or session.state != I.REGISTERED:
        return 0
    if screen.kind == "churner" and rng.random() < 0.02:
        if screen.in_room:
            session.part(ROOM)
            screen.in_room = False
        elif rng.random() < 0.5:
            session.join(ROOM)
        else:  # a reconnect: close, then the same nick again
            screen.reconnects += 1
            closing = session.close("brb")
            screen.session = None
            screen.in_room = False
            closing.addBoth(lambda _: reactor.callLater(0.5, reopen, screen, host, port))
        return 0
    if not screen.in_room:
        return 0
    if screen.kind == "flooder" and rng.random() < 0.01:
        for i in range(30):
            session.say(ROOM, f"{screen.name} flood {counter}.{i}")
        screen.said += 30
        return 1
    if rng.random() < 0.3:
        session.say(ROOM, f"{screen.name} line {counter}")
        screen.said += 1
        return 1
    return 0


def reopen(screen: Screen, host: str, port: int) -> None:
    screen.segments.append(screen.seen)
    screen.seen = []
    open_screen(screen, host, port).start()


async def restart(server: ServerProcess) -> dict:
    """SIGTERM the server, start it again on the same port and database; how long it took."""
    t = time.monotonic()
    code = await threads.deferToThread(server.stop)
    await sleep(2.0)
    await threads.deferToThread(server.start)
    return {"exit": code, "down_s": round(time.monotonic() - t, 2)}


def stop_and_read(server: ServerProcess, db: Path) -> list:
    """Stop the server (history flushed), then the room's lines from the database."""
    server.stop()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT source, params FROM history WHERE target = ? "
                            "AND command = 'PRIVMSG' ORDER BY seq", (ROOM,)).fetchall()
    return [(source.split("!")[0], json.loads(params)[1]) for source, params in rows]


def compare(screens: list, history: list) -> dict:
    """Each screen against history: missing, doubled, out of order."""
    order = {line: i for i, line in enumerate(history)}
    report = []
    ok = len(set(history)) == len(history)
    for screen in screens:
        parts = [*screen.segments, screen.seen]
        seen = [line for part in parts for line in part]
        doubled = sum(len(part) - len(set(part)) for part in parts)
        unknown = [line for line in seen if line not in order]
        in_order = True
        for part in parts:
            positions = [order[line] for line in part if line in order]
            in_order = in_order and positions == sorted(positions)
        others = [line for line in history if line[0] != screen.name]
        missing = len(set(others) - set(seen)) if screen.kind != "churner" else None
        good = doubled == 0 and not unknown and in_order and (missing in (0, None))
        ok = ok and good
        report.append({"screen": screen.name, "proto": screen.proto, "kind": screen.kind,
                       "seen": len(seen), "said": screen.said, "missing": missing,
                       "doubled": doubled, "not_in_history": len(unknown),
                       "in_order": in_order, "reconnects": screen.reconnects, "ok": good})
    said = sum(screen.said for screen in screens)
    # Every line a session was asked to say is in history (flood-held lines included).
    ok = ok and said == len(history)
    return {"ok": ok, "history_lines": len(history), "said": said, "screens": report}


def until(predicate, timeout: float) -> defer.Deferred:
    """Fire when ``predicate()`` holds, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout

    async def wait():
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("the soak's sessions did not all join in time")
            await sleep(0.1)
    return defer.ensureDeferred(wait())


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--tcp", type=int, default=4, help="TCP stayers (the first floods)")
    parser.add_argument("--udp", type=int, default=3, help="UDP stayers")
    parser.add_argument("--churners", type=int, default=4, help="sessions that leave/return")
    parser.add_argument("--rate", type=float, default=3.0, help="ticks per second")
    parser.add_argument("--flood-burst", type=int, default=10)
    parser.add_argument("--drain", type=float, default=15.0, help="quiet seconds at the end")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    outcome = {}

    def done(result):
        outcome["result"] = result
        reactor.stop()

    def failed(failure):
        outcome["error"] = failure.getTraceback()
        reactor.stop()

    def give_up():
        outcome["error"] = f"the soak did not end within {args.duration + args.drain + 120} s"
        reactor.stop()

    deadline = reactor.callLater(args.duration + args.drain + 120, give_up)
    d = defer.ensureDeferred(run(args))
    d.addCallbacks(done, failed)
    d.addBoth(lambda _: deadline.active() and deadline.cancel())
    reactor.run()
    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        return 2
    result = outcome["result"]
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
