"""
Accounts as the core sees them: who owns which nick, found without waiting.

test-case-name: tests.test_accounts

An :class:`AccountDirectory` holds every account in memory (a school, a team,
a LAN party: hundreds, not millions), so the chat rules that ask "is this nick
reserved, and by whom?" or "which account has this certificate?" answer at
once, in the reactor's turn, as every other rule does.  The directory is the
core's view only: each change is handed to ``saver`` (the service wires it to
the store, which writes it in its own thread), and the service fills the
directory from the store at start-up.  Passwords never reach the core as
text: ``credential`` is the hash the auth layer made (``twistchat.auth``), kept
opaque here.

Design and the division of work: docs/accounts.md (issue #14).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twistchat.core import reservations, roomreg
from twistchat.core.events import Delivery, Disconnect, Gated
from twistchat.core.model import User
from twistchat.wire import Message, casefold

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["SERVICES_HOST", "SERVICE_NICKS", "Account", "AccountDirectory", "Saver",
           "evict_ghost", "ghost_refusal", "is_service_nick", "log_in", "log_out", "service_whois"]

# The services' pseudo-users (twistchat.services): nobody may take these nicks, and
# WHOIS shows them as services.  Their lines come from ``<nick>!<nick>@services.``.
SERVICE_NICKS = ("NickServ", "ChanServ")
SERVICES_HOST = "services."
_SERVICE_KEYS = {casefold(nick): nick for nick in SERVICE_NICKS}


@dataclass
class Account:
    """
    One registered account; its name is also the nick it reserves.

    ``credential``: the password hash (argon2id, encoded), "" for an account
    that logs in only by certificate; ``certfps``: SHA-256 fingerprints of TLS
    client certificates for SASL EXTERNAL (lower-case hex, no colons).
    """

    name: str
    credential: str = ""
    email: str = ""
    created: float = 0.0
    certfps: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        """The casefolded name: accounts, like nicks, are found case-insensitively."""
        return casefold(self.name)

    def to_record(self) -> dict[str, Any]:
        """What the store keeps of the account (JSON-ready; the store does not look inside)."""
        return {"name": self.name, "credential": self.credential, "email": self.email,
                "created": self.created, "certfps": sorted(self.certfps)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Account:
        """The account a stored record describes (:meth:`to_record`'s inverse)."""
        return cls(str(record["name"]), str(record.get("credential", "")),
                   str(record.get("email", "")), float(record.get("created", 0.0)),
                   {str(fp).lower() for fp in record.get("certfps", ())})


# Told of every change: (casefolded name, the account now, or None when it was dropped).
Saver = Callable[[str, "Account | None"], None]


class AccountDirectory:
    """Every account, by casefolded name and by certificate fingerprint."""

    def __init__(self, accounts: Iterable[Account] = (), saver: Saver | None = None) -> None:
        self._by_key: dict[str, Account] = {}
        self._by_certfp: dict[str, Account] = {}
        for account in accounts:
            self._index(account)
        self.saver = saver  # set by the service once the store is open

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._by_key.values()))

    def find(self, name: str) -> Account | None:
        """The account called ``name`` (any case), or None."""
        return self._by_key.get(casefold(name))

    def owner_of(self, nick: str) -> Account | None:
        """The account that reserves ``nick``: the one of that name (Ergo's default)."""
        return self.find(nick)

    def by_certfp(self, certfp: str) -> Account | None:
        """The account that added certificate fingerprint ``certfp``, or None."""
        return self._by_certfp.get(certfp.lower())

    def add(self, account: Account) -> None:
        """A new account; ``ValueError`` if the name is taken (callers check first)."""
        if account.key in self._by_key:
            raise ValueError(f"account {account.name} exists")
        self._index(account)
        self._save(account.key, account)

    def changed(self, account: Account) -> None:
        """``account`` (already in the directory) was changed in place: re-index, save."""
        for fp, owner in list(self._by_certfp.items()):
            if owner is account:
                del self._by_certfp[fp]
        self._index(account)
        self._save(account.key, account)

    def remove(self, name: str) -> Account | None:
        """Drop the account called ``name``; the account dropped, or None."""
        account = self._by_key.pop(casefold(name), None)
        if account is not None:
            for fp in account.certfps:
                self._by_certfp.pop(fp, None)
            self._save(account.key, None)
        return account

    def _index(self, account: Account) -> None:
        self._by_key[account.key] = account
        for fp in account.certfps:
            self._by_certfp[fp.lower()] = account

    def _save(self, key: str, account: Account | None) -> None:
        if self.saver is not None:
            self.saver(key, account)


def log_in(registry: Registry, user: User, name: str) -> list[Delivery]:
    """
    ``user`` is now logged in as account ``name`` (checked by the caller: SASL, NickServ).

    900 RPL_LOGGEDIN to the user; IRCv3 ``account-notify`` (``ACCOUNT name``) to
    its peers that negotiated it; in the registered rooms it is in, the modes its
    account holds (core/roomreg.py).  Logging in again as the same account says 900
    again and tells nobody.  Logging in as the owner of the user's reserved nick
    lifts its deadline (core/reservations.py).
    """
    account = registry.accounts.find(name)
    shown = account.name if account is not None else name
    # Before 001 (SASL) the mask is what the client has offered so far ("*" where unknown).
    mask = user.source if user.registered else \
        f"{user.pending_nick or '*'}!{(user.pending_user or ('*',))[0]}@{user.host}"
    out = [registry.reply(user, "900", mask, shown,
                          f"You are now logged in as {shown}")]
    if user.account != shown:
        user.account = shown
        out += _account_notify(registry, user, shown)
        out += roomreg.on_log_in(registry, user)  # its op/voice in registered rooms
    return out + reservations.on_nick(registry, user)


def log_out(registry: Registry, user: User) -> list[Delivery]:
    """
    901 RPL_LOGGEDOUT, and ``ACCOUNT *`` to peers; nothing for a user not logged in.

    On its account's own nick, the user's grace period starts (core/reservations.py).
    """
    if user.account is None:
        return []
    user.account = None
    return [registry.reply(user, "901", f"{user.source}", "You are now logged out"),
            *_account_notify(registry, user, "*"), *reservations.on_nick(registry, user)]


def _account_notify(registry: Registry, user: User, shown: str) -> list[Delivery]:
    if not user.registered:
        return []  # before 001 nobody shares a room with the user yet
    peers = registry.peers(user) - {user}
    line = Message("ACCOUNT", (shown,), user.source)
    return [Delivery(tuple(peers), Gated("account-notify", line))] if peers else []


# ------------------------------------------------------------- services' nicks


def is_service_nick(nick: str) -> bool:
    """Is ``nick`` (any case) one of the services' pseudo-users (:data:`SERVICE_NICKS`)?"""
    return casefold(nick) in _SERVICE_KEYS


def service_whois(registry: Registry, user: User, nick: str) -> list[Delivery] | None:
    """WHOIS of a service pseudo-user: 311, 312, 318 (None: ``nick`` is no service)."""
    name = _SERVICE_KEYS.get(casefold(nick))
    if name is None:
        return None
    return [registry.reply(user, "311", name, name, SERVICES_HOST, "*", f"{name} service"),
            registry.reply(user, "312", name, registry.server_name, "Network services"),
            registry.reply(user, "318", name, "End of /WHOIS list")]


# ------------------------------------------------------------------- GHOST


def ghost_refusal(registry: Registry, owner: User, nick: str) -> str | None:
    """
    Why ``owner`` may not evict the session holding ``nick`` (None: it may).

    Allowed when ``owner`` is logged in and the session holding ``nick`` is
    another one, and either ``nick`` is reserved by ``owner``'s account or that
    session is logged in to the same account (Ergo's GHOST rules).
    """
    if owner.account is None:
        return "You are not logged in"
    target = registry.find_user(nick)
    if target is None:
        return f"{nick} is not online"
    if target is owner:
        return "You cannot GHOST yourself"
    mine = casefold(owner.account)
    reserved = registry.accounts.owner_of(target.nick)
    if (reserved is None or reserved.key != mine) and \
            (target.account is None or casefold(target.account) != mine):
        return f"{target.nick} is not yours to GHOST"
    return None


def evict_ghost(registry: Registry, owner: User, nick: str) -> list[Delivery]:
    """
    Disconnect the session holding ``nick`` for ``owner`` (NickServ GHOST).

    Its peers see ``QUIT :GHOST command used by <owner>``, the nick is free at
    once; [] if :func:`ghost_refusal` refuses.
    """
    if ghost_refusal(registry, owner, nick) is not None:
        return []
    target = registry.find_user(nick)
    assert target is not None
    why = f"GHOST command used by {owner.nick}"
    # As KILL: the user leaves the registry now; its front-end closes on the Disconnect.
    return registry.quit(target, why, shown=why) + [Delivery((target,), Disconnect(why, why))]
