"""
Reserved nicks through a real ``twistd -n chat --nick-grace=1`` (issue #14).

The account is made over the wire with ``REGISTER`` (draft/account-registration),
as the issue asks of the tests' account helpers.  The rules themselves are
tested without a process in ``tests.test_account_rules``.
"""

from __future__ import annotations

import time

import pytest

from tests.probe import Probe, codes, new_nick
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = ServerProcess(tmp_path_factory.mktemp("reserved"), "--db=:memory:",
                            "--nick-grace=1").start()
    yield started
    started.stop()


def test_a_squatter_is_told_then_renamed_after_the_grace(server):
    """The owner registers and leaves; another client on the nick: NOTICE, then NICK Guest<n>."""
    owner = Probe(server, caps="draft/account-registration", nick="Own" + new_nick())
    assert "900" in codes(owner.ask("REGISTER * * correct-horse-battery"))
    nick = owner.nick
    owner.client.send("QUIT :bye")
    owner.client.wait_for(lambda text: text.startswith("ERROR"))  # the nick is free now
    owner.close()
    squatter = Probe(server, nick=nick)
    told = [m for m in squatter.welcome
            if m.command == "NOTICE" and m.source == "NickServ!NickServ@services."]
    assert len(told) == 1
    assert told[0].params[1] == ("This nickname is registered. Identify within 1 seconds "
                                "or it will be changed")
    start = time.monotonic()
    line = squatter.client.wait_for(lambda text: f":{nick}!" in text and " NICK " in text,
                                    timeout=5)
    assert line.split(" NICK ")[1].lstrip(":").startswith("Guest")
    # At most the grace plus one check interval late (and some scheduling slack).
    assert time.monotonic() - start < 3.0
