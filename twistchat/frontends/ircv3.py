"""
IRCv3 on the IRC front-ends: capabilities, the view they give, labels and batches.

test-case-name: tests.test_history, tests.test_caps

Pure functions and small values, no I/O: what a connection that negotiated a
set of capabilities is shown (:class:`View`), and how labeled replies, batches
and replayed history are written as lines.  The IRC protocol (``irc.py``) and
later the WebSocket front-end share them.

Specs: https://ircv3.net/specs/extensions/capability-negotiation (CAP LS 302,
values, multi-line replies, cap-notify), ``labeled-response``, ``batch``,
``server-time``, ``message-tags``, ``draft/chathistory``, ``extended-join``,
``userhost-in-names``, ``invite-notify``, ``setname``, ``chghost``,
``monitor`` (``extended-monitor``), ``standard-replies``,
``draft/no-implicit-names``.  The rules behind them live in the core
(``core/identity.py``, ``core/monitor.py``, ``Registry.invite``...); here
only what each connection is shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from twistchat.core import multiline
from twistchat.core.commands import Context
from twistchat.core.events import (
    NO_TAGS,
    TAG_ACCOUNT,
    TAG_CLIENT,
    TAG_EXTENDED,
    TAG_MSGID,
    TAG_MULTILINE,
    TAG_TIME,
    is_multiline,
    multiline_bytes,
)
from twistchat.history import replay_message
from twistchat.wire import Message, encode, escape_tag_value, format_server_time

__all__ = [
    "ACCOUNT_CAPS", "CAPABILITIES", "CAP_GATED", "CAP_VALUES", "MULTILINE_CAP_VALUE",
    "STICKY_302", "View",
    "batch_lines", "cap_lines", "history_lines", "label", "labeled_lines", "offer",
    "targets_lines",
]

# IRCv3 capabilities this front-end offers.
CAPABILITIES = (
    "away-notify", "batch", "draft/chathistory", "draft/event-playback", "draft/multiline",
    "echo-message", "labeled-response", "message-tags", "multi-prefix", "server-time",
    # cap-notify: nothing in the offer changes at run time yet, so no CAP NEW/DEL is ever
    # due; a client may still ask for it, and CAP LS 302 turns it on by itself.
    "cap-notify",
    # extended-join: JOIN #room account :realname (account "*": not logged in).
    "extended-join",
    # userhost-in-names: 353 entries as nick!user@host.
    "userhost-in-names",
    # draft/no-implicit-names: no NAMES after the client's own JOIN.
    "draft/no-implicit-names",
    # invite-notify: a room's members (operators of a +i room) see its INVITEs.
    "invite-notify",
    # setname: SETNAME :realname, and peers' SETNAME lines; chghost: peers' CHGHOST lines.
    "setname", "chghost",
    # extended-monitor: MONITOR watchers also get AWAY/SETNAME/CHGHOST of watched users.
    "extended-monitor",
    # standard-replies: FAIL for errors no other spec defines (else a server NOTICE).
    "standard-replies",
    # draft/read-marker: MARKREAD after JOIN, and an account's markers pushed to all its
    # connections (core/readmarkers.py).
    "draft/read-marker",
    # account-notify: ACCOUNT lines of peers who log in or out; account-tag: the sender's
    # account on its messages (core/accounts.py, Event.account).
    "account-notify", "account-tag",
    # sasl (sasl-3.1/3.2): AUTHENTICATE PLAIN and EXTERNAL; draft/account-registration:
    # REGISTER.  Offered only where the server has an authenticator (ACCOUNT_CAPS).
    "sasl", "draft/account-registration",
)
# The capabilities of accounts (issue #14): not offered by a front-end without accounts.
ACCOUNT_CAPS = frozenset({"sasl", "draft/account-registration"})
# ``cap=value`` in CAP LS 302 (capability-negotiation: "values ... only for 302 clients").
# A capability with a value adds it here, beside its name in CAPABILITIES
# (draft/multiline's value is REQUIRED by its spec).
MULTILINE_CAP_VALUE = multiline.CAP_VALUE
CAP_VALUES: dict[str, str] = {"draft/multiline": MULTILINE_CAP_VALUE}
# sasl-3.2: the mechanisms; account-registration: REGISTER works before CAP END too.
CAP_VALUES["sasl"] = "PLAIN,EXTERNAL"
CAP_VALUES["draft/account-registration"] = "before-connect"
# Implied by CAP LS 302 and not to be turned off by such a client (cap-notify spec).
STICKY_302 = frozenset({"cap-notify"})
# Lines only clients that asked for a capability may see (IRCv3: "MUST NOT send ... unless
# the client has negotiated the capability").
CAP_GATED = {"AWAY": "away-notify", "TAGMSG": "message-tags", "BATCH": "batch",
             "SETNAME": "setname", "CHGHOST": "chghost", "ACCOUNT": "account-notify"}


@dataclass(frozen=True)
class View:
    """
    What one set of negotiated capabilities shows a client.

    ``tags`` is the tag view of room events (:mod:`twistchat.core.events`);
    ``context`` what the command table is told of the connection.
    """

    caps: frozenset[str]
    tags: int
    context: Context

    @classmethod
    def of(cls, caps: frozenset[str]) -> View:
        """The view of ``caps``."""
        tags = NO_TAGS
        if "server-time" in caps:
            tags |= TAG_TIME
        if "message-tags" in caps:
            tags |= TAG_MSGID | TAG_CLIENT
        if "extended-join" in caps:
            tags |= TAG_EXTENDED
        if "draft/multiline" in caps and "batch" in caps:  # multiline needs batch
            tags |= TAG_MULTILINE
        if "account-tag" in caps:
            tags |= TAG_ACCOUNT
        return cls(caps, tags, Context("echo-message" in caps, "multi-prefix" in caps,
                                       None, caps))

    def shows(self, message: Message) -> bool:
        """False for lines of a capability this client did not ask for."""
        needed = CAP_GATED.get(message.command)
        return needed is None or needed in self.caps

    def format(self, message: Message, now_ms: int) -> bytes:
        """
        Encode a Message for this client: the tags it asked for, none it did not.

        ``account`` (a logged-in sender's, account-tag) only with account-tag;
        the other tags (client-only tags, ``bot``, ``msgid``) only with message-tags.
        """
        if "account" in message.tags and not self.tags & TAG_ACCOUNT:
            message = replace(message, tags={k: v for k, v in message.tags.items()
                                             if k != "account"})
        if self.tags & TAG_TIME and message.command.isalpha():
            # server-time on relayed (non-numeric) lines too.
            tags = dict(message.tags) if self.tags & TAG_CLIENT else _account_only(message)
            tags.setdefault("time", format_server_time(now_ms))
            message = Message(message.command, message.params, message.source, tags)
        elif message.tags and not self.tags & TAG_CLIENT:
            message = replace(message, tags=_account_only(message))  # keeps Message.trailing
        return encode(message)


NO_CAPS = View.of(frozenset())


def _account_only(message: Message) -> dict[str, str]:
    """The ``account`` tag of ``message`` alone (what account-tag shows without message-tags)."""
    account = message.tags.get("account")
    return {} if account is None else {"account": account}


def requested(current: frozenset[str], wanted: list[str],
              hidden: frozenset[str] = frozenset()) -> frozenset[str] | None:
    """``CAP REQ``: the new capability set, or None to NAK (unknown name; all or nothing)."""
    if not wanted or any(w.lstrip("-") not in CAPABILITIES or w.lstrip("-") in hidden
                         for w in wanted):
        return None
    caps = set(current)
    for w in wanted:
        if w.startswith("-"):
            caps.discard(w[1:])
        else:
            caps.add(w)
    return frozenset(caps)


def offer(version: int, hidden: frozenset[str] = frozenset()) -> list[str]:
    """
    The ``CAP LS`` words for a client of CAP ``version`` (302 and up: with values).

    ``hidden``: capabilities this front-end does not offer (ACCOUNT_CAPS without accounts).
    """
    names = [name for name in CAPABILITIES if name not in hidden]
    if version < 302:
        return names
    return [f"{name}={CAP_VALUES[name]}" if CAP_VALUES.get(name) else name for name in names]


def cap_lines(nick: str, sub: str, words: list[str], multiline: bool,
              room: int = 400) -> list[tuple[str, ...]]:
    """
    The parameters of each ``CAP <nick> LS|LIST`` line for ``words``.

    capability-negotiation, "Multiline replies to CAP LS and CAP LIST": a 302
    client may be sent several lines, each but the last with ``*`` before the
    list.  ``room`` (bytes of capability names per line) leaves the line's
    prefix and nick their space within 512 bytes.  Older clients get one line.
    """
    if not multiline:
        return [(nick, sub, " ".join(words))]
    chunks: list[list[str]] = [[]]
    size = 0
    for word in words:
        if chunks[-1] and size + 1 + len(word.encode()) > room:
            chunks.append([])
            size = 0
        size += (1 if chunks[-1] else 0) + len(word.encode())
        chunks[-1].append(word)
    lines: list[tuple[str, ...]] = [(nick, sub, "*", " ".join(c)) for c in chunks[:-1]]
    lines.append((nick, sub, " ".join(chunks[-1])))
    return lines


def label_tag(value: str) -> bytes:
    """The ``label=...`` tag for a label as parsed (unescaped), escaped again for the wire."""
    return b"label=" + escape_tag_value(value).encode("utf-8")


def with_tag(data: bytes, tag: bytes) -> bytes:
    """Add one ``key=value`` tag to an encoded line."""
    if data.startswith(b"@"):
        return b"@" + tag + b";" + data[1:]
    return b"@" + tag + b" " + data


def label(line: bytes, value: str | None) -> bytes:
    """``line`` with the label tag, if there is a label."""
    return with_tag(line, label_tag(value)) if value else line


def labeled_lines(value: str, lines: list[bytes], server: str, ref: str) -> list[bytes]:
    """
    The replies to a labeled command: none gets ACK, one gets the label, more a batch.

    https://ircv3.net/specs/extensions/labeled-response
    """
    tag = label_tag(value)
    if not lines:
        return [with_tag(encode(Message("ACK", (), server)), tag)]
    if len(lines) == 1:
        return [with_tag(lines[0], tag)]
    batch_tag = b"batch=" + ref.encode()
    return [with_tag(encode(Message("BATCH", ("+" + ref, "labeled-response"), server)), tag),
            *(with_tag(line, batch_tag) for line in lines),
            encode(Message("BATCH", ("-" + ref,), server))]


def batch_lines(ref: str | None, kind: tuple[str, ...], body: list[bytes], server: str,
                value: str | None = None) -> list[bytes]:
    """``body`` inside a batch of ``kind`` (if ``ref``), the first line labeled."""
    if ref is None:
        return [label(body[0], value), *body[1:]] if body else []
    start = encode(Message("BATCH", ("+" + ref, *kind), server))
    return [label(start, value), *body, encode(Message("BATCH", ("-" + ref,), server))]


def history_lines(records: Iterable, target: str, view: View, ref: str | None, server: str,
                  value: str | None = None) -> list[bytes]:
    """
    Replayed records as lines, in a ``chathistory`` batch if the client has ``batch``.

    A multi-line record (one event, its text with "\n") is a ``draft/multiline``
    batch nested in the chathistory batch for clients with the capability, and
    its lines in order for the others (:func:`~twistchat.core.events.multiline_bytes`).
    """
    body = []
    for record in records:
        message = replay_message(record, view.tags, ref, server)
        if is_multiline(message):
            plain = Message(message.command, message.params, message.source)
            body.append(multiline_bytes(plain, dict(message.tags), record.msgid,
                                        bool(view.tags & TAG_MULTILINE)))
        else:
            body.append(encode(message))
    return batch_lines(ref, ("chathistory", target), body, server, value)


def targets_lines(found: list[tuple[str, int]], ref: str | None, server: str,
                  value: str | None = None) -> list[bytes]:
    """``CHATHISTORY TARGETS`` answers, in a ``draft/chathistory-targets`` batch."""
    tags = {"batch": ref} if ref else {}
    body = [encode(Message("CHATHISTORY", ("TARGETS", name, format_server_time(time_ms)),
                           server, tags)) for name, time_ms in found]
    return batch_lines(ref, ("draft/chathistory-targets",), body, server, value)
