"""
Client-side chat sessions: one API (:mod:`.interfaces`), a TCP and a UDP provider.

test-case-name: tests.test_client_tcp

:func:`open_session` picks the provider by transport name, so a program (the
terminal client, a bot) names a transport and never imports one directly.
"""

from __future__ import annotations

__all__ = ["SessionUnavailable", "open_session"]


class SessionUnavailable(Exception):
    """The transport asked for is not in this version (or cannot be built); ``str()`` says why."""


def open_session(proto: str, host, port: int, nick: str, rooms=("#lobby",), *, reactor=None,
                 **options):
    """
    A new, unstarted :class:`~.interfaces.IChatSession` for ``proto`` ("tcp" or "udp").

    ``options`` go to the provider (TCP: ``tls``, ``insecure``, ``trust_root`` ...;
    both: ``sasl``, a :class:`~twistchat.client.sasl.Credentials` to log in with).
    Raise :class:`SessionUnavailable` with one clear sentence when it cannot be built.
    """
    if proto == "tcp":
        from twistchat.client.tcp import TCPChatSession

        if not host:
            raise SessionUnavailable("TCP needs a HOST (only UDP finds its server by itself).")
        return TCPChatSession(host, port, nick, rooms, reactor=reactor, **options)
    if proto == "udp":
        from twistchat.client.udp import UDPChatSession

        if options.pop("tls", False):
            raise SessionUnavailable("TLS is for TCP: UDP sessions are protected by their token.")
        udp_options = {k: v for k, v in options.items() if k not in ("insecure", "trust_root")}
        return UDPChatSession(host, port, nick, rooms, reactor=reactor, **udp_options)
    raise SessionUnavailable(f"Unknown transport {proto!r}: use tcp or udp.")
