#!/usr/bin/env python3
"""Which Redis client for the cluster (issue #15): txredisapi or redis-py's asyncio client.

    python bench/redis_clients.py                        # ~1 min, both clients
    python bench/redis_clients.py --ops 5000 --out /tmp/redis.md

Starts one real ``redis-server`` on a free loopback port (tests/redisproc.py: no config
file, its own temporary directory, no persistence, stopped by pid), then runs each client
in a child process of its own, because a process has one reactor:

- ``txredisapi`` under Twisted's default reactor (epoll here): it is a Twisted protocol;
- ``redis`` (redis-py, ``redis.asyncio``) under ``twisted.internet.asyncioreactor``, each
  call's asyncio future turned into a Deferred (``Deferred.fromFuture``), as a twistd node
  would have to call it.

Each child runs what a node will do, on one stream (``XADD ... MAXLEN ~ 100000 * e <100
bytes>``, the payload's size that of a PRIVMSG event):

1. **single**: ``--ops`` XADDs one at a time (each awaited before the next): latency of
   each, p50/p99, ops/s;
2. **pipelined**: the same count in pipelines of ``--batch`` (the library's own pipeline,
   no MULTI): latency of each pipeline, ops/s;
3. **fan-in**: one writer connection XADDs ``--fanin-rate`` events per second (a
   LoopingCall each ms, as many as are due), one reader connection loops on
   ``XREAD COUNT 500 BLOCK 1000`` from the last id it saw; each event carries its send
   time, the reader notes when it got it: p50/p99 of XADD-to-reader, over
   ``--fanin-events`` events (the CPU is the writer's and the reader's together);
4. **catch-up**: the reader alone reads the whole stream written above from the start,
   ``XREAD COUNT 500`` a call: the CPU a node pays per event it reads.

For every phase the child's CPU (``time.process_time``, user + system) divided by the
operations gives CPU µs/op: what the node's one core pays per event for its client.  Each
phase is cut off after ``--phase-limit`` seconds (20), a child after 120 s.  Both libraries use
hiredis's C reply parser when it is importable (``pip install hiredis``; ``PYTHONPATH``
passes on to the children), which the header records.  The children
are this script (``--child NAME``), with a JSON line as their answer.  ``--out FILE.md``
writes the tables with the machine they ran on, for bench/results/.  Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.redisproc import MISSING, RedisProcess, command, redis_server_path  # noqa: E402

CLIENTS = ("txredisapi", "redis-py")
STREAM = "bench:room"
MAXLEN = "100000"


def payload(i: int) -> bytes:
    """About 100 bytes, like one PRIVMSG event (prefix, target, text, seq, msgid)."""
    head = b":alice!alice@127.0.0.1 PRIVMSG #room :hello %08d " % i
    return head + b"x" * (100 - len(head))


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- the children: one client each -----------------------------------------------------

class TxRedis:
    """txredisapi: replies as bytes (``charset=None``), no reconnect (a benchmark)."""

    name = "txredisapi"

    async def connect(self, host: str, port: int) -> None:
        import txredisapi
        self.writer = await txredisapi.Connection(host, port, dbid=0, reconnect=False,
                                                  charset=None, convertNumbers=False)
        self.reader = await txredisapi.Connection(host, port, dbid=0, reconnect=False,
                                                  charset=None, convertNumbers=False)

    def xadd(self, data: bytes):
        return self.writer.execute_command("XADD", STREAM, "MAXLEN", "~", MAXLEN, "*",
                                           "e", data)

    async def xadd_many(self, items: list[bytes]) -> list:
        pipe = await self.writer.pipeline()
        for data in items:
            pipe.execute_command("XADD", STREAM, "MAXLEN", "~", MAXLEN, "*", "e", data)
        return await pipe.execute_pipeline()

    def command(self, *args):
        return self.writer.execute_command(*args)

    async def xread(self, last: bytes) -> list:
        """[(id, {field: value})] after ``last``, waiting up to 1 s."""
        reply = await self.reader.execute_command("XREAD", "COUNT", "500", "BLOCK", "1000",
                                                  "STREAMS", STREAM, last)
        if not reply:
            return []
        return [(entry[0], dict(zip(entry[1][::2], entry[1][1::2], strict=True)))
                for entry in reply[0][1]]

    async def close(self) -> None:
        await self.writer.disconnect()
        await self.reader.disconnect()


class RedisPy:
    """redis-py's asyncio client, its futures bridged into Twisted per call."""

    name = "redis-py"

    async def connect(self, host: str, port: int) -> None:
        import redis.asyncio as aioredis
        self.writer = aioredis.Redis(host=host, port=port, db=0)
        self.reader = aioredis.Redis(host=host, port=port, db=0)
        await self._d(self.writer.ping())
        await self._d(self.reader.ping())

    @staticmethod
    def _d(coro):
        import asyncio

        from twisted.internet.defer import Deferred
        return Deferred.fromFuture(asyncio.ensure_future(coro))

    def xadd(self, data: bytes):
        return self._d(self.writer.xadd(STREAM, {"e": data}, maxlen=int(MAXLEN),
                                        approximate=True))

    async def xadd_many(self, items: list[bytes]) -> list:
        pipe = self.writer.pipeline(transaction=False)
        for data in items:
            pipe.xadd(STREAM, {"e": data}, maxlen=int(MAXLEN), approximate=True)
        return await self._d(pipe.execute())

    def command(self, *args):
        return self._d(self.writer.execute_command(*args))

    async def xread(self, last: bytes) -> list:
        reply = await self._d(self.reader.xread({STREAM: last}, count=500, block=1000))
        if not reply:
            return []
        return list(reply[0][1])

    async def close(self) -> None:
        await self._d(self.writer.aclose())
        await self._d(self.reader.aclose())


async def run_phases(client, args) -> dict:
    """The three phases against one client; a dict of their numbers."""
    from twisted.internet import reactor, task
    from twisted.internet.defer import Deferred

    await client.connect(args.host, args.port)
    out: dict = {"client": client.name}

    # Warm up (connections, code paths), not measured.
    for i in range(200):
        await client.xadd(payload(i))

    # 1. one at a time
    lat = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    limit = t0 + args.phase_limit
    for i in range(args.ops):
        s = time.perf_counter()
        await client.xadd(payload(i))
        e = time.perf_counter()
        lat.append(e - s)
        if e > limit:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out["single"] = {"ops": len(lat), "ops_s": len(lat) / wall,
                     "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
                     "cpu_us_op": cpu / len(lat) * 1e6}

    # 2. pipelined
    lat, done = [], 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    limit = t0 + args.phase_limit
    while done < args.ops:
        items = [payload(done + k) for k in range(min(args.batch, args.ops - done))]
        s = time.perf_counter()
        replies = await client.xadd_many(items)
        e = time.perf_counter()
        assert len(replies) == len(items), replies
        lat.append(e - s)
        done += len(items)
        if e > limit:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out["pipelined"] = {"ops": done, "batch": args.batch, "ops_s": done / wall,
                        "p50_ms": percentile(lat, 50) * 1e3,
                        "p99_ms": percentile(lat, 99) * 1e3, "cpu_us_op": cpu / done * 1e6}

    # 2b. concurrent: --batch XADDs issued without waiting, then all awaited (each client's
    # own way of having several calls in flight: one connection for txredisapi, a
    # connection each from the pool for redis-py)
    from twisted.internet.defer import gatherResults
    lat, done = [], 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    limit = t0 + args.phase_limit
    while done < args.ops:
        n = min(args.batch, args.ops - done)
        s = time.perf_counter()
        await gatherResults([client.xadd(payload(done + k)) for k in range(n)])
        e = time.perf_counter()
        lat.append(e - s)
        done += n
        if e > limit:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    clients = await client.command("CLIENT", "LIST")
    out["concurrent"] = {"ops": done, "batch": args.batch, "ops_s": done / wall,
                         "p50_ms": percentile(lat, 50) * 1e3,
                         "p99_ms": percentile(lat, 99) * 1e3, "cpu_us_op": cpu / done * 1e6,
                         "connections": len(bytes(clients).strip().splitlines())}

    # 3. fan-in: one writer at a rate, one blocking reader
    reply = await client.xadd(b"marker")  # the reader starts after everything so far
    last = reply if isinstance(reply, bytes) else str(reply).encode()
    got: list[float] = []
    sent = [0]
    stop_at = time.perf_counter() + args.phase_limit

    def write() -> None:
        # As many as the rate asks for by now (a LoopingCall tick that comes late is not
        # repeated, so count from the clock); the send time travels in the event, and the
        # reader's clock is the same one.
        due = min(args.fanin_events, int((time.perf_counter() - t0) * args.fanin_rate) + 1)
        while sent[0] < due:
            sent[0] += 1
            client.xadd(b"%.9f " % time.perf_counter() + payload(sent[0])[:80])

    async def read(last: bytes) -> None:
        while len(got) < args.fanin_events and time.perf_counter() < stop_at:
            for _id, fields in await client.xread(last):
                now = time.perf_counter()
                last = _id
                value = fields[b"e"]
                got.append(now - float(value.split(b" ", 1)[0]))

    loop = task.LoopingCall(write)
    loop.clock = reactor
    cpu0, t0 = time.process_time(), time.perf_counter()
    reading = Deferred.fromCoroutine(read(last))
    loop.start(0.001)
    await reading
    loop.stop()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out["fanin"] = {"events": len(got), "sent": sent[0], "rate": args.fanin_rate,
                    "wall_s": wall, "p50_ms": percentile(got, 50) * 1e3,
                    "p99_ms": percentile(got, 99) * 1e3,
                    "max_ms": max(got, default=0) * 1e3,
                    "cpu_us_event": cpu / max(1, len(got)) * 1e6}
    # 4. catch-up: read the whole stream (everything above) from the start, COUNT 500 a call:
    # what a node pays per event to read what others wrote, with no writer in this process
    count, last = 0, b"0-0"
    cpu0, t0 = time.process_time(), time.perf_counter()
    limit = t0 + args.phase_limit
    while time.perf_counter() < limit:
        batch = await client.xread(last)
        if not batch:
            break
        count += len(batch)
        last = batch[-1][0]
        if len(batch) < 500:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out["catchup"] = {"events": count, "ops_s": count / wall, "cpu_us_event": cpu / count * 1e6}
    await client.close()
    return out


def child(args) -> int:
    """Run one client's phases under its reactor; print one JSON line."""
    if args.child == "redis-py":
        from twisted.internet import asyncioreactor
        asyncioreactor.install()
    from twisted.internet import reactor, task
    from twisted.internet.defer import Deferred

    client = TxRedis() if args.child == "txredisapi" else RedisPy()
    result: dict = {}

    async def main(_reactor) -> None:
        result.update(await run_phases(client, args))
        result["reactor"] = type(reactor).__module__ + "." + type(reactor).__name__
        print(json.dumps(result), flush=True)

    task.react(lambda r: Deferred.fromCoroutine(main(r)))  # exits the process
    return 0


# --- the parent ------------------------------------------------------------------------

def versions() -> dict:
    out = {}
    for module in ("txredisapi", "redis", "twisted", "hiredis"):
        try:
            from importlib.metadata import version
            out[module] = version(module if module != "twisted" else "Twisted")
        except Exception:
            out[module] = "not installed"
    return out


def table(results: list[dict]) -> str:
    rows = ["| client | reactor | phase | ops | ops/s | p50 ms | p99 ms | CPU µs/op |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        reactor = r["reactor"].rsplit(".", 1)[-1]
        s, p, c, f = r["single"], r["pipelined"], r["concurrent"], r["fanin"]
        rows.append(f"| {r['client']} | {reactor} | XADD one at a time | {s['ops']:,} | "
                    f"{s['ops_s']:,.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | "
                    f"{s['cpu_us_op']:.1f} |")
        rows.append(f"| {r['client']} | {reactor} | XADD pipelined ×{p['batch']} "
                    f"(latency per pipeline) | {p['ops']:,} | {p['ops_s']:,.0f} | "
                    f"{p['p50_ms']:.3f} | {p['p99_ms']:.3f} | {p['cpu_us_op']:.1f} |")
        rows.append(f"| {r['client']} | {reactor} | XADD {c['batch']} in flight, awaited "
                    f"together ({c['connections']} connections at the end) | {c['ops']:,} | "
                    f"{c['ops_s']:,.0f} | {c['p50_ms']:.3f} | {c['p99_ms']:.3f} | "
                    f"{c['cpu_us_op']:.1f} |")
        rows.append(f"| {r['client']} | {reactor} | fan-in: XADD → XREAD BLOCK at "
                    f"{f['rate']:,}/s (max {f['max_ms']:.1f} ms) | {f['events']:,} | "
                    f"{f['events'] / f['wall_s']:,.0f} | {f['p50_ms']:.3f} | "
                    f"{f['p99_ms']:.3f} | {f['cpu_us_event']:.1f} |")
        u = r["catchup"]
        rows.append(f"| {r['client']} | {reactor} | catch-up: XREAD COUNT 500 from 0 "
                    f"(per event) | {u['events']:,} | {u['ops_s']:,.0f} |  |  | "
                    f"{u['cpu_us_event']:.1f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ops", type=int, default=20000, help="XADDs per phase (20000)")
    parser.add_argument("--batch", type=int, default=100, help="commands per pipeline (100)")
    parser.add_argument("--fanin-events", type=int, default=10000, help="events (10000)")
    parser.add_argument("--fanin-rate", type=int, default=2000, help="events/s (2000)")
    parser.add_argument("--phase-limit", type=float, default=20.0, help="seconds (20)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma list")
    parser.add_argument("--out", help="also write Markdown here (for bench/results/)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    if redis_server_path() is None:
        print(MISSING, file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as tmp:
        server = RedisProcess(Path(tmp)).start()
        try:
            for name in args.clients.split(","):
                command(server.host, server.port, "FLUSHALL")
                argv = [sys.executable, __file__, "--child", name, "--port", str(server.port),
                        "--ops", str(args.ops), "--batch", str(args.batch),
                        "--fanin-events", str(args.fanin_events),
                        "--fanin-rate", str(args.fanin_rate),
                        "--phase-limit", str(args.phase_limit)]
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                      env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                          filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")]))))
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode != 0 or not lines:
                    print(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}",
                          file=sys.stderr)
                    return 2
                results.append(json.loads(lines[-1]))
                print(f"{name}: done", file=sys.stderr)
        finally:
            server.stop()
    text = table(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.out:
        v = versions()
        redis_version = subprocess.run([redis_server_path() or "redis-server", "--version"],
                                       capture_output=True, text=True).stdout.strip()
        header = (f"Machine: {os.cpu_count()} cores, Linux {platform.release()}, "
                  f"Python {platform.python_version()}, Twisted {v['twisted']}, "
                  f"txredisapi {v['txredisapi']}, redis-py {v['redis']}, "
                  f"hiredis {v['hiredis']}; {redis_version}; "
                  f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
                  f"{os.getloadavg()[0]:.2f}.\n\n"
                  f"    python bench/redis_clients.py --ops {args.ops} --batch {args.batch} "
                  f"--fanin-events {args.fanin_events} --fanin-rate {args.fanin_rate}\n\n")
        Path(args.out).write_text(header + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
