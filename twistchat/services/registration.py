"""
Making an account on the wire: the rules IRCv3 REGISTER and NickServ REGISTER share.

test-case-name: tests.test_services

One place decides whether a new account may be made (the front-ends' REGISTER
of ``draft/account-registration`` and NickServ's REGISTER both ask here), so
the two answers never disagree.  Refusals carry the account-registration
spec's FAIL codes (https://ircv3.net/specs/extensions/account-registration);
NickServ shows their text.  No e-mail is ever sent: an address is only kept
(there is no VERIFY step).
"""

from __future__ import annotations

import weakref
from typing import Any

from twisted.internet.defer import Deferred, fail

from twistchat.auth import MAX_PASSWORD_BYTES, MAX_TRACKED, Authenticator, AuthFailed
from twistchat.core.accounts import Account, is_service_nick
from twistchat.core.events import Delivery
from twistchat.core.ratelimit import KeyedBuckets
from twistchat.core.registry import Registry, User
from twistchat.wire import Message, casefold, safe_middle

__all__ = ["MAX_EMAIL_BYTES", "MIN_PASSWORD_CHARS", "REGISTER_BURST", "REGISTER_RATE",
           "Refused", "create_account", "refusal", "register_command"]

MIN_PASSWORD_CHARS = 8  # shorter passwords: WEAK_PASSWORD
MAX_EMAIL_BYTES = 254  # RFC 5321's limit on a forward path
# Accounts one source address may make: a burst, then one every 1/rate seconds; past it,
# TEMPORARILY_UNAVAILABLE (each account costs a hash and a row, and reserves a nick).
# The defaults of Limits.register_burst / register_rate (--register-burst, --register-rate).
REGISTER_BURST, REGISTER_RATE = 3, 1 / 60


# One limit per server: per authenticator (the service makes one).
_limits: weakref.WeakKeyDictionary[Authenticator, KeyedBuckets] = weakref.WeakKeyDictionary()


class Refused(Exception):
    """A registration refused: ``code`` (the spec's FAIL code), ``subject``, ``text``."""

    def __init__(self, code: str, subject: str, text: str) -> None:
        super().__init__(code)
        self.code, self.subject, self.text = code, subject, text


def _plausible_email(email: str) -> bool:
    local, at, domain = email.rpartition("@")
    return bool(at and local and "." in domain.strip(".") and " " not in email
                and "@" not in local and len(email.encode("utf-8")) <= MAX_EMAIL_BYTES)


def refusal(registry: Registry, user: User, name: str | None, email: str,
            password: str) -> Refused | None:
    """Why ``user`` may not register ``name`` now (None: it may); no hashing yet."""
    if not getattr(registry, "registration_open", True):
        return Refused("DISALLOWED", name or "*", "Registration is closed on this server")
    if user.account is not None:
        return Refused("ALREADY_AUTHENTICATED", user.account, "You are already logged in")
    if name is None:
        return Refused("NEED_NICK", "*", "Choose a nick first")
    if not registry.valid_nick(name) or is_service_nick(name):
        return Refused("BAD_ACCOUNT_NAME", name, "That account name is not a valid nick")
    if registry.accounts.find(name) is not None:
        return Refused("ACCOUNT_EXISTS", name, "That account already exists")
    if email and email != "*" and not _plausible_email(email):
        return Refused("INVALID_EMAIL", email, "That e-mail address is not valid")
    if len(password) < MIN_PASSWORD_CHARS:
        return Refused("WEAK_PASSWORD", name,
                       f"Passwords must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return Refused("UNACCEPTABLE_PASSWORD", name,
                       f"Passwords may have at most {MAX_PASSWORD_BYTES} bytes")
    return None


def create_account(registry: Registry, authenticator: Authenticator, user: User,
                   name: str | None, email: str, password: str) -> Deferred[Account]:
    """The new account ``name`` (fails with :class:`Refused`); the caller logs ``user`` in."""
    refused = refusal(registry, user, name, email, password)
    if refused is not None:
        return fail(refused)
    assert name is not None
    limit = _limits.get(authenticator)
    if limit is None:
        limit = _limits[authenticator] = KeyedBuckets(registry.limits.register_burst,
                                                      registry.limits.register_rate, MAX_TRACKED)
    if not limit.take(user.address, authenticator.clock()):
        return fail(Refused("TEMPORARILY_UNAVAILABLE", name,
                            "Too many accounts made from your address; try again later"))

    def failed(failure: Any) -> Account:
        failure.trap(AuthFailed)
        limit.give_back(user.address)  # nothing was made
        code = failure.value.code
        if code == "exists":
            raise Refused("ACCOUNT_EXISTS", name, "That account already exists")
        if code == "bad-password":
            raise Refused("UNACCEPTABLE_PASSWORD", name, "That password is not acceptable")
        raise Refused("TEMPORARILY_UNAVAILABLE", name,
                      "The server is busy; try again later")

    d = authenticator.create(name, password, "" if email == "*" else email)
    return d.addErrback(failed)


def register_command(registry: Registry, authenticator: Authenticator, user: User,
                     params: tuple[str, ...]) -> list[Delivery] | Deferred[list[Delivery]]:
    """
    ``REGISTER <account|*> <email|*> <password>`` (IRCv3 draft/account-registration).

    ``REGISTER SUCCESS <account> :...`` and 900, or ``FAIL REGISTER <code> ...``.
    Works before registration (``before-connect``); the account is the nick
    (``*`` or the nick itself: no ``custom-account-name``).  No e-mail is sent,
    so there is no VERIFY step.
    """
    account, email, password = params[:3]
    nick = user.nick if user.registered else user.pending_nick
    server = registry.server_name

    def fail_line(code: str, subject: str, text: str) -> list[Delivery]:
        return [Delivery((user,), Message("FAIL", ("REGISTER", code, safe_middle(subject), text),
                                          server))]

    if account != "*" and nick is not None and casefold(account) != casefold(nick):
        return fail_line("ACCOUNT_NAME_MUST_BE_NICK", account, "The account name must be your nick")

    def made(new: Account) -> list[Delivery]:
        return [Delivery((user,), Message("REGISTER", ("SUCCESS", new.name, "Account created"),
                                          server))] + registry.log_in(user, new.name)

    def refused(failure: Any) -> list[Delivery]:
        failure.trap(Refused)
        r = failure.value
        return fail_line(r.code, r.subject, r.text)

    d = create_account(registry, authenticator, user, nick, email, password)
    return d.addCallbacks(made, refused)
