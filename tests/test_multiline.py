"""
IRCv3 draft/multiline: a pasted batch is one room event, shown per view.

The core (Event.line per view, the collector's limits), the IRC front-end on
StringTransport, history storage and replay, UDP, and the real server.
"""

import sqlite3

import pytest

from tests.memory import MemoryServer, first
from tests.serverproc import LineClient
from tests.test_udp_client import session
from tests.udpnet import Listener, Raw
from twistchat.client import interfaces as I
from twistchat.client.udp_parts import MAX_PENDING, Parts
from twistchat.core import multiline
from twistchat.core.events import TAG_MSGID, TAG_MULTILINE, TAG_SEQ, TAG_TIME, Event
from twistchat.core.multiline import MAX_BYTES, MAX_LINES, PIECE_BYTES, Collector, Failed
from twistchat.frontends import ircv3
from twistchat.frontends.udpwire import MAX_DATAGRAM, event_datagrams, record_datagrams
from twistchat.store import MemoryStore, database, record_from_event
from twistchat.store.windows import Range
from twistchat.wire import Message, parse

SOURCE = "alice!alice@127.0.0.1"
ML_CAPS = "batch draft/multiline message-tags server-time echo-message labeled-response"


def event(text, seq=7, msgid="m7"):
    return Event("#room", seq, 1_800_000_000_000, msgid,
                 Message("PRIVMSG", ("#room", text), SOURCE))


def lines(data):
    return [parse(line, max_body=4096) for line in data.split(b"\r\n") if line]


# ------------------------------------------------------------------ the core


def test_capable_view_gets_one_batch_with_msgid_on_its_start():
    """draft/multiline view: BATCH +msgid (msgid, time), the lines with batch=, BATCH -."""
    got = lines(event("one\n\ntwo").line(TAG_MULTILINE | TAG_MSGID | TAG_TIME))
    assert [m.command for m in got] == ["BATCH", "PRIVMSG", "PRIVMSG", "PRIVMSG", "BATCH"]
    start = got[0]
    assert start.params == ("+m7", "draft/multiline", "#room")
    assert start.tags["msgid"] == "m7" and "time" in start.tags
    assert [m.params[1] for m in got[1:4]] == ["one", "", "two"]  # a blank line kept
    assert all(m.tags == {"batch": "m7"} for m in got[1:4])
    assert got[4].params == ("-m7",)


def test_plain_view_gets_the_nonblank_lines_msgid_on_the_first_only():
    """Fallback: PRIVMSG lines in order, no blank one, msgid only on the first."""
    got = lines(event("one\n\ntwo\nthree").line(TAG_MSGID | TAG_TIME))
    assert [m.params[1] for m in got] == ["one", "two", "three"]
    assert [m.command for m in got] == ["PRIVMSG"] * 3
    assert got[0].tags["msgid"] == "m7"
    assert all("msgid" not in m.tags and "time" in m.tags for m in got[1:])


def test_udp_view_puts_the_one_seq_on_every_line():
    """The UDP view (seq, time): every line carries the event's one seq."""
    got = lines(event("a\nb").line(TAG_SEQ | TAG_TIME))
    assert [m.tags["seq"] for m in got] == ["7", "7"]


def test_no_tags_view_is_bare_lines_and_cached():
    """A plain RFC 1459 client: bare lines; the same bytes object for every member."""
    e = event("a\nb")
    assert e.line(0) == f":{SOURCE} PRIVMSG #room :a\r\n:{SOURCE} PRIVMSG #room :b\r\n".encode()
    assert e.line(0) is e.line(0)


def test_one_line_text_is_unchanged_for_a_multiline_view():
    """Without a line feed, a multiline view gets the ordinary single line."""
    assert event("hi").line(TAG_MULTILINE) == event("hi").line(0)


def test_long_line_is_cut_with_concat_for_capable_views():
    """A line over PIECE_BYTES goes out in pieces, the later ones with multiline-concat."""
    long = "é" * PIECE_BYTES  # 2 bytes each: cut at a character boundary
    got = lines(event("x\n" + long).line(TAG_MULTILINE))
    body = [m for m in got if m.command == "PRIVMSG"]
    assert "".join(m.params[1] for m in body[1:]) == long
    assert [multiline.CONCAT_TAG in m.tags for m in body] == [False, False, True]
    assert all(len(m.params[1].encode()) <= PIECE_BYTES for m in body)


# ------------------------------------------------------- the collector's rules


def opened(target="#room"):
    return Collector.open(("+r", "draft/multiline", target), {"label": "L", "+x": "1",
                                                             "time": "t"}, 0.0)


def test_collector_joins_lines_and_concat_parts():
    """Lines join with "\\n"; a concat line joins its predecessor directly."""
    c = opened()
    c.feed("#room", "how is ", False)
    c.feed("#ROOM", "everyone?", True)  # the target compares casefolded
    c.feed("#room", "", False)
    c.feed("#room", "fine", False)
    assert c.close() == "how is everyone?\n\nfine"
    assert c.tags == {"label": "L", "+x": "1"}  # label and client tags kept, no others


def test_max_lines_edge():
    """MAX_LINES lines pass; one more is MULTILINE_MAX_LINES."""
    c = opened()
    for _ in range(MAX_LINES):
        c.feed("#room", "x", False)
    with pytest.raises(Failed) as raised:
        c.feed("#room", "x", False)
    assert (raised.value.code, raised.value.params) == ("MULTILINE_MAX_LINES", (str(MAX_LINES),))


def test_max_bytes_edge_counts_each_newline():
    """MAX_BYTES bytes (the joining newline counted) pass; one more is MULTILINE_MAX_BYTES."""
    c = opened()
    c.feed("#room", "a" * (MAX_BYTES - 101), False)
    c.feed("#room", "b" * 100, False)  # + 1 for the "\n": exactly MAX_BYTES
    assert len(c.close()) == MAX_BYTES
    with pytest.raises(Failed) as raised:
        c.feed("#room", "c", True)
    assert (raised.value.code, raised.value.params) == ("MULTILINE_MAX_BYTES", (str(MAX_BYTES),))


@pytest.mark.parametrize("params, code", [
    (("+r", "draft/multiline"), "MULTILINE_INVALID"),  # no target
    (("+r", "netsplit", "#room"), "MULTILINE_INVALID"),  # another batch type
    (("+", "draft/multiline", "#room"), "MULTILINE_INVALID"),  # no reference
    (("+r", "draft/multiline", "#a,#b"), "MULTILINE_INVALID_TARGET"),
    (("+r", "draft/multiline", "@#room"), "MULTILINE_INVALID_TARGET"),
])
def test_bad_openings(params, code):
    with pytest.raises(Failed) as raised:
        Collector.open(params, {}, 0.0)
    assert raised.value.code == code


@pytest.mark.parametrize("feeds, code", [
    ([("#other", "x", False)], "MULTILINE_INVALID_TARGET"),
    ([("#room", "x", False), ("#room", "", True)], "MULTILINE_INVALID"),  # blank concat
    ([("#room", "y", True)], "MULTILINE_INVALID"),  # concat on the first line
])
def test_bad_lines(feeds, code):
    c = opened()
    with pytest.raises(Failed) as raised:
        for target, text, concat in feeds:
            c.feed(target, text, concat)
    assert raised.value.code == code


def test_blank_only_batch_is_invalid():
    c = opened()
    c.feed("#room", "", False)
    with pytest.raises(Failed) as raised:
        c.close()
    assert raised.value.code == "MULTILINE_INVALID"


# ------------------------------------------------------------ the IRC front-end


@pytest.fixture
def room():
    """alice (multiline, echo, labels), bob (message-tags, no multiline), carol (plain)."""
    server = MemoryServer(store=MemoryStore())
    alice = server.user("alice", "#room", caps=ML_CAPS)
    bob = server.user("bob", "#room", caps="batch message-tags server-time")
    carol = server.user("carol", "#room")
    dave = server.user("dave", "#room", caps="batch draft/multiline message-tags")
    for client in (alice, bob, carol, dave):
        client.take()
    return server, alice, bob, carol, dave


def paste(client, *body, ref="r1", target="#room", opening_tags=""):
    client.send(f"{opening_tags}BATCH +{ref} draft/multiline {target}".lstrip(),
                *(f"@batch={ref}{tags} PRIVMSG {target} :{text}" for tags, text in body),
                f"BATCH -{ref}")


def test_paste_is_one_event_shown_per_view(room):
    """One seq, one msgid: a batch for dave, lines for bob and carol, alice's echo batch."""
    server, alice, bob, carol, dave = room
    before = server.registry.log.latest("#room")
    paste(alice, ("", "first"), ("", "how is "), (";draft/multiline-concat", "everyone?"))
    to_dave = dave.take()
    assert [m.command for m in to_dave] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    msgid = to_dave[0].tags["msgid"]
    assert [m.params[1] for m in to_dave[1:3]] == ["first", "how is everyone?"]
    to_bob = bob.take()
    assert [(m.command, m.params[1]) for m in to_bob] == [("PRIVMSG", "first"),
                                                          ("PRIVMSG", "how is everyone?")]
    assert to_bob[0].tags["msgid"] == msgid and "msgid" not in to_bob[1].tags
    assert [m.params[1] for m in carol.take()] == ["first", "how is everyone?"]
    echo = alice.take()
    assert [m.command for m in echo] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    assert echo[0].tags["msgid"] == msgid
    assert server.registry.log.latest("#room") == before + 1  # one event
    record = server.store.latest("#room", 10).result[-1]  # stored once, "\n" and all
    assert record.seq == before + 1
    assert record.params == ("#room", "first\nhow is everyone?")


def test_label_goes_on_the_echoed_batch_start(room):
    """labeled-response + echo-message: the label is on the opening BATCH only."""
    _, alice, *_ = room
    paste(alice, ("", "a"), ("", "b"), opening_tags="@label=L1 ")
    got = alice.take()
    assert got[0].command == "BATCH" and got[0].tags["label"] == "L1"
    assert all("label" not in m.tags for m in got[1:])


def test_client_tags_of_the_opening_are_relayed(room):
    """Client-only tags sent on BATCH +ref travel with the message."""
    _, alice, _, _, dave = room
    paste(alice, ("", "a"), ("", "b"), opening_tags="@+draft/reply=m1 ")
    assert dave.take()[0].tags["+draft/reply"] == "m1"


@pytest.mark.parametrize("body, code", [
    ([("", "x")] * (MAX_LINES + 1), "MULTILINE_MAX_LINES"),
    ([("", "x" * 400)] * 11, "MULTILINE_MAX_BYTES"),
])
def test_over_the_limit_fails_and_delivers_nothing(room, body, code):
    server, alice, bob, carol, dave = room
    before = server.registry.log.latest("#room")
    paste(alice, *body)
    server.clock.advance(10)  # flood control lets the held lines run
    fail = first(alice.take(), "FAIL")
    assert fail.params[:2] == ("BATCH", code)
    assert not bob.take() and not carol.take() and not dave.take()
    assert server.registry.log.latest("#room") == before


def test_mismatched_target_fails(room):
    """MULTILINE_INVALID_TARGET <batch target> <given target>; nothing delivered."""
    _, alice, bob, *_ = room
    alice.send("BATCH +r draft/multiline #room", "@batch=r PRIVMSG #elsewhere :x", "BATCH -r")
    fail = first(alice.take(), "FAIL")
    assert fail.params[:4] == ("BATCH", "MULTILINE_INVALID_TARGET", "#room", "#elsewhere")
    assert not bob.take()


def test_line_outside_the_batch_fails_it_then_runs(room):
    """Another command while the batch is open: FAIL MULTILINE_INVALID once, the batch dropped."""
    _, alice, bob, *_ = room
    alice.send("BATCH +r draft/multiline #room", "@batch=r PRIVMSG #room :x",
               "PRIVMSG #room :plain", "@batch=r PRIVMSG #room :y", "BATCH -r")
    got = alice.take()
    assert [m.params[1] for m in got if m.command == "FAIL"] == ["MULTILINE_INVALID"]
    assert [m.params[1] for m in bob.take()] == ["plain"]


def test_second_opening_fails_both(room):
    """At most one open batch per connection: a second opening fails, its lines swallowed."""
    _, alice, bob, *_ = room
    alice.send("BATCH +r draft/multiline #room", "BATCH +s draft/multiline #room")
    assert first(alice.take(), "FAIL").params[1] == "MULTILINE_INVALID"
    alice.send("@batch=s PRIVMSG #room :x", "BATCH -s")
    assert not bob.take()
    paste(alice, ("", "a"), ("", "b"))  # then a new batch works
    assert [m.params[1] for m in bob.take()] == ["a", "b"]


def test_open_batch_times_out(room):
    server, alice, bob, *_ = room
    alice.send("BATCH +r draft/multiline #room", "@batch=r PRIVMSG #room :x")
    server.clock.advance(multiline.TIMEOUT)
    server.factory.sweep()
    assert first(alice.take(), "FAIL").params[1] == "MULTILINE_INVALID"
    alice.send("BATCH -r")
    assert not bob.take()


def test_room_rules_hold_for_the_whole_paste(room):
    """+m: an unvoiced member's paste is refused once (one 404), nothing delivered."""
    server, alice, bob, carol, dave = room
    alice.send("MODE #room +m")
    for client in (alice, bob, carol, dave):
        client.take()
    paste(dave, ("", "a"), ("", "b"))
    assert [m.command for m in dave.take()] == ["404"]
    assert not bob.take()


def test_batch_without_the_capability_is_not_collected(room):
    """A client that did not negotiate draft/multiline gets no multiline handling."""
    _, _, bob, carol, _ = room
    bob.send("BATCH +r draft/multiline #room")
    assert all(m.command != "FAIL" or m.params[1] != "MULTILINE_INVALID" for m in bob.take())


def test_private_multiline_message(room):
    """To a nick: one private event, a batch for the multiline recipient."""
    _, alice, _, _, dave = room
    paste(alice, ("", "a"), ("", "b"), target="dave")
    got = dave.take()
    assert [m.command for m in got] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    assert got[0].params[2] == "dave"


def test_cap_ls_302_shows_the_value():
    server = MemoryServer()
    client = server.connect()
    client.send("CAP LS 302")
    caps = first(client.take(), "CAP").params[-1].split()
    assert f"draft/multiline={ircv3.MULTILINE_CAP_VALUE}" in caps
    assert ircv3.MULTILINE_CAP_VALUE == f"max-bytes={MAX_BYTES},max-lines={MAX_LINES}"
    client = server.connect()
    client.send("CAP LS")
    assert "draft/multiline" in first(client.take(), "CAP").params[-1].split()


# ------------------------------------------------------------------- history


def test_history_replays_a_multiline_batch_nested_and_lines_to_others(room):
    """CHATHISTORY: the record is a multiline batch inside chathistory, or plain lines."""
    server, alice, bob, _, dave = room
    paste(alice, ("", "a"), ("", "b"))
    for client in (bob, dave):
        client.take()
    got = dave.ask("CHATHISTORY LATEST #room * 10")
    outer = got[0]
    assert outer.params[1] == "chathistory"
    ref = outer.params[0][1:]
    inner = got[1]
    assert inner.command == "BATCH" and inner.params[1] == "draft/multiline"
    assert inner.tags["batch"] == ref
    assert [m.params[1] for m in got if m.command == "PRIVMSG"] == ["a", "b"]
    assert all(m.tags.get("batch") == inner.params[0][1:] for m in got
               if m.command == "PRIVMSG")
    got = bob.ask("CHATHISTORY LATEST #room * 10")
    body = [m for m in got if m.command == "PRIVMSG"]
    assert [m.params[1] for m in body] == ["a", "b"]
    assert all(m.tags["batch"] == got[0].params[0][1:] for m in body)


def test_sqlite_keeps_the_newline(tmp_path):
    """The SQLite rows hold the text with its "\\n" and give it back unchanged."""
    conn = sqlite3.connect(str(tmp_path / "h.db"))
    database.initialise(conn, 0)
    record = record_from_event(event("one\ntwo\n\nthree", seq=1))
    database.write_batch(conn, [record])
    [back] = database.read_range(conn, Range("#room", None, None, 10, False))
    assert back.params == ("#room", "one\ntwo\n\nthree")
    conn.close()


# ------------------------------------------------------------------------ UDP


def udp_room(w, server):
    """#room with bob on UDP and alice (multiline) on TCP; a listener on the broadcast."""
    listener = Listener(w)
    bob = Raw(w)
    bob.register("bob")
    bob.command("JOIN #room")
    alice = server.user("alice", "#room", caps=ML_CAPS)
    return listener, bob, alice


def test_udp_session_hears_the_lines_with_one_seq_and_repairs_them(mixed):
    """Broadcast: a datagram per line, each with the event's seq and part=i/n; REPAIR sends all."""
    server, w = mixed
    listener, bob, alice = udp_room(w, server)
    w.net.run(0.05)
    listener.events()
    paste(alice, ("", "one"), ("", ""), ("", "two "), (";draft/multiline-concat", "halves"))
    w.net.run(0.05)
    got = [m for m in listener.events() if m.command == "PRIVMSG"]
    seq = server.registry.log.latest("#room")
    assert [(m.params[1], m.tags["seq"], m.tags["part"]) for m in got] == [
        ("one", str(seq), "1/2"), ("two halves", str(seq), "2/2")]
    bob.take()
    repaired = [m for m in bob.command(f"REPAIR #room {seq} {seq}") if m.command == "PRIVMSG"]
    w.net.run(0.05)
    repaired += [m for m in bob.take() if m.command == "PRIVMSG"]
    assert [m.params[1] for m in repaired] == ["one", "two halves"]


def test_udp_datagrams_stay_under_max_datagram(mixed):
    """The longest paste: every datagram within MAX_DATAGRAM."""
    server, w = mixed
    listener, bob, alice = udp_room(w, server)
    paste(alice, *[("", "é" * 170)] * 12)  # 12 * 341 bytes: just under MAX_BYTES
    server.clock.advance(5)
    w.net.run(0.05)
    sizes = [len(d) for d in listener.got if b"PRIVMSG" in d]
    assert len(sizes) == 12 and max(sizes) <= MAX_DATAGRAM


def test_bundled_udp_client_shows_one_message_despite_loss(mixed):
    """The UDP client puts the parts together: one MESSAGE, one seq, every line, with loss."""
    server, w = mixed
    bob = session(w, "bob", seed=3, loss=0.3)
    assert w.net.run_until(lambda: bob.state == I.REGISTERED)
    bob.join("#room")
    assert w.net.run_until(lambda: "#room" in bob.rooms)
    alice = server.user("alice", "#room", caps=ML_CAPS)
    for k in range(3):
        paste(alice, ("", f"{k} one"), ("", f"{k} two"), ("", f"{k} three"), ref=f"r{k}")
    said = lambda: [e for e in bob.events if e.kind == I.MESSAGE]  # noqa: E731
    assert w.net.run_until(lambda: len(said()) == 3, 30)
    assert [e.text for e in said()] == [f"{k} one\n{k} two\n{k} three" for k in range(3)]
    seqs = [e.seq for e in said()]
    assert len(set(seqs)) == 3 and all(s is not None for s in seqs)
    assert bob.stats["repairs_asked"] > 0  # the loss was repaired


# ---------------------------------------------------------------- end to end


def test_paste_through_the_real_server(chat_server):
    """twistd: a multiline client's paste is a batch for another one, lines for a plain one."""
    server = chat_server()
    clients = {}
    for nick, caps in (("alice", "batch draft/multiline echo-message"),
                       ("dave", "batch draft/multiline message-tags"), ("carol", None)):
        c = LineClient(server.host, server.port)
        if caps:
            c.send("CAP LS 302")
            ls = c.wait_for(lambda line: " LS " in line)
            assert f"draft/multiline={ircv3.MULTILINE_CAP_VALUE}" in ls
            c.send(f"CAP REQ :{caps}", "CAP END")
        c.register(nick).join("#lobby")
        clients[nick] = c
    alice, dave, carol = clients["alice"], clients["dave"], clients["carol"]
    alice.send("BATCH +p draft/multiline #lobby", "@batch=p PRIVMSG #lobby :first line",
               "@batch=p PRIVMSG #lobby :second ",
               "@batch=p;draft/multiline-concat PRIVMSG #lobby :half", "BATCH -p")
    start = parse(dave.wait_for(lambda line: " BATCH +" in line).encode())
    assert start.params[1:] == ("draft/multiline", "#lobby") and "msgid" in start.tags
    body = [dave.wait_for(lambda line: "PRIVMSG" in line) for _ in range(2)]
    assert [parse(line.encode()).params[1] for line in body] == ["first line", "second half"]
    assert " BATCH -" in dave.wait_for(lambda line: "BATCH" in line)
    plain = [carol.wait_for(lambda line: "PRIVMSG" in line) for _ in range(2)]
    assert plain == [":alice!alice@127.0.0.1 PRIVMSG #lobby :first line",
                     ":alice!alice@127.0.0.1 PRIVMSG #lobby :second half"]
    assert " BATCH +" in alice.wait_for(lambda line: "BATCH" in line)  # the echo, as a batch
    alice.send("BATCH +q draft/multiline #lobby", "@batch=q PRIVMSG #nowhere :x", "BATCH -q")
    assert "FAIL BATCH MULTILINE_INVALID_TARGET #lobby #nowhere" in \
        alice.wait_for(lambda line: "FAIL" in line)
    for c in clients.values():
        c.close()


def test_batch_lines_cost_no_flood_tokens():
    """A whole paste at once: only its BATCH + costs a token (flood burst 3 here)."""
    server = MemoryServer(flood_burst=3, flood_rate=1.0)
    alice = server.user("alice", caps=ML_CAPS)
    bob = server.user("bob", caps="batch draft/multiline")
    server.clock.advance(10)  # registration's held lines run, the tokens come back
    alice.send("JOIN #room")
    bob.send("JOIN #room")
    server.clock.advance(10)
    bob.take()
    paste(alice, *[("", f"line {i}") for i in range(MAX_LINES)])
    assert [m.params[1] for m in bob.take() if m.command == "PRIVMSG"] == \
        [f"line {i}" for i in range(MAX_LINES)]


def test_fail_carries_the_batch_label(room):
    """labeled-response: a FAIL for a batch carries the label of its BATCH +."""
    _, alice, *_ = room
    alice.send("@label=L2 BATCH +r draft/multiline #room", "@batch=r PRIVMSG #x :y", "BATCH -r")
    fail = first(alice.take(), "FAIL")
    assert fail.tags["label"] == "L2" and fail.params[1] == "MULTILINE_INVALID_TARGET"


def test_repair_from_history_sends_the_same_datagrams():
    """A stored multi-line record gives the very datagrams the broadcast sent."""
    e = event("one\ntwo", seq=3)
    assert record_datagrams(record_from_event(e)) == event_datagrams(e)
    assert len(event_datagrams(e)) == 2


def test_udp_client_parts_join_concat_and_stay_bounded():
    """Parts: any order, concat joined directly; junk part tags dropped; at most MAX_PENDING."""
    parts = Parts()
    two = parse(b"@seq=5;part=2/2;draft/multiline-concat :a!a@h PRIVMSG #r :half")
    one = parse(b"@seq=5;part=1/2 :a!a@h PRIVMSG #r :a ")
    assert parts.add(two) is None
    whole = parts.add(one)
    assert whole.params == ("#r", "a half") and whole.tags == {"seq": "5"}
    assert parts.add(parse(b"@seq=6;part=3/2 :a!a@h PRIVMSG #r :x")) is None
    for seq in range(MAX_PENDING + 10):
        parts.add(parse(b"@seq=%d;part=1/2 :a!a@h PRIVMSG #r :x" % seq))
    assert len(parts._pending) == MAX_PENDING
