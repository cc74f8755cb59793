"""
HELP (and HELPOP): a short syntax and one line of description per command.

test-case-name: tests.test_servercmds

https://modern.ircdocs.horse/#help-message: servers "MUST either: reply with a
single ERR_HELPNOTFOUND message; or reply with a single RPL_HELPSTART message,
then arbitrarily many RPL_HELPTXT messages, then a single RPL_ENDOFHELP".  "The
RPL_HELPSTART message SHOULD be some sort of title and the first RPL_HELPTXT
message SHOULD be empty."  The <subject> "MUST be the one requested by the
client, but may be casefolded; unless it would be an invalid parameter, in
which case it MUST be *" (numerics 704-706; 524 ERR_HELPNOTFOUND ``<client>
<subject> :<reason>``).  HELPOP is the same command under its older name.

Subjects are the verbs of the command table the caller passes in
(:data:`twistchat.core.commands.COMMANDS`), upper-cased; HELP with no subject
lists them.  tests.test_servercmds checks that every verb has an entry here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery
from twistchat.core.model import User

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["HELP", "help_replies"]

# verb -> (syntax, what it does).  The syntax is written as modern.ircdocs.horse writes
# each command's parameters.
HELP: dict[str, tuple[str, str]] = {
    "NICK": ("NICK <nickname>", "Choose your nickname, or change it."),
    "USER": ("USER <username> 0 * <realname>", "Give your user name and real name "
             "when you connect."),
    "PASS": ("PASS <password>", "Give the server password before NICK and USER."),
    "CAP": ("CAP LS|LIST|REQ|END [<capabilities>]", "Negotiate IRCv3 capabilities."),
    "PING": ("PING <token>", "Ask the server to answer PONG with the same token."),
    "PONG": ("PONG <token>", "Answer the server's PING."),
    "QUIT": ("QUIT [<reason>]", "Leave the server."),
    "JOIN": ("JOIN <room>{,<room>} [<key>{,<key>}]", "Join rooms (JOIN 0 leaves all)."),
    "PART": ("PART <room>{,<room>} [<reason>]", "Leave rooms."),
    "PRIVMSG": ("PRIVMSG <target>{,<target>} <text>", "Send a message to rooms or nicks."),
    "NOTICE": ("NOTICE <target>{,<target>} <text>", "Send a notice: never answered "
               "automatically."),
    "TAGMSG": ("TAGMSG <target>", "Send only tags (typing notifications); needs "
               "message-tags."),
    "TOPIC": ("TOPIC <room> [<topic>]", "Show a room's topic, or set it."),
    "NAMES": ("NAMES <room>{,<room>}", "List who is in rooms."),
    "LIST": ("LIST [<room>{,<room>}]", "List rooms, their sizes and topics."),
    "MODE": ("MODE <target> [<modestring> [<arguments>...]]", "Show or change a room's "
             "modes or your own."),
    "KICK": ("KICK <room> <nick>{,<nick>} [<reason>]", "Put someone out of a room "
             "(operators)."),
    "INVITE": ("INVITE [<nick> <room>]", "Invite someone to a room; with no parameter, "
               "list your invitations."),
    "KNOCK": ("KNOCK <room> [<message>]", "Ask the operators of a closed room for an "
              "invitation."),
    "AWAY": ("AWAY [<text>]", "Mark yourself away with a message; with none, back."),
    "SETNAME": ("SETNAME <realname>", "Change your real name."),
    "WHO": ("WHO <mask>", "List users in a room or matching a mask."),
    "WHOIS": ("WHOIS [<server>] <nick>", "Show who a user is."),
    "WHOWAS": ("WHOWAS <nick> [<count>]", "Show who lately had a nick, newest first."),
    "ISON": ("ISON <nick>{ <nick>}", "Which of these nicks are online."),
    "MONITOR": ("MONITOR +|-|C|L|S [<nick>{,<nick>}]", "Be told when nicks sign on "
                "and off."),
    "USERHOST": ("USERHOST <nick>{ <nick>}", "Show user@host of up to five nicks."),
    "LUSERS": ("LUSERS", "Count the users and rooms of the server."),
    "MOTD": ("MOTD", "Show the message of the day."),
    "VERSION": ("VERSION", "Show the server's version and features (ISUPPORT)."),
    "TIME": ("TIME", "Show the server's local time."),
    "INFO": ("INFO", "Show what this server is."),
    "LINKS": ("LINKS [<mask>]", "List the servers of the network (this one)."),
    "HELP": ("HELP [<subject>]", "Help on a command; with no subject, list them."),
    "HELPOP": ("HELPOP [<subject>]", "The same as HELP."),
    "CHATHISTORY": ("CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN|TARGETS ...",
                    "Fetch the history of a room or conversation; needs "
                    "draft/chathistory."),
    "REPAIR": ("REPAIR <target> <first> <last>", "Ask again for missed room lines "
               "(UDP sessions)."),
    "MARKREAD": ("MARKREAD <target> [timestamp=<time>]", "Get or set how far your "
                 "account has read a room or conversation (draft/read-marker)."),
    # Verbs added on other branches of issue #13 (opers); their entries are here already.
    "OPER": ("OPER <name> <password>", "Become an IRC operator."),
    "AUTHENTICATE": ("AUTHENTICATE <mechanism or data>", "Log in to your account with SASL "
                     "(PLAIN or EXTERNAL); your client does this for you."),
    "REGISTER": ("REGISTER <account|*> <email|*> <password>", "Create an account (its name "
                 "is your nick) and log in to it."),
    "NS": ("NS <command>", "Talk to NickServ: REGISTER, IDENTIFY, GHOST, CERT, INFO, DROP, "
           "LOGOUT; NS HELP lists them."),
    "CS": ("CS <command>", "Talk to ChanServ: REGISTER a room, OP, DEOP, VOICE, AMODE, TOPIC, "
           "INFO, DROP; CS HELP lists them."),
    "KILL": ("KILL <nick> <reason>", "Disconnect a user from the server (IRC operators)."),
    "WALLOPS": ("WALLOPS <text>", "Send a message to every user with user mode +w "
                "(IRC operators)."),
}

_LIST_WIDTH = 60  # characters of verbs per line of the command list


def help_replies(registry: Registry, user: User, subject: str | None,
                 verbs: Collection[str]) -> list[Delivery]:
    """HELP [subject]: 704, 705..., 706 for one of ``verbs`` (or their list); else 524."""
    known = sorted(v for v in verbs if v in HELP)
    if subject is None or not subject.strip():
        lines = ["", "Commands:"] + _wrap(known) + \
            ["Try /HELP <command> for help on one of them."]
        return _section(registry, user, "*", "** twistchat help **", lines)
    wanted = subject.upper()
    if wanted not in known:
        return [registry.reply(user, "524", wanted, "No help available on this topic")]
    syntax, what = HELP[wanted]
    return _section(registry, user, wanted, f"** {syntax} **", ["", what])


def _section(registry: Registry, user: User, subject: str, title: str,
             lines: list[str]) -> list[Delivery]:
    return [registry.reply(user, "704", subject, title),
            *(registry.reply(user, "705", subject, line) for line in lines),
            registry.reply(user, "706", subject, "End of /HELP")]


def _wrap(words: list[str]) -> list[str]:
    """``words`` joined by spaces, in lines of at most about _LIST_WIDTH characters."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= _LIST_WIDTH:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines
