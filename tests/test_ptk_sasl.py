"""
The terminal client's ``--sasl`` (issue #14): where the password comes from,
what the command line accepts, and the account in the status line.  No
network here; tests.test_ptk_sasl_tmux runs the real client against the real
server.
"""

from __future__ import annotations

import pytest

from clients.ptk.__main__ import (
    PASSWORD_ENV,
    PasswordError,
    cleartext_warning,
    main,
    parse_args,
    read_password,
)
from clients.ptk.app import ChatState
from twistchat.client import interfaces as I
from twistchat.client.sasl import MAX_PASSWORD_BYTES

SECRET = "correct horse battery"


def never_asked(prompt):
    raise AssertionError("the terminal was asked")


def test_the_password_file_comes_first_and_only_its_first_line(tmp_path):
    """--password-file: its first line, without the line end, even with $TWISTCHAT_PASSWORD."""
    path = tmp_path / "pw"
    path.write_text(SECRET + "\r\nsecond line\n")
    got = read_password("teacher", str(path), {PASSWORD_ENV: "from env"}, never_asked)
    assert got == SECRET


def test_the_environment_comes_next(tmp_path):
    """No file: $TWISTCHAT_PASSWORD, and the terminal is not asked."""
    assert read_password("teacher", None, {PASSWORD_ENV: SECRET}, never_asked) == SECRET


def test_else_the_terminal_is_asked_naming_the_account():
    """Neither: getpass, with a prompt that names the account (an empty variable is none)."""
    prompts = []

    def ask(prompt):
        prompts.append(prompt)
        return SECRET

    assert read_password("teacher", None, {PASSWORD_ENV: ""}, ask) == SECRET
    assert prompts == ["Password for teacher: "]


@pytest.mark.parametrize("password, why", [
    ("", "is empty"),
    ("é" * (MAX_PASSWORD_BYTES // 2 + 1), f"is longer than {MAX_PASSWORD_BYTES} bytes"),
])
def test_an_empty_or_too_long_password_is_refused(tmp_path, password, why):
    """Empty, or over 512 bytes (the server's limit, counted in UTF-8): a clear refusal."""
    path = tmp_path / "pw"
    path.write_text(password + "\n", encoding="utf-8")
    with pytest.raises(PasswordError) as caught:
        read_password("teacher", str(path), {}, never_asked)
    assert str(caught.value) == f"the first line of {path} {why}"
    assert password not in str(caught.value) or not password


def test_the_longest_password_allowed_is_512_bytes(tmp_path):
    """The edge: exactly MAX_PASSWORD_BYTES bytes is accepted."""
    path = tmp_path / "pw"
    path.write_text("p" * MAX_PASSWORD_BYTES)
    assert len(read_password("teacher", str(path), {}, never_asked)) == MAX_PASSWORD_BYTES


def test_an_unreadable_password_file_says_why(tmp_path):
    """A missing file: the path and the system's reason, no traceback."""
    path = tmp_path / "missing"
    with pytest.raises(PasswordError) as caught:
        read_password("teacher", str(path), {}, never_asked)
    assert str(caught.value) == f"cannot read the password file {path}: No such file or directory"


def test_no_answer_at_the_prompt_is_a_refusal():
    """Ctrl-D at the prompt: 'no password given'."""
    def eof(prompt):
        raise EOFError

    with pytest.raises(PasswordError, match="no password given"):
        read_password("teacher", None, {}, eof)


def test_main_exits_2_with_one_line_when_the_password_is_unusable(tmp_path, capsys):
    """An empty password file: exit status 2 and one line on stderr; nothing is started."""
    path = tmp_path / "pw"
    path.write_text("\n")
    assert main(["--sasl", "teacher", "--password-file", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"twistchat: --sasl teacher: the first line of {path} is empty\n")


def test_the_command_line_takes_no_password(capsys):
    """--sasl ACCOUNT and --password-file PATH; --password is refused, saying why; a file
    needs --sasl."""
    args = parse_args(["--sasl", "teacher", "--password-file", "/x"])
    assert (args.sasl, args.password_file) == ("teacher", "/x")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parse_args(["--sasl", "teacher", "--password", SECRET])
    err = capsys.readouterr().err
    assert "the password is never given on the command line" in err and SECRET not in err
    with pytest.raises(SystemExit):
        parse_args(["--password-file", "/x"])


def test_help_documents_sasl_and_where_the_password_comes_from(capsys):
    """--help names --sasl, --password-file and the environment variable."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--sasl ACCOUNT" in out and "--password-file PATH" in out
    assert f"${PASSWORD_ENV}" in out and "never give it on the command line" in out


class Session:
    transport_name = "tcp"
    nick = "teach"
    lag = None
    account = None


def test_the_status_line_shows_the_account_while_connected():
    """nick [account] once logged in; nothing while logged out or disconnected."""
    session = Session()
    state = ChatState(session, lambda fn, *a: fn(*a), label="x")
    state.on_event(I.ChatEvent(I.STATE, text=I.REGISTERED))
    status = "".join(text for _, text in state.status_fragments())
    assert "| teach | 1:*" in status
    session.account = "teacher"
    status = "".join(text for _, text in state.status_fragments())
    assert "| teach [teacher] | 1:*" in status
    state.on_event(I.ChatEvent(I.STATE, text=I.DISCONNECTED))
    assert "[teacher]" not in "".join(text for _, text in state.status_fragments())


def test_a_password_that_would_cross_a_network_unencrypted_is_warned_of():
    """Plain TCP or UDP beyond loopback: one warning; TLS or loopback: none."""
    assert cleartext_warning("tcp", "127.0.0.1", False) is None
    assert cleartext_warning("tcp", "::1", False) is None
    assert cleartext_warning("tcp", "localhost", False) is None
    assert cleartext_warning("tcp", "chat.example.org", True) is None
    assert cleartext_warning("tcp", "chat.example.org", False) == (
        "Warning: no --tls, so the login's password crosses the network readable.")
    assert cleartext_warning("udp", "chat.example.org", False) == (
        "Warning: UDP has no encryption, so the login's password crosses the network readable.")
    assert cleartext_warning("udp", None, False) is not None  # found by beacon: anywhere
