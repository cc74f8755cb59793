"""
Logs that fit the journal, and listeners that say where they listen (or why they cannot).

test-case-name: tests.test_ops

Two things a daemon owes whoever runs it (issue #6):

- **One event per line.**  :func:`journal_observer` is a log observer factory
  for ``twistd --logger=twistchat.logging_setup.journal_observer``: each event
  is one line; under systemd (``$JOURNAL_STREAM`` set) it starts with the
  syslog priority, ``<6>`` for info, which journald turns into the entry's
  priority (``SyslogLevelPrefix=`` in systemd.exec(5)), and carries no
  timestamp, since journald stamps entries itself.  A failure's traceback is
  folded into the same line: the exception and the innermost frames.
- **Where it listens, or one clear line why not.**  :class:`ListenerService`
  logs ``listening on DESCRIPTION (ADDRESS)`` once the port is open; when the
  port is taken or not permitted it logs ``cannot listen on DESCRIPTION: REASON``
  and exits with status 1 instead of a traceback.  twistd opens ports in
  ``privilegedStartService`` before the reactor runs, so the exit happens
  before anything else started.

And ``ssl:`` listeners offer what Mozilla's "intermediate" profile offers
(issue #12, item 9): TLS 1.2 and 1.3 only, and on TLS 1.2 only suites with
forward secrecy and AEAD (:data:`TLS12_CIPHERS`).  ``tcp:``, ``systemd:`` and
any other description go to Twisted's ``serverFromString`` untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from dataclasses import dataclass
from typing import NoReturn

from twisted.application.internet import StreamServerEndpointService, UDPServer
from twisted.internet import endpoints
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, formatTime
from zope.interface import implementer

__all__ = ["journal_observer", "ListenerService", "UDPListenerService", "format_line"]

# Module level: a Logger class attribute would take the class's name as its namespace.
_log = Logger(namespace="twistchat.listen")

# syslog(3) priorities, as journald reads them from a "<N>" prefix.
_PRIORITY = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}

_FRAMES = 3  # innermost frames kept when a failure is folded into one line

# TLS 1.2 suites of Mozilla's "intermediate" configuration (Server Side TLS 5.7,
# https://wiki.mozilla.org/Security/Server_Side_TLS, ssl-config.mozilla.org), in its
# order: ECDHE or DHE key exchange (forward secrecy), AES-GCM or ChaCha20-Poly1305
# (no CBC, no SHA-1 MAC).  Twisted's default also offers AES*-SHA, AES*-GCM with
# RSA key exchange and CBC suites.  The DHE suites are only offered when the
# description names dhParameters= (a file from `openssl dhparam`); OpenSSL picks
# the ECDHE curves.  TLS 1.3 suites are OpenSSL's (the cipher list does not touch
# them); all of TLS 1.3's are AEAD with forward secrecy.
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])

_NO_OPENSSL = ("TLS needs pyOpenSSL and service_identity, which twistchat installs; "
               "reinstall it (pip install twistchat) or pip install pyOpenSSL service_identity")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _failure_text(failure) -> str:
    """``ExcType: message (at file:line in func < ...)``: a traceback on one line."""
    text = f"{failure.type.__name__}: {_one_line(str(failure.value))}"
    frames = failure.frames[-_FRAMES:] if failure.frames else []
    if frames:
        where = " < ".join(f"{os.path.basename(filename)}:{line} {func}"
                           for func, filename, line, _, _ in reversed(frames))
        text += f" (at {where})"
    return text


def format_line(event: dict, journal: bool) -> str:
    """One event as one line (without its newline); ``journal`` picks the systemd form."""
    text = formatEvent(event) or ""
    failure = event.get("log_failure")
    if failure is not None:
        try:
            text = f"{text}: {_failure_text(failure)}" if text else _failure_text(failure)
        except Exception:  # a broken failure must not break logging
            text = f"{text}: {_one_line(traceback.format_exc())}"
    text = _one_line(text)
    level = event.get("log_level", LogLevel.info)
    namespace = event.get("log_namespace", "-")
    if journal:
        return f"<{_PRIORITY.get(level, 6)}>[{namespace}] {text}"
    stamp = formatTime(event.get("log_time"))
    return f"{stamp} [{namespace}#{level.name}] {text}"


def journal_observer(stream=None):
    """
    An ILogObserver writing one line per event to stdout (the journal, under systemd).

    For ``twistd --logger=twistchat.logging_setup.journal_observer``.  twistd
    calls this before it redirects ``sys.stdout`` into the log, so the
    observer holds the real stdout.
    """
    out = stream if stream is not None else sys.stdout
    journal = "JOURNAL_STREAM" in os.environ

    @implementer(ILogObserver)
    def observe(event: dict) -> None:
        try:
            out.write(format_line(event, journal) + "\n")
            out.flush()
        except (OSError, ValueError):
            pass  # stdout gone (journald restarted): drop the line, keep serving

    return observe


@implementer(IStreamServerEndpoint)
class _LoggedEndpoint:
    """An endpoint that logs the address it listens on."""

    def __init__(self, endpoint, description: str) -> None:
        self.endpoint = endpoint
        self.description = description

    def listen(self, factory):
        def listening(port):
            _log.info("listening on {description} ({address})",
                           description=self.description, address=_address(port.getHost()))
            return port

        return self.endpoint.listen(factory).addCallback(listening)


def _split_description(description: str) -> tuple[list[str], dict[str, str]]:
    """
    ``ssl:6697:privateKey=k.pem`` as ``(["ssl", "6697"], {"privateKey": "k.pem"})``.

    The grammar of Twisted's endpoint descriptions (``serverFromString``):
    fields split at ``:``, a field with ``=`` is a keyword, and a backslash
    takes the next character literally (``\\:`` in a Windows path or an IPv6
    address).
    """
    fields: list[list[str]] = [[""]]
    chars = iter(description)
    for char in chars:
        if char == "\\":
            fields[-1][-1] += next(chars, "")
        elif char == ":":
            fields.append([""])
        elif char == "=" and len(fields[-1]) == 1:
            fields[-1].append("")
        else:
            fields[-1][-1] += char
    args = [field[0] for field in fields if len(field) == 1]
    return args, {field[0]: field[1] for field in fields if len(field) == 2}


def _ssl_endpoint(reactor, description: str):
    """
    The ``ssl:`` listener of ``description``, with TLS 1.2+ and :data:`TLS12_CIPHERS`.

    The keywords are those of Twisted's ``ssl:`` (privateKey, certKey,
    extraCertChain, dhParameters, interface, backlog) but ``sslmethod``, which
    would undo the minimum version.  The files are read as Twisted reads them.
    """
    try:
        from twisted.internet import ssl  # imports OpenSSL (pyOpenSSL)
    except ImportError as e:
        raise ValueError(f"{_NO_OPENSSL} ({e})") from None
    from twisted.python.filepath import FilePath

    args, kw = _split_description(description)
    if len(args) == 1 and "port" in kw:  # ssl:port=6697:... is Twisted's too
        args.append(kw.pop("port"))
    if len(args) != 2:
        raise ValueError("an ssl: description is ssl:PORT:privateKey=KEY:certKey=CERT[:...]")
    port = int(args[1])
    private_key = kw.pop("privateKey", "server.pem")
    cert_key = kw.pop("certKey", private_key)
    interface = kw.pop("interface", "")
    backlog = int(kw.pop("backlog", "50"))
    chain_file, dh_file = kw.pop("extraCertChain", None), kw.pop("dhParameters", None)
    if "sslmethod" in kw:
        raise ValueError("sslmethod= is not supported: twistchat offers TLS 1.2 and 1.3")
    if kw:
        raise ValueError(f"unknown ssl: option(s): {', '.join(sorted(kw))}")

    pair = ssl.PrivateCertificate.loadPEM(
        FilePath(cert_key).getContent() + b"\n" + FilePath(private_key).getContent())
    chain = None
    if chain_file is not None:
        pems = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                          FilePath(chain_file).getContent(), flags=re.DOTALL)
        if not pems:
            raise ValueError(f"{chain_file} holds no PEM certificate")
        chain = [ssl.Certificate.loadPEM(pem).original for pem in pems]
    dh = ssl.DiffieHellmanParameters.fromFile(FilePath(dh_file)) if dh_file else None
    options = _asking_options(
        privateKey=pair.privateKey.original, certificate=pair.original,
        extraCertChain=chain, dhParameters=dh,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS))
    return endpoints.SSL4ServerEndpoint(reactor, port, options, backlog=backlog,
                                        interface=interface)


def _accept_any_certificate(connection, certificate, errno, depth, ok) -> bool:
    """Client certificates are identities (SASL EXTERNAL, by fingerprint), not CA-checked."""
    return True


def _asking_options(**kw):
    """
    ``CertificateOptions(**kw)`` that also ask each client for a certificate (issue #14).

    IRC servers know a client certificate by its SHA-256 fingerprint (``NickServ
    CERT ADD``, then SASL EXTERNAL), so self-signed ones are the rule: OpenSSL is
    told to request one (VERIFY_PEER without FAIL_IF_NO_PEER_CERT: a client may
    send none) and to accept whatever comes.  OpenSSL wants a session-id context
    once peers are verified.
    """
    from OpenSSL import SSL
    from twisted.internet import ssl

    class AskingOptions(ssl.CertificateOptions):
        _asks = False

        def getContext(self):
            context = super().getContext()
            if not self._asks:  # once: pyOpenSSL forbids changing a context in use
                self._asks = True
                context.set_verify(SSL.VERIFY_PEER, _accept_any_certificate)
                context.set_session_id(b"twistchat")
            return context

    return AskingOptions(**kw)


def _server_endpoint(reactor, description: str):
    """``ssl:`` descriptions by :func:`_ssl_endpoint`; everything else by Twisted."""
    if description.split(":", 1)[0].lower() == "ssl":
        return _ssl_endpoint(reactor, description)
    return endpoints.serverFromString(reactor, description)


def _address(address) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(getattr(address, "name", address))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(error: BaseException, description: str = "") -> str:
    """Why a listen failed, in words: "Address already in use", not a repr."""
    if description.startswith("systemd:") and isinstance(error, (IndexError, KeyError)):
        return ("systemd passed no such socket (LISTEN_FDS, LISTEN_FDNAMES): "
                "start the service through its .socket unit")
    if isinstance(error, CannotListenError):
        socket_error = error.socketError
        where = f"{error.interface or '*'}:{error.port}"
        why = getattr(socket_error, "strerror", None) or str(socket_error)
        return f"{where}: {why}"
    return _one_line(str(error)) or type(error).__name__


class StartupFailed(Exception):
    """A daemon's listener could not be opened (twistd reports it to the waiting parent)."""


@dataclass(frozen=True)
class Startup:
    """
    How a listener that cannot open its port ends the process: one line, status 1.

    In the foreground that is ``SystemExit(1)`` after the ``cannot listen`` log
    line (a pid file named with ``--pidfile`` removed first: twistd removes it
    only for an ``Exception``, and SystemExit is not one).  A daemon must raise
    an ``Exception`` instead: twistd's parent process waits on a status pipe
    whose write end it keeps open itself, so a child that dies of SystemExit
    leaves the parent waiting forever and the pid file behind; for an
    Exception twistd removes the pid file, writes the error to the pipe, and
    the parent prints it and exits 1 (``postApplication`` in
    twisted/scripts/_twistd_unix.py).
    """

    daemon: bool = False
    pidfile: str = ""

    def failed(self, description: str, reason: str) -> NoReturn:
        _log.critical("cannot listen on {description}: {reason}",
                      description=description, reason=reason)
        if self.daemon:
            raise StartupFailed(f"cannot listen on {description}: {reason}")
        if self.pidfile:
            with contextlib.suppress(OSError):
                os.remove(self.pidfile)
        raise SystemExit(1)


FOREGROUND = Startup()


class ListenerService(StreamServerEndpointService):
    """
    Listen on one endpoint description (``tcp:``, ``ssl:``, ``systemd:``, ...).

    Like ``strports.service`` (listen errors raise at once), plus: the address
    is logged when listening starts, a description that cannot be used or a
    port that cannot be opened ends the process with one line and status 1,
    and ``ssl:`` gets the TLS versions and suites of :data:`TLS12_CIPHERS`.
    """

    _raiseSynchronously = True

    def __init__(self, description: str, factory, reactor=None,
                 startup: Startup = FOREGROUND) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.description = description
        self.startup = startup
        try:
            endpoint = _server_endpoint(reactor, description)
        except Exception as e:
            # Called from makeService, before twistd starts logging: stderr is the place.
            # (Bad syntax, an unreadable key or certificate, no socket from systemd.)
            raise SystemExit(f"twistd chat: cannot listen on {description}: "
                             f"{_reason(e, description)}") from None
        super().__init__(_LoggedEndpoint(endpoint, description), factory)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            self.startup.failed(self.description, _reason(e))


class UDPListenerService(UDPServer):
    """
    ``internet.UDPServer`` that, like :class:`ListenerService`, logs its address
    and ends the process with one line and status 1 when the port cannot be had.
    """

    def __init__(self, port: int, protocol, interface: str = "", reactor=None,
                 startup: Startup = FOREGROUND) -> None:
        super().__init__(port, protocol, interface=interface, reactor=reactor)
        self.startup = startup
        self.description = f"udp:{port}:interface={interface or '0.0.0.0'}"

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            self.startup.failed(self.description, _reason(e))
        assert self._port is not None
        _log.info("listening on {description} ({address})", description=self.description,
                  address=_address(self._port.getHost()))
