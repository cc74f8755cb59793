"""
End to end: IRCv3 capabilities of issue #13 through the real ``twistd -n chat`` on loopback.

Two raw-socket clients negotiate CAP LS 302 and several capabilities, then
exercise extended-join, userhost-in-names, MONITOR and SETNAME over real sockets.
"""

from tests.serverproc import LineClient

CAPS = "extended-join userhost-in-names setname extended-monitor away-notify"


def negotiate(server, nick: str) -> LineClient:
    """CAP LS 302, REQ the capabilities, register; the ACK and 001 are read."""
    client = LineClient(server.host, server.port)
    client.send("CAP LS 302")
    offered: list[str] = []
    while True:  # CAP LS 302 may take several lines: "LS * :..." until the last "LS :..."
        line = client.wait_for(lambda line: " CAP * LS " in line)
        offered += line.split(":", 2)[-1].split()
        if " LS * " not in line:
            break
    for cap in CAPS.split() + ["cap-notify"]:
        assert cap in offered, (cap, offered)
    client.send(f"CAP REQ :{CAPS}", f"NICK {nick}", f"USER {nick} 0 * :{nick} Real")
    assert client.wait_for(lambda line: " CAP " in line).endswith(f"ACK :{CAPS}")
    client.send("CAP END")
    client.wait_for(lambda line: " 001 " in line)
    return client


def test_two_clients_negotiate_caps_through_the_real_server(chat_server):
    """extended-join, userhost-in-names, MONITOR and SETNAME between two real clients."""
    server = chat_server()
    alice = negotiate(server, "alice")
    alice.send("MONITOR + bob")
    assert alice.wait_for(lambda line: " 731 " in line).endswith(" 731 alice :bob")
    bob = negotiate(server, "bob")
    online = alice.wait_for(lambda line: " 730 " in line)
    assert online.endswith(" 730 alice :bob!bob@127.0.0.1")
    alice.send("JOIN #caps")
    alice.wait_for(lambda line: " 366 " in line)
    bob.send("JOIN #caps")
    names = bob.wait_for(lambda line: " 353 " in line)
    assert "@alice!alice@127.0.0.1" in names.split(":", 2)[-1].split()
    joined = alice.wait_for(lambda line: " JOIN " in line and line.startswith(":bob!"))
    assert joined == ":bob!bob@127.0.0.1 JOIN #caps * :bob Real"
    bob.send("SETNAME :Robert Tables")
    assert bob.wait_for(lambda line: " SETNAME " in line).endswith("SETNAME :Robert Tables")
    assert alice.wait_for(lambda line: " SETNAME " in line) == \
        ":bob!bob@127.0.0.1 SETNAME :Robert Tables"
    bob.send("SETNAME :" + "x" * 200)
    assert " FAIL SETNAME INVALID_REALNAME " in bob.wait_for(lambda line: "FAIL" in line)
    bob.send("QUIT :bye")
    assert alice.wait_for(lambda line: " 731 " in line).endswith(" 731 alice :bob")
    alice.close()
    bob.close()
