"""
NickServ: accounts for clients without SASL, as ``PRIVMSG NickServ :<command>``.

test-case-name: tests.test_services

Commands (Ergo's names): REGISTER, IDENTIFY, GHOST, CERT ADD/DEL/LIST, INFO,
DROP, LOGOUT, HELP.  Answers are NOTICEs from ``NickServ!NickServ@services.``.
The rules are the core's (log in/out, GHOST's ``evict_ghost``) and the auth
layer's (passwords, off the reactor thread); this module only parses and
words the answers.  Passwords are never logged or echoed back.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred, succeed

from twistchat.auth import Authenticator, AuthFailed
from twistchat.core.accounts import SERVICES_HOST, Account, ghost_refusal
from twistchat.core.events import Delivery
from twistchat.core.registry import Registry, User
from twistchat.services.registration import Refused, create_account
from twistchat.wire import Message, casefold

__all__ = ["MAX_CERTFPS", "NAME", "NickServ", "auth_failure_text", "normal_certfp"]

NAME = "NickServ"
SOURCE = f"{NAME}!{NAME}@{SERVICES_HOST}"
MAX_CERTFPS = 5  # certificate fingerprints one account may add (CERT ADD)

HELP = (
    "NickServ commands:",
    "REGISTER <password> [email]  make an account named after your nick, and log in",
    "IDENTIFY [account] <password>  log in",
    "LOGOUT  log out",
    "GHOST <nick>  disconnect a session holding your nick",
    "CERT ADD [fingerprint] | CERT DEL <fingerprint> | CERT LIST  TLS certificates"
    " for SASL EXTERNAL (ADD alone: the one you connected with)",
    "INFO [account]  what is known of an account",
    "DROP <password>  delete your account",
)

Answer = list[Delivery] | Deferred[list[Delivery]]


def auth_failure_text(code: str) -> str:
    """The words for an ``AuthFailed`` code (shared by SASL's 904 and NickServ)."""
    if code == "rate-limited":
        return "Too many failed attempts; try again later"
    if code == "busy":
        return "The server is busy; try again later"
    return "Invalid account name or password"


def normal_certfp(text: str) -> str | None:
    """A SHA-256 fingerprint as the directory keeps it (64 lower-case hex digits), or None."""
    fp = text.replace(":", "").lower()
    if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
        return None
    return fp


class NickServ:
    """The NickServ pseudo-user of one registry."""

    def __init__(self, registry: Registry, authenticator: Authenticator) -> None:
        self.registry = registry
        self.auth = authenticator

    def notice(self, user: User, *lines: str) -> list[Delivery]:
        """NOTICEs from NickServ to ``user``, one per line."""
        return [Delivery((user,), Message("NOTICE", (user.nick, line), SOURCE)) for line in lines]

    def handle(self, user: User, text: str, certfp: str | None = None) -> Answer:
        """One command to NickServ; ``certfp``: the client's TLS certificate, if any."""
        words = text.split()
        if not words:
            return self.notice(user, "Say HELP for a list of commands")
        verb, args = words[0].upper(), words[1:]
        handler = getattr(self, "_" + verb.lower(), None) if verb.isalpha() else None
        if handler is None:
            return self.notice(user, f"Unknown command {verb[:32]}; say HELP for help")
        result: Answer = handler(user, args, certfp)
        return result

    # ------------------------------------------------------------ commands

    def _help(self, user: User, args: list[str], certfp: str | None) -> Answer:
        return self.notice(user, *HELP)

    def _register(self, user: User, args: list[str], certfp: str | None) -> Answer:
        if not args or len(args) > 2:
            return self.notice(user, "Syntax: REGISTER <password> [email]")
        password, email = args[0], args[1] if len(args) > 1 else "*"
        d = create_account(self.registry, self.auth, user, user.nick, email, password)

        def made(account: Account) -> list[Delivery]:
            return self.notice(user, f"Account {account.name} registered") + \
                self.registry.log_in(user, account.name)

        def refused(failure: Any) -> list[Delivery]:
            failure.trap(Refused)
            return self.notice(user, failure.value.text)

        return d.addCallbacks(made, refused)

    def _identify(self, user: User, args: list[str], certfp: str | None) -> Answer:
        if not args or len(args) > 2:
            return self.notice(user, "Syntax: IDENTIFY [account] <password>")
        name, password = (args[0], args[1]) if len(args) == 2 else (user.nick, args[0])
        if user.account is not None:
            return self.notice(user, f"You are already logged in as {user.account}")
        d = self.auth.check_password(user.address, name, password)

        def checked(account: Account) -> list[Delivery]:
            return self.registry.log_in(user, account.name) + \
                self.notice(user, f"You are now logged in as {account.name}")

        return d.addCallbacks(checked, self._auth_failed(user))

    def _logout(self, user: User, args: list[str], certfp: str | None) -> Answer:
        if user.account is None:
            return self.notice(user, "You are not logged in")
        return self.registry.log_out(user) + self.notice(user, "You are now logged out")

    def _ghost(self, user: User, args: list[str], certfp: str | None) -> Answer:
        if len(args) != 1:
            return self.notice(user, "Syntax: GHOST <nick>")
        why = ghost_refusal(self.registry, user, args[0])
        if why is not None:
            return self.notice(user, why)
        target = self.registry.find_user(args[0])
        assert target is not None
        nick = target.nick
        return self.registry.evict_ghost(user, nick) + self.notice(user, f"{nick} was ghosted")

    def _cert(self, user: User, args: list[str], certfp: str | None) -> Answer:
        account = self._own_account(user)
        if account is None:
            return self.notice(user, "You are not logged in")
        sub = args[0].upper() if args else ""
        if sub == "LIST" and len(args) == 1:
            if not account.certfps:
                return self.notice(user, "No certificates are registered")
            return self.notice(user, *(f"Certificate: {fp}" for fp in sorted(account.certfps)))
        if sub == "ADD" and len(args) <= 2:
            fp = normal_certfp(args[1]) if len(args) == 2 else certfp
            if fp is None:
                return self.notice(user, "Give a SHA-256 fingerprint (64 hex digits)"
                                   if len(args) == 2 else
                                   "You did not connect with a TLS client certificate")
            holder = self.registry.accounts.by_certfp(fp)
            if holder is account:
                return self.notice(user, "That certificate is already registered")
            if holder is not None:
                return self.notice(user, "That certificate belongs to another account")
            if len(account.certfps) >= MAX_CERTFPS:
                return self.notice(user, f"An account may have at most {MAX_CERTFPS} certificates")
            account.certfps.add(fp)
            self.registry.accounts.changed(account)
            return self.notice(user, f"Certificate {fp} added")
        if sub == "DEL" and len(args) == 2:
            fp = normal_certfp(args[1])
            if fp is None or fp not in account.certfps:
                return self.notice(user, "That certificate is not registered")
            account.certfps.discard(fp)
            self.registry.accounts.changed(account)
            return self.notice(user, f"Certificate {fp} removed")
        return self.notice(user, "Syntax: CERT ADD [fingerprint] | CERT DEL <fingerprint> |"
                                 " CERT LIST")

    def _info(self, user: User, args: list[str], certfp: str | None) -> Answer:
        if len(args) > 1:
            return self.notice(user, "Syntax: INFO [account]")
        name = args[0] if args else (user.account or user.nick)
        account = self.registry.accounts.find(name)
        if account is None:
            return self.notice(user, f"{name} is not registered")
        registered = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(account.created))
        online = sorted(u.nick for u in self.registry.users()
                        if u.account is not None and casefold(u.account) == account.key)
        lines = [f"Account: {account.name}", f"Registered: {registered}",
                 "Logged in now: " + (", ".join(online) if online else "nobody")]
        if user.account is not None and casefold(user.account) == account.key:
            lines += [f"E-mail: {account.email or '(none)'}",
                      f"Certificates: {len(account.certfps)}"]
        return self.notice(user, *lines)

    def _drop(self, user: User, args: list[str], certfp: str | None) -> Answer:
        if len(args) != 1:
            return self.notice(user, "Syntax: DROP <password>")
        if user.account is None:
            return self.notice(user, "You are not logged in")
        name = user.account
        d = self.auth.check_password(user.address, name, args[0])

        def checked(account: Account) -> list[Delivery]:
            self.registry.accounts.remove(account.name)
            # Its rooms lose their founder and its AMODEs: a later account of the same
            # name must not inherit them (core/roomreg.py).
            self.registry.registered_rooms.forget_account(account.name)
            out: list[Delivery] = []
            for other in self.registry.users():
                if other.account is not None and casefold(other.account) == account.key:
                    out += self.registry.log_out(other)
            if user.account is not None:  # not yet registered: not among users()
                out += self.registry.log_out(user)
            return out + self.notice(user, f"Account {account.name} dropped")

        return d.addCallbacks(checked, self._auth_failed(user))

    # ------------------------------------------------------------- helpers

    def _own_account(self, user: User) -> Account | None:
        return self.registry.accounts.find(user.account) if user.account else None

    def _auth_failed(self, user: User) -> Any:
        def failed(failure: Any) -> list[Delivery]:
            failure.trap(AuthFailed)
            return self.notice(user, auth_failure_text(failure.value.code))
        return failed


def answered(answer: Answer) -> Deferred[list[Delivery]]:
    """Any answer as a Deferred (a list now is a Deferred that has fired)."""
    return answer if isinstance(answer, Deferred) else succeed(answer)
