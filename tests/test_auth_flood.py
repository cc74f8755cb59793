"""
A password flood against one account under the real reactor and real argon2id (issue #14).

"1,000 wrong passwords against one account from one address are slowed and
never block the reactor (another client's PING round trip stays under 50 ms
meanwhile)."  The wire commands (SASL, NickServ) are another part's; what
they call is :meth:`Authenticator.check_password`, so the flood is made
there, from one address, while a second connection on loopback sends ``PING``
lines to an echo server on the same reactor every 10 ms and times each
round trip, and a LoopingCall records how late the reactor runs it.
bench/auth_bench.py prints the same numbers at length.
"""

from __future__ import annotations

import gc
import time

import pytest_twisted
from twisted.internet import protocol, reactor, task
from twisted.internet.defer import Deferred, gatherResults

from tests.reactorprobe import CountingHasher, Echo, Pinger
from twistchat.auth import ADDRESS_BURST, ADDRESS_RATE, Argon2Hasher, Authenticator, AuthFailed
from twistchat.core.accounts import Account, AccountDirectory

ATTEMPTS = 1000
PER_TURN = 5  # attempts per reactor turn: 1,000 over about one second
TURN = 0.005
PING_EVERY = 0.01
LAG_LIMIT = 0.050


@pytest_twisted.ensureDeferred
async def test_a_flood_of_wrong_passwords_is_refused_cheaply_and_the_reactor_keeps_time():
    """
    1,000 wrong passwords from one address: at most the burst (and what the rate refills)
    reach argon2, the rest fail at once as rate-limited; meanwhile the worst PING round
    trip and the worst reactor lateness stay under 50 ms, and the owner, from another
    address, still logs in.
    """
    # The measure is of the hashing's effect on the reactor, not of the test run's heap: in
    # the full suite a collection of everything the other tests left took ~60 ms once.
    gc.collect()
    gc.freeze()
    try:
        await _flood_while_timing()
    finally:
        gc.unfreeze()


async def _flood_while_timing():
    argon = Argon2Hasher(reactor)
    hasher = CountingHasher(argon)
    credential = await argon.hash("the right one")
    directory = AccountDirectory([Account("alice", credential, "", 0.0)])
    auth = Authenticator(directory, hasher, reactor.seconds)

    listener = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    connected: Deferred = protocol.ClientCreator(reactor, Pinger).connectTCP(
        "127.0.0.1", listener.getHost().port)
    pinger = await connected
    pings = task.LoopingCall(pinger.ping)
    pings.start(PING_EVERY)

    lateness: list[float] = []
    expected = [time.perf_counter() + PING_EVERY]

    def tick():
        now = time.perf_counter()
        lateness.append(max(0.0, now - expected[0]))
        expected[0] = now + PING_EVERY

    probe = task.LoopingCall(tick)
    probe.start(PING_EVERY, now=False)

    outcomes: dict[str, int] = {}
    pending: list[Deferred] = []

    def outcome(result):
        code = result.value.code if hasattr(result, "value") else "accepted"
        if hasattr(result, "value") and not isinstance(result.value, AuthFailed):
            return result
        outcomes[code] = outcomes.get(code, 0) + 1
        return None

    sent = 0

    def attack():
        nonlocal sent
        for _ in range(PER_TURN):
            if sent < ATTEMPTS:
                sent += 1
                pending.append(auth.check_password("127.0.92.1", "alice", f"guess {sent}")
                               .addBoth(outcome))
        if sent >= ATTEMPTS:
            attacking.stop()

    attacking = task.LoopingCall(attack)
    started = time.perf_counter()
    done = attacking.start(TURN)
    await task.deferLater(reactor, 0.5, lambda: None)
    owner = await auth.check_password("127.0.198.7", "alice", "the right one")
    await done
    await gatherResults(pending)
    elapsed = time.perf_counter() - started
    await task.deferLater(reactor, 0.05, lambda: None)  # a last few pings
    probe.stop()
    pings.stop()
    pinger.transport.loseConnection()
    await listener.stopListening()

    assert owner.name == "alice"
    assert sum(outcomes.values()) == ATTEMPTS
    hashed_at_most = ADDRESS_BURST + int(elapsed * ADDRESS_RATE) + 1
    assert outcomes.get("invalid", 0) <= hashed_at_most
    assert outcomes["rate-limited"] >= ATTEMPTS - hashed_at_most
    assert hasher.verified <= hashed_at_most + 1  # + the owner's
    assert len(pinger.rtts) >= 50, "the pinger did not get its turns"
    assert max(pinger.rtts) < LAG_LIMIT, sorted(pinger.rtts)[-5:]
    assert max(lateness) < LAG_LIMIT, sorted(lateness)[-5:]
