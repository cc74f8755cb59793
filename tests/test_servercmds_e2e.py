"""
Server commands over real sockets: WHOWAS, INFO, LINKS, HELP/HELPOP, INVITE's list, KNOCK (#13).

One real ``twistd -n chat`` for the module (tests.serverproc); each test reads
the lines as the server writes them, ':' and all.
"""

from __future__ import annotations

import pytest

from tests.probe import Probe, codes, one
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = ServerProcess(tmp_path_factory.mktemp("servercmds"), "--db=:memory:",
                            "--server-name=chat.test").start()
    yield started
    started.stop()


def raw(probe: Probe, code: str) -> list[str]:
    """The lines of numeric ``code`` as ``probe`` read them off the socket."""
    return [line for line in probe.client.seen if line.split()[1:2] == [code]]


def test_whowas_shows_a_user_who_quit(server):
    """QUIT, then WHOWAS: 314 (real name after ':'), 312, 369; unknown 406 + 369; none 431."""
    gone = Probe(server, nick="leaver")
    gone.client.send("QUIT :bye")
    gone.client.wait_for(lambda line: line.startswith("ERROR"))
    asker = Probe(server)
    got = asker.ask("WHOWAS leaver")
    assert codes(got) == ["314", "312", "369"]
    assert raw(asker, "314") == [
        f":chat.test 314 {asker.nick} leaver leaver 127.0.0.1 * :leaver Real"]
    assert got[1].params[1:3] == ("leaver", "chat.test")
    assert codes(asker.ask("WHOWAS nobody")) == ["406", "369"]
    assert raw(asker, "406") == [f":chat.test 406 {asker.nick} nobody :There was no such nickname"]
    assert codes(asker.ask("WHOWAS")) == ["431"]


def test_whowas_shows_the_old_nick_after_a_nick_change(server):
    """NICK old -> new: WHOWAS old answers with who had it."""
    mover = Probe(server, nick="oldnick")
    mover.ask("NICK newnick")
    assert one(Probe(server).ask("WHOWAS oldnick 1"), "314").params[1] == "oldnick"


def test_info_is_371_lines_then_374(server):
    """INFO: 371 lines of text, then 374 End of INFO list."""
    probe = Probe(server)
    got = probe.ask("INFO")
    assert codes(got)[-1] == "374" and set(codes(got)[:-1]) == {"371"}
    assert raw(probe, "371")[0].startswith(f":chat.test 371 {probe.nick} :twistchat-")
    assert raw(probe, "374") == [f":chat.test 374 {probe.nick} :End of INFO list"]


def test_links_lists_this_one_server(server):
    """LINKS: 364 chat.test chat.test :0 info, then 365; a mask that does not match: 365."""
    probe = Probe(server)
    assert codes(probe.ask("LINKS")) == ["364", "365"]
    assert raw(probe, "364") == [f":chat.test 364 {probe.nick} chat.test chat.test "
                                 ":0 twistchat chat server"]
    assert raw(probe, "365") == [f":chat.test 365 {probe.nick} * :End of /LINKS list"]
    assert codes(probe.ask("LINKS *.elsewhere")) == ["365"]


@pytest.mark.parametrize("verb", ["HELP", "HELPOP"])
def test_help_answers_704_705_706_or_524(server, verb):
    """HELP lists the commands; HELP join describes JOIN; an unknown subject gets 524."""
    probe = Probe(server)
    listing = probe.ask(verb)
    assert codes(listing)[0] == "704" and codes(listing)[-1] == "706"
    assert "WHOWAS" in " ".join(m.params[-1] for m in listing)
    got = probe.ask(f"{verb} join")
    assert codes(got) == ["704", "705", "705", "706"]
    assert f":chat.test 705 {probe.nick} JOIN :" in probe.client.seen  # the empty first 705
    assert [m.params for m in probe.ask(f"{verb} nosuch")] == [
        (probe.nick, "NOSUCH", "No help available on this topic")]


def test_invite_alone_lists_the_rooms_one_is_invited_to(server):
    """INVITE with no parameter: 336 per invitation (the room as a value), then 337."""
    op, guest = Probe(server), Probe(server)
    op.join("#invlist")
    op.ask("MODE #invlist +i")
    assert codes(guest.ask("INVITE")) == ["337"]
    op.ask(f"INVITE {guest.nick} #invlist")
    assert codes(guest.ask()) == ["INVITE"]
    assert codes(guest.ask("INVITE")) == ["336", "337"]
    assert raw(guest, "336") == [f":chat.test 336 {guest.nick} #invlist"]
    assert raw(guest, "337")[-1] == f":chat.test 337 {guest.nick} :End of /INVITE list"
    assert codes(guest.ask(f"INVITE {op.nick}")) == ["461"]


def test_knock_reaches_the_operators_once_a_minute(server):
    """KNOCK a +i room: 710 to the op, 711 back; again at once: 712; open room 713; member 714."""
    op, knocker = Probe(server), Probe(server)
    op.join("#knock")
    op.join("#open")
    op.ask("MODE #knock +i")
    assert codes(knocker.ask("KNOCK #knock :hello")) == ["711"]
    assert codes(op.ask()) == ["710"]
    assert raw(op, "710") == [f":chat.test 710 {op.nick} #knock {knocker.nick}!{knocker.nick}"
                              "@127.0.0.1 :has asked for an invite: hello"]
    again = knocker.ask("KNOCK #knock")
    assert codes(again) == ["712"] and "60 seconds" in again[0].params[-1]
    assert codes(op.ask()) == []
    assert codes(knocker.ask("KNOCK #open")) == ["713"]
    assert codes(op.ask("KNOCK #knock")) == ["714"]
    assert codes(knocker.ask("KNOCK #nowhere")) == ["403"]


def test_whowas_per_nick_flag_bounds_the_history(chat_server):
    """``--whowas-per-nick=1``: two users of one nick quit; WHOWAS shows the later only."""
    small = chat_server("--db=:memory:", "--whowas-per-nick=1")
    for realname in ("first", "second"):
        gone = Probe(small, nick="twice")
        gone.client.send(f"SETNAME :{realname}", "QUIT")
        gone.client.wait_for(lambda line: line.startswith("ERROR"))
    got = Probe(small).ask("WHOWAS twice")
    assert [m.params[-1] for m in got if m.command == "314"] == ["second"]
