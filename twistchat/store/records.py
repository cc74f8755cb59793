"""
The record: one numbered event of a transcript, as every store keeps it.

test-case-name: tests.test_store

A :class:`HistoryRecord` is a value (frozen, its params a tuple, its tags a
read-only mapping), so a record queued for a later write cannot change before
it reaches the disk.  :func:`record_from_event` is the one place that turns a
registry event into a record; the store reads no registry type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["NO_TAGS", "HistoryRecord", "record_from_event"]

#: The tags of a record without client-only tags (one shared empty mapping).
NO_TAGS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """
    One numbered event of a target's transcript, as the store keeps it.

    ``target`` is a casefolded room name ("#lobby") or a :func:`dm_key`;
    ``seq`` rises strictly per target; ``time_ms`` is server time in UTC
    milliseconds since the epoch; ``msgid`` is the IRCv3 msgid clients saw;
    ``command``, ``source`` (``nick!user@host``) and ``params`` are the IRC
    line as sent; ``tags`` holds only client-only tags to replay
    (``+draft/reply``...), never server tags, which are rebuilt on replay.

    ``params`` is normalised to a tuple and ``tags`` to a read-only mapping,
    so a record is a value that nobody can change after it was queued.
    """

    target: str
    seq: int
    time_ms: int
    msgid: str
    command: str
    source: str
    params: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=lambda: NO_TAGS, hash=False)

    def __post_init__(self) -> None:
        if type(self.params) is not tuple:
            object.__setattr__(self, "params", tuple(self.params))
        tags = self.tags
        if not tags:
            if tags is not NO_TAGS:
                object.__setattr__(self, "tags", NO_TAGS)
        elif type(tags) is not MappingProxyType:
            object.__setattr__(self, "tags", MappingProxyType(dict(tags)))


def record_from_event(event: Any) -> HistoryRecord:
    """
    The record of a registry ``Event`` (``twistchat.core.events.Event``).

    Duck-typed on ``target``, ``seq``, ``time_ms``, ``msgid``, ``message``
    (``command``, ``source``, ``params``) and ``client_tags``, so this module
    does not import the registry's types.
    """
    message = event.message
    return HistoryRecord(
        event.target, event.seq, event.time_ms, event.msgid,
        message.command, message.source or "", message.params, event.client_tags,
    )

