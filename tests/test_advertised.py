"""
Everything the server advertises, it does: each ISUPPORT token and each capability.

One real ``twistd -n chat`` for the module.  A client reads what the server
offers (005 and ``CAP LS 302``); every token and capability offered must have a
check here, and every check must find its token offered, so neither list can
drift from the other.  Each check then makes the server act on what it promised,
over a real socket (issue #13, "How it must be shown").
"""

from __future__ import annotations

import base64
import itertools
import time

import pytest

from tests.probe import Probe, codes, deadline, new_nick, one
from tests.serverproc import LineClient, ServerProcess
from twistchat.wire import parse

_rooms = (f"#r{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Flood control off: the checks send hundreds of lines (flood control has tests of its own).
    started = ServerProcess(tmp_path_factory.mktemp("advertised"), "--db=:memory:",
                            "--history-max=20", "--flood-burst=100000",
                            "--flood-rate=100000", "--flood-queue=100000",
                            "--max-per-ip=1000", "--register-burst=1000").start()
    yield started
    started.stop()


def advertised_tokens(server: ServerProcess) -> dict[str, str]:
    probe = Probe(server)
    tokens = {}
    for message in probe.welcome:
        if message.command == "005":
            for token in message.params[1:-1]:
                name, _, value = token.partition("=")
                tokens[name] = value
    probe.close()
    return tokens


def advertised_caps(server: ServerProcess) -> dict[str, str]:
    client = LineClient(server.host, server.port)
    client.send("CAP LS 302")
    caps: dict[str, str] = {}
    while True:
        message = parse(client.read_line(deadline()).encode())
        if message.command == "CAP":
            for cap in message.params[-1].split():
                name, _, value = cap.partition("=")
                caps[name] = value
            if message.params[2] != "*":  # "CAP * LS * :..." says more lines follow
                break
    client.close()
    return caps


# ------------------------------------------------------------------ ISUPPORT


def check_casemapping(server, value):
    assert value == "rfc1459"
    first = Probe(server, nick="Case[a]" + new_nick())
    taken = Probe(server)
    folded = first.nick.lower().replace("[", "{").replace("]", "}")
    assert "433" in codes(taken.ask(f"NICK {folded}"))


def check_chantypes(server, value):
    assert value == "#"
    probe = Probe(server)
    assert "403" in codes(probe.join("&local"))
    assert "JOIN" in codes(probe.join(next(_rooms)))


def check_prefix(server, value):
    assert value == "(ov)@+"
    op, member = Probe(server), Probe(server)
    room = next(_rooms)
    op.join(room)
    member.join(room)
    op.ask(f"MODE {room} +v {member.nick}")
    names = one(op.ask(f"NAMES {room}"), "353").params[-1].split()
    assert sorted(names) == sorted([f"@{op.nick}", f"+{member.nick}"])


def _room_with_op(server):
    op, other = Probe(server), Probe(server)
    room = next(_rooms)
    op.join(room)
    return op, other, room


def _mode_b(server):
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +b {other.nick}!*@*")
    assert "474" in codes(other.join(room))


def _mode_k(server):
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +k sesame")
    assert "475" in codes(other.join(room))
    assert "JOIN" in codes(other.join(room, "sesame"))


def _mode_l(server):
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +l 1")
    assert "471" in codes(other.join(room))


def _mode_i(server):
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +i")
    assert "473" in codes(other.join(room))


def _mode_m(server):
    op, other, room = _room_with_op(server)
    other.join(room)
    op.ask(f"MODE {room} +m")
    assert "404" in codes(other.ask(f"PRIVMSG {room} :hello"))


def _mode_n(server):
    op, other, room = _room_with_op(server)
    assert "404" in codes(other.ask(f"PRIVMSG {room} :from outside"))  # +n by default
    op.ask(f"MODE {room} -n")
    assert "404" not in codes(other.ask(f"PRIVMSG {room} :from outside"))


def _mode_t(server):
    op, other, room = _room_with_op(server)
    other.join(room)
    assert "482" in codes(other.ask(f"TOPIC {room} :mine"))  # +t by default
    op.ask(f"MODE {room} -t")
    assert "TOPIC" in codes(other.ask(f"TOPIC {room} :mine"))


def _mode_e(server):
    """A ban exception lets a banned user in, and only operators see the list (348/349)."""
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +b {other.nick}!*@*")
    assert "474" in codes(other.join(room))
    op.ask(f"MODE {room} +e {other.nick}")
    assert "JOIN" in codes(other.join(room))
    op.ask()  # the JOIN
    assert codes(op.ask(f"MODE {room} e")) == ["348", "349"]
    assert codes(other.ask(f"MODE {room} e")) == ["482"]


def _mode_i_exception(server):
    """An invite exception lets a matching user into a +i room uninvited (346/347)."""
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +i")
    assert "473" in codes(other.join(room))
    op.ask(f"MODE {room} +I *!{other.nick}@*")
    assert "JOIN" in codes(other.join(room))
    op.ask()  # the JOIN
    assert codes(op.ask(f"MODE {room} I")) == ["346", "347"]


def _mode_s(server):
    """A secret room: not in LIST or WHOIS for outsiders, NAMES shows it with ``@``."""
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +s")
    assert room not in [m.params[1] for m in other.ask("LIST") if m.command == "322"]
    assert codes(other.ask(f"NAMES {room}")) == ["366"]
    assert "319" not in codes(other.ask(f"WHOIS {op.nick}"))
    assert one(op.ask(f"NAMES {room}"), "353").params[1:3] == ("@", room)


def _mode_c(server):
    """+C: a CTCP to the room is refused (404), an ACTION is not."""
    op, other, room = _room_with_op(server)
    other.join(room)
    op.ask(f"MODE {room} +C")
    assert "404" in codes(other.ask(f"PRIVMSG {room} :\x01VERSION\x01"))
    assert "404" not in codes(other.ask(f"PRIVMSG {room} :\x01ACTION waves\x01"))
    assert "\x01ACTION waves\x01" in [m.params[-1] for m in op.ask() if m.command == "PRIVMSG"]


CHANNEL_MODES = {"b": _mode_b, "k": _mode_k, "l": _mode_l, "i": _mode_i, "m": _mode_m,
                 "n": _mode_n, "t": _mode_t, "e": _mode_e, "I": _mode_i_exception,
                 "s": _mode_s, "C": _mode_c}


def check_chanmodes(server, value):
    """Every letter of CHANMODES does what it is for."""
    letters = value.replace(",", "")
    assert set(letters) == set(CHANNEL_MODES)
    for letter in letters:
        CHANNEL_MODES[letter](server)


def check_nicklen(server, value):
    probe = Probe(server)
    longest = "n" * (int(value) - 1) + "x"
    assert "NICK" in codes(probe.ask(f"NICK {longest}"))
    assert "432" in codes(probe.ask(f"NICK {longest}y"))


def check_channellen(server, value):
    probe = Probe(server)
    longest = "#" + "c" * (int(value) - 1)
    assert "JOIN" in codes(probe.join(longest))
    assert "403" in codes(probe.join(longest + "c"))


def check_topiclen(server, value):
    probe = Probe(server)
    room = next(_rooms)
    probe.join(room)
    topic = one(probe.ask(f"TOPIC {room} :{'t' * (int(value) + 10)}"), "TOPIC")
    assert len(topic.params[1]) == int(value)


def check_awaylen(server, value):
    away, asker = Probe(server), Probe(server)
    away.ask(f"AWAY :{'a' * (int(value) + 10)}")
    assert len(one(asker.ask(f"WHOIS {away.nick}"), "301").params[-1]) == int(value)


def check_kicklen(server, value):
    op, other, room = _room_with_op(server)
    other.join(room)
    kick = one(op.ask(f"KICK {room} {other.nick} :{'k' * (int(value) + 10)}"), "KICK")
    assert len(kick.params[2]) == int(value)


def check_chanlimit(server, value):
    prefix, count = value.split(":")
    assert prefix == "#"
    probe = Probe(server)
    base = next(_rooms)
    replies = probe.ask(*(f"JOIN {base}x{n}" for n in range(int(count) + 1)))
    assert codes(replies).count("JOIN") == int(count)
    assert "405" in codes(replies)


def check_modes(server, value):
    """At most MODES parameter modes of one MODE line are applied."""
    op, _, room = _room_with_op(server)
    others = [Probe(server) for _ in range(int(value) + 1)]
    for other in others:
        other.join(room)
    nicks = " ".join(o.nick for o in others)
    mode = one(op.ask(f"MODE {room} +{'v' * len(others)} {nicks}"), "MODE")
    assert mode.params[1] == "+" + "v" * int(value)


def check_maxlist(server, value):
    """The letters of one MAXLIST entry share its count: past it, 478 names the letter."""
    for entry in value.split(","):
        letters, count = entry.split(":")
        op, _, room = _room_with_op(server)
        # Fill the shared limit, the letters taking turns.
        replies = op.ask(*(f"MODE {room} +{letters[n % len(letters)]} m{n}!*@*"
                           for n in range(int(count))))
        assert codes(replies).count("MODE") == int(count)
        for letter in letters:
            full = one(op.ask(f"MODE {room} +{letter} one-more!*@*"), "478")
            assert full.params[1:3] == (room, letter)


def check_excepts(server, value):
    assert value == "e"
    _mode_e(server)


def check_invex(server, value):
    assert value == "I"
    _mode_i_exception(server)


def check_targmax(server, value):
    limits = dict(entry.split(":") for entry in value.split(","))
    probe = Probe(server)
    for verb in ("PRIVMSG", "NOTICE"):
        targets = [Probe(server) for _ in range(int(limits[verb]) + 1)]
        names = ",".join(t.nick for t in targets)
        if verb == "PRIVMSG":
            assert "407" in codes(probe.ask(f"PRIVMSG {names} :hi"))
        got = [Probe.ask(t) for t in targets[:1]]
        assert not any(verb in codes(g) for g in got)
        fits = ",".join(t.nick for t in targets[:-1])
        probe.ask(f"{verb} {fits} :hi")
        assert verb in codes(targets[0].ask())


def check_network(server, value):
    welcome = one(Probe(server).welcome, "001").params[-1]
    assert f"the {value} IRC network" in welcome


def check_linelen(server, value):
    probe = Probe(server)
    room = next(_rooms)
    probe.join(room)
    head = f"PRIVMSG {room} :"
    fits = head + "x" * (int(value) - 2 - len(head))
    assert "417" not in codes(probe.ask(fits))
    assert "417" in codes(probe.ask(fits + "x"))


def check_statusmsg(server, value):
    assert value == "@+"
    op, other, room = _room_with_op(server)
    voiced = Probe(server)
    other.join(room)
    voiced.join(room)
    op.ask(f"MODE {room} +v {voiced.nick}")
    other.ask(f"PRIVMSG @{room} :ops only", f"PRIVMSG +{room} :voiced and ops")
    assert [m.params[0] for m in op.ask() if m.command == "PRIVMSG"] == [f"@{room}", f"+{room}"]
    assert [m.params[0] for m in voiced.ask() if m.command == "PRIVMSG"] == [f"+{room}"]


def _talk(server, lines, pause=0.0):
    speaker = Probe(server, caps="message-tags server-time")
    room = next(_rooms)
    speaker.join(room)
    for n in range(lines):
        speaker.ask(f"PRIVMSG {room} :line {n}")
        time.sleep(pause)
    return speaker, room


def _history(probe, command):
    return [m for m in probe.ask(command) if m.command == "PRIVMSG"]


def check_chathistory(server, value):
    speaker, room = _talk(server, int(value) + 5)
    reader = Probe(server, caps="draft/chathistory batch server-time message-tags")
    reader.join(room)
    got = _history(reader, f"CHATHISTORY LATEST {room} * {value}")
    assert len(got) == int(value)
    assert got[-1].params[1] == f"line {int(value) + 4}"
    refused = one(reader.ask(f"CHATHISTORY LATEST {room} * {int(value) + 1}"), "FAIL")
    assert refused.params[1] == "INVALID_PARAMS"


def check_msgreftypes(server, value):
    assert set(value.split(",")) == {"msgid", "timestamp"}
    speaker, room = _talk(server, 3, pause=0.01)  # three different milliseconds
    reader = Probe(server, caps="draft/chathistory batch server-time message-tags")
    reader.join(room)
    lines = _history(reader, f"CHATHISTORY LATEST {room} * 3")
    middle = lines[1]
    by_msgid = _history(reader, f"CHATHISTORY BEFORE {room} msgid={middle.tags['msgid']} 5")
    by_time = _history(reader, f"CHATHISTORY BEFORE {room} timestamp={middle.tags['time']} 5")
    assert [m.params[1] for m in by_msgid] == [m.params[1] for m in by_time] == ["line 0"]


def check_bot(server, value):
    assert value == "B"
    bot, asker = Probe(server), Probe(server)
    bot.ask(f"MODE {bot.nick} +B")
    assert "335" in codes(asker.ask(f"WHOIS {bot.nick}"))


def check_monitor(server, value):
    watcher = Probe(server)
    later = new_nick()
    assert "731" in codes(watcher.ask(f"MONITOR + {later}"))
    Probe(server, nick=later)
    assert one(watcher.ask(), "730").params[-1].startswith(later)
    many = ",".join(f"x{n}" for n in range(int(value)))
    assert "734" in codes(watcher.ask(f"MONITOR + {many}"))


def check_namelen(server, value):
    probe = Probe(server, caps="setname")
    assert "SETNAME" in codes(probe.ask(f"SETNAME :{'r' * int(value)}"))
    assert one(probe.ask(f"SETNAME :{'r' * (int(value) + 1)}"), "FAIL").params[1] == \
        "INVALID_REALNAME"


def check_utf8only(server, value):
    probe = Probe(server)
    probe.client.sock.sendall(b"PRIVMSG #x :\xff\xfe\r\n")
    assert one(probe.ask(), "FAIL").params[1] == "INVALID_UTF8"


def check_whox(server, value):
    """WHO <room> %fields,token: 354 with exactly those fields in order; ':' before r only."""
    assert value == ""
    asker, other = Probe(server), Probe(server)
    room = next(_rooms)
    other.join(room)
    other.ask("SETNAME :Solo")
    got = asker.ask(f"WHO {room} %rnft,42")
    assert codes(got) == ["354", "315"]
    assert one(got, "354").params == (asker.nick, "42", other.nick, "H@", "Solo")
    assert asker.client.seen[-3].endswith(f" 354 {asker.nick} 42 {other.nick} H@ :Solo")
    asker.ask(f"WHO {room} %n")
    assert asker.client.seen[-3].endswith(f" 354 {asker.nick} {other.nick}")
    assert codes(asker.ask(f"WHO {room} %tn,1000")) == ["400", "315"]


def check_elist(server, value):
    """LIST's conditions: M and N masks, U member counts, C creation and T topic times."""
    assert set(value) == set("CMNTU")
    first, second, alone, asker = (Probe(server) for _ in range(4))
    base = next(_rooms)
    big, small = f"{base}big", f"{base}small"
    first.join(big)
    second.join(big)
    alone.join(small)
    first.ask(f"TOPIC {big} :about")

    def listed(*params):
        return [m.params[1] for m in asker.ask("LIST " + " ".join(params))
                if m.command == "322" and m.params[1].startswith(base)]

    assert listed(f"{base}*") == [big, small]
    assert listed(f"{base}*,>1") == [big]
    assert listed(f"{base}*", "<2") == [small]
    assert listed(f"!{big}") == [small]
    assert listed(f"{base}*,C<10") == [big, small] and listed(f"{base}*,C>10") == []
    assert listed(f"{base}*,T<10") == [big] and listed(f"{base}*,T>10") == []
    assert codes(asker.ask("LIST >x")) == ["400", "323"]
def check_knock(server, value):
    """KNOCK on a +i room reaches its operator (710); the knocker gets 711, then can be let in."""
    op, other, room = _room_with_op(server)
    op.ask(f"MODE {room} +i")
    assert codes(other.ask(f"KNOCK {room} :let me in")) == ["711"]
    knocked = one(op.ask(), "710")
    assert knocked.params[1] == room and knocked.params[2].startswith(other.nick + "!")
    op.ask(f"INVITE {other.nick} {room}")
    assert "JOIN" in codes(other.join(room))


def check_extban(server, value):
    """
    ``~a:<account>`` is set, listed and removed like any mask; it never bans a user
    who is not logged in; and a banned account is kept out under another nick.
    """
    assert value == "~,a"
    op, other, room = _room_with_op(server)
    assert "MODE" in codes(op.ask(f"MODE {room} +b ~a:{other.nick}"))
    listed = [m.params[2] for m in op.ask(f"MODE {room} +b") if m.command == "367"]
    assert listed == [f"~a:{other.nick}"]
    assert "JOIN" in codes(other.join(room))
    assert "696" in codes(op.ask(f"MODE {room} +b ~q:x"))
    extban_keeps_an_account_out(server)


TOKENS = {
    "CASEMAPPING": check_casemapping, "CHANTYPES": check_chantypes, "PREFIX": check_prefix,
    "CHANMODES": check_chanmodes, "NICKLEN": check_nicklen, "CHANNELLEN": check_channellen,
    "TOPICLEN": check_topiclen, "AWAYLEN": check_awaylen, "KICKLEN": check_kicklen,
    "CHANLIMIT": check_chanlimit, "MODES": check_modes, "MAXLIST": check_maxlist,
    "TARGMAX": check_targmax, "NETWORK": check_network, "LINELEN": check_linelen,
    "STATUSMSG": check_statusmsg, "CHATHISTORY": check_chathistory,
    "MSGREFTYPES": check_msgreftypes, "BOT": check_bot, "MONITOR": check_monitor,
    "NAMELEN": check_namelen, "UTF8ONLY": check_utf8only,
    "EXCEPTS": check_excepts, "INVEX": check_invex,
    "WHOX": check_whox, "ELIST": check_elist,
    "KNOCK": check_knock,
    "EXTBAN": check_extban,
}


# -------------------------------------------------------------- capabilities


def cap_away_notify(server):
    watcher = Probe(server, caps="away-notify")
    plain, away = Probe(server), Probe(server)
    room = next(_rooms)
    for probe in (watcher, plain, away):
        probe.join(room)
    away.ask("AWAY :lunch")
    assert one(watcher.ask(), "AWAY").params == ("lunch",)
    assert "AWAY" not in codes(plain.ask())


def cap_batch(server):
    _, room = _talk(server, 2)
    reader = Probe(server, caps="batch server-time")
    got = reader.join(room)
    start = one(got, "BATCH")
    assert start.params[1:] == ("chathistory", room)
    assert all(m.tags.get("batch") == start.params[0][1:] for m in got if m.command == "PRIVMSG")


def cap_chathistory(server):
    _, room = _talk(server, 3)
    reader = Probe(server, caps="draft/chathistory batch")
    reader.join(room)
    got = _history(reader, f"CHATHISTORY LATEST {room} * 2")
    assert [m.params[1] for m in got] == ["line 1", "line 2"]


def cap_event_playback(server):
    speaker, room = _talk(server, 1)
    Probe(server).join(room)
    with_events = Probe(server, caps="draft/chathistory draft/event-playback batch")
    without = Probe(server, caps="draft/chathistory batch")
    for reader in (with_events, without):
        reader.join(room)
    command = f"CHATHISTORY LATEST {room} * 10"
    assert "JOIN" in codes(with_events.ask(command))
    assert "JOIN" not in codes(without.ask(command))


def cap_echo_message(server):
    echoed, plain = Probe(server, caps="echo-message"), Probe(server)
    room = next(_rooms)
    echoed.join(room)
    plain.join(room)
    assert one(echoed.ask(f"PRIVMSG {room} :mine"), "PRIVMSG").params == (room, "mine")
    plain.ask()  # "mine", relayed
    assert "PRIVMSG" not in codes(plain.ask(f"PRIVMSG {room} :mine too"))


def cap_labeled_response(server):
    probe = Probe(server, caps="labeled-response batch")
    pong = one(probe.ask("@label=x1 PING here"), "PONG")
    assert pong.tags["label"] == "x1"


def cap_message_tags(server):
    tagged, plain = Probe(server, caps="message-tags"), Probe(server)
    sender = Probe(server, caps="message-tags")
    room = next(_rooms)
    for probe in (tagged, plain, sender):
        probe.join(room)
    sender.ask(f"@+draft/reply=abc PRIVMSG {room} :tagged")
    line = one(tagged.ask(), "PRIVMSG")
    assert line.tags["+draft/reply"] == "abc" and line.tags["msgid"]
    assert not one(plain.ask(), "PRIVMSG").tags


def cap_multi_prefix(server):
    multi = Probe(server, caps="multi-prefix")
    room = next(_rooms)
    multi.join(room)
    multi.ask(f"MODE {room} +v {multi.nick}")
    assert one(multi.ask(f"NAMES {room}"), "353").params[-1] == f"@+{multi.nick}"


def cap_server_time(server):
    timed, plain = Probe(server, caps="server-time"), Probe(server)
    room = next(_rooms)
    timed.join(room)
    plain.join(room)
    plain.ask(f"PRIVMSG {room} :when")
    assert one(timed.ask(), "PRIVMSG").tags["time"].endswith("Z")


def _acknowledged(server, cap):
    """``CAP REQ :cap`` before registration is answered ``ACK``."""
    client = LineClient(server.host, server.port)
    try:
        client.send(f"CAP REQ :{cap}")
        ack = parse(client.wait_for(lambda line: " CAP " in line).encode())
    finally:
        client.close()
    assert ack.params[1:] == ("ACK", cap)


def cap_cap_notify(server):
    """Requested and acknowledged; the offer never changes at run time, so no NEW/DEL."""
    _acknowledged(server, "cap-notify")


def cap_chghost(server):
    """Acknowledged; hosts change only through Registry.change_host (accounts, #14)."""
    _acknowledged(server, "chghost")


def cap_no_implicit_names(server):
    probe = Probe(server, caps="draft/no-implicit-names")
    got = probe.join(next(_rooms))
    assert "JOIN" in codes(got) and "353" not in codes(got) and "366" not in codes(got)


def cap_extended_join(server):
    room = next(_rooms)
    extended, plain = Probe(server, caps="extended-join"), Probe(server)
    extended.join(room)
    plain.join(room)
    assert one(extended.ask(), "JOIN").params == (room, "*", f"{plain.nick} Real")
    joiner = Probe(server)
    joiner.join(room)
    assert one(plain.ask(), "JOIN").params == (room,)


def cap_extended_monitor(server):
    watcher = Probe(server, caps="extended-monitor away-notify")
    plain = Probe(server, caps="away-notify")
    watched = Probe(server)
    watcher.ask(f"MONITOR + {watched.nick}")
    plain.ask(f"MONITOR + {watched.nick}")
    watched.ask("AWAY :out")
    assert one(watcher.ask(), "AWAY").params == ("out",)
    assert "AWAY" not in codes(plain.ask())


def cap_invite_notify(server):
    op, notified, invited = Probe(server), Probe(server, caps="invite-notify"), Probe(server)
    room = next(_rooms)
    op.join(room)
    notified.join(room)
    op.ask(f"INVITE {invited.nick} {room}")
    assert one(notified.ask(), "INVITE").params == (invited.nick, room)
    assert one(invited.ask(), "INVITE").params == (invited.nick, room)


def cap_setname(server):
    room = next(_rooms)
    renamer, peer, plain = Probe(server, caps="setname"), Probe(server, caps="setname"), \
        Probe(server)
    for probe in (renamer, peer, plain):
        probe.join(room)
    renamer.ask("SETNAME :New Name")
    assert one(peer.ask(), "SETNAME").params == ("New Name",)
    assert "SETNAME" not in codes(plain.ask())


def cap_standard_replies(server):
    """With it, a malformed line is a FAIL; without, the same text as a NOTICE."""
    standard, plain = Probe(server, caps="standard-replies"), Probe(server)
    for probe in (standard, plain):
        probe.client.sock.sendall(b":\r\n")
    assert "FAIL" in codes(standard.ask())
    got = plain.ask()
    assert "FAIL" not in codes(got) and "NOTICE" in codes(got)


def cap_userhost_in_names(server):
    probe = Probe(server, caps="userhost-in-names")
    room = next(_rooms)
    probe.join(room)
    assert one(probe.ask(f"NAMES {room}"), "353").params[-1] == \
        f"@{probe.nick}!{probe.nick}@127.0.0.1"


def cap_multiline(server):
    """A pasted batch is one message: a batch to capable clients, ordinary lines to others."""
    room = next(_rooms)
    sender = Probe(server, caps="draft/multiline batch")
    capable, plain = Probe(server, caps="draft/multiline batch"), Probe(server)
    for probe in (sender, capable, plain):
        probe.join(room)
    capable.ask()  # the JOINs after its own
    plain.ask()
    sender.ask(f"BATCH +p1 draft/multiline {room}", f"@batch=p1 PRIVMSG {room} :first",
               f"@batch=p1 PRIVMSG {room} :second", "BATCH -p1")
    got = capable.ask()
    assert codes(got) == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    assert got[0].params[1:] == ("draft/multiline", room)
    assert [m.params[1] for m in plain.ask() if m.command == "PRIVMSG"] == ["first", "second"]


def _registered(server, caps=""):
    """
    A client logged in to an account of its nick, registered over the wire.

    draft/account-registration: ``REGISTER * * <password>`` (``*``: the current nick,
    no email), then 900 RPL_LOGGEDIN.  REGISTER comes with the SASL branch of #14.
    """
    probe = Probe(server, caps=" ".join(filter(None, (caps, "draft/account-registration"))))
    got = probe.ask("REGISTER * * correct-horse-battery")
    assert "900" in codes(got), codes(got)
    return probe


def cap_account_notify(server):
    room = next(_rooms)
    watcher, plain, anon = Probe(server, caps="account-notify"), Probe(server), Probe(server)
    for probe in (watcher, plain, anon):
        probe.join(room)
    user = Probe(server, caps="draft/account-registration")
    user.join(room)
    watcher.ask()
    plain.ask()
    assert "900" in codes(user.ask("REGISTER * * correct-horse-battery"))
    notified = one(watcher.ask(), "ACCOUNT")
    assert notified.params == (user.nick,) and notified.source.startswith(user.nick + "!")
    assert "ACCOUNT" not in codes(plain.ask())


def cap_account_tag(server):
    room = next(_rooms)
    tagged, plain = Probe(server, caps="account-tag"), Probe(server, caps="message-tags")
    sender = _registered(server)
    for probe in (tagged, plain, sender):
        probe.join(room)
    tagged.ask()
    plain.ask()
    sender.ask(f"PRIVMSG {room} :hello")
    assert one(tagged.ask(), "PRIVMSG").tags.get("account") == sender.nick
    assert "account" not in one(plain.ask(), "PRIVMSG").tags


def extban_keeps_an_account_out(server):
    """``+b ~a:<account>``: the account cannot rejoin under another nick (check_extban's sequel)."""
    op, _, room = _room_with_op(server)
    banned = _registered(server)
    account = banned.nick
    banned.join(room)
    op.ask(f"MODE {room} +b ~a:{account}", f"KICK {room} {account}")
    assert "474" in codes(banned.join(room))
    banned.ask(f"NICK {new_nick()}")
    assert "474" in codes(banned.join(room))


def cap_read_marker(server):
    """
    MARKREAD after JOIN, before 366, with the cap only; get answers; set needs an account;
    a marker set on one connection is pushed to the account's others.
    """
    room = next(_rooms)
    marked, plain = Probe(server, caps="draft/read-marker"), Probe(server)
    got = marked.join(room)
    assert one(got, "MARKREAD").params == (room, "*")
    assert codes(got).index("JOIN") < codes(got).index("MARKREAD") < codes(got).index("366")
    assert "MARKREAD" not in codes(plain.join(room))
    assert one(marked.ask(f"MARKREAD {room}"), "MARKREAD").params == (room, "*")
    # Without an account, no marker can be set.
    refused = one(marked.ask(f"MARKREAD {room} timestamp=2026-01-01T00:00:00.000Z"), "FAIL")
    assert refused.params[:3] == ("MARKREAD", "INTERNAL_ERROR", room)
    # Two connections of one account (a phone and a laptop): one reads, both are told.
    laptop = _registered(server, caps="draft/read-marker")
    phone = Probe(server, caps="draft/read-marker")
    assert "900" in codes(phone.ask(f"PRIVMSG NickServ :IDENTIFY {laptop.nick} "
                                    "correct-horse-battery"))
    stamp = "2026-01-01T00:00:00.000Z"
    told = one(laptop.ask(f"MARKREAD {room} timestamp={stamp}"), "MARKREAD")
    assert told.params == (room, f"timestamp={stamp}")
    assert one(phone.ask(), "MARKREAD").params == (room, f"timestamp={stamp}")
    assert "MARKREAD" not in codes(marked.ask())  # another user hears nothing of it


def cap_sasl(server):
    """sasl=PLAIN,EXTERNAL: an account made with REGISTER, then PLAIN logs in before 001."""
    assert advertised_caps(server)["sasl"] == "PLAIN,EXTERNAL"
    nick = new_nick()
    maker = Probe(server, caps="draft/account-registration", nick=nick)
    assert one(maker.ask(f"REGISTER * * :pw-{nick}-long"), "REGISTER").params[0] == "SUCCESS"
    maker.close()
    client = LineClient(server.host, server.port)
    client.send("CAP REQ :sasl", f"NICK {nick}x", f"USER {nick} 0 * :{nick}",
                "AUTHENTICATE PLAIN")
    client.wait_for(lambda line: line == "AUTHENTICATE +")
    client.send("AUTHENTICATE " + base64.b64encode(f"\0{nick}\0pw-{nick}-long".encode())
                .decode())
    assert f" 900 * {nick}x!{nick}@" in client.wait_for(lambda line: " 900 " in line)
    client.wait_for(lambda line: " 903 " in line)
    client.send("CAP END")
    client.wait_for(lambda line: " 001 " in line)
    client.close()


def cap_account_registration(server):
    """draft/account-registration=before-connect: REGISTER before CAP END, 900, then 001."""
    assert advertised_caps(server)["draft/account-registration"] == "before-connect"
    nick = new_nick()
    client = LineClient(server.host, server.port)
    client.send("CAP REQ :draft/account-registration", f"NICK {nick}",
                f"USER {nick} 0 * :{nick}", f"REGISTER * * :pw-{nick}-long")
    assert client.wait_for(lambda line: " REGISTER " in line).split()[2:4] == ["SUCCESS", nick]
    client.wait_for(lambda line: " 900 " in line)
    client.send(f"REGISTER * * :pw-{nick}-again")
    assert " ALREADY_AUTHENTICATED " in client.wait_for(lambda line: "FAIL" in line)
    client.send("CAP END")
    client.wait_for(lambda line: " 001 " in line)
    client.close()


CAPS = {
    "away-notify": cap_away_notify, "batch": cap_batch, "draft/chathistory": cap_chathistory,
    "draft/event-playback": cap_event_playback, "echo-message": cap_echo_message,
    "labeled-response": cap_labeled_response, "message-tags": cap_message_tags,
    "multi-prefix": cap_multi_prefix, "server-time": cap_server_time,
    "cap-notify": cap_cap_notify, "chghost": cap_chghost,
    "draft/no-implicit-names": cap_no_implicit_names, "extended-join": cap_extended_join,
    "extended-monitor": cap_extended_monitor, "invite-notify": cap_invite_notify,
    "setname": cap_setname, "standard-replies": cap_standard_replies,
    "userhost-in-names": cap_userhost_in_names, "draft/multiline": cap_multiline,
    "draft/read-marker": cap_read_marker,
    "sasl": cap_sasl, "draft/account-registration": cap_account_registration,
    "account-notify": cap_account_notify, "account-tag": cap_account_tag,
}


# ---------------------------------------------------------------------- tests


def test_every_advertised_token_has_a_check_and_every_check_is_advertised(server):
    assert sorted(advertised_tokens(server)) == sorted(TOKENS)


def test_every_offered_capability_has_a_check_and_every_check_is_offered(server):
    assert sorted(advertised_caps(server)) == sorted(CAPS)


@pytest.mark.parametrize("token", sorted(TOKENS))
def test_advertised_token_does_what_it_says(server, token):
    tokens = advertised_tokens(server)
    assert token in tokens, f"{token} has a check but is not advertised"
    TOKENS[token](server, tokens[token])


@pytest.mark.parametrize("cap", sorted(CAPS))
def test_offered_capability_does_what_it_says(server, cap):
    assert cap in advertised_caps(server), f"{cap} has a check but is not offered"
    CAPS[cap](server)
