"""
INFO and LINKS: what this server is, and the servers it knows (itself alone).

test-case-name: tests.test_servercmds

Read-only answers (https://modern.ircdocs.horse/):

- INFO: "zero or more RPL_INFO replies, followed by one RPL_ENDOFINFO": 371
  ``<client> :<string>`` (the software name and version, the project), 374
  ``<client> :End of INFO list``.
- LINKS [[<remote>] <mask>]: 364 RPL_LINKS ``<client> <server1> <server2>
  :<hopcount> <server info>`` (two linked servers; a lone server is linked to
  itself, at 0 hops), then 365 RPL_ENDOFLINKS ``<client> <mask> :End of /LINKS
  list`` (``*`` when no mask was given).  A mask that does not match this
  server's name lists nothing but the 365.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import VERSION, User
from twistchat.core.queries import mask_matcher

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["SERVER_INFO", "info", "links"]

SERVER_INFO = "twistchat chat server"  # the <server info> of 364, as VERSION says it


def info(registry: Registry, user: User) -> list[Delivery]:
    """INFO: 371 lines about the software, then 374."""
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(registry.created))
    lines = [
        f"{VERSION}: a {SERVER_INFO} built on Twisted",
        "A chat server for IRC clients (TCP, TLS) and twistchat's UDP sessions.",
        "Replies follow RFC 2812 and https://modern.ircdocs.horse/",
        f"Server {registry.server_name} of network {registry.network}, up since {started}",
    ]
    return [*(registry.reply(user, "371", line) for line in lines),
            registry.reply(user, "374", "End of INFO list")]


def links(registry: Registry, user: User, mask: str | None = None) -> list[Delivery]:
    """LINKS [mask]: one 364 for this server (if the mask matches its name), then 365."""
    out = []
    if mask is None or mask_matcher(mask)(registry.server_name):
        out.append(registry.reply(user, "364", registry.server_name, registry.server_name,
                                  f"0 {SERVER_INFO}"))
    out.append(registry.reply(user, "365", mask or "*", "End of /LINKS list"))
    return out
