"""
IRCv3 on the TCP side: capability transcripts, history on join, CHATHISTORY.

In memory (StringTransport, task.Clock, MemoryStore); the restart test with a
real SQLite file and the real twistd is in tests/test_history_e2e.py.
"""

import pytest

from tests.memory import MemoryServer, first, numerics
from twistchat.core.events import format_server_time
from twistchat.store import MemoryStore

ALL_CAPS = ("server-time message-tags batch labeled-response draft/chathistory "
            "echo-message away-notify multi-prefix")


@pytest.fixture
def server():
    server = MemoryServer(store=None)
    store = MemoryStore(clock=server.clock)
    return MemoryServer(store=store)


def talk(server, lines=5):
    """alice says ``lines`` numbered lines in #r; returns alice."""
    alice = server.user("alice", "#r")
    for i in range(lines):
        alice.send(f"PRIVMSG #r :line {i}")
        server.clock.advance(1)
    return alice


def texts(messages):
    return [m.params[1] for m in messages if m.command == "PRIVMSG"]


# ------------------------------------------------------------ CAP transcripts


def test_cap_ls_lists_every_capability(server):
    """CAP LS 302 names each capability of issue #7."""
    client = server.connect()
    offered = first(client.ask("CAP LS 302"), "CAP").params[2].split()
    for cap in ("server-time", "message-tags", "echo-message", "batch", "labeled-response",
                "multi-prefix", "away-notify", "draft/chathistory", "draft/event-playback"):
        assert cap in offered


def test_client_that_asks_for_nothing_sees_no_tags_batches_or_extras(server):
    """CAP LS then CAP END: no tags, no BATCH, no AWAY, no history on join, ever."""
    talk(server)
    plain = server.connect()
    plain.send("CAP LS 302", "CAP END", "NICK plain", "USER p 0 * :P")
    plain.take()
    got = plain.ask("JOIN #r")
    assert all(not m.tags for m in got)
    assert "BATCH" not in [m.command for m in got] and texts(got) == []
    other = server.user("other", "#r")
    other.send("AWAY :brb", "PRIVMSG #r :x", "@+typing=active TAGMSG #r")
    got = plain.take()
    assert [m.command for m in got] == ["JOIN", "PRIVMSG"] and all(not m.tags for m in got)


def test_server_time_cap(server):
    """server-time: room lines carry time=... in the IRCv3 format, the server's clock."""
    alice = server.user("alice", "#r")
    timed = server.user("timed", "#r", caps="server-time")
    alice.send("PRIVMSG #r :now")
    line = first(timed.take(), "PRIVMSG")
    assert line.tags == {"time": format_server_time(int(server.clock.seconds() * 1000))}


def test_message_tags_cap_gives_msgid_and_relays_client_tags(server):
    """message-tags: msgid on room lines; +client tags relayed; TAGMSG only to those who asked."""
    alice = server.user("alice", "#r", caps="message-tags")
    bob = server.user("bob", "#r", caps="message-tags")
    plain = server.user("plain", "#r")
    alice.take()
    alice.send("@+draft/reply=abc PRIVMSG #r :answer", "@+typing=active TAGMSG #r")
    got = bob.take()
    assert first(got, "PRIVMSG").tags["+draft/reply"] == "abc"
    assert first(got, "PRIVMSG").tags["msgid"]
    tagmsg = first(got, "TAGMSG")
    assert tagmsg.tags["+typing"] == "active"
    # Every relayed message carries a msgid (message-tags), TAGMSG too (issue #13).
    assert tagmsg.tags["msgid"] and tagmsg.tags["msgid"] != first(got, "PRIVMSG").tags["msgid"]
    assert [m.command for m in plain.take()] == ["PRIVMSG"]


def test_labeled_response_ack_single_and_batch(server):
    """labeled-response: no reply -> ACK, one reply labeled, several in a labeled batch."""
    alice = server.user("alice", "#r", caps="labeled-response batch")
    got = alice.ask("@label=a1 PONG x")
    assert got[0].command == "ACK" and got[0].tags["label"] == "a1"
    got = alice.ask("@label=a2 PING x")
    assert got[0].command == "PONG" and got[0].tags["label"] == "a2"
    got = alice.ask("@label=a3 WHOIS alice")
    assert got[0].command == "BATCH" and got[0].tags["label"] == "a3"
    assert got[0].params[1] == "labeled-response"
    ref = got[0].params[0][1:]
    assert all(m.tags.get("batch") == ref for m in got[1:-1])
    assert got[-1].params == ("-" + ref,)


def test_away_notify(server):
    """away-notify: peers that asked see AWAY when someone goes away and comes back."""
    watcher = server.user("watcher", "#r", caps="away-notify")
    alice = server.user("alice", "#r")
    watcher.take()
    alice.send("AWAY :lunch")
    assert first(watcher.take(), "AWAY").params == ("lunch",)
    alice.send("AWAY")
    assert first(watcher.take(), "AWAY").params == ()


# ---------------------------------------------------------- history on join


def test_history_on_join_in_a_batch_after_names(server):
    """A server-time + batch client joining gets the room's last messages after 366, in a batch."""
    talk(server, 3)
    bob = server.user("bob", caps="server-time batch")
    got = bob.ask("JOIN #r")
    verbs = [m.command for m in got]
    names_end = verbs.index("366")
    assert verbs[names_end + 1] == "BATCH"
    assert got[names_end + 1].params[1:] == ("chathistory", "#r")
    assert texts(got) == ["line 0", "line 1", "line 2"]
    assert all(m.tags.get("time") for m in got if m.command == "PRIVMSG")


def test_history_on_join_keeps_the_original_times(server):
    """Replayed lines carry the time they were said, not the time of replay."""
    talk(server, 2)
    server.clock.advance(3600)
    bob = server.user("bob", caps="server-time")
    times = [m.tags["time"] for m in bob.ask("JOIN #r") if m.command == "PRIVMSG"]
    said = [format_server_time((1_800_000_000 + i) * 1000) for i in range(2)]
    assert times == said


def test_history_on_join_limit_and_zero():
    """--history-on-join N replays N; 0 replays nothing."""
    for count, expected in ((2, ["line 3", "line 4"]), (0, [])):
        server = MemoryServer(store=MemoryStore(), history_on_join=count)
        talk(server, 5)
        bob = server.user("bob", caps="server-time")
        assert texts(bob.ask("JOIN #r")) == expected


def test_no_history_on_join_without_server_time(server):
    """A client without server-time gets no replay (nothing unexpected)."""
    talk(server, 3)
    bob = server.user("bob", caps="batch")
    assert texts(bob.ask("JOIN #r")) == []


# ------------------------------------------------------------- CHATHISTORY


def history(client, line):
    """Run one CHATHISTORY line; return the PRIVMSG texts of its reply."""
    return texts(client.ask(line))


def test_chathistory_latest_before_after_around(server):
    """LATEST *, BEFORE and AFTER a msgid, AROUND, each in order, limits honoured."""
    alice = talk(server, 10)
    bob = server.user("bob", "#r", caps="message-tags batch server-time draft/chathistory")
    assert history(bob, "CHATHISTORY LATEST #r * 3") == ["line 7", "line 8", "line 9"]
    got = bob.ask("CHATHISTORY LATEST #r * 10")
    msgids = [m.tags["msgid"] for m in got if m.command == "PRIVMSG"]
    assert history(bob, f"CHATHISTORY BEFORE #r msgid={msgids[5]} 2") == ["line 3", "line 4"]
    assert history(bob, f"CHATHISTORY AFTER #r msgid={msgids[5]} 2") == ["line 6", "line 7"]
    assert history(bob, f"CHATHISTORY AROUND #r msgid={msgids[5]} 3") == [
        "line 4", "line 5", "line 6"]
    assert history(bob, f"CHATHISTORY LATEST #r msgid={msgids[7]} 10") == ["line 8", "line 9"]
    alice.take()


def test_chathistory_by_timestamp_and_between(server):
    """BEFORE/AFTER a timestamp and BETWEEN two, in either order."""
    talk(server, 10)  # line i said at 1_800_000_000 + i seconds
    bob = server.user("bob", "#r", caps="batch server-time draft/chathistory")
    at = lambda i: format_server_time((1_800_000_000 + i) * 1000)  # noqa: E731
    assert history(bob, f"CHATHISTORY BEFORE #r timestamp={at(3)} 5") == [
        "line 0", "line 1", "line 2"]
    assert history(bob, f"CHATHISTORY AFTER #r timestamp={at(7)} 5") == ["line 8", "line 9"]
    assert history(bob, f"CHATHISTORY BETWEEN #r timestamp={at(2)} timestamp={at(6)} 2") == \
        ["line 3", "line 4"]
    assert history(bob, f"CHATHISTORY BETWEEN #r timestamp={at(6)} timestamp={at(2)} 2") == \
        ["line 4", "line 5"]


def test_chathistory_event_playback_includes_joins_and_topics(server):
    """With draft/event-playback, JOIN and TOPIC are replayed; without, only messages."""
    alice = talk(server, 1)
    alice.send("TOPIC #r :homework")
    bob = server.user("bob", "#r", caps="batch server-time draft/chathistory draft/event-playback")
    verbs = [m.command for m in bob.ask("CHATHISTORY LATEST #r * 10") if "batch" in m.tags]
    assert verbs == ["JOIN", "PRIVMSG", "TOPIC", "JOIN"]
    carol = server.user("carol", "#r", caps="batch server-time draft/chathistory")
    verbs = [m.command for m in carol.ask("CHATHISTORY LATEST #r * 10") if "batch" in m.tags]
    assert verbs == ["PRIVMSG"]


def test_chathistory_private_conversation_only_for_its_parties(server):
    """DMs are kept per pair; a third nick asking for them sees only its own (empty) talk."""
    alice = server.user("alice")
    bob = server.user("bob", caps="batch server-time draft/chathistory")
    carol = server.user("carol", caps="batch server-time draft/chathistory")
    alice.send("PRIVMSG bob :secret")
    bob.send("PRIVMSG alice :reply")
    assert history(bob, "CHATHISTORY LATEST alice * 10") == ["secret", "reply"]
    assert history(carol, "CHATHISTORY LATEST alice * 10") == []
    assert history(carol, "CHATHISTORY LATEST bob * 10") == []


def test_chathistory_targets(server):
    """TARGETS lists the rooms and private conversations with activity in the window."""
    alice = talk(server, 1)
    bob = server.user("bob", caps="batch server-time draft/chathistory")
    alice.send("PRIVMSG bob :hi")
    got = bob.ask("CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00.000Z "
                  "timestamp=2099-01-01T00:00:00.000Z 10")
    listed = [m.params[1] for m in got if m.command == "CHATHISTORY"]
    assert listed == ["alice"]  # bob is not in #r: the room is not his to list
    assert got[0].params[1] == "draft/chathistory-targets"


@pytest.mark.parametrize("line, code", [
    ("CHATHISTORY LATEST #secret * 10", "INVALID_TARGET"),
    ("CHATHISTORY LATEST #nosuchroom * 10", "INVALID_TARGET"),
    ("CHATHISTORY BEFORE #r timestamp=yesterday 10", "INVALID_PARAMS"),
    ("CHATHISTORY BEFORE #r msgid=nope 10", "INVALID_PARAMS"),
    ("CHATHISTORY LATEST #r * 101", "INVALID_PARAMS"),
    ("CHATHISTORY LATEST #r * 0", "INVALID_PARAMS"),
    ("CHATHISTORY SIDEWAYS #r * 10", "INVALID_PARAMS"),
    ("CHATHISTORY LATEST #r", "INVALID_PARAMS"),
])
def test_chathistory_bad_requests_get_fail(server, line, code):
    """Bad targets, references and limits get FAIL CHATHISTORY <code>; a room you are
    not in answers exactly as one that does not exist."""
    owner = server.user("owner", "#secret")
    owner.send("PRIVMSG #secret :hidden")
    talk(server, 1)
    bob = server.user("bob", "#r", caps="batch server-time draft/chathistory")
    got = bob.ask(line)
    fail = first(got, "FAIL")
    assert fail.params[:2] == ("CHATHISTORY", code)
    assert "hidden" not in str(got)
    if code == "INVALID_TARGET":
        assert fail.params[-1] == "No such channel, or you are not in it"


def test_chathistory_is_advertised_in_isupport(server):
    """ISUPPORT names CHATHISTORY=<max> and MSGREFTYPES."""
    server.registry.extra_isupport += ["CHATHISTORY=100", "MSGREFTYPES=msgid,timestamp"]
    client = server.connect()
    client.send("NICK a", "USER a 0 * :a")
    tokens = [p for m in client.take() if m.command == "005" for p in m.params]
    assert "CHATHISTORY=100" in tokens


def test_chathistory_without_a_store_fails_cleanly():
    """With no history kept, CHATHISTORY answers FAIL MESSAGE_ERROR."""
    server = MemoryServer()
    bob = server.user("bob", "#r")
    assert first(bob.ask("CHATHISTORY LATEST #r * 5"), "FAIL").params[1] == "MESSAGE_ERROR"
    assert numerics(bob.ask("PING x")) == []


def test_labeled_join_reply_comes_before_its_history(server):
    """A labeled JOIN: the labeled batch of the JOIN reply first, then the history batch."""
    talk(server, 2)
    bob = server.user("bob", caps="server-time batch labeled-response")
    got = bob.ask("@label=j1 JOIN #r")
    assert got[0].command == "BATCH" and got[0].tags["label"] == "j1"
    end = next(i for i, m in enumerate(got) if m.command == "BATCH" and m.params[0].startswith("-"))
    assert [m.command for m in got[end + 1:]][:1] == ["BATCH"]
    assert got[end + 1].params[1] == "chathistory"
    assert texts(got[end + 1:]) == ["line 0", "line 1"]


@pytest.mark.parametrize("verb", ["PRIVMSG", "NOTICE"])
def test_labeled_message_to_oneself_with_echo_labels_the_echo_only(server, verb):
    """
    labeled-response: to oneself, the echo is the labeled reply and the delivered
    copy follows, unlabeled (it is a side effect, not a response).
    """
    alice = server.user("alice", caps="labeled-response batch echo-message")
    got = alice.ask(f"@label=s1 {verb} alice :note to self")
    assert [(m.command, m.tags.get("label")) for m in got] == [(verb, "s1"), (verb, None)]
    assert [m.params for m in got] == [("alice", "note to self")] * 2


def test_labeled_message_to_oneself_without_echo_is_ack_then_the_delivered_copy(server):
    """Without echo-message there is no reply: ACK (labeled), then the delivered copy."""
    alice = server.user("alice", caps="labeled-response batch")
    got = alice.ask("@label=s2 PRIVMSG alice :hi me")
    assert [(m.command, m.tags.get("label")) for m in got] == [("ACK", "s2"), ("PRIVMSG", None)]


def test_labeled_tagmsg_to_oneself_keeps_the_delivered_copy_out_of_the_batch(server):
    """A labeled TAGMSG to oneself: the labeled echo, then the delivered copy with no label."""
    alice = server.user("alice", caps="labeled-response batch echo-message message-tags")
    got = alice.ask("@label=t1;+typing=active TAGMSG alice")
    assert [(m.command, m.tags.get("label")) for m in got] == [("TAGMSG", "t1"),
                                                              ("TAGMSG", None)]
    assert "BATCH" not in [m.command for m in got]


def test_message_to_oneself_with_echo_comes_twice_unlabeled(server):
    """echo-message alone: the echo and the delivered copy, one msgid (one event)."""
    alice = server.user("alice", caps="echo-message message-tags")
    got = alice.ask("PRIVMSG alice :twice")
    assert [m.command for m in got] == ["PRIVMSG", "PRIVMSG"]
    assert got[0].tags["msgid"] == got[1].tags["msgid"]


def test_labeled_join_of_an_empty_room_has_no_history_batch(server):
    """A labeled JOIN of a room with no history: the labeled batch and nothing after it."""
    bob = server.user("bob", caps="server-time batch labeled-response")
    got = bob.ask("@label=j2 JOIN #quiet")
    assert got[0].command == "BATCH" and got[0].tags["label"] == "j2"
    batches = [m for m in got if m.command == "BATCH"]
    assert len(batches) == 2  # the labeled batch's start and end, no chathistory batch
    assert got[-1].command == "BATCH" and got[-1].params[0].startswith("-")


def test_label_with_spaces_and_semicolons_comes_back_intact(server):
    """A label is a tag value: escaped on the way back, so odd characters survive."""
    alice = server.user("alice", caps="labeled-response batch")
    got = alice.ask("@label=a\\sb\\:c PING x")
    assert got[0].command == "PONG" and got[0].tags["label"] == "a b;c"


def test_client_tag_data_over_4094_bytes_is_417_and_not_relayed(server):
    """message-tags "Size limit": more than 4094 bytes of client tags gets 417; 4094 passes."""
    alice = server.user("alice", "#r", caps="message-tags")
    bob = server.user("bob", "#r", caps="message-tags")
    fits = "+x=" + "a" * (4094 - 3)
    assert [m.command for m in alice.ask(f"@{fits} TAGMSG #r")] == []
    assert first(bob.take(), "TAGMSG").tags["+x"] == "a" * 4091
    too_big = "+x=" + "a" * (4094 - 2)
    got = alice.ask(f"@{too_big} PRIVMSG #r :hi")
    assert [m.command for m in got] == ["417"]
    assert bob.take() == []
