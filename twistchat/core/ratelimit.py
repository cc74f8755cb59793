"""
The one token bucket: flood control of every front-end, UDP repair budgets.

test-case-name: tests.test_ratelimit

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second.
Each line (or repaired event) takes one.  Time is passed in (``now``, seconds),
so tests drive it with plain numbers and the core stays free of clocks.
Ergo's ``irc/fakelag.go`` takes its clock the same way.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["KeyedBuckets", "TokenBucket"]

# A token, less float rounding (refills are computed from clock differences).
_ONE_TOKEN = 1 - 1e-9


class TokenBucket:
    """``burst`` tokens at once, then ``rate`` per second; starts full at ``now``."""

    __slots__ = ("burst", "rate", "tokens", "refilled")

    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.refilled = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; True if taken."""
        self._refill(now)
        if self.tokens >= _ONE_TOKEN:
            self.tokens -= 1
            return True
        return False

    def take_up_to(self, wanted: int, now: float) -> int:
        """Take as many of ``wanted`` whole tokens as there are; how many were taken."""
        self._refill(now)
        allowed = max(min(wanted, int(self.tokens + 1e-9)), 0)
        self.tokens -= allowed
        return allowed

    def give_back(self) -> None:
        """Return a token taken for something that turned out free (a right OPER password)."""
        self.tokens = min(float(self.burst), self.tokens + 1)

    def full(self, now: float) -> bool:
        """True once the bucket has refilled: it may be forgotten."""
        return self.tokens + (now - self.refilled) * self.rate >= self.burst - 1e-9

    def wait(self) -> float:
        """Seconds until the next whole token, as of the last take (0 if one is there)."""
        return max(0.0, (1 - self.tokens) / self.rate)


class KeyedBuckets:
    """
    One :class:`TokenBucket` per key (a source address, an account), made full on first use.

    At most ``tracked`` keys are remembered, the least recently used forgotten
    first, so a flood of new keys costs bounded memory (and a forgotten key
    starts again with a full bucket, the price of that bound).
    """

    def __init__(self, burst: float, rate: float, tracked: int = 4096) -> None:
        self.burst, self.rate, self.tracked = burst, rate, tracked
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> bool:
        """Take one token of ``key``'s bucket if there is one; True if taken."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.burst, self.rate, now)
            while len(self._buckets) > self.tracked:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return bucket.take(now)

    def give_back(self, key: str) -> None:
        """Return a token taken for something that turned out free."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.give_back()
