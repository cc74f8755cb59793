"""
The command table: from a parsed IRC line of a registered user to a registry call.

test-case-name: tests.test_irc

Shared by every front-end that speaks IRC grammar (TCP and UDP).  Preconditions
(how many parameters a command needs) sit in one table, as Ergo's
``irc/commands.go`` keeps them, instead of a check repeated in each handler;
chat rules stay in the registry.  Registration (NICK/USER/PASS/CAP before
001), PING/PONG and QUIT belong to each front-end's connection state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twistchat.registry import Registry, User
from twistchat.wire import Message


@dataclass(frozen=True)
class Command:
    """A handler and the number of parameters it needs (else 461)."""

    handler: Callable
    min_params: int = 0


def _join(reg: Registry, user: User, p: tuple, ctx) -> list:
    if p[0] == "0":
        return reg.join_zero(user)
    keys = p[1].split(",") if len(p) > 1 else []
    out = []
    for i, name in enumerate(p[0].split(",")):
        if name:
            out += reg.join(user, name, keys[i] if i < len(keys) else None)
    return out


def _part(reg, user, p, ctx):
    reason = p[1] if len(p) > 1 else ""
    out = []
    for name in p[0].split(","):
        if name:
            out += reg.part(user, name, reason)
    return out


def _message(command):
    def handler(reg, user, p, ctx):
        return reg.message(user, command, p[0] if p else "", p[1] if len(p) > 1 else "",
                           ctx.client_tags, ctx.echo)
    return handler


def _tagmsg(reg, user, p, ctx):
    return reg.tagmsg(user, p[0], ctx.client_tags, ctx.echo)


def _nick(reg, user, p, ctx):
    return reg.change_nick(user, p[0] if p else "")


def _topic(reg, user, p, ctx):
    return reg.topic(user, p[0], p[1] if len(p) > 1 else None)


def _names(reg, user, p, ctx):
    if not p:
        return [reg.reply(user, "366", "*", "End of /NAMES list")]
    out = []
    for name in p[0].split(","):
        out += reg.names(user, name, ctx.multi_prefix)
    return out


def _list(reg, user, p, ctx):
    return reg.list_channels(user, p[0].split(",") if p else None)


def _who(reg, user, p, ctx):
    return reg.who(user, p[0] if p else "*")


def _whois(reg, user, p, ctx):
    # "WHOIS server nick" names the nick last.
    return reg.whois(user, p[-1])


def _mode(reg, user, p, ctx):
    return reg.mode(user, p[0], p[1] if len(p) > 1 else None, p[2:])


def _kick(reg, user, p, ctx):
    reason = p[2] if len(p) > 2 else ""
    out = []
    for nick in p[1].split(","):
        out += reg.kick(user, p[0], nick, reason)
    return out


COMMANDS = {
    "JOIN": Command(_join, 1),
    "PART": Command(_part, 1),
    # 411/412 come from the registry, so PRIVMSG/NOTICE need no minimum here.
    "PRIVMSG": Command(_message("PRIVMSG")),
    "NOTICE": Command(_message("NOTICE")),
    "TAGMSG": Command(_tagmsg, 1),
    "NICK": Command(_nick),
    "TOPIC": Command(_topic, 1),
    "NAMES": Command(_names),
    "LIST": Command(_list),
    "WHO": Command(_who),
    "WHOIS": Command(_whois, 1),
    "ISON": Command(lambda reg, user, p, ctx: reg.ison(user, " ".join(p).split()), 1),
    "USERHOST": Command(lambda reg, user, p, ctx: reg.userhost(user, p), 1),
    "AWAY": Command(lambda reg, user, p, ctx: reg.set_away(user, p[0] if p else None)),
    "MODE": Command(_mode, 1),
    "KICK": Command(_kick, 2),
    "INVITE": Command(lambda reg, user, p, ctx: reg.invite(user, p[0], p[1]), 2),
    "LUSERS": Command(lambda reg, user, p, ctx: reg.lusers(user)),
    "MOTD": Command(lambda reg, user, p, ctx: reg.motd_replies(user)),
    "VERSION": Command(lambda reg, user, p, ctx: reg.version(user)),
    "TIME": Command(lambda reg, user, p, ctx: reg.time(user)),
}


@dataclass(frozen=True)
class Context:
    """What a handler needs to know of the connection beyond the user."""

    echo: bool = False  # IRCv3 echo-message
    multi_prefix: bool = False  # IRCv3 multi-prefix
    client_tags: dict = None  # client-only tags on this line (message-tags)


PLAIN = Context()


def dispatch(registry: Registry, user: User, message: Message, ctx: Context = PLAIN) -> list:
    """
    Run one command of a registered user; return the registry's deliveries.

    Unknown commands get 421 and too few parameters 461 (RFC 2812 5.2).
    """
    verb = message.verb
    command = COMMANDS.get(verb)
    if command is None:
        return [registry.reply(user, "421", verb, "Unknown command")]
    if len(message.params) < command.min_params:
        return [registry.reply(user, "461", verb, "Not enough parameters")]
    return command.handler(registry, user, message.params, ctx)
