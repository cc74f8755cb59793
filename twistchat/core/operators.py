"""
Server operators: OPER, KILL, WALLOPS, and the server notices opers get.

test-case-name: tests.test_operators

Every rule about IRC operators lives here (https://modern.ircdocs.horse/,
"OPER message", "KILL message", "WALLOPS message"); the command table
(:mod:`twistchat.core.commands`) routes the verbs, the registry holds one
:class:`Operators` (the entries of ``--opers FILE`` and the failure counts).

- ``OPER name password``: 381 RPL_YOUREOPER and user mode ``+o``.  A server
  with no entries at all answers 491 ERR_NOOPERHOST.  A wrong password *and*
  an unknown name both answer 464 ERR_PASSWDMISMATCH, after the same scrypt
  work (a dummy hash for an unknown name), so OPER does not tell which names
  exist (Ergo answers 464 for both too).
- An entry may name an account instead of a hash (``name account:teacher``, issue
  #14): ``OPER name anything`` then succeeds for a user logged in as that account
  (any case), and answers 464 to anyone else, as a wrong password does.  The
  password is still required (OPER's two parameters) and ignored; the same dummy
  scrypt work is done, so the answer's timing tells nothing either.
- Failed attempts are limited per address (the connection's, not the shown
  host): :data:`OPER_FAILURES` at once, then one more per
  :data:`OPER_RETRY_SECONDS`.  Past that, OPER answers 464 without checking the
  password, so guessing costs the server nothing.
- ``+o`` is set by OPER only; ``MODE me -o`` drops it (core/modes.py).
- ``KILL nick :reason`` (opers only, else 481 ERR_NOPRIVILEGES): the victim
  gets ``KILL`` and ``ERROR`` and is disconnected; its peers see
  ``QUIT :Killed (killer (reason))``, the form the spec's KILL section gives.
- ``WALLOPS :text`` (opers only, else 481): ``:source WALLOPS :text`` to every
  user with ``+w`` and every operator.
- Server notices (``NOTICE nick :*** OPER: ...``, ``*** KILL: ...``) tell the
  operators online when someone opers up, fails to, or is killed.

Passwords are never kept, logged or echoed: only their scrypt hashes
(:mod:`twistchat.core.passwords`) are held.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twistchat.core.events import Delivery, Disconnect
from twistchat.core.model import User
from twistchat.core.passwords import (
    DEFAULT_COST,
    KEY_BYTES,
    ScryptHash,
    parse_hash,
    verify_password,
)
from twistchat.core.ratelimit import TokenBucket
from twistchat.wire import Message, casefold

if TYPE_CHECKING:
    from twistchat.core.registry import Registry

__all__ = ["ACCOUNT_PREFIX", "MAX_TRACKED_ADDRESSES", "NOTICE_NAME_CHARS", "OPER_FAILURES",
           "OPER_RETRY_SECONDS", "AccountOper", "OperEntry", "Operators", "kill", "load_opers",
           "notice", "oper", "wallops"]

# Failed OPER attempts one address may make at once; then one more per OPER_RETRY_SECONDS.
OPER_FAILURES = 3
OPER_RETRY_SECONDS = 60.0
# Addresses whose failures are remembered at once (the oldest are forgotten first), so a
# spray of addresses costs bounded memory.
MAX_TRACKED_ADDRESSES = 4096

# Checked for an unknown name, so it costs what a wrong password costs (the key is no
# scrypt output of anything: nothing matches it).  Operators.unknown copies the cost of
# the file's first entry, so the timing matches that of the entries.
_UNKNOWN = ScryptHash(*DEFAULT_COST, b"twistchat-no-such-oper", b"\0" * KEY_BYTES)
# The most of a tried login name a server notice repeats.
NOTICE_NAME_CHARS = 32


# An opers file entry that names an account: "name account:ACCOUNTNAME".
ACCOUNT_PREFIX = "account:"


@dataclass(frozen=True)
class AccountOper:
    """An operator entry granted to whoever is logged in as ``account`` (no password)."""

    account: str


OperEntry = ScryptHash | AccountOper


def load_opers(text: str) -> dict[str, OperEntry]:
    """
    The entries of an opers file: ``name scrypt-hash`` or ``name account:ACCOUNT`` a line,
    ``#`` comments, blank lines.

    ValueError names the line that is wrong and why.
    """
    entries: dict[str, OperEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()  # base64 and names have no '#'
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"line {number}: expected 'name scrypt-hash', "
                             f"got {len(fields)} field(s)")
        name, encoded = fields
        if name in entries:
            raise ValueError(f"line {number}: operator {name!r} is listed twice")
        if encoded.startswith(ACCOUNT_PREFIX):
            account = encoded[len(ACCOUNT_PREFIX):]
            if not account:
                raise ValueError(f"line {number}: operator {name!r}: "
                                 f"'{ACCOUNT_PREFIX}' needs an account name")
            entries[name] = AccountOper(account)
            continue
        try:
            entries[name] = parse_hash(encoded)
        except ValueError as e:
            raise ValueError(f"line {number}: operator {name!r}: {e}") from None
    return entries


class Operators:
    """The operator entries, who is opered up, and the OPER failures per address."""

    __slots__ = ("entries", "unknown", "_online", "_failures")

    def __init__(self, entries: Mapping[str, OperEntry] | None = None) -> None:
        self.entries = dict(entries or {})
        first = next((e for e in self.entries.values() if isinstance(e, ScryptHash)), _UNKNOWN)
        self.unknown = ScryptHash(first.n, first.r, first.p, _UNKNOWN.salt,
                                  b"\0" * len(first.key))
        self._online: dict[User, None] = {}  # may hold users since gone: see online()
        self._failures: dict[str, TokenBucket] = {}  # address -> failures left

    def online(self) -> list[User]:
        """The operators connected now (those that quit or dropped +o are forgotten here)."""
        for user in [u for u in self._online if not (u.connected and u.oper)]:
            del self._online[user]
        return list(self._online)

    def add(self, user: User, name: str) -> None:
        """``user`` is now operator ``name``."""
        user.oper = name
        self._online[user] = None

    def allowed(self, address: str, now: float) -> TokenBucket | None:
        """The bucket of ``address`` with one failure taken from it, or None: over the limit."""
        bucket = self._failures.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(OPER_FAILURES, 1 / OPER_RETRY_SECONDS, now)
        self._failures[address] = bucket  # last: the most recently seen
        return bucket if bucket.take(now) else None

    def settle(self, address: str, bucket: TokenBucket, ok: bool, now: float) -> None:
        """An attempt's outcome: a success gives its token back, refilled buckets go."""
        if ok:
            bucket.give_back()
        if bucket.full(now):
            self._failures.pop(address, None)
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            del self._failures[next(iter(self._failures))]

    def tracked(self) -> int:
        """Addresses whose failures are remembered now."""
        return len(self._failures)


def notice(registry: Registry, text: str, skip: User | None = None) -> list[Delivery]:
    """A server notice ``*** text`` to every operator online (but ``skip``)."""
    return [Delivery((op,), Message("NOTICE", (op.nick, "*** " + text), registry.server_name))
            for op in registry.operators.online() if op is not skip]


def oper(registry: Registry, user: User, name: str, password: str) -> list[Delivery]:
    """
    OPER: 381 and +o, 464 for a wrong name or password, 491 with no entries at all.

    An account entry: 381 for a user logged in as its account, 464 for anyone else.
    """
    ops = registry.operators
    if not ops.entries:
        return [registry.reply(user, "491", "No O-lines for your host")]
    now = registry.clock()
    bucket = ops.allowed(user.address, now)
    if bucket is None:
        # Over the limit: refused without checking (the password is not even hashed).
        return [registry.reply(user, "464", "Password incorrect")]
    entry = ops.entries.get(name)
    if isinstance(entry, AccountOper):
        verify_password(password, ops.unknown)  # the work a password entry costs
        ok = user.account is not None and casefold(user.account) == casefold(entry.account)
    else:
        ok = verify_password(password, entry if entry is not None else ops.unknown) \
            and entry is not None
    ops.settle(user.address, bucket, ok, now)
    if not ok:
        return [registry.reply(user, "464", "Password incorrect")] + notice(
            registry, f"OPER: Failed OPER attempt by {user.nick} ({user.source}) "
                      f"using login {name[:NOTICE_NAME_CHARS]!r}")
    newly = not user.oper
    ops.add(user, name)
    out = [registry.reply(user, "381", "You are now an IRC operator")]
    if newly:
        out.append(Delivery((user,), Message("MODE", (user.nick, "+o"), registry.server_name)))
    return out + notice(registry, f"OPER: {user.nick} ({user.source}) is now an IRC "
                                  f"operator (login {name!r})", skip=user)


def _not_oper(registry: Registry, user: User) -> list[Delivery]:
    return [registry.reply(user, "481", "Permission Denied- You're not an IRC operator")]


def kill(registry: Registry, user: User, nick: str, reason: str) -> list[Delivery]:
    """KILL: the victim disconnected with ``Killed (killer (reason))``; 481, 401."""
    if not user.oper:
        return _not_oper(registry, user)
    victim = registry.find_user(nick)
    if victim is None:
        return [registry.reply(user, "401", nick, "No such nick/channel")]
    reason = _cut(reason, registry.limits.kicklen)  # as long as a KICK reason may be
    why = f"Killed ({user.nick} ({reason}))"
    told = Delivery((victim,), Message("KILL", (victim.nick, why), user.source))
    source = victim.source
    # The victim leaves the registry now, its peers seeing this QUIT; its front-end
    # closes the connection on the Disconnect and finds the user already gone.
    out = [told] + registry.quit(victim, why, shown=why)
    out.append(Delivery((victim,), Disconnect(why, why)))
    return out + notice(registry, f"KILL: {user.nick} killed {victim.nick} ({source}): "
                                  f"{reason}")


def wallops(registry: Registry, user: User, text: str) -> list[Delivery]:
    """WALLOPS: ``:source WALLOPS :text`` to users with +w and to operators; 481."""
    if not user.oper:
        return _not_oper(registry, user)
    if not text:
        return [registry.reply(user, "461", "WALLOPS", "Not enough parameters")]
    to = [u for u in registry.users() if u.wallops or u.oper]
    return [Delivery(to, Message("WALLOPS", (text,), user.source))]


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes, on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")
