"""
The walls that keep the design true, checked on every test run (issue #11).

- the layer contract (import-linter, ``[importlinter]`` in setup.cfg): the core
  imports no Twisted, no front-end, no store; front-ends import no store and not
  each other; clients share only the wire grammar;
- types (mypy, ``[mypy]`` in setup.cfg) on ``twistchat/`` and ``clients/``;
- lint (ruff, ``[tool.ruff]`` in pyproject.toml) on the whole tree;
- and one check no tool makes: front-ends and history read no attribute of the
  core's rooms or users beyond a user's identity (they ask the registry's
  methods instead), found by walking their syntax trees.

The tools come with the ``test`` extra; a missing one fails, it does not skip.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    tool = shutil.which(argv[0], path=str(Path(sys.executable).parent)) or shutil.which(argv[0])
    assert tool, f"{argv[0]} is not installed: pip install '.[test]' brings it"
    return subprocess.run([tool, *argv[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_layer_contract_is_kept():
    """lint-imports: every contract in setup.cfg is kept."""
    done = _run("lint-imports", "--no-cache")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "broken" in done.stdout and " 0 broken" in done.stdout


def test_types_check():
    """mypy on twistchat/ and clients/ (setup.cfg) finds nothing."""
    done = _run("mypy")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_lint_is_clean():
    """ruff check on the whole tree (pyproject.toml) finds nothing."""
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


# What a front-end may read of a core User: its identity and its connection object.
# Everything else of a user, and every attribute of a room, is the registry's: a
# front-end asks Registry methods (can_read, audience, rooms_of, room_name, latest...).
CORE_INSIDES = frozenset({
    # Registry
    "users", "channels", "_users", "_rooms", "_per_address", "_connections",
    # Channel
    "members", "direct", "invite_only", "moderated", "no_external", "topic_lock", "invited",
    "topic_by", "topic_time",
    "bans", "excepts", "invex", "secret", "no_ctcp",  # the mask lists and +s +C (issue #13)
    # User, beyond its identity
    "pending_nick", "pending_user", "password_ok", "cap_hold", "by_broadcast",
    # The room log's and the store's insides
    "_last", "_recent", "_pending", "_records", "recent",
})
OUTSIDE_THE_CORE = sorted(
    [*(REPO / "twistchat" / "frontends").glob("*.py"), REPO / "twistchat" / "history.py"])


@pytest.mark.parametrize("path", OUTSIDE_THE_CORE, ids=lambda p: p.name)
def test_front_ends_read_no_core_insides(path):
    """No attribute of the core's rooms and users (beyond identity) is read here."""
    tree = ast.parse(path.read_text(), str(path))
    found = [f"{path.name}:{node.lineno} .{node.attr}" for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr in CORE_INSIDES]
    assert found == []


def test_the_inside_check_can_fail(tmp_path):
    """The check above sees ``channel.members`` (so its silence means something)."""
    sample = "def f(registry, user):\n    return registry.channels[0].members\n"
    tree = ast.parse(sample)
    seen = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert {"channels", "members"} <= seen & CORE_INSIDES
