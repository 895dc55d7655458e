"""The benchmark runs and writes its figures (how fast is for bench/, never asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.stack import ROOT

pytestmark = pytest.mark.e2e


def test_bench_quick_runs_and_writes_its_json(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--no-ramp", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "latest.json").read_text())
    for section in (
        "pipeline",
        "baseline_kafka",
        "baseline_pg",
        "baseline_http",
        "saturation_ingest",
        "scaling",
        "candidates_read",
        "metrics_reports",
        "invariants",
        "peak_rss_mb",
        "ratios",
    ):
        assert section in figures, section
    assert figures["invariants"]["nothing_lost_or_doubled"] is True
    assert figures["invariants"]["agents_over_capacity"] == 0
    assert "| ingest→assigned p50 / p99 (ms) |" in done.stdout
    assert [row["agents"] for row in figures["candidates_read"]] == [40, 400]
    assert figures["metrics_reports"]["conversations"] == 100_000
    assert "| metrics summary after 1,000 conversations changed" in done.stdout
