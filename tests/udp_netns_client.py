"""
A UDP chat client run inside a network namespace by tests.test_udp_e2e (not a test module).

    python -m tests.udp_netns_client HOST PORT NICK ROOM SAY WANT TIMEOUT

Registers, joins ROOM, says SAY once it sees WANT members' JOINs, waits until
it has seen WANT messages (or TIMEOUT seconds), prints its transcript as JSON
lines (seq, kind, nick, text) and quits.  Bounded in time by TIMEOUT.
"""

import json
import sys

from twisted.internet import reactor, task

from twistchat.client import interfaces as I
from twistchat.client.udp import UDPChatSession


def main() -> None:
    host, port, nick, room, say, want, timeout = sys.argv[1:8]
    port, want, timeout = int(port), int(want), float(timeout)
    events = []
    session = UDPChatSession(host, port, nick)
    session.set_handler(events.append)
    said = []
    done = []

    def check():
        joins = [e for e in events if e.kind == I.JOIN and e.room == room]
        if not said and len(joins) >= 1 and sum(1 for e in events if e.kind == I.NAMES
                                                 and len(e.names) >= want):
            said.append(True)
            session.say(room, say)
        if sum(1 for e in events if e.kind == I.MESSAGE and e.room == room) >= want:
            finish()
        else:
            if not said:
                session.names(room)

    def finish():
        if done:
            return
        done.append(True)
        if loop.running:
            loop.stop()
        for e in events:
            if e.room == room and e.seq is not None:
                print(json.dumps([e.seq, e.kind, e.nick, e.text]), flush=True)
        session.close().addBoth(lambda _: reactor.stop())

    loop = task.LoopingCall(check)
    session.start().addCallback(lambda _: (session.join(room), loop.start(0.2)))
    reactor.callLater(timeout, finish)
    reactor.run()


if __name__ == "__main__":
    main()
