#!/usr/bin/env python3
"""Passwords: what argon2id costs, and what a flood of wrong passwords does to the reactor.

    python bench/auth_bench.py              # ~10 s
    python bench/auth_bench.py --attempts 5000 --rounds 10

1. ``hash`` and ``verify`` times of the server's hasher (argon2-cffi's default
   argon2id profile, as twistchat.auth.Argon2Hasher uses it), in the calling
   thread, ``--rounds`` each: median and worst.
2. Floods under the real reactor with the real Argon2Hasher (its thread pool):
   ``--attempts`` wrong passwords against one account, ``--per-turn`` per
   reactor turn every ``--turn`` seconds, from one address, then from as many
   addresses as attempts (a botnet: only the per-account limit and the
   hashing queue's bound stand in its way).  Meanwhile a second loopback
   connection sends ``PING`` to an echo server on the same reactor every
   10 ms (its round trip: what another client would see), and a LoopingCall
   records how late the reactor runs it.  Printed: the answers by code
   (rate-limited, busy, invalid), argon2 verifications run, and the
   percentiles of both lags.

Loopback only (127.0.0.1), bounded in time, no process started.  The test
that holds the 50 ms line is tests/test_auth_flood.py.  See bench/README.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argon2  # noqa: E402
from twisted.internet import protocol, task  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults  # noqa: E402

from tests.reactorprobe import CountingHasher, Echo, Pinger  # noqa: E402
from twistchat.auth import Argon2Hasher, Authenticator, AuthFailed  # noqa: E402
from twistchat.core.accounts import Account, AccountDirectory  # noqa: E402

PING_EVERY = 0.010


def percentiles(values: list[float]) -> str:
    """p50 / p99 / max in milliseconds."""
    if not values:
        return "no samples"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {at(0.50):6.2f}  p99 {at(0.99):6.2f}  max {ordered[-1] * 1000:6.2f} ms"


def time_hasher(rounds: int) -> None:
    """Print the cost of one hash and one verify, in this thread."""
    hasher = argon2.PasswordHasher()
    hashes, verifies = [], []
    credential = ""
    for i in range(rounds):
        started = time.perf_counter()
        credential = hasher.hash(f"password {i}")
        hashes.append(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            hasher.verify(credential, "wrong")
        except argon2.exceptions.VerifyMismatchError:
            pass
        verifies.append(time.perf_counter() - started)
    print(f"argon2id (t={hasher.time_cost}, m={hasher.memory_cost} KiB, "
          f"p={hasher.parallelism}), {rounds} rounds")
    print(f"  hash    median {statistics.median(hashes) * 1000:7.1f} ms   "
          f"max {max(hashes) * 1000:7.1f} ms")
    print(f"  verify  median {statistics.median(verifies) * 1000:7.1f} ms   "
          f"max {max(verifies) * 1000:7.1f} ms")


async def flood(reactor, argon: Argon2Hasher, credential: str, name: str, attempts: int,
                per_turn: int, turn: float, many_addresses: bool, idle: float = 0.0) -> None:
    """One flood, its numbers printed."""
    hasher = CountingHasher(argon)
    auth = Authenticator(AccountDirectory([Account("alice", credential, "", 0.0)]),
                         hasher, reactor.seconds)
    listener = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    pinger = await protocol.ClientCreator(reactor, Pinger).connectTCP(
        "127.0.0.1", listener.getHost().port)
    pings = task.LoopingCall(pinger.ping)
    pings.start(PING_EVERY)
    lateness: list[float] = []
    expected = [time.perf_counter() + PING_EVERY]

    def tick() -> None:
        now = time.perf_counter()
        lateness.append(max(0.0, now - expected[0]))
        expected[0] = now + PING_EVERY

    probe = task.LoopingCall(tick)
    probe.start(PING_EVERY, now=False)
    codes: dict[str, int] = {}
    pending: list[Deferred] = []
    sent = 0

    def outcome(result):
        value = getattr(result, "value", None)
        if value is not None and not isinstance(value, AuthFailed):
            return result
        code = value.code if value is not None else "accepted"
        codes[code] = codes.get(code, 0) + 1
        return None

    def attack() -> None:
        nonlocal sent
        for _ in range(per_turn):
            if sent < attempts:
                sent += 1
                address = f"127.{sent >> 16 & 255}.{sent >> 8 & 255}.{sent & 255}" \
                    if many_addresses else "127.0.92.1"
                pending.append(auth.check_password(address, "alice", f"guess {sent}")
                               .addBoth(outcome))
        if sent >= attempts:
            attacking.stop()

    attacking = task.LoopingCall(attack)
    started = time.perf_counter()
    if idle:
        await task.deferLater(reactor, idle, lambda: None)
    else:
        await attacking.start(turn)
    sent_in = time.perf_counter() - started
    await gatherResults(pending)
    answered_in = time.perf_counter() - started
    await task.deferLater(reactor, 0.05, lambda: None)
    probe.stop()
    pings.stop()
    pinger.transport.loseConnection()
    await listener.stopListening()
    if not attempts:
        print(f"\n{name}: no attempts, the probes alone for {sent_in:.2f} s")
        print(f"  PING rtt      {percentiles(pinger.rtts)}  ({len(pinger.rtts)} pings)")
        print(f"  reactor late  {percentiles(lateness)}")
        return
    print(f"\n{name}: {attempts} wrong passwords in {sent_in:.2f} s, all answered in "
          f"{answered_in:.2f} s")
    print("  answers       " + ", ".join(f"{code} {n}" for code, n in sorted(codes.items())))
    print(f"  argon2 runs   {hasher.verified}")
    print(f"  PING rtt      {percentiles(pinger.rtts)}  ({len(pinger.rtts)} pings)")
    print(f"  reactor late  {percentiles(lateness)}")


async def run(reactor, args: argparse.Namespace) -> None:
    argon = Argon2Hasher(reactor)
    credential = await argon.hash("the right one")
    # The same turns and probes without a single attempt: the machine's own noise.
    await flood(reactor, argon, credential, "baseline", 0, 0, args.turn, many_addresses=False,
                idle=args.attempts / args.per_turn * args.turn)
    await flood(reactor, argon, credential, "one address", args.attempts, args.per_turn,
                args.turn, many_addresses=False)
    await flood(reactor, argon, credential, "one address each", args.attempts, args.per_turn,
                args.turn, many_addresses=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="hash/verify timings (5)")
    parser.add_argument("--attempts", type=int, default=1000, help="wrong passwords (1000)")
    parser.add_argument("--per-turn", type=int, default=5, help="attempts per turn (5)")
    parser.add_argument("--turn", type=float, default=0.005, help="seconds between turns")
    args = parser.parse_args()
    time_hasher(args.rounds)
    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor, args)))


if __name__ == "__main__":
    main()
