"""
End to end: the real ``twistd -n chat`` on loopback, real sockets, real clients.
"""

import shutil
import socket
import subprocess
import time
import zipfile

import pytest

from tests.serverproc import LineClient, build_wheel, source_env, twistd_path


def test_twistd_lists_the_chat_plugin():
    """``twistd --help`` names the chat plugin."""
    out = subprocess.run([twistd_path(), "--help"], capture_output=True, text=True,
                         env=source_env(), timeout=60, cwd="/")
    assert out.returncode == 0
    assert any(line.split()[:1] == ["chat"] for line in out.stdout.splitlines())


def test_chat_help_documents_every_option_with_default():
    """``twistd chat --help`` lists each option of issue #3 with its default."""
    out = subprocess.run([twistd_path(), "chat", "--help"], capture_output=True, text=True,
                         env=source_env(), timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for flag in ("--proto", "--interface", "--port", "--listen", "--server-name", "--motd",
                 "--password", "--max-line", "--flood-rate", "--sendq", "--registration-timeout",
                 "--ping-timeout", "--max-per-ip"):
        assert flag in text, flag
    assert "[default: 127.0.0.1]" in text and "[default: 6667]" in text


def test_bad_option_fails_with_one_clear_line():
    """A bad --proto value: non-zero exit, the line naming the option and a hint, no --help."""
    out = subprocess.run([twistd_path(), "-n", "chat", "--proto=carrier-pigeon"],
                         capture_output=True, text=True, env=source_env(), timeout=60, cwd="/")
    assert out.returncode != 0
    assert out.stdout == ""
    assert out.stderr.splitlines() == [
        "twistd chat: --proto must be tcp, udp or both, not 'carrier-pigeon'",
        "Run 'twistd -n chat --help' for every option and its default."]


def test_two_clients_chat_through_the_real_server(chat_server):
    """Two raw-socket IRC clients register, join and exchange lines through twistd."""
    server = chat_server()
    alice = LineClient(server.host, server.port).register("alice")
    bob = LineClient(server.host, server.port).register("bob")
    alice.join("#lobby")
    bob.join("#lobby")
    alice.wait_for(lambda line: "JOIN #lobby" in line and line.startswith(":bob!"))
    bob.send("PRIVMSG #lobby :hello alice")
    got = alice.wait_for(lambda line: "PRIVMSG" in line)
    assert got == ":bob!bob@127.0.0.1 PRIVMSG #lobby :hello alice"
    alice.send("PRIVMSG bob :hi in private")
    assert bob.wait_for(lambda line: "PRIVMSG" in line).endswith("PRIVMSG bob :hi in private")
    alice.close()
    bob.close()


def test_bad_input_over_the_wire_keeps_connection(chat_server):
    """Over-long lines (417) and invalid UTF-8 (FAIL) over a real socket; the client goes on."""
    server = chat_server()
    alice = LineClient(server.host, server.port).register("alice")
    alice.sock.sendall(b"PRIVMSG x :" + b"z" * 9000 + b"\r\n")
    alice.wait_for(lambda line: " 417 " in line)
    alice.sock.sendall(b"PRIVMSG x :\xff\xfe\r\n")
    alice.wait_for(lambda line: "INVALID_UTF8" in line)
    alice.send("PING alive")
    alice.wait_for(lambda line: line.startswith(":") and "PONG" in line and "alive" in line)
    alice.close()


def test_extra_listener_from_endpoint_description(chat_server, tmp_path):
    """--listen adds a listener: a client on the second port talks to one on the first."""
    from tests.serverproc import free_port

    second = free_port()
    server = chat_server(f"--listen=tcp:{second}:interface=127.0.0.1")
    alice = LineClient(server.host, server.port).register("alice")
    bob = LineClient("127.0.0.1", second).register("bob")
    alice.join("#r")
    bob.send("JOIN #r", "PRIVMSG #r :via the second port")
    assert alice.wait_for(lambda line: "PRIVMSG" in line).endswith(":via the second port")


def test_password_and_motd_from_flags(chat_server, tmp_path):
    """--password is required with PASS; --motd FILE is shown line by line."""
    motd = tmp_path / "motd.txt"
    motd.write_text("Welcome to class.\n")
    server = chat_server("--password=s3cret", f"--motd={motd}")
    wrong = LineClient(server.host, server.port)
    wrong.send("PASS nope", "NICK a", "USER a 0 * :a")
    assert " 464 " in wrong.wait_for(lambda line: " 464 " in line)
    right = LineClient(server.host, server.port)
    right.send("PASS s3cret", "NICK b", "USER b 0 * :b")
    assert right.wait_for(lambda line: " 372 " in line).endswith(":- Welcome to class.")


def test_slow_reader_is_dropped_and_nobody_else_waits(chat_server):
    """
    A member that never reads is dropped with SendQ exceeded; the other members
    get every line, in order.
    """
    server = chat_server("--sendq=131072", "--flood-burst=100000", "--flood-rate=100000",
                         "--flood-queue=100000")
    talker = LineClient(server.host, server.port).register("talker")
    reader = LineClient(server.host, server.port).register("reader")
    for c in (talker, reader):
        c.join("#r")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((server.host, server.port))
    slow.sendall(b"NICK slow\r\nUSER s 0 * :s\r\nJOIN #r\r\n")
    reader.wait_for(lambda line: line.startswith(":slow!") and "JOIN" in line)
    text = "x" * 400
    sent = 0
    dropped = False
    # The kernel buffers up to 4 MiB (tcp_wmem) before our SendQ fills: at most 12 MB here.
    for _batch in range(150):
        talker.send(*[f"PRIVMSG #r :{sent + i} {text}" for i in range(200)])
        for i in range(200):
            line = reader.wait_for(lambda line: "PRIVMSG" in line or "QUIT" in line)
            while "QUIT" in line:
                assert line.startswith(":slow!") and "SendQ exceeded" in line
                dropped = True
                line = reader.wait_for(lambda line: "PRIVMSG" in line)
            assert line.split(" ", 4)[3] == f":{sent + i}"
        sent += 200
        if dropped:
            break
    assert dropped, "the slow reader was never dropped"
    slow.close()


@pytest.mark.skipif(shutil.which("weechat-headless") is None,
                    reason="weechat-headless is not installed (Debian package weechat-headless)")
def test_weechat_talks_to_the_server(chat_server, tmp_path):
    """A real WeeChat joins #lobby: its line reaches us and ours shows in its log."""
    server = chat_server()
    observer = LineClient(server.host, server.port).register("observer")
    observer.join("#lobby")
    home = tmp_path / "weechat"
    home.mkdir()
    commands = ";".join([
        "/set irc.server_default.nicks wbot",
        f"/server add t {server.host}/{server.port}",
        "/set irc.server.t.autojoin #lobby",
        "/connect t",
        "/wait 2 /msg -server t #lobby hello from weechat",
        "/wait 12 /quit",
    ])
    weechat = subprocess.Popen(["weechat-headless", "--dir", str(home), "-r", commands],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        observer.wait_for(lambda line: line.startswith(":wbot!") and "JOIN #lobby" in line,
                          timeout=20)
        observer.send("PRIVMSG #lobby :hello weechat, from observer")
        line = observer.wait_for(lambda line: line.startswith(":wbot!") and "PRIVMSG" in line,
                                 timeout=20)
        assert line.endswith("PRIVMSG #lobby :hello from weechat")
        deadline = time.monotonic() + 15
        shown = ""
        while time.monotonic() < deadline and "hello weechat, from observer" not in shown:
            time.sleep(0.2)
            shown = "".join(p.read_text(errors="replace")
                            for p in home.rglob("*lobby*.weechatlog"))
        assert "observer\thello weechat, from observer" in shown
    finally:
        weechat.terminate()
        weechat.wait(10)


needs_irssi = pytest.mark.skipif(
    shutil.which("irssi") is None or shutil.which("tmux") is None,
    reason="irssi and tmux are needed (Debian packages irssi, tmux)")


class IrssiPane:
    """A real irssi in a detached tmux pane: keys in, the screen out."""

    def __init__(self, server, home, nick: str) -> None:
        home.mkdir()
        self.session = f"irssi-{nick}-{server.port}"
        self.tmux = ["tmux", "-S", str(home / "tmux.sock")]
        subprocess.run(self.tmux + ["new-session", "-d", "-s", self.session, "-x", "120",
                                    "-y", "30", f"irssi --home={home} -n {nick} "
                                    f"-c {server.host} -p {server.port}"],
                       check=True, timeout=20)

    def type(self, text: str) -> None:
        subprocess.run(self.tmux + ["send-keys", "-t", self.session, text, "Enter"],
                       check=True, timeout=10)

    def screen(self) -> str:
        return subprocess.run(self.tmux + ["capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True, timeout=10).stdout

    def wait_for_screen(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        screen = self.screen()
        while time.monotonic() < deadline and text not in screen:
            time.sleep(0.2)
            screen = self.screen()
        return screen

    def close(self) -> None:
        subprocess.run(self.tmux + ["kill-server"], timeout=10)


def wait_until_online(client: LineClient, nick: str) -> None:
    """Poll ISON until ``nick`` has registered."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client.send(f"ISON {nick}")
        if client.wait_for(lambda line: " 303 " in line).endswith(f":{nick}"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{nick} never registered")


@pytest.mark.skipif(shutil.which("weechat-headless") is None,
                    reason="weechat-headless is not installed (Debian package weechat-headless)")
def test_weechat_operator_bans_a_user(chat_server, tmp_path):
    """WeeChat's ``/ban`` builds its mask from our WHO replies; the ban then holds."""
    server = chat_server()
    victim = LineClient(server.host, server.port).register("victim")
    home = tmp_path / "weechat"
    home.mkdir()
    commands = ";".join([
        "/set irc.server_default.nicks wop",
        f"/server add t {server.host}/{server.port}",
        "/set irc.server.t.autojoin #class",
        "/connect t",
        "/wait 6 /command -buffer irc.t.#class irc /ban victim",
        "/wait 20 /quit",
    ])
    weechat = subprocess.Popen(["weechat-headless", "--dir", str(home), "-r", commands],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # WeeChat first in: it is the room's operator
            victim.send("NAMES #class")
            if victim.wait_for(lambda line: " 353 " in line or " 366 " in line) \
                    .endswith(":@wop"):
                break
            time.sleep(0.2)
        victim.join("#class")
        ban = victim.wait_for(lambda line: " MODE #class +b " in line, timeout=20)
        assert ban.startswith(":wop!")
        victim.send("PRIVMSG #class :may I still talk?")
        assert "Cannot send to channel" in victim.wait_for(lambda line: " 404 " in line)
        victim.send("PART #class", "JOIN #class")
        assert "Cannot join channel (+b)" in victim.wait_for(lambda line: " 474 " in line)
    finally:
        weechat.terminate()
        weechat.wait(10)


@needs_irssi
def test_irssi_talks_to_the_server(chat_server, tmp_path):
    """A real irssi in a tmux pane joins #lobby and exchanges a line with us."""
    server = chat_server()
    observer = LineClient(server.host, server.port).register("observer")
    observer.join("#lobby")
    irssi = IrssiPane(server, tmp_path / "irssi", "ibot")
    try:
        wait_until_online(observer, "ibot")
        irssi.type("/join #lobby")
        observer.wait_for(lambda line: line.startswith(":ibot!") and "JOIN #lobby" in line,
                          timeout=20)
        irssi.type("hello from irssi")
        line = observer.wait_for(lambda line: line.startswith(":ibot!") and "PRIVMSG" in line,
                                 timeout=20)
        assert line.endswith("PRIVMSG #lobby :hello from irssi")
        observer.send("PRIVMSG #lobby :hello irssi")
        screen = irssi.wait_for_screen("hello irssi")
        assert "observer" in screen and "hello irssi" in screen, screen
    finally:
        irssi.close()


@needs_irssi
def test_irssi_operator_bans_a_user(chat_server, tmp_path):
    """
    irssi's own ``/ban`` and ``/kick`` keep a user out: the mask irssi builds from
    our WHO replies matches, the banned user can no longer speak (404) nor come
    back (474), irssi shows the ban list it reads back (367/368), and its
    ``/unban`` lets the user back in.
    """
    server = chat_server()
    victim = LineClient(server.host, server.port).register("victim")
    irssi = IrssiPane(server, tmp_path / "irssi", "teacher")
    try:
        wait_until_online(victim, "teacher")
        irssi.type("/join #class")  # first in: irssi's user is the room's operator
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            victim.send("NAMES #class")
            if victim.wait_for(lambda line: " 353 " in line or " 366 " in line) \
                    .endswith(":@teacher"):
                break
            time.sleep(0.2)
        victim.join("#class")
        irssi.wait_for_screen("victim")
        irssi.type("/ban victim")
        ban = victim.wait_for(lambda line: " MODE #class +b " in line, timeout=20)
        assert ban.startswith(":teacher!")
        victim.send("PRIVMSG #class :may I still talk?")
        refused = victim.wait_for(lambda line: " 404 " in line)
        assert "Cannot send to channel" in refused
        irssi.type("/kick victim out")
        victim.wait_for(lambda line: " KICK #class victim " in line, timeout=20)
        victim.send("JOIN #class")
        assert "Cannot join channel (+b)" in victim.wait_for(lambda line: " 474 " in line)
        irssi.type("/ban")  # irssi lists the room's bans from 367/368
        mask = ban.split(" +b ")[1]
        screen = irssi.wait_for_screen("End of channel ban list")
        assert f"#class: ban {mask} [by teacher!" in screen, screen
        irssi.type("/unban *")  # and the unban lets the user back in
        assert f"[-b {mask}] by teacher" in irssi.wait_for_screen(f"[-b {mask}]")
        victim.send("JOIN #class")
        assert victim.wait_for(lambda line: " JOIN " in line or " 474 " in line) \
            .startswith(":victim!")
    finally:
        irssi.close()


def test_wheel_installs_plugin_without_package_init(tmp_path):
    """``pip install .`` ships twistchat, clients and twisted/plugins/chat.py.

    And no plugins __init__.
    """
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/chat.py" in names
    assert "twisted/plugins/__init__.py" not in names and "twisted/__init__.py" not in names
    # Every package of the server and the clients, not only the top ones (setup.cfg lists them).
    for module in ("twistchat/wire.py", "twistchat/core/registry.py",
                   "twistchat/frontends/irc.py", "twistchat/frontends/udp.py",
                   "twistchat/store/sqlite.py", "twistchat/client/tcp.py",
                   "clients/__init__.py", "clients/ptk/app.py"):
        assert module in names, f"{module} is not in the wheel"
