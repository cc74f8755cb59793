"""
The registry without any I/O: rules, sequence numbers, what goes to whom.
"""

from twistchat.core.events import TAG_SEQ, TAG_TIME, Event, deliver
from twistchat.core.registry import Registry, casefold


class Conn:
    """A front-end stand-in that records what it is handed."""

    def __init__(self) -> None:
        self.got = []

    def deliver(self, payload) -> None:
        self.got.append(payload)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs):
    clock = Clock()
    registry = Registry(server_name="srv", clock=clock, **kwargs)
    return registry, clock


_hosts = iter(range(1, 10**6))


def joined(registry, nick, *rooms):
    """A registered user ``nick`` (from an address of its own) in ``rooms``."""
    conn = Conn()
    n = next(_hosts)
    user = registry.connect(conn, f"127.0.{n // 250}.{n % 250 + 1}")
    deliver(registry.register(user, nick, nick, nick))
    for room in rooms:
        deliver(registry.join(user, room))
    conn.got.clear()
    return user, conn


def test_casefold_is_rfc1459():
    """A-Z and []\\~ fold to a-z and {}|^; other characters stay."""
    assert casefold("Nick[A]\\~") == "nick{a}|^"
    assert casefold("#ÉTÉ") == "#ÉtÉ"  # only ASCII folds under rfc1459


def test_nick_grammar():
    """RFC 2812 nick grammar and NICKLEN."""
    registry, _ = make()
    assert registry.valid_nick("a[b]-1")
    for bad in ("", "1abc", "-x", "a b", "a,b", "x" * 31, "é"):
        assert not registry.valid_nick(bad), bad


def test_channel_grammar():
    """Channel names start with #, have no space, comma, colon or BEL, fit CHANNELLEN bytes."""
    registry, _ = make()
    assert registry.valid_channel("#ok-room") and registry.valid_channel("#café")
    for bad in ("#", "lobby", "#a b", "#a,b", "#a:b", "#a\x07", "#" + "x" * 50):
        assert not registry.valid_channel(bad), bad


def test_room_sequence_numbers_rise_by_one_per_event():
    """Every room event (JOIN, PRIVMSG, TOPIC, PART) takes the next number of its room."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    bob, _ = joined(registry, "bob", "#r")
    events = []
    registry.log.subscribe(events.append)
    registry.message(alice, "PRIVMSG", "#r", "one")
    registry.topic(alice, "#r", "t")
    registry.part(bob, "#r")
    assert [e.seq for e in events] == [3, 4, 5]
    assert [e.message.command for e in events] == ["PRIVMSG", "TOPIC", "PART"]
    assert all(e.target == "#r" for e in events)


def test_sequence_numbers_continue_from_the_store():
    """A room the store knew at seq 41 starts again at 42 (no reuse after restart)."""
    registry, _ = make(last_seqs={"#r": 41})
    events = []
    registry.log.subscribe(events.append)
    joined(registry, "alice", "#R")
    assert events[0].seq == 42


def test_empty_room_keeps_its_sequence():
    """A room that empties and is created again goes on counting."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    registry.part(alice, "#r")
    assert registry.find_channel("#r") is None
    events = []
    registry.log.subscribe(events.append)
    registry.join(alice, "#r")
    assert events[0].seq == 3


def test_private_messages_are_numbered_per_conversation():
    """PRIVMSGs between two nicks share one conversation key and sequence, seen by both only."""
    registry, _ = make()
    alice, _ = joined(registry, "Alice")
    bob, bob_conn = joined(registry, "bob")
    events = []
    registry.log.subscribe(events.append)
    deliver(registry.message(alice, "PRIVMSG", "bob", "hi"))
    deliver(registry.message(bob, "PRIVMSG", "alice", "hey"))
    assert [(e.target, e.seq) for e in events] == [("~dm:alice:bob", 1), ("~dm:alice:bob", 2)]
    assert bob_conn.got[0].message.params == ("bob", "hi")


def test_event_carries_server_time_in_ms():
    """Events are stamped with the registry's clock, in milliseconds."""
    registry, clock = make()
    alice, _ = joined(registry, "alice", "#r")
    clock.now = 1_800_000_123.456
    (delivery,) = registry.message(alice, "PRIVMSG", "#r", "x")
    assert delivery.payload.time_ms == 1_800_000_123_456


def test_event_line_views_are_cached():
    """An event formats once per tag view; seq and time tags appear only in their views."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    (delivery,) = registry.message(alice, "PRIVMSG", "#r", "x")
    event: Event = delivery.payload
    plain = event.line()
    assert plain == f":alice!alice@{alice.host} PRIVMSG #r x\r\n".encode()
    assert event.line() is plain
    tagged = event.line(TAG_SEQ | TAG_TIME)
    assert tagged.startswith(b"@seq=") and b";time=" in tagged


def test_recent_history_is_bounded():
    """Each room keeps at most recent_history events in memory."""
    from twistchat.core.registry import Limits

    registry, _ = make(limits=Limits(recent_history=10))
    alice, _ = joined(registry, "alice", "#r")
    for i in range(25):
        registry.message(alice, "PRIVMSG", "#r", str(i))
    lowest, recent = registry.log.held("#r", 1, 10**9, 100)
    assert len(recent) == 10 and recent[-1].message.params[1] == "24"
    assert lowest == recent[0].seq == 17  # JOIN was 1, messages 2..26: the last ten held
    assert [e.seq for e in registry.log.held("#r", 25, 10**9, 100)[1]] == [25, 26]


def test_quit_reaches_each_peer_once_and_frees_everything():
    """QUIT from a user in two rooms: one line per peer, a numbered event per room."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#a", "#b")
    bob, bob_conn = joined(registry, "bob", "#a", "#b")
    events = []
    registry.log.subscribe(events.append)
    deliver(registry.quit(alice, "bye"))
    assert len(bob_conn.got) == 1 and bob_conn.got[0].message.command == "QUIT"
    assert sorted(e.target for e in events) == ["#a", "#b"]
    assert registry.find_user("alice") is None and registry.connection_count() == 1


def test_names_reply_is_split_to_fit_512_bytes():
    """A big room's NAMES is split over several 353 lines, each within 512 bytes."""
    from twistchat.wire import encode

    registry, _ = make()
    users = [joined(registry, f"member{i:03d}xxxxxxxxxx", "#big")[0] for i in range(60)]
    replies = registry.names(users[0], "#big")
    lines = [encode(d.payload) for d in replies if d.payload.command == "353"]
    assert len(lines) > 1 and all(len(line) <= 512 for line in lines)
    shown = " ".join(d.payload.params[-1] for d in replies if d.payload.command == "353")
    assert len(shown.split()) == 60
