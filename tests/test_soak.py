"""
The soak of issue #12 for one minute: bench/soak.py against the real server.

TCP and UDP sessions that stay, sessions that leave and come back, a flooder, and
one SIGTERM restart in the middle; every screen must match the history written to
SQLite: none missing, none doubled, in order, and every line said is there.
The ten-minute run is ``python bench/soak.py`` (numbers in bench/results/).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.serverproc import REPO, source_env


def test_one_minute_soak_every_screen_matches_history(tmp_path):
    """45 s of traffic with a restart at 22 s, 12 s to drain: every screen is history."""
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--duration", "45", "--drain", "12",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240, env=source_env(), cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    result = json.loads(out.read_text())
    bad = [s for s in result["screens"] if not s["ok"]]
    assert result["ok"], (bad, result["said"], result["history_lines"])
    assert result["restart"]["down_s"] > 2
    assert result["said"] == result["history_lines"] > 100
    kinds = {(s["proto"], s["kind"]) for s in result["screens"]}
    assert {("tcp", "stayer"), ("udp", "stayer"), ("tcp", "churner"),
            ("udp", "churner")} <= kinds
