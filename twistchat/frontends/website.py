"""
The web client's site (``--web ENDPOINT``): files at ``/``, IRC over WebSocket at ``/socket``.

test-case-name: tests.test_websocket

twisted.web serves the files of ``twistchat/web/static`` (shipped as package
data) and autobahn's ``WebSocketResource`` takes over the connection at
``/socket`` (gamja's default path).  Every response carries security headers
(:data:`SECURITY_HEADERS` and a Content-Security-Policy that allows only this
site's own scripts, styles and WebSocket: nothing inline, nothing from
elsewhere), so a line from the network that slipped past the client's
``textContent`` rendering still could not run.
"""

from __future__ import annotations

import re
from pathlib import Path

from autobahn.twisted.resource import WebSocketResource
from twisted.web import resource, server, static

import twistchat
from twistchat.frontends.irc import IRCFactory
from twistchat.frontends.websocket import IRCWebSocketFactory

__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "content_security_policy", "is_secure", "web_site"]

STATIC_DIR = Path(twistchat.__file__).resolve().parent / "web" / "static"

SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
    b"Cross-Origin-Opener-Policy": b"same-origin",
}

# What a Host header may hold to be named in the CSP (a name or address, a port).
_HOST = re.compile(rb"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def content_security_policy(host: bytes | None) -> bytes:
    """
    The CSP of every page: this origin only, no inline script or style.

    ``connect-src`` names ws:// and wss:// of the Host asked for as well as
    ``'self'``: CSP level 3 lets 'self' cover them, older browsers do not.
    """
    connect = b"'self'"
    if host and _HOST.match(host):
        connect += b" ws://" + host + b" wss://" + host
    return (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            b"connect-src " + connect + b"; object-src 'none'; base-uri 'none'; "
            b"form-action 'none'; frame-ancestors 'none'")


class _SecureRequest(server.Request):
    """A request whose response always carries the security headers."""

    def process(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        self.setHeader(b"Content-Security-Policy",
                       content_security_policy(self.getHeader(b"host")))
        super().process()


class _Files(static.File):
    """The static files, with the MIME types a module script needs (``.js``, ``.mjs``)."""

    contentTypes = dict(static.File.contentTypes)
    contentTypes.update({".js": "text/javascript; charset=utf-8",
                         ".mjs": "text/javascript; charset=utf-8",
                         ".css": "text/css; charset=utf-8",
                         ".html": "text/html; charset=utf-8",
                         ".svg": "image/svg+xml", ".png": "image/png"})

    def directoryListing(self) -> resource.Resource:
        return resource.NoResource("No such page")


def web_site(irc: IRCFactory, secure: bool = False,
             allowed_origins: tuple[str, ...] = (), static_dir: Path = STATIC_DIR) -> server.Site:
    """The Site of one ``--web`` endpoint (``secure``: an ``ssl:`` one, so wss://)."""
    root = _Files(str(static_dir))
    root.indexNames = ["index.html"]
    ws = IRCWebSocketFactory(irc, "wss://localhost/socket" if secure else
                             "ws://localhost/socket", allowed_origins)
    root.putChild(b"socket", WebSocketResource(ws))
    site = server.Site(root)
    site.requestFactory = _SecureRequest
    site.noisy = False
    site.displayTracebacks = False
    site.websocket_factory = ws  # type: ignore[attr-defined]
    return site


def is_secure(description: str) -> bool:
    """Does this endpoint description serve TLS (so the page's socket is wss://)?"""
    kind = description.split(":", 1)[0].lower()
    return kind in ("ssl", "tls", "le", "lets")
