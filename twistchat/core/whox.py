"""
WHOX: ``WHO <mask> %<fields>[,<token>]`` answered with RPL_WHOSPCRPL (354).

test-case-name: tests.test_whox

https://ircv3.net/specs/extensions/whox: "The second argument contains a
percent character followed by a list of fields requested by the client",
"Servers MUST send the fields in the order specified above", "Exactly the
fields requested by the client MUST be returned", "Servers MUST ignore any
non-standard field they don't support", and the token "MUST contain only digit
characters and MUST contain at most 3 characters".

Who is listed is decided by :func:`twistchat.core.queries.who`, the same for
352 and 354; this module only reads the request and writes one 354 line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import Channel, User
from twistchat.wire import Message, is_decimal, safe_middle

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["FIELD_ORDER", "HIDDEN_IP", "TOKEN_DIGITS", "BadQuery", "Query", "parse_query",
           "reply_line"]

# The fields this server knows, in the order they are written (the spec's, with ircu's
# d = hop count and o = op level in their ircu places, as Solanum and InspIRCd write them):
# t token, c channel, u user name, i IP, h host, s server, n nick, f flags, d hops,
# l idle seconds, a account, o op level, r realname (always last: free text).
FIELD_ORDER = "tcuihsnfdlaor"
TOKEN_DIGITS = 3  # "at most 3 characters", all digits
HIDDEN_IP = "255.255.255.255"  # "when the server refuses to disclose the IP address"
NO_ACCOUNT = "0"  # "when the user is logged out" (the whox spec's a field)
NO_OPLEVEL = "n/a"  # we have no channel op levels (ircu's +A/+U channels)


class BadQuery(ValueError):
    """A WHOX request this server cannot answer: ``str()`` says why, for ERR_UNKNOWNERROR."""


@dataclass(frozen=True)
class Query:
    """A WHOX request: the fields asked for (known ones, in :data:`FIELD_ORDER`) and the token."""

    fields: str
    token: str = ""


def parse_query(arg: str) -> Query | None:
    """
    The WHOX request in WHO's second parameter, None if it has no ``%`` (a plain WHO).

    Letters before ``%`` are WHO flags ("Servers MAY support additional
    non-standard flags before the percent character"); none are supported, so
    they are ignored, as WHO's second parameter always was.  Raises
    :class:`BadQuery` for a token that is not 1 to 3 digits, or ``t`` without one.
    """
    _, percent, rest = arg.partition("%")
    if not percent:
        return None
    letters, comma, token = rest.partition(",")
    fields = "".join(f for f in FIELD_ORDER if f in letters)
    if comma and not (is_decimal(token) and len(token) <= TOKEN_DIGITS):
        raise BadQuery(f"Invalid WHOX token {token!r}: it must be 1 to {TOKEN_DIGITS} digits")
    if "t" in fields and not comma:
        raise BadQuery("The WHOX field t needs a token: %t,<token>")
    return Query(fields, token)


def reply_line(registry: Registry, asker: User, member: User, channel: Channel | None,
               flags: str, query: Query) -> Delivery:
    """One RPL_WHOSPCRPL line: ``354 <asker> [token] [channel] ... [:realname]``."""
    idle = max(int(registry.clock() - member.last_active), 0)
    known = {
        "t": query.token, "c": channel.name if channel is not None else "*",
        "u": member.user, "i": _ip(asker, member), "h": member.host,
        "s": registry.server_name, "n": member.nick, "f": flags,
        "d": "0",  # hop count: one server, every user is here
        "l": str(idle), "a": member.account or NO_ACCOUNT, "o": NO_OPLEVEL, "r": member.realname,
    }
    values = [known[field] for field in query.fields]
    realname_last = query.fields.endswith("r")
    middle = [safe_middle(v) for v in (values[:-1] if realname_last else values)]
    params = (asker.nick, *middle, *values[len(middle):])
    return Delivery((asker,), Message("354", params, registry.server_name,
                                      trailing=realname_last))


def _ip(asker: User, member: User) -> str:
    """
    The address ``member`` connects from, where it is no secret.

    It is shown to the user itself, and when the host shown is that address
    anyway (no vhost); a vhost (CHGHOST) hides it from everyone else.
    """
    if asker is member or member.host == member.address:
        return member.address
    return HIDDEN_IP
