"""
The README's IRC support table names everything the server answers.

Its rows are read back and compared with the command table, the ISUPPORT
tokens, the capabilities and the modes the code has, so a verb or token added
without a row (or a row left behind by a removed one) fails here (issue #13).
"""

from __future__ import annotations

import re
from pathlib import Path

from twistchat.core import commands, queries
from twistchat.core.model import CHANMODES, PREFIX_MODES
from twistchat.core.registry import Registry
from twistchat.frontends import ircv3

README = Path(__file__).resolve().parent.parent / "README.md"
# Tokens only a service option adds (service.py), not the registry's own list.
SERVICE_TOKENS = {"CHATHISTORY", "MSGREFTYPES"}
# Verbs the TCP front-end reads before the command table (a multiline batch's framing).
FRONTEND_VERBS = {"BATCH"}


def support_rows() -> dict[str, set[str]]:
    """Kind -> the backticked names in that kind's rows of the "IRC support" table."""
    section = README.read_text().split("### IRC support", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| kind "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a row of the IRC support table has {len(cells)} cells: {line}"
        if cells[1].startswith("`"):
            rows.setdefault(cells[0], set()).update(re.findall(r"`([^`]+)`", cells[1]))
    return rows


def token_names(tokens: list[str]) -> set[str]:
    return {token.split("=", 1)[0] for token in tokens}


def test_every_command_has_a_row():
    assert support_rows()["command"] == set(commands.COMMANDS) | FRONTEND_VERBS


def test_every_isupport_token_has_a_row():
    named = token_names(support_rows()["ISUPPORT"])
    assert named == token_names(queries.isupport(Registry())) | SERVICE_TOKENS


def test_every_capability_has_a_row():
    assert support_rows()["capability"] == set(ircv3.CAPABILITIES)


def test_every_room_mode_has_a_row():
    letters = set(CHANMODES.replace(",", "") + PREFIX_MODES)
    assert support_rows()["room mode"] == {f"+{letter}" for letter in letters}


def test_every_user_mode_has_a_row():
    registry = Registry(server_name="srv")
    user = registry.connect(Conn(), "127.0.0.1")
    welcome = [d.payload for d in registry.register(user, "u", "u", "real")]
    my_info = next(line for line in welcome if getattr(line, "command", "") == "004")
    user_modes = my_info.params[3]  # 004 <nick> <server> <version> <user modes> ...
    assert support_rows()["user mode"] == {f"+{letter}" for letter in user_modes}


class Conn:
    def deliver(self, payload) -> None:
        pass
