"""
The command table: every IRC verb, its preconditions, and the core call it makes.

test-case-name: tests.test_commands

Shared by every front-end that speaks IRC grammar (TCP, UDP, and later
WebSocket).  Each verb's preconditions sit in one table, as Ergo's
``irc/commands.go`` keeps them (minParams, usablePreReg, capabs), instead of a
check repeated in each handler:

- ``min_params``: fewer parameters get 461 ERR_NEEDMOREPARAMS;
- ``pre_registration``: may be sent before 001; any other verb then gets 451;
- ``caps``: IRCv3 capabilities the connection must have negotiated (else 421,
  as for a verb the server does not know, since for that client it does not exist);
- ``local``: the verb is about the connection itself, not chat state (CAP,
  CHATHISTORY, UDP's REPAIR): the front-end passes its handler in, and a
  front-end that has none answers 421.

Chat rules stay in the registry; this table only routes.  Verbs that end the
connection (QUIT) answer a :class:`~twistchat.core.events.Disconnect` payload.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from twistchat.core import helptext, invitations, operators, readmarkers, serverinfo, whowas
from twistchat.core.events import Delivery, Disconnect
from twistchat.core.queries import NamesView
from twistchat.core.registry import Registry, User
from twistchat.wire import Message

__all__ = ["COMMANDS", "PLAIN", "Command", "Context", "LocalHandler", "LocalVerbs", "dispatch"]


@dataclass(frozen=True)
class Context:
    """What a handler needs to know of the connection beyond the user."""

    echo: bool = False  # IRCv3 echo-message
    multi_prefix: bool = False  # IRCv3 multi-prefix
    client_tags: Mapping[str, str] | None = None  # client-only tags on this line
    caps: frozenset[str] = field(default_factory=frozenset)  # negotiated capabilities


PLAIN = Context()

Params = tuple[str, ...]
Handler = Callable[[Registry, User, Params, Context], list[Delivery]]
# A front-end's own handler of a local verb: the parsed line in, deliveries out.
LocalHandler = Callable[[Message], list[Delivery]]


class LocalVerbs(Protocol):
    """A front-end's handlers of the local verbs it serves (CAP, CHATHISTORY, REPAIR...)."""

    def local_handler(self, verb: str) -> LocalHandler | None:
        """The handler of ``verb``, or None if this front-end does not serve it."""


@dataclass(frozen=True)
class Command:
    """One verb: its core handler (None for a local verb) and its preconditions."""

    handler: Handler | None
    min_params: int = 0
    pre_registration: bool = False
    caps: frozenset[str] = frozenset()

    @property
    def local(self) -> bool:
        """Handled by the front-end (the connection itself), not the core."""
        return self.handler is None


def _names_view(ctx: Context) -> NamesView:
    """The NAMES a connection asked for: multi-prefix, userhost-in-names."""
    return NamesView(ctx.multi_prefix, "userhost-in-names" in ctx.caps)


def _join(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    if p[0] == "0":
        return reg.join_zero(user)
    keys = p[1].split(",") if len(p) > 1 else []
    # IRCv3 draft/no-implicit-names: no NAMES after JOIN for a client that asked so.
    names = None if "draft/no-implicit-names" in ctx.caps else _names_view(ctx)
    out = []
    for i, name in enumerate(p[0].split(",")):
        if name:
            out += reg.join(user, name, keys[i] if i < len(keys) else None, names)
    return out


def _part(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    reason = p[1] if len(p) > 1 else ""
    out = []
    for name in p[0].split(","):
        if name:
            out += reg.part(user, name, reason)
    return out


def _message(command: str) -> Handler:
    def handler(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
        return reg.message(user, command, p[0] if p else "", p[1] if len(p) > 1 else "",
                           ctx.client_tags, ctx.echo)
    return handler


def _tagmsg(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.tagmsg(user, p[0], dict(ctx.client_tags or {}), ctx.echo)


def _nick(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    nick = p[0] if p else ""
    if user.registered:
        return reg.change_nick(user, nick)
    return reg.offer_nick(user, nick)


def _user(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    if user.registered:
        return [reg.reply(user, "462", "You may not reregister")]
    if len(p) < 4 or not p[3]:  # an empty realname too (modern.ircdocs.horse, USER)
        return [reg.reply(user, "461", "USER", "Not enough parameters")]
    return reg.offer_user(user, p[0], p[3])


def _pass(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    if user.registered:
        return [reg.reply(user, "462", "You may not reregister")]
    if not p:
        return [reg.reply(user, "461", "PASS", "Not enough parameters")]
    return reg.offer_password(user, p[0])


def _quit(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    if p:
        return [Delivery((user,), Disconnect("Quit: " + p[0], p[0]))]
    return [Delivery((user,), Disconnect("Client Quit"))]


def _ping(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    if not p:
        return [reg.reply(user, "409", "No origin specified")]
    return [Delivery((user,), Message("PONG", (reg.server_name, p[0]), reg.server_name))]


def _pong(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return []  # any line already counts as a sign of life (the front-end's timer)


def _topic(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.topic(user, p[0], p[1] if len(p) > 1 else None)


def _names(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    if not p:
        return [reg.reply(user, "366", "*", "End of /NAMES list")]
    view = _names_view(ctx)
    out = []
    for name in p[0].split(","):
        out += reg.names(user, name, view.multi_prefix, view.userhost)
    return out


def _list(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.list_channels(user, p)


def _who(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    # WHO <mask> [%<fields>[,<token>]]: the second parameter is WHOX's (core/whox.py).
    return reg.who(user, p[0] if p else "*", ctx.multi_prefix, p[1] if len(p) > 1 else "")


def _whois(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    # "WHOIS server nick" names the nick last.
    return reg.whois(user, p[-1])


def _mode(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.mode(user, p[0], p[1] if len(p) > 1 else None, p[2:])


def _kick(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    reason = p[2] if len(p) > 2 else ""
    out = []
    for nick in p[1].split(","):
        out += reg.kick(user, p[0], nick, reason)
    return out


def _ison(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.ison(user, " ".join(p).split())


def _userhost(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.userhost(user, p)


def _away(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.set_away(user, p[0] if p else None)


def _setname(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.set_realname(user, p[0])


def _monitor(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.monitor(user, p[0], p[1] if len(p) > 1 else None)


def _invite(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    if not p:  # the rooms the user is invited to (modern.ircdocs.horse, "Invite list")
        return invitations.invite_list(reg, user)
    if len(p) < 2:
        return [reg.reply(user, "461", "INVITE", "Not enough parameters")]
    return reg.invite(user, p[0], p[1])


def _knock(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return invitations.knock(reg, user, p[0], p[1] if len(p) > 1 else "")


def _whowas(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return whowas.whowas(reg, user, p[0] if p else "", p[1] if len(p) > 1 else None)


def _info(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return serverinfo.info(reg, user)


def _links(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    # "LINKS [[<remote server>] <server mask>]" (RFC 2812 3.4.5): the mask comes last.
    return serverinfo.links(reg, user, p[-1] if p else None)


def _help(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return helptext.help_replies(reg, user, p[0] if p else None, COMMANDS)


def _lusers(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.lusers(user)


def _motd(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.motd_replies(user)


def _version(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.version(user)


def _time(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return reg.time(user)


def _oper(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return operators.oper(reg, user, p[0], p[1])


def _kill(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return operators.kill(reg, user, p[0], p[1])


def _wallops(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return operators.wallops(reg, user, p[0])


def _markread(reg: Registry, user: User, p: Params, ctx: Context) -> list[Delivery]:
    return readmarkers.markread(reg, user, p)


LOCAL = None  # a verb the front-end handles itself

COMMANDS: dict[str, Command] = {
    # Registration and the connection (usable before 001).
    "NICK": Command(_nick, pre_registration=True),
    # USER and PASS check their own parameters: after registration they answer 462 first.
    "USER": Command(_user, pre_registration=True),
    "PASS": Command(_pass, pre_registration=True),
    "CAP": Command(LOCAL, pre_registration=True),
    "PING": Command(_ping, pre_registration=True),
    "PONG": Command(_pong, pre_registration=True),
    "QUIT": Command(_quit, pre_registration=True),
    # Rooms and messages.
    "JOIN": Command(_join, 1),
    "PART": Command(_part, 1),
    # 411/412 come from the registry, so PRIVMSG/NOTICE need no minimum here.
    "PRIVMSG": Command(_message("PRIVMSG")),
    "NOTICE": Command(_message("NOTICE")),
    "TAGMSG": Command(_tagmsg, 1),
    "TOPIC": Command(_topic, 1),
    "NAMES": Command(_names),
    "LIST": Command(_list),
    "MODE": Command(_mode, 1),
    "KICK": Command(_kick, 2),
    "INVITE": Command(_invite),  # no parameter: the invite list; one: 461 (see _invite)
    "KNOCK": Command(_knock, 1),
    "AWAY": Command(_away),
    # IRCv3 setname; not gated by the capability, so a UDP session (no CAP) may use it too.
    "SETNAME": Command(_setname, 1),
    # Queries.
    "WHO": Command(_who),
    "WHOIS": Command(_whois, 1),
    "ISON": Command(_ison, 1),
    "MONITOR": Command(_monitor, 1),  # IRCv3 monitor; UDP sessions may use it too
    "USERHOST": Command(_userhost, 1),
    "LUSERS": Command(_lusers),
    "MOTD": Command(_motd),
    "VERSION": Command(_version),
    "TIME": Command(_time),
    # Server operators (core/operators.py).
    "OPER": Command(_oper, 2),
    "KILL": Command(_kill, 2),
    "WALLOPS": Command(_wallops, 1),
    "WHOWAS": Command(_whowas),  # no nick: 431 (modern.ircdocs.horse), not 461
    "INFO": Command(_info),
    "LINKS": Command(_links),
    "HELP": Command(_help),
    "HELPOP": Command(_help),
    # IRCv3 draft/read-marker (core/readmarkers.py): its own FAIL NEED_MORE_PARAMS, not 461.
    "MARKREAD": Command(_markread),
    # History (the front-end plans it with twistchat.history, asynchronously).
    "CHATHISTORY": Command(LOCAL),
    # UDP sequence repair (docs/udp-protocol.md); only the UDP front-end has a handler.
    "REPAIR": Command(LOCAL),
    # Accounts (issue #14): IRCv3 SASL (sasl-3.1/3.2) and draft/account-registration, and
    # NS <command> for NickServ and CS for ChanServ (twistchat.services); the front-ends
    # check the passwords.
    "AUTHENTICATE": Command(LOCAL, 1, pre_registration=True, caps=frozenset({"sasl"})),
    # REGISTER works without its capability: a client's raw "/quote REGISTER" too (the
    # account-registration drafts: "MUST be accepted regardless of ... the capability").
    "REGISTER": Command(LOCAL, 3, pre_registration=True),
    "NS": Command(LOCAL, 1),
    "CS": Command(LOCAL, 1),  # CS <command> for ChanServ (registered rooms)
}


def dispatch(registry: Registry, user: User, message: Message, ctx: Context = PLAIN,
             local: LocalVerbs | None = None) -> list[Delivery]:
    """
    Run one command; return the deliveries it causes.

    ``local`` holds the front-end's handlers of local verbs.  Unknown verbs
    (and local verbs this front-end has no handler for) get 421, verbs sent
    before registration that need it 451, too few parameters 461 (RFC 2812 5.2).
    """
    verb = message.verb
    command = COMMANDS.get(verb)
    own = local.local_handler(verb) if local is not None and command is not None \
        and command.local else None
    if not user.registered and (command is None or not command.pre_registration):
        return [registry.reply(user, "451", "You have not registered")]
    if command is None or (command.local and own is None) or not command.caps <= ctx.caps:
        return [registry.reply(user, "421", verb, "Unknown command")]
    if len(message.params) < command.min_params:
        return [registry.reply(user, "461", verb, "Not enough parameters")]
    if own is not None:
        return own(message)
    assert command.handler is not None
    return command.handler(registry, user, message.params, ctx)
