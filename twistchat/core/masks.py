"""
IRC masks: ``nick!user@host`` patterns with ``*`` and ``?``, as bans and WHO use them.

test-case-name: tests.test_chanmodes

Matching folds case the server's way (rfc1459, :func:`twistchat.wire.casefold`);
a mask given without all three parts is completed with ``*`` the way servers
store list modes (``bob`` is ``bob!*@*``), so that ``MODE #r -b bob`` finds
what ``+b bob`` set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from twistchat.wire import casefold

__all__ = ["mask_matcher", "matches_any", "normal_mask"]


def mask_matcher(mask: str) -> Callable[[str], bool]:
    """A test of a name against an IRC mask (``*``, ``?``), case folded (rfc1459)."""
    pattern = re.compile("".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in casefold(mask)),
        re.DOTALL)
    return lambda name: pattern.fullmatch(casefold(name)) is not None


def matches_any(masks: Iterable[str], source: str) -> bool:
    """Does one of ``masks`` match ``source`` (a user's ``nick!user@host``)?"""
    return any(mask_matcher(mask)(source) for mask in masks)


def normal_mask(mask: str) -> str:
    """A list mask as nick!user@host: ``bob`` is ``bob!*@*``, ``*@10.0.0.7`` is ``*!*@10.0.0.7``."""
    if "!" not in mask and "@" not in mask:
        return f"{mask}!*@*"
    if "!" not in mask:
        return f"*!{mask}"
    if "@" not in mask:
        return f"{mask}@*"
    return mask
