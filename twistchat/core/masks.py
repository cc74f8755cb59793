"""
IRC masks: ``nick!user@host`` patterns with ``*`` and ``?``, as bans and WHO use them.

test-case-name: tests.test_chanmodes

Matching folds case the server's way (rfc1459, :func:`twistchat.wire.casefold`);
a mask given without all three parts is completed with ``*`` the way servers
store list modes (``bob`` is ``bob!*@*``), so that ``MODE #r -b bob`` finds
what ``+b bob`` set.

Extended bans (ISUPPORT ``EXTBAN=~,a``, issue #14): a list mask ``~a:<account>``
matches users logged in as an account the ``<account>`` mask matches (``*`` and
``?`` too, folded the same way), whatever their nick or host, so a banned account
cannot come back under another nick; it never matches a user not logged in.
The same form works in every list (+b, +e, +I), as InspIRCd's and Solanum's
account extbans do.  ``~`` followed by any other type is refused when set
(:func:`extban_error`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable

from twistchat.wire import casefold

__all__ = ["EXTBAN_PREFIX", "EXTBAN_TYPES", "extban_error", "mask_matcher", "matches_any",
           "matches_user", "normal_mask"]

# ISUPPORT EXTBAN=<prefix>,<types>: "~a:name" (modern.ircdocs.horse, "EXTBAN Parameter").
EXTBAN_PREFIX = "~"
EXTBAN_TYPES = "a"  # a: the account a user is logged in as


@functools.lru_cache(maxsize=1024)
def mask_matcher(mask: str) -> Callable[[str], bool]:
    """
    A test of a name against an IRC mask (``*``, ``?``), case folded (rfc1459).

    Cached: a room's bans and exceptions are asked of on every message it gets.
    """
    pattern = re.compile("".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in casefold(mask)),
        re.DOTALL)
    return lambda name: pattern.fullmatch(casefold(name)) is not None


def matches_any(masks: Iterable[str], source: str) -> bool:
    """Does one of ``masks`` match ``source`` (a user's ``nick!user@host``)?"""
    return any(mask_matcher(mask)(source) for mask in masks)


def matches_user(masks: Iterable[str], source: str, account: str | None) -> bool:
    """
    Does one of ``masks`` match a user with ``nick!user@host`` ``source``, logged in as ``account``?

    A ``~a:<mask>`` entry matches ``account`` (None: never); the others match ``source``.
    """
    for mask in masks:
        if mask.startswith(EXTBAN_PREFIX):
            kind, _, value = mask[1:].partition(":")
            if kind == "a" and account is not None and mask_matcher(value)(account):
                return True
        elif mask_matcher(mask)(source):
            return True
    return False


def extban_error(mask: str) -> str | None:
    """Why ``mask`` (starting with ``~``) cannot be set, or None for a good ``~a:<account>``."""
    kind, colon, value = mask[1:].partition(":")
    if kind not in EXTBAN_TYPES or len(kind) != 1 or not colon:
        return f"Unknown extban (this server knows {EXTBAN_PREFIX}a:<account>)"
    if not value:
        return f"{EXTBAN_PREFIX}{kind}: needs an account name (or mask)"
    return None


def normal_mask(mask: str) -> str:
    """
    A list mask as nick!user@host: ``bob`` is ``bob!*@*``, ``*@10.0.0.7`` is ``*!*@10.0.0.7``.

    An extban (``~a:teacher``) stays as it is.
    """
    if mask.startswith(EXTBAN_PREFIX):
        return mask
    if "!" not in mask and "@" not in mask:
        return f"{mask}!*@*"
    if "!" not in mask:
        return f"*!{mask}"
    if "@" not in mask:
        return f"{mask}@*"
    return mask
