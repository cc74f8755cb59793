"""
IRCv3 standard replies: a refused request as ``FAIL <command> <code> ... :<text>``.

test-case-name: tests.test_multiline, tests.test_history

One exception for every kind of request that answers with a FAIL
(https://ircv3.net/specs/extensions/standard-replies): CHATHISTORY's
(:class:`twistchat.history.HistoryError`) and a multiline batch's
(:class:`twistchat.core.multiline.Failed`) name their command and say nothing else.
"""

from __future__ import annotations

from twistchat.wire import Message, safe_middle

__all__ = ["StandardReplyError"]


class StandardReplyError(Exception):
    """
    A request refused with an IRCv3 standard reply: ``FAIL <command> <code> <params...> :<text>``.

    Each kind of request names its ``command`` (CHATHISTORY, BATCH ...); the
    client's own words among ``params`` are made safe as middle parameters.
    """

    command = "*"

    def __init__(self, code: str, *params: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.params = params
        self.text = text

    def message(self, server_name: str) -> Message:
        """The FAIL line, from ``server_name``."""
        params = [safe_middle(p) for p in self.params]
        return Message("FAIL", (self.command, self.code, *params, self.text), server_name)
