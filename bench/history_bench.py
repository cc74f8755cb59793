#!/usr/bin/env python3
"""History benchmark: CHATHISTORY on a 1,000,000-message database, and what history costs fan-out.

    python bench/history_bench.py                       # ~3 minutes
    python bench/history_bench.py --skip-fanout         # the CHATHISTORY part only (~1 min)
    python bench/history_bench.py --out bench/results/history.md

1. Builds (once; kept in bench/build/) a history database of ``--messages``
   PRIVMSGs spread over ``--rooms`` rooms, written with the store's own code
   (:meth:`twistchat.store.SQLiteStore._write_batch`, the writer thread's
   batch insert), so it is exactly what the server writes and opens.  The
   default, 10 rooms of 100,000, stays within the default retention
   (``--history-per-room=100000``): the server prunes nothing.
2. Copies it, starts the real ``twistd -n --pidfile= chat --db=COPY`` on
   127.0.0.1, and times how long it takes to accept connections.
3. One raw-socket client negotiates ``batch server-time draft/chathistory``,
   joins #room0 and sends ``--requests`` sequential ``CHATHISTORY LATEST
   #room0 * 100``, timing each from the send to the end of its batch; then
   the same number of ``CHATHISTORY BEFORE #room0 timestamp=T 100`` at random
   times T across the room's history (cold pages: the time index).
4. Runs bench/fanout_bench.py with two candidates, history in an SQLite file
   (fresh per run, removed after it) and ``--db=:memory:``, and prints their
   ratio per rate.

Safety as in fanout_bench.py: loopback only, every phase bounded in time,
every server stopped by its pid.  See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

from fanout_bench import (  # noqa: E402
    BUILD_DIR,
    HOST,
    Server,
    ServerSpec,
    become_subreaper,
    machine_info,
    render_md,
    render_text,
)

TEXT = "x" * 60
# The flood limit (5 lines/s after a burst of 20) would pace the one client's
# back-to-back requests at 200 ms each: it is not what is measured here.
SERVER_CMD = ("twistd -n --pidfile= chat --interface={host} --port={port} --db={db} "
              "--proto=tcp --max-per-ip={conns} --flood-rate=100000 --flood-burst=100000")


def log(msg: str) -> None:
    print(f"[history_bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the database
# --------------------------------------------------------------------------

def build_database(path: Path, messages: int, rooms: int, batch: int = 100_000) -> float:
    """Write ``messages`` PRIVMSGs over ``rooms`` rooms with the store's batch insert.

    Returns the seconds taken.
    """
    from twisted.internet.task import Clock

    from twistchat.store import HistoryRecord, SQLiteStore

    tmp = path.with_suffix(".part")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    clock = Clock()
    t0 = time.monotonic()
    store = SQLiteStore(str(tmp), reactor=clock, clock=clock, max_per_target=None)
    per_room = messages // rooms
    start_ms = int(time.time() * 1000) - per_room * 1000  # one message a second, ending now
    pending = []
    for room in range(rooms):
        target = f"#room{room}"
        for seq in range(1, per_room + 1):
            nick = f"u{seq % 50}"
            pending.append(HistoryRecord(
                target, seq, start_ms + seq * 1000, f"hb{room}x{seq:x}", "PRIVMSG",
                f"{nick}!{nick}@127.0.0.1", (target, f"{seq} {TEXT}")))
            if len(pending) >= batch:
                store._write_batch(pending)  # the writer thread's own insert, called directly
                pending = []
    if pending:
        store._write_batch(pending)
    store._close_connection()  # checkpoints the WAL into the file
    tmp.rename(path)
    return time.monotonic() - t0


# --------------------------------------------------------------------------
# a raw IRC client
# --------------------------------------------------------------------------

class Client:
    """A blocking line client with a deadline on every read."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def line(self) -> str:
        end = time.monotonic() + self.timeout
        while b"\n" not in self.buf:
            if time.monotonic() > end:
                raise TimeoutError("no line from the server")
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode()

    def until(self, predicate) -> list:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if predicate(line):
                return lines

    def close(self) -> None:
        self.sock.close()


def words(line: str) -> list:
    """The atoms of a line before its trailing parameter, tags and source dropped."""
    if line.startswith("@"):
        line = line.split(" ", 1)[1]
    if line.startswith(":"):
        line = line.split(" ", 1)[1]
    return line.split(" :", 1)[0].split()


def history_batch(client: Client, request: str) -> tuple:
    """Send one CHATHISTORY request; (seconds to the end of its batch, messages in it)."""
    t0 = time.perf_counter()
    client.send(request)
    ref, count = None, 0
    while True:
        atoms = words(client.line())
        if atoms[:1] == ["FAIL"]:
            raise RuntimeError("server refused: " + " ".join(atoms))
        if atoms[:1] == ["BATCH"]:
            if atoms[1].startswith("+") and ref is None:
                ref = atoms[1][1:]
            elif atoms[1] == "-" + str(ref):
                return time.perf_counter() - t0, count
        elif atoms[:1] == ["PRIVMSG"]:
            count += 1


def percentile(values: list, p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def chathistory_run(a, db: Path) -> dict:
    """Start the server on a copy of ``db``; time start-up, LATEST and BEFORE."""
    run_dir = BUILD_DIR / "run"
    logs = BUILD_DIR / "logs"
    run_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    copy = run_dir / "history-bench-copy.sqlite3"
    for leftover in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(db, copy)
    spec = ServerSpec("twistchat-history", SERVER_CMD)
    server = Server(spec, {"db": str(copy), "conns": "64"},
                    logs / f"{time.strftime('%Y%m%d-%H%M%S')}-history.log", run_dir)
    result = {"database": str(db), "db_bytes": db.stat().st_size}
    try:
        server.wait_ready(a.ready_timeout)
        result["listening_after_s"] = server.ready_s
        client = Client(server.port)
        client.send("CAP LS 302", "CAP REQ :batch server-time draft/chathistory",
                    "NICK hbench", "USER hbench 0 * :history bench", "CAP END")
        client.until(lambda line: words(line)[:1] == ["001"])
        # JOIN replays the last messages (server-time); PONG comes after them.
        client.send("JOIN #room0", "PING :joined")
        client.until(lambda line: words(line)[:1] == ["PONG"])
        for _ in range(min(20, a.requests)):  # warm-up, not counted
            history_batch(client, "CHATHISTORY LATEST #room0 * 100")
        latest, counts = [], set()
        end = time.monotonic() + a.phase_timeout
        for _ in range(a.requests):
            if time.monotonic() > end:
                break
            seconds, count = history_batch(client, "CHATHISTORY LATEST #room0 * 100")
            latest.append(seconds * 1000)
            counts.add(count)
        result["latest"] = summary(latest, counts)
        per_room = a.messages // a.rooms
        start_ms = int(time.time() * 1000) - per_room * 1000
        rng = random.Random(8)
        before, counts = [], set()
        end = time.monotonic() + a.phase_timeout
        from twistchat.core.events import format_server_time
        for _ in range(a.requests):
            if time.monotonic() > end:
                break
            at = start_ms + rng.randrange(200, per_room) * 1000
            seconds, count = history_batch(
                client, f"CHATHISTORY BEFORE #room0 timestamp={format_server_time(at)} 100")
            before.append(seconds * 1000)
            counts.add(count)
        result["before"] = summary(before, counts)
        client.close()
        if server.exited() is not None:
            result["error"] = f"server exited ({server.exited()})"
    finally:
        server.stop()
        for leftover in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
            leftover.unlink(missing_ok=True)
    return result


def summary(ms: list, counts: set) -> dict:
    if not ms:
        return {"requests": 0}
    return {"requests": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms), "mean_ms": sum(ms) / len(ms), "messages_per_reply": sorted(counts)}


# --------------------------------------------------------------------------
# fan-out with history on and off
# --------------------------------------------------------------------------

def fanout_run(a) -> dict:
    """bench/fanout_bench.py with an SQLite and a :memory: candidate; its JSON."""
    with tempfile.TemporaryDirectory(prefix="twistchat-hbench-") as tmp:
        out = Path(tmp) / "fanout.json"
        base = ("twistd -n --pidfile= chat --interface={host} --port={port} "
                "--max-per-ip={conns}")
        argv = [sys.executable, str(BENCH_DIR / "fanout_bench.py"),
                "--rates", a.rates, "--clients", str(a.clients), "--duration", str(a.duration),
                "--idle-clients", "0", "--json", str(out),
                "--server", f"sqlite={base} --db=history-{{port}}.sqlite3",
                "--server", f"memory={base} --db=:memory:"]
        log("fan-out: " + " ".join(argv[2:]))
        subprocess.run(argv, timeout=a.fanout_deadline, check=False, stdin=subprocess.DEVNULL,
                       stdout=sys.stderr)
        return json.loads(out.read_text()) if out.exists() else {"runs": []}


def fanout_table(data: dict) -> tuple:
    runs = {(r["server"], r["rate"]): r for r in data.get("runs", []) if r["rate"] is not None}
    rates = sorted({rate for _, rate in runs})
    hdr = ["rate msg/s", "sqlite deliv/s", "memory deliv/s", "deliv/s sqlite÷memory",
           "sqlite p99 ms", "memory p99 ms", "sqlite CPU µs/deliv", "memory CPU µs/deliv",
           "CPU sqlite÷memory"]
    rows = []
    for rate in rates:
        s, m = runs.get(("sqlite", rate)), runs.get(("memory", rate))
        if not s or not m:
            continue
        fs, fm = s["fanout"], m["fanout"]
        ds, dm = fs.get("deliveries_per_s"), fm.get("deliveries_per_s")
        ps, pm = (fs.get("lat_ms") or {}).get("p99"), (fm.get("lat_ms") or {}).get("p99")
        cs, cm = s.get("cpu_us_per_delivery"), m.get("cpu_us_per_delivery")
        rows.append([f"{rate:g}", f"{ds:,.0f}" if ds else "-", f"{dm:,.0f}" if dm else "-",
                     f"{ds / dm:.3f}" if ds and dm else "-",
                     f"{ps:.1f}" if ps is not None else "-", f"{pm:.1f}" if pm is not None else "-",
                     f"{cs:.2f}" if cs else "-", f"{cm:.2f}" if cm else "-",
                     f"{cs / cm:.3f}" if cs and cm else "-"])
    return hdr, rows


# --------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1_000_000, help="messages in the database")
    p.add_argument("--rooms", type=int, default=10, help="rooms they are spread over (default 10)")
    p.add_argument("--db", type=Path, help="database to build or reuse "
                   "(default bench/build/history-MESSAGESxROOMS.sqlite3)")
    p.add_argument("--rebuild", action="store_true", help="build the database even if it exists")
    p.add_argument("--requests", type=int, default=500,
                   help="CHATHISTORY requests per kind (default 500)")
    p.add_argument("--phase-timeout", type=float, default=60.0, help="bound per request phase, s")
    p.add_argument("--ready-timeout", type=float, default=20.0, help="bound on server start, s")
    p.add_argument("--skip-fanout", action="store_true", help="only the CHATHISTORY part")
    p.add_argument("--rates", default="100,400,1600", help="fan-out rates (default 100,400,1600)")
    p.add_argument("--clients", type=int, default=500, help="fan-out clients (default 500)")
    p.add_argument("--duration", type=float, default=5.0,
                   help="fan-out seconds per rate (default 5)")
    p.add_argument("--fanout-deadline", type=float, default=600.0,
                   help="bound on the fan-out part, s")
    p.add_argument("--out", type=Path, metavar="FILE.md", help="also write the results as Markdown")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the raw results as JSON")
    a = p.parse_args(argv)
    become_subreaper()
    db = a.db or BUILD_DIR / f"history-{a.messages}x{a.rooms}.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    results = {"machine": dict(machine_info())}
    if a.rebuild or not db.exists():
        log(f"building {db}: {a.messages:,} messages in {a.rooms} rooms")
        results["build_s"] = build_database(db, a.messages, a.rooms)
        log(f"built in {results['build_s']:.1f} s")
    log("CHATHISTORY on the real server")
    results["chathistory"] = ch = chathistory_run(a, db)
    lines = [f"database: {db} ({ch['db_bytes'] / 2**20:.0f} MiB, {a.messages:,} messages, "
             f"{a.rooms} rooms)" + (f", built in {results['build_s']:.1f} s"
                                    if "build_s" in results else ""),
             f"listening after: {ch.get('listening_after_s', float('nan')):.2f} s "
             "(spawn to first accepted connection)"]
    hdr = ["request", "requests", "messages/reply", "p50 ms", "p99 ms", "max ms", "mean ms"]
    rows = []
    for key, label in (("latest", "CHATHISTORY LATEST #room0 * 100"),
                       ("before", "CHATHISTORY BEFORE #room0 timestamp=<random> 100")):
        s = ch.get(key) or {}
        if s.get("requests"):
            rows.append([label, str(s["requests"]), ",".join(map(str, s["messages_per_reply"])),
                         f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['max_ms']:.2f}",
                         f"{s['mean_ms']:.2f}"])
    print()
    print("\n".join(lines))
    print()
    print(render_text(hdr, rows))
    md = ["# history benchmark", "", "| machine | |", "|---|---|"]
    md += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in machine_info()]
    md += [""] + [f"- {line}" for line in lines] + ["", render_md(hdr, rows), ""]
    if not a.skip_fanout:
        results["fanout"] = fanout_run(a)
        fh, frows = fanout_table(results["fanout"])
        print()
        print(f"fan-out, {a.clients} clients, {a.duration:g} s per rate: history in SQLite "
              "vs --db=:memory:")
        print(render_text(fh, frows))
        md += ["## Fan-out with history in SQLite vs --db=:memory:", "",
               f"{a.clients} clients in one room, 60-byte messages, {a.duration:g} s per rate "
               "(bench/fanout_bench.py).", "", render_md(fh, frows), ""]
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(md))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    return 0 if "error" not in ch else 2


if __name__ == "__main__":
    sys.exit(main())
