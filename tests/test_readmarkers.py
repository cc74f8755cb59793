"""
Read markers (twistchat.core.readmarkers, IRCv3 draft/read-marker, issue #14): per account,
only rising, clamped to now, pushed to the account's other connections and no one else.
"""

from __future__ import annotations

import pytest

from tests.test_chanserv import user
from tests.test_registry import make
from tests.test_roomreg import lines
from twistchat.core.accounts import Account, AccountDirectory
from twistchat.core.commands import dispatch
from twistchat.core.events import Gated, deliver
from twistchat.core.readmarkers import CAP, MAX_MARKERS_PER_ACCOUNT, ReadMarkers
from twistchat.wire import Message, format_server_time

NOW_MS = 1_800_000_000_000  # tests.test_registry's Clock


def stamp(time_ms: int) -> str:
    """The MARKREAD parameter of ``time_ms``."""
    return "timestamp=" + format_server_time(time_ms)


def markread(registry, person, *params):
    """``person`` sends ``MARKREAD *params`` through the command table."""
    deliver(dispatch(registry, person, Message("MARKREAD", params)))


def setup(saved=None):
    """The teacher on a laptop and a phone (one account), a student; markers saved to ``saved``."""
    saver = None if saved is None else (lambda *change: saved.append(change))
    registry, clock = make(accounts=AccountDirectory([Account("Teacher"), Account("Student")]),
                           read_markers=ReadMarkers(saver=saver))
    laptop = user(registry, "teacher", "#class", account="Teacher")
    phone = user(registry, "teacher_", account="Teacher")
    student = user(registry, "student", "#class", account="Student")
    for _, conn in (laptop, phone, student):
        conn.got.clear()
    return registry, clock, laptop, phone, student


def test_a_marker_set_on_one_connection_reaches_the_accounts_others_only():
    """The setter gets it back; the phone gets it gated on the cap; the student nothing."""
    saved: list = []
    registry, _, (laptop, lconn), (_, pconn), (_, sconn) = setup(saved)
    when = NOW_MS - 5000
    markread(registry, laptop, "#Class", stamp(when))
    assert lines(lconn) == [("MARKREAD", "srv", ("#Class", stamp(when)))]
    assert [(g.cap, g.message.params) for g in pconn.got] == [(CAP, ("#Class", stamp(when)))]
    assert sconn.got == []
    assert saved == [("teacher", "#class", when)]
    assert registry.read_markers.get("TEACHER", "#CLASS") == when


def test_a_marker_only_rises():
    """An older (or equal) time: the stored one comes back to the sender, told to no one else."""
    registry, _, (laptop, lconn), (phone, pconn), _ = setup()
    markread(registry, laptop, "#class", stamp(NOW_MS - 1000))
    lconn.got.clear()
    pconn.got.clear()
    for older in (NOW_MS - 2000, NOW_MS - 1000):
        markread(registry, phone, "#class", stamp(older))
        assert lines(pconn) == [("MARKREAD", "srv", ("#class", stamp(NOW_MS - 1000)))]
    assert lconn.got == []


def test_a_marker_in_the_future_is_clamped_to_now():
    """A client's clock ahead of the server's cannot push the marker past now."""
    registry, _, (laptop, lconn), _, _ = setup()
    markread(registry, laptop, "bob", stamp(NOW_MS + 3_600_000))
    assert lines(lconn) == [("MARKREAD", "srv", ("bob", stamp(NOW_MS)))]


def test_get_answers_the_marker_or_a_star():
    """MARKREAD <target>: the account's marker; ``*`` when there is none (or no account)."""
    registry, _, (laptop, lconn), (phone, pconn), (student, sconn) = setup()
    markread(registry, laptop, "#class", stamp(NOW_MS - 1))
    markread(registry, phone, "#CLASS")
    markread(registry, student, "#class")
    assert lines(pconn)[-1] == ("MARKREAD", "srv", ("#CLASS", stamp(NOW_MS - 1)))
    assert lines(sconn) == [("MARKREAD", "srv", ("#class", "*"))]
    guest = user(registry, "guest")
    markread(registry, guest[0], "#class")
    assert lines(guest[1]) == [("MARKREAD", "srv", ("#class", "*"))]


@pytest.mark.parametrize(("params", "expected"), [
    ((), ("MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")),
    (("",), ("MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")),
    (("#a b",), ("MARKREAD", "INVALID_PARAMS", "#a b", "Invalid target")),
    (("9nick",), ("MARKREAD", "INVALID_PARAMS", "9nick", "Invalid target")),
    (("#class", "*"), ("MARKREAD", "INVALID_PARAMS", "*", "Invalid timestamp")),
    (("#class", "2019-01-04T14:33:26.123Z"),
     ("MARKREAD", "INVALID_PARAMS", "2019-01-04T14:33:26.123Z", "Invalid timestamp")),
    (("#class", "timestamp=yesterday"),
     ("MARKREAD", "INVALID_PARAMS", "timestamp=yesterday", "Invalid timestamp")),
])
def test_bad_markread_gets_the_specs_fail(params, expected):
    """FAIL MARKREAD NEED_MORE_PARAMS / INVALID_PARAMS, as the spec words them."""
    registry, _, (laptop, lconn), _, _ = setup()
    markread(registry, laptop, *params)
    assert lines(lconn) == [("FAIL", "srv", expected)]
    assert len(registry.read_markers) == 0


def test_without_an_account_a_marker_cannot_be_set():
    """Nowhere to keep it: FAIL MARKREAD INTERNAL_ERROR."""
    registry, _, _, _, _ = setup()
    guest, conn = user(registry, "guest", "#class")
    markread(registry, guest, "#class", stamp(NOW_MS))
    assert lines(conn) == [("FAIL", "srv", (
        "MARKREAD", "INTERNAL_ERROR", "#class",
        "Read markers are kept for logged-in accounts only"))]


def test_join_tells_the_marker_before_366():
    """After JOIN, before RPL_ENDOFNAMES: MARKREAD for the room, gated on the cap."""
    registry, _, (laptop, lconn), (phone, pconn), _ = setup()
    markread(registry, laptop, "#class", stamp(NOW_MS - 7))
    pconn.got.clear()
    deliver(registry.join(phone, "#class"))
    got = pconn.got
    marks = [i for i, p in enumerate(got) if isinstance(p, Gated) and p.cap == CAP]
    assert len(marks) == 1
    assert got[marks[0]].message.params == ("#class", stamp(NOW_MS - 7))
    commands = [getattr(p, "message", p).command for p in got]
    assert commands.index("JOIN") < marks[0] < commands.index("366")
    guest, gconn = user(registry, "guest")
    deliver(registry.join(guest, "#new"))
    assert [g.message.params for g in gconn.got if isinstance(g, Gated)] == [("#new", "*")]


def test_markers_load_from_the_store_and_are_bounded_per_account():
    """Loaded triples are found; MAX_MARKERS_PER_ACCOUNT targets fit, a new one more does not."""
    markers = ReadMarkers([("Teacher", f"#r{n}", 5) for n in range(MAX_MARKERS_PER_ACCOUNT)])
    assert markers.get("teacher", "#R0") == 5
    assert markers.advance("teacher", "#r0", 6) == (6, True)  # a known target still moves
    assert markers.advance("teacher", "#one-more", 6) is None
    assert markers.advance("student", "#one-more", 6) == (6, True)  # another account's own
    assert ReadMarkers({("Teacher", "#Class"): 9}).get("teacher", "#class") == 9  # a map too


def test_the_limit_is_told_to_the_client():
    """Past the limit: FAIL MARKREAD INTERNAL_ERROR naming it."""
    registry, _, (laptop, lconn), _, _ = setup()
    for n in range(MAX_MARKERS_PER_ACCOUNT):
        registry.read_markers.advance("teacher", f"#r{n}", 1)
    markread(registry, laptop, "#class", stamp(NOW_MS))
    assert lines(lconn) == [("FAIL", "srv", (
        "MARKREAD", "INTERNAL_ERROR", "#class",
        f"At most {MAX_MARKERS_PER_ACCOUNT} read markers per account"))]
