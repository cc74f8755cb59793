"""
``python -m clients.ptk [HOST]``: the twistchat terminal client.

test-case-name: tests.test_ptk_app, tests.test_ptk_tmux

Parses the command line, starts the reactor thread (and, with ``--serve``,
the chat service inside it), opens a session over TCP or UDP and runs the
full-screen application until Ctrl-X or /quit.  Everything the user should
know (a port that is taken, a server that cannot be reached) is one line on
the screen, never a traceback.

``--sasl ACCOUNT`` logs in to an account (issue #14) on every connection, TCP
or UDP.  The password comes from ``--password-file`` (its first line), else
the environment variable :data:`PASSWORD_ENV`, else a prompt on the terminal
before the full-screen UI starts; never from the command line, where every
user of the machine could read it (``ps``, ``/proc/PID/cmdline``).  It is
never shown or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import os
import socket
import sys
from typing import Any

from twisted.logger import ILogObserver
from zope.interface import implementer

from clients.ptk.app import DEFAULT_SCROLLBACK, ChatState, build_app
from clients.ptk.reactor_thread import ReactorThread, UIBridge
from twistchat.client import SessionUnavailable, open_session
from twistchat.client.sasl import MAX_PASSWORD_BYTES, Credentials
from twistchat.client.tcp import DEFAULT_PORT
from twistchat.wire import sanitize_nick

# Where --sasl finds the password when no --password-file is given.
PASSWORD_ENV = "TWISTCHAT_PASSWORD"


class PasswordError(Exception):
    """No usable password for --sasl; ``str()`` is the one line to print."""


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1-65535)")
    return port


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``--help`` lists every option with its default)."""
    parser = argparse.ArgumentParser(
        prog="python -m clients.ptk",
        description="twistchat terminal client: IRC over TCP, or twistchat's UDP broadcast.")
    parser.add_argument("host", nargs="?", metavar="HOST",
                        help="server address (TCP default 127.0.0.1; UDP without HOST: find the "
                             "server by its beacon)")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="server port (default %(default)s)"
    )
    parser.add_argument("--nick", default=None,
                        help="your nick (default: the --sasl account, else your login name)")
    parser.add_argument("--room", default="#lobby", help="room to join (default %(default)s)")
    parser.add_argument(
        "--proto", choices=("tcp", "udp"), default="tcp", help="transport (default tcp)"
    )
    parser.add_argument(
        "--tls", action="store_true", help="TLS to the server, certificate verified"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="with --tls: do not verify the certificate (test servers only)",
    )
    parser.add_argument(
        "--ca",
        default=None,
        metavar="PEM",
        help="with --tls: trust the certificates in this file instead of the system's",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="also run the chat server in this process (on loopback, or HOST) and join it",
    )
    parser.add_argument(
        "--db",
        default=":memory:",
        metavar="FILE",
        help="with --serve: the server's history database (default: in memory, "
        "gone at exit; give a file to keep it)",
    )
    parser.add_argument(
        "--scrollback",
        type=int,
        default=DEFAULT_SCROLLBACK,
        help="lines kept per window (default %(default)s)",
    )
    parser.add_argument(
        "--log", default=None, metavar="FILE", help="write the Twisted log here (default: none)"
    )
    parser.add_argument(
        "--sasl",
        default=None,
        metavar="ACCOUNT",
        help="log in to ACCOUNT (SASL PLAIN) on every connection, TCP or UDP; also the "
        "default nick.  The password is the first line of --password-file, else "
        f"${PASSWORD_ENV}, else asked on the terminal; never give it on the command line",
    )
    parser.add_argument(
        "--password-file",
        default=None,
        metavar="PATH",
        help="with --sasl: read the password from the first line of PATH "
        "(keep it readable by you only)",
    )
    # Not an option: there only to refuse it (and so that argparse does not take
    # "--password SECRET" for an abbreviation of --password-file).
    parser.add_argument("--password", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.password is not None:
        parser.error("the password is never given on the command line (every user of this "
                     f"machine can read it there): use --password-file, ${PASSWORD_ENV} or "
                     "the prompt")
    if args.password_file and not args.sasl:
        parser.error("--password-file needs --sasl ACCOUNT")
    if args.insecure or args.ca:
        args.tls = True
    if args.room[:1] not in "#&":
        args.room = "#" + args.room
    return args


def read_password(account: str, path: str | None, environ=os.environ,
                  ask=getpass.getpass) -> str:
    """
    The password for ``account``: ``path``'s first line, else ``$TWISTCHAT_PASSWORD``,
    else ``ask`` (a terminal prompt).  Empty or over MAX_PASSWORD_BYTES: PasswordError.
    """
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise PasswordError(f"cannot read the password file {path}: "
                                f"{getattr(e, 'strerror', None) or e}") from None
        where = f"the first line of {path}"
    elif environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
        where = f"${PASSWORD_ENV}"
    else:
        try:
            password = ask(f"Password for {account}: ")
        except (EOFError, KeyboardInterrupt):
            raise PasswordError("no password given") from None
        where = "the password given"
    if not password:
        raise PasswordError(f"{where} is empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise PasswordError(f"{where} is longer than {MAX_PASSWORD_BYTES} bytes")
    return password


def cleartext_warning(proto: str, host: str | None, tls: bool) -> str | None:
    """
    The note shown when --sasl's password would cross a network unencrypted: plain
    TCP or UDP (which has no TLS) to a host that is not this machine's loopback.
    """
    if proto == "tcp" and tls:
        return None
    try:
        if host == "localhost" or (host and ipaddress.ip_address(host).is_loopback):
            return None
    except ValueError:
        pass  # a name: it may be anywhere
    how = "UDP has no encryption" if proto == "udp" else "no --tls"
    return f"Warning: {how}, so the login's password crosses the network readable."


def _setup_logging(path: str | None) -> None:
    """Send Twisted's log to ``path``, or nowhere: nothing may write over the screen."""
    from twisted.logger import globalLogBeginner, textFileLogObserver

    if path:
        observer: ILogObserver = textFileLogObserver(open(path, "a", encoding="utf-8"))
    else:
        observer = _Discard()
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)


@implementer(ILogObserver)
class _Discard:
    """A log observer that keeps nothing."""

    def __call__(self, event: dict[str, Any]) -> None:
        pass


def port_taken(host: str, port: int) -> bool:
    """Is something listening on TCP ``host:port`` (so ``--serve`` should join it)?"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As Twisted's listenTCP does: a socket in TIME_WAIT does not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def start_server(reactor, host: str, port: int, db: str = ":memory:"):
    """(Reactor thread) the chat service of ``twistd chat``, listening on ``host:port``."""
    from twistchat.service import Options, makeService

    options = Options()
    # History in memory unless asked: a client run in some directory must not leave a
    # database there.
    options.parseOptions(["--interface", host, "--port", str(port), "--db", db])
    server = makeService(options, reactor)
    server.startService()
    return server


def main(argv=None) -> int:
    """Run the client; the exit status."""
    args = parse_args(argv)
    credentials = None
    if args.sasl:
        # Before the full-screen UI: the prompt needs the plain terminal.
        try:
            credentials = Credentials(args.sasl, read_password(args.sasl, args.password_file))
        except PasswordError as e:
            print(f"twistchat: --sasl {args.sasl}: {e}", file=sys.stderr)
            return 2
        # Not handed on to anything this process starts.
        os.environ.pop(PASSWORD_ENV, None)
    nick = args.nick or sanitize_nick(args.sasl or getpass.getuser())
    _setup_logging(args.log)
    from twisted.internet import reactor

    net = ReactorThread(reactor)
    notes = []
    server = None
    host = args.host
    if args.serve:
        serve_host = host or "127.0.0.1"
        if port_taken(serve_host, args.port):
            notes.append(
                f"Port {args.port} on {serve_host} is taken: joining the server already there."
            )
        else:
            net.start()
            try:
                server = net.call_blocking(start_server, reactor, serve_host, args.port, args.db)
                notes.append(f"Serving chat on {serve_host}:{args.port}.")
            except Exception as e:  # a usage error, a port lost in a race
                notes.append(f"Cannot start the server ({e}): carrying on as a client.")
        host = serve_host
    if host is None and args.proto == "tcp":
        host = "127.0.0.1"

    if credentials is not None:
        warning = cleartext_warning(args.proto, host, args.tls)
        if warning:
            notes.append(warning)
    options: dict[str, Any] = {}
    if args.proto == "tcp":
        options = {"tls": args.tls, "insecure": args.insecure, "trust_root": args.ca}
    if credentials is not None:
        options["sasl"] = credentials
    try:
        session = open_session(
            args.proto, host, args.port, nick, [args.room], reactor=reactor, **options
        )
    except (SessionUnavailable, OSError) as e:
        print(f"twistchat: {e}", file=sys.stderr)
        if server is not None:
            net.stop(server.stopService)
        return 2

    label = f"{host or 'auto'}:{args.port}" + (" tls" if args.tls else "")
    state = ChatState(
        session, net.call, label=label, scrollback=args.scrollback, autojoin=[args.room]
    )
    for note in notes:
        state.announce(note)
    app = build_app(state)
    bridge = UIBridge(app)

    def start_session():  # reactor thread
        from twisted.internet import defer

        session.set_handler(lambda event: bridge.post(state.on_event, event))
        defer.maybeDeferred(session.start).addErrback(lambda failure: None)

    def pre_run():
        bridge.attach(asyncio.get_running_loop())
        net.start()
        net.call(start_session)

    reason = None
    try:
        reason = app.run(pre_run=pre_run)
    except KeyboardInterrupt:
        pass
    finally:

        def before():  # reactor thread: QUIT, then the server (if ours) stops
            from twisted.internet import defer

            d = defer.maybeDeferred(session.close, reason or state.quit_reason)
            if server is not None:
                d.addBoth(lambda _: server.stopService())
            return d

        net.stop(before, timeout=3.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
