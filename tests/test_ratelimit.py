"""
The token bucket with time passed in as plain numbers: no clock, no reactor.
"""

import pytest

from twistchat.core.ratelimit import KeyedBuckets, TokenBucket


def takes(bucket: TokenBucket, now: float, n: int) -> list:
    """The results of ``n`` take() calls at time ``now``."""
    return [bucket.take(now) for _ in range(n)]


def test_starts_full_burst_then_refused():
    """A new bucket gives ``burst`` tokens at once, then refuses."""
    bucket = TokenBucket(3, 1.0, now=100.0)
    assert takes(bucket, 100.0, 4) == [True, True, True, False]


def test_refills_at_rate():
    """After the burst, one token per 1/rate seconds."""
    bucket = TokenBucket(2, 4.0, now=0.0)
    takes(bucket, 0.0, 2)
    assert bucket.take(0.1) is False  # 0.4 of a token
    assert bucket.take(0.25) is True  # 1.0
    assert bucket.take(0.25) is False
    assert takes(bucket, 0.75, 3) == [True, True, False]  # two more (the burst caps it)


def test_refill_is_capped_at_burst():
    """A long idle time fills the bucket to ``burst``, no more."""
    bucket = TokenBucket(5, 10.0, now=0.0)
    takes(bucket, 0.0, 5)
    assert takes(bucket, 3600.0, 6) == [True] * 5 + [False]
    assert bucket.tokens == pytest.approx(0.0)


def test_take_up_to_gives_what_there_is():
    """take_up_to(n): all n when there are enough, else the whole tokens there are."""
    bucket = TokenBucket(10, 1.0, now=0.0)
    assert bucket.take_up_to(4, 0.0) == 4
    assert bucket.take_up_to(100, 0.0) == 6
    assert bucket.take_up_to(5, 0.0) == 0
    assert bucket.take_up_to(5, 2.5) == 2  # 2.5 tokens: two whole ones
    assert bucket.tokens == pytest.approx(0.5)


@pytest.mark.parametrize("wanted", [0, -3])
def test_take_up_to_nothing_takes_nothing(wanted):
    """take_up_to of zero or a negative count takes nothing and leaves the tokens."""
    bucket = TokenBucket(3, 1.0, now=0.0)
    assert bucket.take_up_to(wanted, 0.0) == 0
    assert bucket.tokens == 3


def test_take_up_to_and_take_share_the_tokens():
    """The two ways of taking draw on the same tokens."""
    bucket = TokenBucket(3, 1.0, now=0.0)
    assert bucket.take_up_to(2, 0.0) == 2
    assert takes(bucket, 0.0, 2) == [True, False]


def test_wait_is_zero_while_a_token_is_there():
    """wait() is 0 when the last take left a whole token."""
    bucket = TokenBucket(3, 1.0, now=0.0)
    bucket.take(0.0)
    assert bucket.wait() == 0.0


def test_wait_is_the_time_to_the_next_token():
    """After the bucket runs dry, wait() is the time until one whole token, as of the last take."""
    bucket = TokenBucket(1, 4.0, now=0.0)
    bucket.take(0.0)
    assert bucket.wait() == pytest.approx(0.25)
    assert bucket.take(0.1) is False
    assert bucket.wait() == pytest.approx(0.15)
    assert bucket.take(0.1 + bucket.wait()) is True


def test_fractional_rate():
    """A rate below one: one token per 1/rate seconds (0.1 a second: every 10 s)."""
    bucket = TokenBucket(1, 0.1, now=0.0)
    assert takes(bucket, 0.0, 2) == [True, False]
    assert bucket.take(9.0) is False
    assert bucket.wait() == pytest.approx(1.0)
    assert bucket.take(10.0) is True


def test_many_small_refills_add_up_to_a_token():
    """Ten refills of 0.1 each make a token, float rounding (0.999...) notwithstanding."""
    bucket = TokenBucket(1, 0.1, now=0.0)
    bucket.take(0.0)
    for t in range(1, 10):
        assert bucket.take(float(t)) is False
    assert bucket.take(10.0) is True


def test_fractional_burst():
    """A burst of 2.5: two whole tokens at once; the half waits for refill."""
    bucket = TokenBucket(2.5, 1.0, now=0.0)
    assert takes(bucket, 0.0, 3) == [True, True, False]
    assert bucket.take(0.5) is True


def test_time_before_the_last_refill_gives_nothing_back():
    """Passing an earlier ``now`` than the last call does not create tokens."""
    bucket = TokenBucket(1, 1.0, now=10.0)
    bucket.take(10.0)
    assert bucket.take(5.0) is False


def test_keyed_buckets_are_one_per_key_and_bounded():
    """Each key has its own bucket; past ``tracked`` keys the least recently used is forgotten."""
    buckets = KeyedBuckets(burst=1, rate=0.0, tracked=2)
    assert buckets.take("a", 0) and not buckets.take("a", 0)
    assert buckets.take("b", 0)  # another key, its own burst
    assert buckets.take("c", 0)  # a third: "a" (least recently used) is forgotten...
    assert buckets.take("a", 0)  # ...so it starts full again
    buckets.give_back("a")
    assert buckets.take("a", 0)
