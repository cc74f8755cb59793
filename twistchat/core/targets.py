"""
Names of transcripts: a room's casefolded name, or the key of a private conversation.

test-case-name: tests.test_registry

Every numbered event belongs to one *target*.  A room's target is its
casefolded name (``#lobby``); a private conversation's is :func:`dm_key` of the
two casefolded nicks.  The registry makes these keys, the room log numbers
events per key, the store keeps records per key: one definition, here.
"""

from __future__ import annotations

__all__ = ["DM_PREFIX", "dm_key", "dm_parties", "is_dm_key", "is_room_key"]

# Private conversations are kept under "~dm:<nick>:<nick>", the two casefolded
# nicks sorted.  "~" and ":" never occur in a casefolded nick (RFC 2812 2.3.1
# nickname grammar; rfc1459 casemapping folds "~" to "^"), nor does "~" start a
# room name (CHANTYPES=#), so such a key can name neither a room nor a nick.
DM_PREFIX = "~dm:"


def dm_key(nick_a: str, nick_b: str) -> str:
    """
    The target key of the private conversation between two casefolded nicks.

    Order-independent: ``dm_key("bob", "alice") == dm_key("alice", "bob") ==
    "~dm:alice:bob"``.  Callers casefold (``wire.casefold``) first.
    """
    if nick_b < nick_a:
        nick_a, nick_b = nick_b, nick_a
    return f"{DM_PREFIX}{nick_a}:{nick_b}"


def is_dm_key(target: str) -> bool:
    """True if ``target`` is a private conversation key made by :func:`dm_key`."""
    return target.startswith(DM_PREFIX)


def dm_parties(target: str) -> tuple[str, str] | None:
    """The two casefolded nicks of a :func:`dm_key`, or None for any other target."""
    if not target.startswith(DM_PREFIX):
        return None
    a, sep, b = target[len(DM_PREFIX):].partition(":")
    return (a, b) if sep else None


def is_room_key(target: str) -> bool:
    """True for a room's target (``#...``), False for a private conversation."""
    return target[:1] in "#&"
