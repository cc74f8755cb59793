"""
Tests for :mod:`twistchat.client.udp_commands`: the command window and unnumbered datagrams.

Pure objects: ``write`` appends to a list; times are arguments.
"""

from __future__ import annotations

from twistchat.client.udp_commands import (
    MIN_REGISTER,
    CommandWindow,
    register_datagram,
    repair_datagram,
)
from twistchat.wire import Message, parse


def make(window: int = 2) -> tuple[CommandWindow, list[bytes], dict[str, int]]:
    sent: list[bytes] = []
    stats = {"retransmits": 0}
    return CommandWindow(sent.append, window, stats), sent, stats


def test_at_most_window_commands_in_flight_numbered_by_cseq():
    """Three commands, a window of two: cseq 1 and 2 go now, 3 after the first ACK."""
    commands, sent, _ = make()
    for n in range(3):
        commands.queue(Message("PRIVMSG", ("#r", str(n))))
    commands.pump("tok", 0.0)
    assert [parse(d).tags["cseq"] for d in sent] == ["1", "2"]
    commands.acked(1, 0.05)
    commands.pump("tok", 0.05)
    assert [parse(d).tags["cseq"] for d in sent] == ["1", "2", "3"]
    assert all(parse(d).tags["token"] == "tok" for d in sent)


def test_resent_after_the_timeout_with_backoff_until_acked():
    """No ACK: sent again after the RTO, then after twice that; the ACK ends it."""
    commands, sent, stats = make()
    commands.queue(Message("JOIN", ("#r",)))
    commands.pump("tok", 0.0)
    rto = commands.rto()
    commands.retransmit(rto / 2)
    assert len(sent) == 1
    commands.retransmit(rto)
    commands.retransmit(rto * 2)  # the second wait is twice as long
    assert len(sent) == 2
    commands.retransmit(rto * 3)
    assert len(sent) == 3 and stats["retransmits"] == 2
    commands.acked(1, rto * 3)
    assert commands.idle


def test_round_trip_samples_only_from_commands_sent_once():
    """Karn: a resent command's ACK does not move the RTO; a clean one does."""
    commands, _, _ = make()
    commands.queue(Message("JOIN", ("#r",)))
    commands.pump("tok", 0.0)
    commands.retransmit(1.0)
    commands.acked(1, 1.5)
    assert commands.rto() == 0.2  # still the initial guess
    commands.queue(Message("JOIN", ("#s",)))
    commands.pump("tok", 2.0)
    commands.acked(2, 2.1)
    assert abs(commands.rto() - (2 * 0.1 + 0.02)) < 1e-9


def test_register_datagram_is_padded_to_the_minimum():
    """The registration NICK is MIN_REGISTER bytes with CRLF, and parses as NICK."""
    for unicast in (False, True):
        data = register_datagram("alice", unicast)
        assert len(data) == MIN_REGISTER
        msg = parse(data, max_body=2000, max_tags=2000)
        assert msg.command == "NICK" and msg.params == ("alice",)
        assert ("unicast" in msg.tags) == unicast


def test_repair_datagram_names_the_hole():
    """REPAIR <target> <from> <to> with our token."""
    msg = parse(repair_datagram("tok", "#r", 4, 9))
    assert (msg.command, msg.params, msg.tags) == ("REPAIR", ("#r", "4", "9"), {"token": "tok"})


def test_register_datagram_with_a_cookie_is_padded_and_carries_it():
    """The second step: cookie= (and unicast) before pad, still MIN_REGISTER bytes."""
    for unicast in (False, True):
        data = register_datagram("alice", unicast, "0f" * 16)
        assert len(data) == MIN_REGISTER
        msg = parse(data, max_body=2000, max_tags=2000)
        assert msg.tags["cookie"] == "0f" * 16 and msg.params == ("alice",)
        assert ("unicast" in msg.tags) == unicast


def test_requeue_numbers_afresh_joins_first_nothing_lost_or_doubled():
    """A new session: our JOINs, then unacknowledged and queued commands, from cseq 1."""
    commands, sent, _ = make(window=2)
    for m in (Message("JOIN", ("#r",)), Message("PRIVMSG", ("#r", "a")),
              Message("PRIVMSG", ("#r", "b"))):
        commands.queue(m)
    commands.pump("old", 0.0)
    commands.acked(0, 0.1)  # nothing ran: the server went away
    commands.requeue([Message("JOIN", ("#R",)), Message("JOIN", ("#s",))])
    assert commands.pending == 4
    sent.clear()
    for upto in range(1, 5):
        commands.pump("new", float(upto))
        commands.acked(upto, float(upto))
    lines = [parse(d) for d in sent]
    assert [(m.tags["cseq"], m.command, m.params[-1]) for m in lines] == [
        ("1", "JOIN", "#R"), ("2", "JOIN", "#s"), ("3", "PRIVMSG", "a"), ("4", "PRIVMSG", "b")]
    assert all(m.tags["token"] == "new" for m in lines)
    assert commands.idle
