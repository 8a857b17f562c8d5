"""The benchmark harness runs end to end on a tiny operator, so it cannot rot. No timing is
asserted: only that every figure was measured and nothing failed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make test installs it)"
)
def test_bench_harness_runs_on_a_tiny_operator(tmp_path: Path) -> None:
    env = {**os.environ, "NEXTBEST_BENCH_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "run.py"), "--size", "300",
         "--runs", "1", "--duration", "1", "--half-load-seconds", "1", "--connections", "4",
         "--ladder"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio" in result.stdout
    figures = json.loads((tmp_path / "results-sqlite-300.json").read_text())
    assert figures["decisions_per_s"] > 0
    assert figures["bare_per_s"] > 0
    assert figures["outcomes_per_s"] > 0
    assert figures["decision_errors"] == 0
    assert figures["outcome_errors"] == 0
    assert figures["half_load_server_ms"]["requests"] > 0
    assert figures["peak_rss_mb_per_worker"]
    private, peak = figures["private_rss_mb_per_worker"], figures["peak_rss_mb_per_worker"]
    assert private and 0 < max(private) <= max(peak)
    # The ladder: the same server with each kind of I/O, then the decision itself, taken away.
    ladder = figures["ladder"]
    assert list(ladder) == [
        "impressions",
        "impressions,reads",
        "impressions,reads,key",
        "impressions,reads,key,core",
    ]
    for rung in ladder.values():
        assert rung["decisions_per_s"] > 0 and rung["ratio"] > 0
        assert rung["errors"] == 0
    assert "without impressions,reads,key,core" in result.stdout
