#!/usr/bin/env python3
"""Overload: past the sustainable rate, does twistchat degrade gracefully?

    python bench/overload_bench.py            # three cases, ~1 minute

For each case (``RATE x MESSAGE-BYTES``), a fresh ``twistd -n chat`` (history
in SQLite, --metrics on) on 127.0.0.1 gets ``--slow-readers`` clients that
register, join #bench and then never read (a 4 KiB receive buffer), and the
fan-out load of fanout_bench.py (500 clients, all sending) for 10 s.  While it
runs, the server's RSS is sampled every 0.1 s; afterwards the Prometheus page
says how many clients were dropped for SendQ.  The default cases:

- 1600 x 200: a sustainable rate with long lines, so that the slow readers'
  backlog passes the kernel's socket buffers (up to 4 MiB on loopback) and the
  SendQ within the run: they must be dropped, nobody else;
- 3200 x 60: twice the rate one core delivers: latency must grow, memory not;
- 6400 x 60: four times; on a 2-core machine the load generator (one core)
  can no longer read what it is sent, so its own clients become slow readers.

Graceful means: latency grows, but the server's memory stays bounded (each
client's unsent output is capped by --sendq, 256 KiB by default) and the slow
readers are dropped (``ERROR :SendQ exceeded``), not buffered without end.

Safety as in fanout_bench.py: loopback only, every phase bounded in time,
every server stopped by its pid.  See bench/README.md.
"""
from __future__ import annotations

import argparse
import re
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from fanout_bench import (  # noqa: E402
    BUILD_DIR,
    HOST,
    Deadline,
    Server,
    ServerSpec,
    become_subreaper,
    build,
    free_port,
    machine_info,
    raise_nofile,
    render_md,
    render_text,
    run_fanout,
)

SERVER_CMD = ("twistd -n --pidfile= chat --interface={host} --port={port} "
              "--db=overload-{port}.sqlite3 --max-per-ip={conns} "
              "--metrics=tcp:{mport}:interface={host}")


def log(msg: str) -> None:
    print(f"[overload_bench] {msg}", file=sys.stderr, flush=True)


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """The largest RSS of ``pid`` seen, every 0.1 s until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._stop_ev = pid, rss_kb(pid), threading.Event()

    def run(self) -> None:
        while not self._stop_ev.wait(0.1):
            self.peak = max(self.peak, rss_kb(self.pid))

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(2)


def slow_reader(port: int, i: int, timeout: float = 20.0) -> socket.socket:
    """A client in #bench that will never read again (4 KiB receive buffer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(timeout)
    s.connect((HOST, port))
    s.sendall(f"NICK slow{i}\r\nUSER slow{i} 0 * :slow\r\nJOIN #bench\r\n".encode())
    data, end = b"", time.monotonic() + timeout
    while b" 366 " not in data:  # end of NAMES: joined
        if time.monotonic() > end:
            raise TimeoutError("slow reader did not join")
        data += s.recv(65536)
    return s


def dropped(s: socket.socket) -> bool:
    """True if the server has closed or reset this (never read) connection."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def scrape_drops(port: int) -> dict:
    text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5).read().decode()
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(
        r'^twistchat_drops_total\{reason="(\w+)"\} (\S+)$', text, re.M)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="1600x200,3200x60,6400x60",
                   help="RATExBYTES, comma-separated (default 1600x200,3200x60,6400x60)")
    p.add_argument("--clients", type=int, default=500, help="fan-out clients (default 500)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of sending per rate (default 10)")
    p.add_argument("--slow-readers", type=int, default=20,
                   help="clients that never read (default 20)")
    p.add_argument("--server-args", default="", help="extra twistd chat arguments")
    p.add_argument("--deadline", type=float, default=300.0, help="bound on the whole run, s")
    p.add_argument("--out", type=Path, metavar="FILE.md", help="also write the table as Markdown")
    p.add_argument("--fanout-src", type=Path, help="load generator sources (as fanout_bench.py)")
    a = p.parse_args(argv)
    deadline = Deadline(a.deadline)
    become_subreaper()
    raise_nofile(a.clients * 2 + a.slow_readers + 256)
    fanout_bin = str(build(a, deadline) / "fanout")
    run_dir, logs = BUILD_DIR / "run", BUILD_DIR / "logs"
    run_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    hdr = ["rate msg/s", "bytes", "delivered %", "deliveries/s", "p50 ms", "p99 ms",
           "RSS before MiB", "RSS peak MiB", "slow readers dropped", "SendQ drops (all)", "notes"]
    rows = []
    cases = [(float(r), int(b)) for r, b in (c.split("x") for c in a.cases.split(","))]
    for rate, msg_len in cases:
        deadline.check(f"rate {rate:g}")
        mport = free_port()
        spec = ServerSpec("twistchat", SERVER_CMD + (" " + a.server_args if a.server_args else ""))
        server = Server(spec, {"conns": str(a.clients + a.slow_readers + 64), "mport": str(mport)},
                        logs / f"{time.strftime('%Y%m%d-%H%M%S')}-overload-r{rate:g}.log", run_dir)
        slow, notes = [], []
        try:
            server.wait_ready(20)
            slow = [slow_reader(server.port, i) for i in range(a.slow_readers)]
            before = rss_kb(server.pid)
            sampler = RssSampler(server.pid)
            sampler.start()
            log(f"{rate:g} msg/s x {msg_len} bytes, {a.clients} clients, "
                f"{a.slow_readers} slow readers, {a.duration:g} s")
            try:
                data, _ = run_fanout(
                    [fanout_bin, "-H", HOST, "-p", str(server.port), "-P", str(server.pid),
                     "-n", str(a.clients), "-r", f"{rate:g}", "-d", f"{a.duration:g}",
                     "-b", str(msg_len),
                     "-g", "5", "-T", "60", "-l", f"overload {rate:g}"],
                    60 + a.duration + 30, deadline)
            finally:
                sampler.stop()
            log("  " + data.get("_summary", ""))
            gone = sum(dropped(s) for s in slow)
            drops = scrape_drops(mport)
            if data.get("disconnects_during_measure"):
                notes.append(f"{data['disconnects_during_measure']} fan-out clients disconnected")
            if data.get("achieved_send_rate", rate) < 0.97 * rate:
                notes.append(f"generator sent {data.get('achieved_send_rate', 0):.0f}/s")
            if server.exited() is not None:
                notes.append(f"server exited ({server.exited()})")
            exp, lost = data.get("expected_deliveries") or 0, data.get("lost", 0)
            lat = data.get("lat_ms") or {}
            rows.append([f"{rate:g}", str(msg_len),
                         f"{100 * (exp - lost) / exp:.2f}" if exp else "-",
                         f"{data.get('deliveries_per_s', 0):,.0f}",
                         f"{lat.get('p50', -1):.1f}", f"{lat.get('p99', -1):.1f}",
                         f"{before / 1024:.1f}", f"{sampler.peak / 1024:.1f}",
                         f"{gone}/{len(slow)}", str(drops.get("sendq", "?")), "; ".join(notes)])
        finally:
            for s in slow:
                s.close()
            server.stop()
            for leftover in run_dir.glob(f"overload-{server.port}.sqlite3*"):
                leftover.unlink()
    print()
    print(render_text(hdr, rows))
    if a.out:
        md = ["# overload benchmark", "", "| machine | |", "|---|---|"]
        md += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in machine_info()]
        md += ["", render_md(hdr, rows), ""]
        a.out.write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
