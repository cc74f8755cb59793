#!/usr/bin/env python3
"""Fan-out benchmark: the C reference server and twistchat, same loads, one run.

Builds the shared load generator (../shared/fanout, or $FANOUT_SRC) into
bench/build/fanout, then for every rate and every server: starts a fresh
server on a free loopback port, waits until it accepts connections, runs
``fanout`` (N clients in one channel, total PRIVMSG rate R for D seconds),
samples the server's CPU time (utime+stime of the server and all its
descendants, from /proc) and stops the server by pid.  Then one idle run per
server (``fanout -m idle``) for the memory of an idle, joined connection.
Prints a table with ratios to the reference; ``--out FILE.md`` writes it as
Markdown with the machine it ran on.

Safety: loopback only (127.0.0.1), every phase bounded in time, the whole run
bounded by ``--deadline``; every process this script starts is stopped by its
pid (SIGTERM, then SIGKILL) in a ``finally``, also on Ctrl-C, SIGTERM or error.

See bench/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
HOST = "127.0.0.1"  # loopback only; fanout and refserver refuse anything else

REFERENCE_NAME = "refserver"
REFERENCE_CMD = "{refserver} -a {host} -p {port}"
TWISTCHAT_NAME = "twistchat"
# History on, in SQLite, as issue #8's targets are set; the file is removed when the
# server stops (Server.stop).  --db=:memory: for a run without it.
TWISTCHAT_CMD = ("twistd -n --pidfile= chat --interface={host} --port={port} "
                 "--db=history-{port}.sqlite3 --max-per-ip={conns}")

DEFAULTS = dict(rates="100,400,800,1600", clients=500, duration=10.0,
                msg_len=60, idle_clients=2000, idle_hold=3.0)
QUICK = dict(rates="100,400", clients=100, duration=2.0, msg_len=60,
             idle_clients=500, idle_hold=1.0)

CLK_TCK = os.sysconf("SC_CLK_TCK")


class DeadlineHit(Exception):
    pass


class Interrupted(Exception):
    pass


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise DeadlineHit(f"global deadline ({self.seconds:.0f}s) hit before {what}")


T_START = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def _stat(pid: int) -> list | None:
    """Fields of /proc/PID/stat from field 3 (state) on; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def _cpu_ticks(fields: list) -> int:
    # utime(14) stime(15) cutime(16) cstime(17); fields[0] is field 3.
    # cutime/cstime hold reaped children, so the tree total stays continuous
    # when a child exits and is reaped by its parent.
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])


def _starttime(pid: int) -> str | None:
    f = _stat(pid)
    return f[19] if f else None


def _children(pid: int) -> list:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            return _children_by_scan(pid)
        except OSError:
            pass
    return kids


def _children_by_scan(pid: int) -> list:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat(int(d))
            if f and int(f[1]) == pid:
                kids.append(int(d))
    return kids


def descendants(pid: int) -> list:
    out, todo = [], [pid]
    while todo:
        for k in _children(todo.pop()):
            out.append(k)
            todo.append(k)
    return out


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user+system) of pid, its threads and all its descendants."""
    root = _stat(pid)
    if root is None:
        return None
    ticks = _cpu_ticks(root)
    for k in descendants(pid):
        f = _stat(k)
        if f:
            ticks += _cpu_ticks(f)
    return ticks / CLK_TCK


class CpuSampler(threading.Thread):
    """Samples tree_cpu_s(pid) every `interval` s; .at(t) interpolates."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list = []
        self._stop_ev = threading.Event()
        self._sample()

    def _sample(self) -> None:
        v = tree_cpu_s(self.pid)
        if v is not None:
            self.samples.append((time.monotonic(), v))

    def run(self) -> None:
        while not self._stop_ev.wait(self.interval):
            self._sample()

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(2)
        self._sample()

    def at(self, t: float) -> float | None:
        s = self.samples
        if not s:
            return None
        if t <= s[0][0]:
            return s[0][1]
        for (t0, v0), (t1, v1) in zip(s, s[1:], strict=False):
            if t0 <= t <= t1:
                return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return s[-1][1]

    def between(self, a: float, b: float) -> float | None:
        va, vb = self.at(a), self.at(b)
        return None if va is None or vb is None else vb - va


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

def _signal_pid(pid: int, starttime: str | None, sig: int) -> None:
    """Signal pid only if it is still the process we recorded."""
    if starttime is not None and _starttime(pid) != starttime:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int, starttime: str | None) -> bool:
    f = _stat(pid)
    return bool(f) and f[0] != "Z" and (starttime is None or f[19] == starttime)


def become_subreaper() -> None:
    """Orphaned descendants of a server we stop are re-parented to us, so we
    can reap them (the pid 1 of a container may never do it)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < need:
        log(f"warning: RLIMIT_NOFILE {soft} < {need}; large runs may fail "
            "(raise the hard limit: ulimit -Hn)")
    return soft


def tail(path: Path, n: int = 8) -> str:
    try:
        lines = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join("    | " + ln for ln in lines[-n:])


@dataclass
class ServerSpec:
    name: str
    template: str
    reference: bool = False


class Server:
    """One server process started by us; stop() ends it and its descendants."""

    def __init__(self, spec: ServerSpec, subst: dict, log_path: Path, run_dir: Path):
        self.spec = spec
        self.port = free_port()
        mapping = dict(subst, port=str(self.port), host=HOST)
        cmd = spec.template
        for k, v in mapping.items():
            cmd = cmd.replace("{" + k + "}", v)
        argv = shlex.split(cmd)
        if argv and "/" not in argv[0] and shutil.which(argv[0]) is None:
            # e.g. "twistd" from the venv this script runs in
            cand = Path(sys.executable).parent / argv[0]
            if cand.exists():
                argv[0] = str(cand)
        self.argv = argv
        self.log_path = log_path
        self.run_dir = run_dir
        env = dict(os.environ)
        # the repo root on sys.path: twistchat and twisted/plugins/ from a clean clone
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        self._logf = open(log_path, "wb")
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._logf,
            stderr=subprocess.STDOUT, cwd=run_dir, env=env,
            start_new_session=True)  # Ctrl-C reaches us, we stop it by pid
        self.pid = self.proc.pid
        self.starttime = _starttime(self.pid)
        self.ready_s: float | None = None
        self._known: dict = {}  # descendant pid -> starttime

    def wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                last = tail(self.log_path, 1).strip(" |")
                raise RuntimeError(
                    f"{self.spec.name} exited with status {rc} before listening"
                    + (f": {last}" if last else "")
                    + f"\n  log {self.log_path}:\n{tail(self.log_path)}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    pass
                self.ready_s = time.monotonic() - self.t_spawn
                return
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(
                    f"{self.spec.name} not accepting on {HOST}:{self.port} after "
                    f"{timeout:.0f}s\n  log {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.01)

    def remember_descendants(self) -> None:
        for k in descendants(self.pid):
            st = _starttime(k)
            if st:
                self._known[k] = st

    def exited(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.remember_descendants()
            _signal_pid(self.pid, None, signal.SIGTERM)  # Popen keeps the pid reserved
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"{self.spec.name} (pid {self.pid}) ignored SIGTERM for "
                    f"{grace:.0f}s; SIGKILL")
                _signal_pid(self.pid, None, signal.SIGKILL)
                self.proc.wait(5)
        # descendants that outlived it (reparented), by recorded pid+starttime
        left = {p: s for p, s in self._known.items() if _alive(p, s)}
        for p, s in left.items():
            _signal_pid(p, s, signal.SIGTERM)
        end = time.monotonic() + grace
        while left and time.monotonic() < end:
            time.sleep(0.05)
            left = {p: s for p, s in left.items() if _alive(p, s)}
        for p, s in left.items():
            _signal_pid(p, s, signal.SIGKILL)
        time.sleep(0.05 if left else 0)
        for p in self._known:
            _reap(p)  # only ours if re-parented to us (become_subreaper)
        self._known.clear()
        self._logf.close()
        # Files this run's server made with its port in the name (--db=history-{port}.sqlite3).
        for made in self.run_dir.glob(f"*-{self.port}.sqlite3*"):
            made.unlink(missing_ok=True)


def run_fanout(argv: list, timeout: float, deadline: Deadline) -> tuple:
    """Run fanout; return (parsed JSON or None, stdout, stderr, t_launch)."""
    limit = min(timeout, deadline.left())
    if limit <= 0:
        raise DeadlineHit("global deadline hit before fanout run")
    t_launch = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        if limit < timeout:
            raise DeadlineHit("global deadline hit during a fanout run") from None
        raise RuntimeError(f"fanout did not finish within {timeout:.0f}s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data = None
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                pass
            break
    if data is None:
        raise RuntimeError(f"fanout exited {proc.returncode} without JSON: "
                           f"{(err or out).strip()[-400:]}")
    data["_exit"] = proc.returncode
    data["_summary"] = next((ln for ln in out.splitlines() if ln.startswith("# ")), "")
    return data, t_launch


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------

@dataclass
class Row:
    server: str
    rate: float | None          # None for the idle row
    status: str = "ok"             # ok | error text
    raw: dict = field(default_factory=dict)
    cpu_s: float | None = None  # server tree CPU over send window + drain
    ready_s: float | None = None
    notes: list = field(default_factory=list)

    # derived
    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.raw.get("ok"))

    @property
    def delivered_pct(self) -> float | None:
        exp = self.raw.get("expected_deliveries")
        if not exp:
            return None
        return 100.0 * (exp - self.raw.get("lost", 0)) / exp

    @property
    def dps(self) -> float | None:
        return self.raw.get("deliveries_per_s")

    def lat(self, k: str) -> float | None:
        v = (self.raw.get("lat_ms") or {}).get(k)
        return None if v is None or v < 0 else v

    @property
    def cpu_us(self) -> float | None:
        n = self.raw.get("received_deliveries")
        if self.cpu_s is None or not n:
            return None
        return self.cpu_s * 1e6 / n

    @property
    def idle_kib(self) -> float | None:
        v = (self.raw.get("server") or {}).get("rss_per_conn_bytes")
        return None if v is None or v < 0 else v / 1024.0

    def sustainable(self, p99_limit: float) -> bool:
        p99 = self.lat("p99")
        return (self.ok and bool(self.raw.get("expected_deliveries"))
                and self.raw.get("lost", 1) == 0 and p99 is not None
                and p99 < p99_limit)


def fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def ratio(a, b) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_rate(r: float) -> str:
    return f"{r:g}"


def build_tables(rows: list, specs: list, rates: list, p99_limit: float) -> tuple:
    ref_name = specs[0].name
    by = {(r.server, r.rate): r for r in rows}
    ref_idle = by.get((ref_name, None))
    main_hdr = ["server", "rate msg/s", "delivered %", "deliveries/s", "p50 ms",
                "p99 ms", "CPU µs/deliv", "deliv/s ×ref", "CPU ×ref",
                "idle KiB/conn", "sustainable", "notes"]
    main = []
    for rate in rates:
        ref = by.get((ref_name, rate))
        for sp in specs:
            r = by.get((sp.name, rate))
            if r is None:
                continue
            if r.status != "ok" or not r.raw.get("ok"):
                err = r.status if r.status != "ok" else r.raw.get("error", "failed")
                main.append([sp.name, fmt_rate(rate), "-", "-", "-", "-", "-", "-",
                             "-", "", "no", err])
                continue
            main.append([
                sp.name, fmt_rate(rate),
                fmt(r.delivered_pct, ".2f"), fmt(r.dps, ",.0f"),
                fmt(r.lat("p50"), ".2f"), fmt(r.lat("p99"), ".2f"),
                fmt(r.cpu_us, ".2f"),
                fmt(ratio(r.dps, ref.dps if ref and ref.ok else None), ".2f"),
                fmt(ratio(r.cpu_us, ref.cpu_us if ref and ref.ok else None), ".2f"),
                "",
                "yes" if r.sustainable(p99_limit) else "no",
                "; ".join(r.notes)])
    for sp in specs:
        r = by.get((sp.name, None))
        if r is None:
            continue
        if not r.ok:
            err = r.status if r.status != "ok" else r.raw.get("error", "failed")
            main.append([sp.name, "idle", "", "", "", "", "", "", "", "-", "", err])
            continue
        n = r.raw.get("clients")
        kib = r.idle_kib
        rr = ratio(kib, ref_idle.idle_kib if ref_idle and ref_idle.ok else None)
        main.append([sp.name, "idle", "", "", "", "", "", "", "",
                     fmt(kib, ".2f") + (f" (×{rr:.2f})" if rr is not None else ""),
                     "", f"{n} conns, joined={r.raw.get('joined_channel')}"
                     + ("; " + "; ".join(r.notes) if r.notes else "")])

    sum_hdr = ["server", "sustainable rate", "CPU µs/deliv @ lowest rate",
               "idle KiB/conn", "listening after s"]
    summ = []
    low = rates[0] if rates else None
    ref_low = by.get((ref_name, low))
    for sp in specs:
        ran = [by[(sp.name, x)] for x in rates if (sp.name, x) in by]
        best, failed_at = None, None
        complete = True
        for x in rates:
            r = by.get((sp.name, x))
            if r is None or not (r.ok or r.status.startswith("fanout:")):
                complete = False  # not run, skipped, interrupted, no server
                break
            if r.sustainable(p99_limit):
                best = x
            else:
                failed_at = x
                break
        if not ran:
            sus = "not run"
        elif best is None and not any(r.ok for r in ran):
            sus = "no result (see the rows)"
        elif best is None:
            sus = f"< {fmt_rate(rates[0])} msg/s"
        elif failed_at is None:
            sus = f"≥ {fmt_rate(best)} msg/s" + ("" if complete else " (not all rates run)")
        else:
            sus = f"{fmt_rate(best)} msg/s (fails at {fmt_rate(failed_at)})"
        rl = by.get((sp.name, low))
        cpu = rl.cpu_us if rl and rl.ok else None
        cr = ratio(cpu, ref_low.cpu_us if ref_low and ref_low.ok else None)
        ri = by.get((sp.name, None))
        kib = ri.idle_kib if ri and ri.ok else None
        kr = ratio(kib, ref_idle.idle_kib if ref_idle and ref_idle.ok else None)
        readies = [r.ready_s for r in rows if r.server == sp.name and r.ready_s is not None]
        summ.append([
            sp.name, sus,
            fmt(cpu, ".2f") + (f" (×{cr:.2f})" if cr is not None else ""),
            fmt(kib, ".2f") + (f" (×{kr:.2f})" if kr is not None else ""),
            (f"{min(readies):.2f}–{max(readies):.2f}" if readies else "-")])
    return (main_hdr, main), (sum_hdr, summ)


def render_text(hdr: list, rows: list) -> str:
    cols = list(zip(*([hdr] + rows), strict=True)) if rows else [[h] for h in hdr]
    w = [max(len(str(c)) for c in col) for col in cols]
    numeric = [all(re.fullmatch(r"[-\d.,%×() ]*|yes|no", str(r[i]) or "") for r in rows)
               for i in range(len(hdr))]

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            c = str(c)
            out.append(c.rjust(w[i]) if numeric[i] and i > 0 else c.ljust(w[i]))
        return "  ".join(out).rstrip()
    sep = "  ".join("-" * x for x in w)
    return "\n".join([line(hdr), sep] + [line(r) for r in rows])


def render_md(hdr: list, rows: list) -> str:
    def esc(c):
        return str(c).replace("|", "\\|")
    out = ["| " + " | ".join(esc(h) for h in hdr) + " |",
           "|" + "|".join("---" for _ in hdr) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_info() -> list:
    info = []
    try:
        aff = len(os.sched_getaffinity(0))
    except OSError:
        aff = None
    usable = f" ({aff} usable)" if aff and aff != os.cpu_count() else ""
    info.append(("nproc", f"{os.cpu_count()}" + usable))
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                k, _, v = ln.partition(":")
                if k.strip() in ("model name", "Hardware", "cpu model"):
                    model = v.strip()
                    break
    except OSError:
        pass
    info.append(("CPU", model))
    try:
        with open("/proc/meminfo") as f:
            mem = {ln.split(":")[0]: ln.split()[1] for ln in f}
        info.append(("memory", f"{int(mem['MemTotal']) / 1048576:.1f} GiB"))
    except (OSError, KeyError, ValueError):
        pass
    u = os.uname()
    info.append(("kernel", f"{u.sysname} {u.release} {u.machine}"))
    info.append(("Python", f"{platform.python_version()} ({sys.executable})"))
    try:
        from importlib.metadata import version
        tw = version("Twisted")
    except Exception:  # noqa: BLE001 - not installed is an answer too
        tw = "not installed"
    info.append(("Twisted", tw))
    try:
        with open("/proc/loadavg") as f:
            info.append(("load average at start", " ".join(f.read().split()[:3])))
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            info.append(("git", rev.stdout.strip()
                         + (" (modified)" if dirty.stdout.strip() else "")))
    except (OSError, subprocess.SubprocessError):
        pass
    info.append(("date", datetime.datetime.now(datetime.timezone.utc)
                 .strftime("%Y-%m-%d %H:%M:%S UTC")))
    return info


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Fan-out benchmark: C reference server vs twistchat (or any "
                    "IRC server command), same loads, one run, loopback only.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""
server commands are split like a shell line (no shell runs them) after
substituting {{port}}, {{host}} (always {HOST}), {{refserver}} (the built
reference binary), {{python}} (this interpreter) and {{conns}} (the largest
client count of the run + 64).  Prefix NAME= to name it.  Give values that
start with a dash with '=': --server-args='--flood-rate=50'.
default candidate:  {TWISTCHAT_NAME}={TWISTCHAT_CMD}
the reference (always run first):  {REFERENCE_NAME}={REFERENCE_CMD}
""")
    p.add_argument("--server", action="append", metavar="[NAME=]CMD",
                   help="candidate server command (repeatable); default: twistchat")
    p.add_argument("--server-args", default="", metavar="ARGS",
                   help="extra arguments appended to the default twistchat command")
    p.add_argument("--quick", action="store_true",
                   help=f"short preset: {QUICK['clients']} clients, {QUICK['duration']:g}s, "
                   f"rates {QUICK['rates']}, idle {QUICK['idle_clients']} conns")
    p.add_argument("--rates", help=f"comma-separated msg/s (default {DEFAULTS['rates']})")
    p.add_argument("--clients", type=int,
                   help=f"clients in the channel (default {DEFAULTS['clients']})")
    p.add_argument("--senders", type=int, default=0, help="senders among them (default: all)")
    p.add_argument("--duration", type=float,
                   help=f"seconds of sending per rate (default {DEFAULTS['duration']:g})")
    p.add_argument("--msg-len", type=int,
                   help=f"message text bytes (default {DEFAULTS['msg_len']})")
    p.add_argument("--idle-clients", type=int,
                   help=f"idle run connections, 0 skips it (default {DEFAULTS['idle_clients']})")
    p.add_argument("--idle-hold", type=float,
                   help=f"idle run hold seconds (default {DEFAULTS['idle_hold']:g})")
    p.add_argument("--idle-no-join", action="store_true",
                   help="idle clients register only (default: register and JOIN)")
    p.add_argument("--password", help="fanout -w: PASS sent before NICK")
    p.add_argument("--grace", type=float, default=5.0, help="fanout -g drain grace, s (default 5)")
    p.add_argument("--setup-timeout", type=float, default=60.0,
                   help="fanout -T connect+register+join bound, s (default 60)")
    p.add_argument("--fanout-args", default="", help="extra arguments passed to fanout")
    p.add_argument("--p99-limit", type=float, default=250.0,
                   help="p99 bound of a sustainable rate, ms (default 250)")
    p.add_argument("--ready-timeout", type=float, default=20.0,
                   help="bound on a server's start until it accepts, s (default 20)")
    p.add_argument("--deadline", type=float, default=900.0,
                   help="bound on the whole run, s (default 900); later runs are skipped")
    p.add_argument("--out", type=Path, metavar="FILE.md", help="also write the tables as Markdown")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every raw result as JSON")
    p.add_argument("--fanout-src", type=Path,
                   help="load generator sources (default $FANOUT_SRC or ../shared/fanout)")
    a = p.parse_args(argv)
    preset = QUICK if a.quick else DEFAULTS
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    try:
        a.rates = [float(x) for x in str(a.rates).split(",") if x.strip()]
    except ValueError:
        p.error("--rates: comma-separated numbers")
    if not a.rates or any(r <= 0 for r in a.rates):
        p.error("--rates: positive numbers")
    if a.clients < 2 or a.duration <= 0 or a.deadline <= 0:
        p.error("--clients >= 2, --duration > 0, --deadline > 0")
    specs = [ServerSpec(REFERENCE_NAME, REFERENCE_CMD, reference=True)]
    servers = a.server or [f"{TWISTCHAT_NAME}={TWISTCHAT_CMD}"
                           + (" " + a.server_args if a.server_args else "")]
    for i, s in enumerate(servers):
        m = re.match(r"^([A-Za-z][\w.+-]*)=(\S.*)$", s.strip())
        name, cmd = (m.group(1), m.group(2)) if m else (
            "candidate" if len(servers) == 1 else f"candidate{i + 1}", s.strip())
        if any(name == sp.name for sp in specs):
            name = f"{name}#{i + 1}"
        specs.append(ServerSpec(name, cmd))
    a.specs = specs
    return a


def fanout_src(a) -> Path:
    if a.fanout_src:
        return a.fanout_src.resolve()
    if os.environ.get("FANOUT_SRC"):
        return Path(os.environ["FANOUT_SRC"]).resolve()
    return (REPO / ".." / "shared" / "fanout").resolve()


def build(a, deadline: Deadline) -> Path:
    src = fanout_src(a)
    if not (src / "fanout.c").exists():
        raise SystemExit(f"fanout sources not found in {src} (set FANOUT_SRC or --fanout-src)")
    out = BUILD_DIR / "fanout"
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["make", "-s", "-C", str(src), f"BUILD_DIR={out}"]
    log("build: " + " ".join(shlex.quote(c) for c in cmd))
    subprocess.run(cmd, check=True, timeout=max(1.0, min(180.0, deadline.left())),
                   stdin=subprocess.DEVNULL)
    for b in ("fanout", "refserver"):
        if not os.access(out / b, os.X_OK):
            raise SystemExit(f"build did not produce {out / b}")
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    deadline = Deadline(a.deadline)

    def on_term(signum, _frame):
        raise Interrupted(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    raise_nofile(max(a.clients, a.idle_clients) * 2 + 256)
    become_subreaper()
    bdir = build(a, deadline)
    fanout_bin = str(bdir / "fanout")
    subst = {"refserver": str(bdir / "refserver"), "python": sys.executable,
             "conns": str(max(a.clients, a.idle_clients) + 64)}
    logs = BUILD_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run_dir = BUILD_DIR / "run"  # servers' cwd: stray files land under build/
    run_dir.mkdir(parents=True, exist_ok=True)
    specs = a.specs
    for sp in specs:
        log(f"server {sp.name}: {sp.template}")

    rows: list = []
    live: list = []  # servers started and not yet stopped
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outcome, rc = "complete", 0

    def start(sp: ServerSpec, tag: str) -> Server:
        srv = None
        for attempt in range(3):  # a free port can be taken between pick and bind
            deadline.check(f"starting {sp.name}")
            srv = Server(sp, subst, logs / f"{stamp}-{sp.name}-{tag}.log", run_dir)
            live.append(srv)
            try:
                srv.wait_ready(min(a.ready_timeout, max(0.5, deadline.left())))
                return srv
            except RuntimeError:
                srv.stop()
                live.remove(srv)
                if attempt == 2 or "in use" not in tail(srv.log_path).lower():
                    raise
        raise AssertionError("unreachable")

    def common_args(port: int, pid: int, label: str) -> list:
        args = [fanout_bin, "-H", HOST, "-p", str(port), "-P", str(pid),
                "-T", f"{a.setup_timeout:g}", "-l", label]
        if a.password:
            args += ["-w", a.password]
        return args + shlex.split(a.fanout_args)

    plan = [(rate, sp) for rate in a.rates for sp in specs]
    broken: dict = {}  # server name -> why it could not start
    if a.idle_clients:
        plan += [(None, sp) for sp in specs]
    try:
        for rate, sp in plan:
            tag = f"r{rate:g}" if rate is not None else "idle"
            row = Row(sp.name, rate)
            rows.append(row)
            if sp.name in broken:
                row.status = "skipped: " + broken[sp.name]
                continue
            try:
                deadline.check(f"{sp.name} {tag}")
                try:
                    srv = start(sp, tag)
                except RuntimeError:
                    broken[sp.name] = "did not start"
                    raise

                row.ready_s = srv.ready_s
                label = f"{sp.name} {tag}"
                if rate is None:
                    args = common_args(srv.port, srv.pid, label) + [
                        "-m", "idle", "-n", str(a.idle_clients), "-i", f"{a.idle_hold:g}"]
                    if not a.idle_no_join:
                        args.append("-j")
                    bound = a.setup_timeout + 60 + 30 + a.idle_hold + 15
                    log(f"{sp.name} idle: {a.idle_clients} connections")
                    data, _ = run_fanout(args, bound, deadline)
                    row.raw = data
                else:
                    args = common_args(srv.port, srv.pid, label) + [
                        "-n", str(a.clients), "-r", f"{rate:g}", "-d", f"{a.duration:g}",
                        "-b", str(a.msg_len), "-g", f"{a.grace:g}"]
                    if a.senders:
                        args += ["-s", str(a.senders)]
                    bound = a.setup_timeout + 60 + 30 + a.duration + a.grace + 15
                    log(f"{sp.name} fanout: {rate:g} msg/s, {a.clients} clients, {a.duration:g}s")
                    sampler = CpuSampler(srv.pid)
                    sampler.start()
                    try:
                        data, t_launch = run_fanout(args, bound, deadline)
                    finally:
                        sampler.stop()
                    row.raw = data
                    if data.get("ok"):
                        t0 = t_launch + data["setup_s"] + data["settle_s"]
                        t_sent = t0 + data["duration_s"] - 1.0 / rate
                        row.cpu_s = sampler.between(t0, t_sent + data["drain_s"])
                        data["_cpu_sampled_send_window_s"] = sampler.between(t0, t_sent)
                        data["_cpu_sampled_measure_s"] = row.cpu_s
                        sent, off = data.get("sent", 0), data.get("offered_rate", rate)
                        if (data.get("achieved_send_rate", off) < 0.97 * off
                                or data.get("sends_late_over_10ms", 0) > 0.01 * max(sent, 1)):
                            row.notes.append("generator late")
                        if data.get("disconnects_during_measure"):
                            row.notes.append(f"{data['disconnects_during_measure']} disconnects")
                        if data.get("duplicates"):
                            row.notes.append(f"{data['duplicates']} duplicates")
                    if data.get("_summary"):
                        log("  " + data["_summary"])
                errs = data.get("error_numerics", 0) + data.get("error_lines", 0)
                first = re.sub(r"^\S+: :\S+ ", "", data.get("first_error") or "")[:60]
                if errs or first:
                    row.notes.append(f"{errs} error replies"
                                     + (f" (first: {first})" if first else ""))
                if not data.get("ok"):
                    row.status = "fanout: " + str(data.get("error", "failed"))[:120]
                died = srv.exited()
                if died is not None:
                    row.notes.append(f"server exited ({died}) during run; log {srv.log_path.name}")
                srv.stop()
                live.remove(srv)
            except DeadlineHit:
                row.status = "stopped: global deadline"
                raise
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                row.status = "error: " + str(e).splitlines()[0][:160]
                log(f"{sp.name} {tag}: {e}")
                rc = 2
            finally:
                for srv in list(live):
                    srv.stop()
                    live.remove(srv)
    except DeadlineHit as e:
        log(str(e))
        outcome, rc = f"partial: {e}", 3
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); servers stopped")
        outcome, rc = "partial: interrupted", 130
        if rows and rows[-1].status == "ok" and not rows[-1].raw:
            rows[-1].status = "interrupted"
    finally:
        for srv in list(live):
            srv.stop()
            live.remove(srv)

    (mh, mrows), (sh, srows) = build_tables(rows, specs, a.rates, a.p99_limit)
    params = (f"{a.clients} clients in one channel, senders "
              f"{a.senders or 'all'}, {a.msg_len}-byte messages, {a.duration:g} s per rate; "
              + (f"idle: {a.idle_clients} connections "
                 f"({'registered' if a.idle_no_join else 'registered and joined'}); "
                 if a.idle_clients else "idle: not run; ")
              +
              f"sustainable = all delivered and p99 < {a.p99_limit:g} ms")
    print()
    print(f"fanout benchmark ({outcome}): {params}")
    print()
    print(render_text(mh, mrows))
    print()
    print(render_text(sh, srows))
    print()
    print("ratios: candidate ÷ refserver at the same rate (CPU ×ref > 1: more CPU per "
          "delivery than one C core; deliv/s ×ref < 1: delivered fewer).")

    if a.out:
        md = ["# fanout benchmark: " + ", ".join(sp.name for sp in specs[1:])
              + " vs the one-core C reference", ""]
        if outcome != "complete":
            md += [f"**{outcome}**", ""]
        md += ["| machine | |", "|---|---|"]
        md += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in machine_info()]
        md += ["", f"Load: {params}.", "",
               "Servers (all on 127.0.0.1, a fresh process per run):", ""]
        md += [f"- `{sp.name}`: `{sp.template}`" for sp in specs]
        md += ["", "Command: `" + " ".join(shlex.quote(x) for x in
                                             ["python", "bench/fanout_bench.py"]
                                             + (sys.argv[1:] if argv is None else list(argv)))
               + "`", "", "## Per rate", "", render_md(mh, mrows), "",
               "## Summary", "", render_md(sh, srows), "",
               "CPU µs/deliv = server CPU time (user+system, all its processes) from the "
               "first send to the end of the drain, ÷ deliveries received. Ratios are "
               "candidate ÷ refserver at the same rate; refserver stands for one core "
               "of this machine. See bench/README.md.", ""]
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(md))
        log(f"wrote {a.out}")
    if a.json:
        a.json.write_text(json.dumps(
            {"outcome": outcome, "machine": dict(machine_info()),
             "servers": [{"name": s.name, "cmd": s.template} for s in specs],
             "runs": [{"server": r.server, "rate": r.rate, "status": r.status,
                       "ready_s": r.ready_s, "cpu_s": r.cpu_s, "cpu_us_per_delivery": r.cpu_us,
                       "notes": r.notes, "fanout": r.raw} for r in rows]}, indent=1))
        log(f"wrote {a.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
