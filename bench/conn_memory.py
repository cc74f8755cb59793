#!/usr/bin/env python3
"""What one idle connection costs, and where: tracemalloc on a server with N joined connections.

    python bench/conn_memory.py                  # 2,000 connections, ~30 s
    python bench/conn_memory.py -n 500 --frames 8 --top 10   # deeper tracebacks

fanout_bench.py's idle run gives the RSS growth per connection; this says which
lines of code allocated it.  It runs the real service (``makeService``, the
options after ``--``, default ``--db=:memory: --proto=tcp``) in this process
with tracemalloc on, takes a snapshot, lets the shared load generator connect
``-n`` clients that register and join one room (``fanout -m idle -j``), waits
until the registry holds them all, takes a second snapshot and prints the
difference per connection: bytes and blocks by allocating line, and new
objects by type.  tracemalloc makes the process bigger and slower, so the RSS
of this process says nothing; the per-line bytes are exact, except that
objects Python recycles from its free lists (dicts, floats) are counted at the
line that first allocated that memory (a "twisted/python/log.py" line here is
such a recycled dict, not a log record).

Loopback only; the run is bounded by ``--timeout``.  See bench/README.md.
"""
from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import threading
import tracemalloc
from collections import Counter
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="connections (default 2000)")
    p.add_argument("--frames", type=int, default=1,
                   help="traceback depth per allocation (default 1)")
    p.add_argument("--top", type=int, default=25, help="allocation sites shown (default 25)")
    p.add_argument("--timeout", type=float, default=120.0, help="bound on the run, s (default 120)")
    p.add_argument("--fanout-src", type=Path, help="load generator sources (as fanout_bench.py)")
    p.add_argument("server_args", nargs="*", help="twistd chat options (after --)")
    a = p.parse_args(argv)
    tracemalloc.start(a.frames)

    from fanout_bench import HOST, Deadline, build, free_port, raise_nofile
    from twisted.internet import reactor, task
    from twisted.logger import globalLogBeginner

    from twistchat import service

    fanout = str(build(a, Deadline(a.timeout)) / "fanout")
    raise_nofile(a.n * 2 + 256)
    port = free_port()
    options = service.Options()
    options.parseOptions([f"--interface={HOST}", f"--port={port}", f"--max-per-ip={a.n + 64}"]
                         + (a.server_args or ["--db=:memory:", "--proto=tcp"]))
    top = service.makeService(options, reactor)
    # As twistd does: log events go somewhere (here: nowhere) instead of piling up in
    # the buffer Twisted keeps until logging begins.
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    state = {"stable": 0, "result": 1}

    def snapshot():
        gc.collect()
        return tracemalloc.take_snapshot(), Counter(type(o).__name__ for o in gc.get_objects())

    def load():
        state["before"] = snapshot()
        proc = subprocess.Popen(
            [fanout, "-H", HOST, "-p", str(port), "-m", "idle", "-j", "-n", str(a.n),
             "-i", str(int(a.timeout)), "-T", str(int(a.timeout))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        state["fanout"] = proc
        threading.Thread(target=proc.wait, daemon=True).start()

    def check():
        members = sum(len(list(top.registry.audience(key)))
                      for key in ("#bench", "#lobby", "#room"))
        settled = min(top.registry.user_count(), members) >= a.n
        state["stable"] = state["stable"] + 1 if settled else 0
        if state["stable"] < 2:
            return
        snap, types = snapshot()
        old_snap, old_types = state["before"]
        stats = snap.compare_to(old_snap, "traceback" if a.frames > 1 else "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"{a.n} registered, joined connections: {total / a.n:,.0f} bytes each "
              "(Python heap, tracemalloc)\n")
        print("bytes/conn  blocks/conn  allocated at")
        for s in stats[:a.top]:
            where = s.traceback.format()
            print(f"{s.size_diff / a.n:10.1f}  {s.count_diff / a.n:11.2f}  {where[-2].strip()}")
            for line in where[-2 * a.frames:-2] + where[-1:]:
                print(f"{'':25}{line.strip()}")
        print("\nnew objects per connection, by type:")
        for name, count in (types - old_types).most_common(15):
            print(f"{count / a.n:8.2f}  {name}")
        state["result"] = 0
        reactor.stop()

    def give_up():
        print(f"timed out: {top.registry.user_count()} of {a.n} registered", file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(top.startService)
    reactor.callLater(0.5, load)
    task.LoopingCall(check).start(1.0, now=False)
    reactor.callLater(a.timeout, give_up)
    try:
        reactor.run()
    finally:
        proc = state.get("fanout")
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    return state["result"]


if __name__ == "__main__":
    sys.exit(main())
