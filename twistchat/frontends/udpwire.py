"""
The UDP wire: datagrams, tags, the heartbeat, where broadcasts go.

test-case-name: tests.test_udp

The contract is docs/udp-protocol.md; the names below quote it.  Pure
functions and values (the one exception is reading the local interfaces'
addresses, to find a broadcast address): the UDP front-end (``udp.py``) sends
what these build.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twistchat.core.events import TAG_SEQ, TAG_TIME, Event, is_multiline
from twistchat.core.multiline import CONCAT_TAG, pieces
from twistchat.wire import Message, casefold, encode, format_server_time, is_decimal

__all__ = [
    "BOOT_BYTES", "COOKIE_DIGITS", "COOKIE_INTERVAL", "HEARTBEAT", "MAX_DATAGRAM", "MEMBERSHIP",
    "MIN_REGISTER", "ROOMLESS", "TOKEN_BYTES", "UDP_VIEW", "Broadcast",
    "address_cookie", "broadcast_domain", "cookie_valid", "event_datagrams", "event_line",
    "event_tags", "heartbeat_lines", "multiline_parts", "parse_heartbeat", "peek_tags",
    "record_datagrams",
]

# docs/udp-protocol.md, "Datagrams": at most 1200 bytes, a size that crosses any
# path without fragmentation (QUIC makes the same bet, RFC 9000 section 14).
MAX_DATAGRAM = 1200
# "Registration": the NICK that opens a session is padded to at least this many
# bytes, so the 001 that answers it (with the token) never amplifies; QUIC pads
# its Initial packets for the same reason (RFC 9000 section 8.1, 14.1).
MIN_REGISTER = 1200
# "Registration": tokens are 128 random bits, written as 32 hex digits.
TOKEN_BYTES = 16
# "Registration": the address cookie is the first 32 hex digits of an HMAC-SHA256
# over address, port, casefolded nick and the 30-second interval; the current and
# the previous interval are accepted, so a cookie is good for 30 to 60 seconds
# (issue #12, items 7 and 11; QUIC's Retry token and DTLS's HelloVerifyRequest
# cookie are the same stateless address proof, RFC 9000 section 8.1.2, RFC 6347 4.2.1).
COOKIE_INTERVAL = 30
COOKIE_DIGITS = 32
# "Registration": ``boot`` is 64 random bits, 16 hex digits, drawn at every start.
BOOT_BYTES = 8
# Room events carry the room's sequence number and server time, always.
UDP_VIEW = TAG_SEQ | TAG_TIME
HEARTBEAT = "HEARTBEAT"
# Room events whose parameters do not name the room (one per room the user is
# in): on UDP they carry it in a ``room`` tag, the room's casefolded name.
ROOMLESS = frozenset(("QUIT", "NICK"))
# Room events that change a session's own rooms or name: also in its unicast stream.
MEMBERSHIP = frozenset(("JOIN", "PART", "NICK", "KICK"))


def event_tags(event: Event) -> dict:
    """The tags a room event carries on UDP: ``seq``, ``time``, and ``room`` where needed."""
    tags = event.tags_for(UDP_VIEW)
    if event.message.command in ROOMLESS and event.is_room_event:
        tags["room"] = event.target
    return tags


def event_line(event: Event) -> bytes:
    """The datagram of a room event, as broadcast and as sent again on repair."""
    message = event.message
    if message.command not in ROOMLESS:
        return event.line(UDP_VIEW)  # formatted once, shared by broadcast and repairs
    return encode(Message(message.command, message.params, message.source, event_tags(event)))


def multiline_parts(message: Message, tags: dict) -> list[bytes]:
    """
    The datagrams of a multi-line PRIVMSG or NOTICE (its text has "\n"): one line each.

    Each non-blank piece (:func:`twistchat.core.multiline.pieces`) is one
    datagram with all of ``tags`` and ``part=<i>/<n>`` (1-based); a piece that
    continues the line before it also has ``draft/multiline-concat``.  Each is
    a valid line on its own, and well under :data:`MAX_DATAGRAM` (a piece is
    at most ``PIECE_BYTES`` of text).  docs/udp-protocol.md, "Multi-line messages".
    """
    command, (target, text) = message.command, message.params
    kept = [(part, concat) for part, concat in pieces(text) if part]
    out = []
    for i, (part, concat) in enumerate(kept, 1):
        line_tags = {**tags, "part": f"{i}/{len(kept)}"}
        if concat:
            line_tags[CONCAT_TAG] = ""
        out.append(encode(Message(command, (target, part), message.source, line_tags)))
    return out


def event_datagrams(event: Event) -> list[bytes]:
    """
    The datagrams of a room event: one, or one per line of a multi-line message.

    Every datagram of a multi-line message carries the event's one ``seq``.
    """
    if is_multiline(event.message):
        return multiline_parts(event.message, event_tags(event))
    return [event_line(event)]


def record_datagrams(record: Any) -> list[bytes]:
    """The datagrams of a stored room event, exactly as :func:`event_datagrams` broadcast them."""
    message = Message(record.command, tuple(record.params), record.source or None)
    return event_datagrams(Event(record.target, record.seq, record.time_ms, record.msgid,
                                 message))


def address_cookie(secret: bytes, host: str, port: int, nick: str, interval: int) -> str:
    """
    The address cookie for ``host:port`` and ``nick`` in 30-second ``interval``.

    docs/udp-protocol.md, "Registration": HMAC-SHA256 under the server's
    secret of ``host|port|casefold(nick)|interval``, its first 32 hex digits.
    """
    text = f"{host}|{port}|{casefold(nick)}|{interval}".encode("utf-8", "surrogatepass")
    return hmac.new(secret, text, hashlib.sha256).hexdigest()[:COOKIE_DIGITS]


def cookie_valid(secret: bytes, host: str, port: int, nick: str, cookie: str,
                 now: float) -> bool:
    """
    True if ``cookie`` is the one made for this address and nick now or 30 s before.

    The current and the previous interval are accepted (a cookie made just
    before an interval ends stays good for the next one); compared in
    constant time (``hmac.compare_digest``), so timing reveals no digit.
    """
    given = cookie.encode("utf-8", "replace")
    interval = int(now // COOKIE_INTERVAL)
    ok = False
    for candidate in (interval, interval - 1):
        expected = address_cookie(secret, host, port, nick, candidate).encode("ascii")
        ok |= hmac.compare_digest(expected, given)  # both always computed: no early exit
    return ok


@dataclass(frozen=True)
class Broadcast:
    """Where room events go (``address``, ``port``) and which peers hear them (``domain``)."""

    address: str
    port: int
    domain: ipaddress.IPv4Network

    def reaches(self, host: str) -> bool:
        """True if a client at ``host`` hears our broadcasts (same subnet)."""
        try:
            return ipaddress.ip_address(host) in self.domain
        except ValueError:
            return False


# ---------------------------------------------------------------- networking


def _local_ipv4_interfaces() -> list:
    """Every local interface's primary IPv4 address and netmask (Linux ioctls)."""
    import fcntl
    import struct

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                addr = fcntl.ioctl(probe.fileno(), 0x8915, request)[20:24]  # SIOCGIFADDR
                mask = fcntl.ioctl(probe.fileno(), 0x891B, request)[20:24]  # SIOCGIFNETMASK
            except OSError:
                continue
            found.append(ipaddress.IPv4Interface(
                f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}"))
    return found


def broadcast_domain(interface: str, broadcast: str | None = None,
                     interfaces=None) -> tuple:
    """
    ``(broadcast address, domain network)`` for a server bound to ``interface``.

    ``broadcast`` is ``--broadcast``: ``ADDR`` or ``ADDR/PREFIX``.  Without it,
    the broadcast address of the interface the server is bound to (127.0.0.1:
    127.255.255.255).  Raise ValueError when it cannot be known (the wildcard
    address, an address no interface has): the caller asks for --broadcast.
    """
    if interfaces is None:
        try:
            interfaces = _local_ipv4_interfaces()
        except (ImportError, OSError):
            interfaces = []
    if broadcast:
        if "/" in broadcast:
            net = ipaddress.IPv4Network(broadcast, strict=False)
            return broadcast.split("/")[0], net
        addr = ipaddress.IPv4Address(broadcast)
        if addr.is_loopback:
            return broadcast, ipaddress.IPv4Network("127.0.0.0/8")
        for iface in interfaces:
            if iface.network.broadcast_address == addr:
                return broadcast, iface.network
        try:
            bound = ipaddress.IPv4Address(interface)
        except ValueError:
            bound = None
        for iface in interfaces:
            if bound is not None and iface.ip == bound:
                return broadcast, iface.network
        raise ValueError(f"no local interface has broadcast address {broadcast}; "
                         "give it with its prefix, e.g. --broadcast=10.0.0.255/24")
    try:
        bound = ipaddress.IPv4Address(interface)
    except ValueError:
        raise ValueError(
            f"--interface {interface!r} is not an IPv4 address; give --broadcast") from None
    if bound.is_loopback:
        return "127.255.255.255", ipaddress.IPv4Network("127.0.0.0/8")
    if bound.is_unspecified:
        raise ValueError("--interface=0.0.0.0 listens on every interface: "
                         "say where to broadcast with --broadcast=ADDR[/PREFIX]")
    for iface in interfaces:
        if iface.ip == bound:
            return str(iface.network.broadcast_address), iface.network
    raise ValueError(f"no local interface has address {interface}; give --broadcast")


# ------------------------------------------------------------------ the wire


def peek_tags(data: bytes) -> tuple:
    """
    ``(token, cseq)`` from a datagram's tag section, read as bytes.

    Read before UTF-8 decoding, so that a session's malformed line still gets
    its (full-size) error reply and its acknowledgement.  Either is None when
    absent; ``cseq`` is None when it is not a decimal number.
    """
    if data[:1] != b"@":
        return None, None
    end = data.find(b" ")
    section = data[1:end] if end > 0 else data[1:]
    token = cseq = None
    for item in section.split(b";"):
        key, _, value = item.partition(b"=")
        if key == b"token":
            token = value.decode("ascii", "replace")
        elif key == b"cseq":
            if value.isdigit() and len(value) < 19:
                cseq = int(value)
    return token, cseq


def heartbeat_lines(server_name: str, network: str, port: int,
                    rooms: Iterable[tuple[str, int, str]], time_ms: int,
                    epoch: str | None = None, boot: str | None = None) -> list[bytes]:
    """
    The heartbeat datagrams: ``@epoch=E;boot=B :server HEARTBEAT network port :#a:12 #b:7``.

    ``rooms`` is a list of ``(name, latest seq, epoch)``.  Each datagram lists
    rooms of one epoch (the room log's numbering, see
    :mod:`twistchat.core.roomlog`) and names it in its ``epoch`` tag, so a
    client can tell a gap from a new numbering.  Split into as many datagrams as
    it takes to stay within :data:`MAX_DATAGRAM`; always at least one, since
    the heartbeat is also the discovery beacon (its epoch: ``epoch``, the log's
    when there are no rooms).  ``boot`` is the server's boot id, on every
    datagram (docs/udp-protocol.md, "Restarts").
    """
    by_epoch: dict[str | None, list[str]] = {}
    for name, seq, listed_epoch in rooms:
        by_epoch.setdefault(listed_epoch, []).append(f"{name}:{seq}")
    if not by_epoch:
        by_epoch[epoch] = []
    stamp = format_server_time(time_ms)
    lines = []
    for room_epoch, entries in by_epoch.items():
        tags: dict[str, str] = {"time": stamp}
        if room_epoch:
            tags["epoch"] = room_epoch
        if boot:
            tags["boot"] = boot
        head = encode(Message(HEARTBEAT, (network, str(port), "x"), server_name, tags))
        for text in _chunks(entries, MAX_DATAGRAM - len(head)):
            lines.append(encode(Message(HEARTBEAT, (network, str(port), text), server_name,
                                        tags)))
    return lines


def _chunks(entries: list[str], room: int) -> list[str]:
    """``entries`` joined by spaces into texts of at most ``room`` bytes; at least one."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for entry in entries:
        length = len(entry.encode("utf-8")) + 1
        if chunk and size + length > room:
            out.append(" ".join(chunk))
            chunk, size = [], 0
        chunk.append(entry)
        size += length
    if chunk or not out:
        out.append(" ".join(chunk))
    return out


def parse_heartbeat(message: Message) -> dict:
    """``{room: latest seq}`` from a parsed HEARTBEAT (rooms as the server spells them)."""
    rooms = {}
    if len(message.params) >= 3:
        for entry in message.params[2].split():
            name, _, seq = entry.rpartition(":")
            if name and is_decimal(seq):
                rooms[name] = int(seq)
    return rooms


