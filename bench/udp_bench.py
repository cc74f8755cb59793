"""
UDP front-end benchmark (issue #4): broadcast throughput, server CPU per event
from 1 to 200 UDP listeners, and repair traffic under 10 % loss; on request, the
server's memory under a flood of registrations from unproven addresses (issue #12).

    /tmp/venv/bin/python bench/udp_bench.py [--events 3000] [--quick] [--flood ROUNDS]
    /tmp/venv/bin/python bench/udp_bench.py --only-flood [--flood ROUNDS]

Three parts (four with ``--flood``), each bounded in count and time, loopback only (127.0.0.0/8,
broadcast 127.255.255.255):

1. **pure**: the front-end in memory (no sockets): CPU per room event as the
   room grows from 1 to 200 UDP members.  Broadcast should make it flat.
2. **loopback**: the real ``twistd -n chat --proto=udp`` as a subprocess; N
   registered UDP sessions in one room, each with a broadcast socket; one
   sender; events/s heard by a listener, and the server's CPU (from
   /proc/PID/stat) per event.
3. **repair**: 3 clients x 1,000 messages through the seeded fault layer at
   10 % loss each way (in memory): repair requests and bytes against broadcast bytes.
4. **flood** (off unless ``--flood ROUNDS``, at most 20): the real ``twistd -n chat
   --proto=both``; each round sends 1,000 padded NICKs from 69 loopback source
   addresses that never take the second registration step (as forged sources
   cannot: they never see the cookie); the server's RSS after each round, then
   how many of those nicks TCP finds taken and how long a real user takes to
   register.  Issue #12 measured +16.6 MB kept per 1,100 before the address cookie.

Commands carry a ``cseq`` (docs/udp-protocol.md, "Reliable commands", issue #12
item 6), so each one also earns an ACK: parts 1 and 2 count those datagrams too.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from twisted.internet.task import Clock  # noqa: E402

from tests.serverproc import ServerProcess  # noqa: E402
from tests.udpnet import UDPWorld  # noqa: E402
from twistchat.client.udp import FaultInjector, UDPChatSession  # noqa: E402
from twistchat.core.registry import Limits, Registry  # noqa: E402
from twistchat.frontends.udp import MIN_REGISTER, UDPLimits  # noqa: E402
from twistchat.wire import parse  # noqa: E402

LISTENERS = (1, 10, 50, 100, 200)
TIME_LIMIT = 20.0  # seconds per measurement, at most


def padded_nick(nick: str, cookie: str | None = None) -> bytes:
    """The registration NICK padded to MIN_REGISTER: step 1, or with ``cookie`` step 2."""
    body = f" NICK {nick}\r\n".encode()
    head = b"@" + (f"cookie={cookie};".encode() if cookie else b"") + b"pad="
    return head + b"x" * (MIN_REGISTER - len(head) - len(body)) + body


# ----------------------------------------------------------------- 1. pure


def bench_pure(events: int) -> None:
    print("1. pure front-end (no sockets): CPU per room event by room size")
    print(f"   {'members':>8} {'events':>7} {'us/event':>9} {'datagrams/event':>16}")
    for members in LISTENERS:
        # UDPWorld's own ``limits`` are the UDP ones: the registry's come in a registry.
        clock = Clock()
        clock.advance(1_800_000_000)
        registry = Registry(server_name="srv", clock=clock.seconds,
                            limits=Limits(max_per_ip=10 ** 6))
        world = UDPWorld(UDPLimits(flood_burst=10 ** 9, flood_rate=10 ** 9,
                                   max_sessions=10 ** 6), registry=registry, clock=clock)
        front = world.front
        sessions = []
        for i in range(members):
            port = world.net.listen_unicast(_Sink())
            front.datagramReceived(padded_nick(f"u{i}"), (port.host, port.port))
            cookie = parse(world.port.sent[-1][0]).params[1]  # COOKIE <nick> <cookie>
            front.datagramReceived(padded_nick(f"u{i}", cookie), (port.host, port.port))
            session = front.by_addr[(port.host, port.port)]
            front.datagramReceived(f"@token={session.token};cseq=1 JOIN #bench".encode(),
                                   (port.host, port.port))
            sessions.append((session, (port.host, port.port)))
        world.clock.advance(0)
        sender, addr = sessions[0]
        # Count writes, do not route them: this times the server alone.
        written = [0]
        world.port.write = lambda data, to, written=written: written.__setitem__(0, written[0] + 1)
        lines = [f"@token={sender.token};cseq={k + 2} PRIVMSG #bench :message {k}".encode()
                 for k in range(events)]
        before = written[0]
        start = time.process_time()
        deadline = time.monotonic() + TIME_LIMIT
        done = 0
        for line in lines:
            front.datagramReceived(line, addr)
            done += 1
            if time.monotonic() > deadline:
                break
        cpu = time.process_time() - start
        print(f"   {members:>8} {done:>7} {cpu / done * 1e6:>9.1f} "
              f"{(written[0] - before) / done:>16.2f}")
        world.stop()
        world.clock.advance(0)


class _Sink:
    """A DatagramProtocol that ignores everything."""

    def makeConnection(self, transport):
        self.transport = transport

    def datagramReceived(self, data, addr):
        pass

    def doStop(self):
        pass


# ------------------------------------------------------------- 2. loopback


def _cpu_seconds(pid: int) -> tuple:
    """(utime, stime) of ``pid`` in seconds (/proc/PID/stat fields 14 and 15).

    Kept apart: on loopback the kernel copies each broadcast to every listening
    socket inside the server's sendto, so system time grows with the listeners
    here; on a LAN that copy is one frame on the wire.  User time is the
    server's own work per event.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _register(port: int, nick: str, join: bool = True) -> tuple:
    """A raw UDP session (cookie, then NICK with it): its socket and token."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    sock.sendto(padded_nick(nick), ("127.0.0.1", port))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = sock.recv(4096)
        message = parse(data, max_body=1202, max_tags=1200)
        if message.command == "COOKIE":
            sock.sendto(padded_nick(nick, message.params[1]), ("127.0.0.1", port))
        elif message.command == "001" and not join:
            return sock, message.tags["token"]
        elif message.command == "001":
            token = message.tags["token"]
            sock.sendto(f"@token={token};cseq=1 JOIN #bench".encode(), ("127.0.0.1", port))
            sock.setblocking(False)
            return sock, token
    raise RuntimeError(f"no 001 for {nick}")


def _broadcast_socket(bport: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.255.255.255", bport))
    sock.settimeout(0.5)
    return sock


def bench_loopback(events: int, tmp: Path) -> None:
    print("2. loopback, real twistd --proto=udp: N UDP listeners in one room")
    print(f"   {'listeners':>9} {'sent':>6} {'heard':>6} {'events/s':>9} "
          f"{'server us/event':>16} {'user us/event':>14} {'system us/event':>16}")
    for listeners in LISTENERS:
        server = ServerProcess(tmp, "--proto=udp", "--broadcast=127.255.255.255", "--db=:memory:",
                               "--flood-burst=1000000", "--flood-rate=1000000",
                               f"--max-per-ip={listeners + 10}", "--heartbeat=1")
        server.start_udp = True
        _start_udp_server(server)
        try:
            bport = server.port + 1
            counter = _broadcast_socket(bport)
            others = [_broadcast_socket(bport) for _ in range(listeners - 1)]
            sessions = [_register(server.port, f"l{i}") for i in range(listeners)]
            time.sleep(0.3)
            _drain(counter, 0.3)
            sender, token = sessions[0]
            acked = [1, 1]  # the last cseq the server ran (JOIN was 1), and at the last look

            def line(cseq: int, token=token) -> bytes:
                return f"@token={token};cseq={cseq} PRIVMSG #bench :message {cseq - 2}".encode()

            cpu0 = _cpu_seconds(server.proc.pid)
            t0 = time.monotonic()
            heard = 0
            sent = 0
            for k in range(events):
                sender.sendto(line(k + 2), ("127.0.0.1", server.port))
                sent += 1
                if k % 200 == 199:
                    heard += _drain(counter, 0)  # keep our buffer from overflowing
                    _resend_unacked(sender, server.port, acked, sent + 1, line)
                    time.sleep(0.002)
                if time.monotonic() - t0 > TIME_LIMIT:
                    break
            last = time.monotonic()
            deadline = last + 3
            while heard < sent and time.monotonic() < deadline:
                _resend_unacked(sender, server.port, acked, sent + 1, line)
                got = _drain(counter, 0.2)
                if got:
                    heard += got
                    last = time.monotonic()
            elapsed = last - t0  # to the last event heard, not to the give-up deadline
            user1, system1 = _cpu_seconds(server.proc.pid)
            user, system = user1 - cpu0[0], system1 - cpu0[1]
            per = 1e6 / max(heard, 1)
            print(f"   {listeners:>9} {sent:>6} {heard:>6} {heard / elapsed:>9.0f} "
                  f"{(user + system) * per:>16.1f} {user * per:>14.1f} {system * per:>16.1f}")
            for sock, _ in sessions:
                sock.close()
            for sock in [counter, *others]:
                sock.close()
        finally:
            server.stop()


def _resend_unacked(sock: socket.socket, port: int, acked: list, last: int, line) -> None:
    """
    Read the ACKs waiting on ``sock``; if the server is stuck below ``last``, send the next again.

    A command lost on loopback (a full socket buffer) would hold every later
    cseq back, as the protocol says: the sender retransmits, as a client does,
    at most one window (64) per call, and only when the server ran nothing
    since the last look (``acked`` is ``[now, at the last look]``), so a busy
    server is not sent duplicates that would count as its work.
    """
    sock.settimeout(0.0001)
    try:
        while True:
            data = sock.recv(2048)
            if b" ACK " in data:
                acked[0] = max(acked[0], int(data.split(b" ACK ", 1)[1].split()[0]))
    except (TimeoutError, BlockingIOError, ValueError, IndexError):
        pass
    if acked[0] == acked[1] and acked[0] < last:
        for cseq in range(acked[0] + 1, min(last, acked[0] + 64) + 1):
            sock.sendto(line(cseq), ("127.0.0.1", port))
    acked[1] = acked[0]


def _start_udp_server(server: ServerProcess, timeout: float = 15.0) -> None:
    """ServerProcess waits for TCP; --proto=udp has none: wait for the first heartbeat instead."""
    import subprocess

    from tests.serverproc import source_env

    server.workdir.mkdir(parents=True, exist_ok=True)
    server._log = open(server.log_path, "ab")
    listen = _broadcast_socket(server.port + 1)
    server.proc = subprocess.Popen(server.command, cwd=server.workdir, env=source_env(),
                                   stdout=server._log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"twistd exited:\n{server.log()}")
            try:
                if b"HEARTBEAT" in listen.recv(2048):
                    return
            except TimeoutError:
                pass
        raise RuntimeError(f"no heartbeat within {timeout} s:\n{server.log()}")
    finally:
        listen.close()


def _drain(sock: socket.socket, wait: float) -> int:
    """Count PRIVMSG datagrams waiting on ``sock`` (waiting up to ``wait`` s for the first)."""
    count = 0
    sock.settimeout(wait if wait > 0 else 0.0001)
    try:
        while True:
            data = sock.recv(2048)
            if b"PRIVMSG" in data:
                count += 1
            sock.settimeout(0.0001)
    except (TimeoutError, BlockingIOError):
        return count


# --------------------------------------------------------------- 3. repair


def bench_repair(messages: int) -> None:
    print(f"3. repair under 10% loss each way (seeded fault layer, in memory): "
          f"3 clients x {messages} messages")
    world = UDPWorld(UDPLimits(flood_burst=10 ** 6, flood_rate=10 ** 6))
    clients = []
    for i, nick in enumerate(("alice", "bob", "carol")):
        c = UDPChatSession("127.0.0.1", 6667, nick, reactor=world.clock, net=world.net,
                           fault_in=FaultInjector(world.clock, i, loss=0.1),
                           fault_out=FaultInjector(world.clock, i + 10, loss=0.1))
        c.events = []
        c.set_handler(c.events.append)
        c.start()
        clients.append(c)
    world.net.run_until(lambda: all(c.state == "registered" for c in clients), 10)
    for c in clients:
        c.join("#room")
    world.net.run(0.5)
    sent_before = len(world.port.sent)
    for k in range(messages):
        for c in clients:
            c.say("#room", f"{c.nick} {k}")
        world.net.run(0.002, step=0.002)

    def complete():
        return all(sum(1 for e in c.events if e.kind == "message") >= 3 * messages
                   for c in clients)

    ok = world.net.run_until(complete, 60)
    out = world.port.sent[sent_before:]
    broadcast = [d for d, addr in out if addr == ("127.255.255.255", 6668)
                 and b"HEARTBEAT" not in d]
    repaired = [d for d, addr in out if addr != ("127.255.255.255", 6668)
                and b"seq=" in d and b"useq=" not in d]
    asked = sum(c.stats["repairs_asked"] for c in clients)
    b_bytes = sum(map(len, broadcast))
    r_bytes = sum(map(len, repaired))
    print(f"   complete: {ok}; simulated time {world.clock.seconds() - 1_800_000_000:.1f} s")
    print(f"   room events broadcast: {len(broadcast)} ({b_bytes} bytes)")
    print(f"   repair requests: {asked} ({asked / 3:.0f} per client)")
    print(f"   events sent again by repair: {len(repaired)} ({r_bytes} bytes, "
          f"{r_bytes / max(b_bytes, 1) * 100:.1f}% of broadcast bytes; "
          f"{len(repaired) / 3 / max(len(broadcast), 1) * 100:.1f}% of events per client)")
    print(f"   command retransmissions: {sum(c.stats['retransmits'] for c in clients)}; "
          f"duplicates dropped: {sum(c.stats['duplicates'] for c in clients)}")
    world.stop()


# ---------------------------------------------------------------- 4. flood

FLOOD_SOURCES = 69  # the reproduction: 69 loopback source addresses
FLOOD_PER_ROUND = 1000
FLOOD_MAX_ROUNDS = 20


def _rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB (/proc/PID/status, VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for row in f:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    raise RuntimeError("no VmRSS")


def _count_replies(socks: list, command: bytes) -> int:
    """Datagrams naming ``command`` waiting on ``socks`` (read without waiting)."""
    count = 0
    for sock in socks:
        sock.settimeout(0.0001)
        try:
            while True:
                if command in sock.recv(2048):
                    count += 1
        except (TimeoutError, BlockingIOError):
            pass
    return count


def _nick_taken(host: str, port: int, nick: str) -> bool:
    """True if TCP registration of ``nick`` gets 433 (the nick is in use)."""
    from tests.serverproc import LineClient

    client = LineClient(host, port, timeout=5.0)
    try:
        client.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return " 433 " in client.wait_for(lambda text: " 001 " in text or " 433 " in text)
    finally:
        client.close()


def bench_flood(rounds: int, tmp: Path) -> None:
    rounds = max(1, min(rounds, FLOOD_MAX_ROUNDS))
    print(f"4. flood, real twistd --proto=both: {rounds} x {FLOOD_PER_ROUND} padded NICKs from "
          f"{FLOOD_SOURCES} loopback addresses that never send the second step")
    server = ServerProcess(tmp, "--proto=both", "--broadcast=127.255.255.255", "--db=:memory:",
                           "--heartbeat=1").start()
    socks = []
    try:
        for i in range(FLOOD_SOURCES):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((f"127.0.1.{i + 1}", 0))
            socks.append(sock)
        time.sleep(0.5)
        rss0 = _rss_kib(server.proc.pid)
        print(f"   {'round':>5} {'sent':>6} {'cookies':>8} {'RSS KiB':>8} {'growth KiB':>11}")
        print(f"   {'-':>5} {0:>6} {0:>8} {rss0:>8} {0:>11}")
        previous = rss0
        for r in range(rounds):
            cookies = 0
            for i in range(FLOOD_PER_ROUND):
                socks[i % FLOOD_SOURCES].sendto(padded_nick(f"f{r}x{i}"),
                                                ("127.0.0.1", server.port))
                if i % 100 == 99:
                    time.sleep(0.005)  # the server's socket buffer: every NICK arrives
                    cookies += _count_replies(socks, b" COOKIE ")
            time.sleep(0.3)
            cookies += _count_replies(socks, b" COOKIE ")
            rss = _rss_kib(server.proc.pid)
            print(f"   {r + 1:>5} {FLOOD_PER_ROUND:>6} {cookies:>8} {rss:>8} "
                  f"{rss - previous:>+11}")
            previous = rss
        sample = [f"f{r}x{i}" for r in range(rounds) for i in range(0, FLOOD_PER_ROUND, 100)]
        taken = sum(_nick_taken(server.host, server.port, nick) for nick in sample[:20])
        start = time.monotonic()
        sock, _ = _register(server.port, "realuser", join=False)
        took = time.monotonic() - start
        sock.close()
        print(f"   total RSS growth: {previous - rss0:+} KiB over {rounds * FLOOD_PER_ROUND} "
              f"NICKs; forged nicks taken on TCP: {taken} of {min(20, len(sample))} tried; "
              f"a real user registered in {took * 1000:.1f} ms")
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="events per measurement")
    parser.add_argument("--quick", action="store_true", help="fewer events (a smoke run)")
    parser.add_argument("--flood", type=int, default=0, metavar="ROUNDS",
                        help=f"part 4: rounds of {FLOOD_PER_ROUND} unproven registrations "
                             f"(0: skip; at most {FLOOD_MAX_ROUNDS})")
    parser.add_argument("--only-flood", action="store_true",
                        help="part 4 alone (3 rounds unless --flood says)")
    args = parser.parse_args()
    events = 300 if args.quick else args.events
    import tempfile

    if args.only_flood:
        with tempfile.TemporaryDirectory() as tmp:
            bench_flood(args.flood or 3, Path(tmp))
        return
    bench_pure(events)
    with tempfile.TemporaryDirectory() as tmp:
        bench_loopback(events, Path(tmp))
    bench_repair(100 if args.quick else 1000)
    if args.flood:
        with tempfile.TemporaryDirectory() as tmp:
            bench_flood(args.flood, Path(tmp))


if __name__ == "__main__":
    main()
