"""The scale benchmark's smoke run: ``bench/scale.py`` on a small table, start to finish.

Only that it completes, every read answered and every figure printed: the figures
themselves are bench/README's, measured at 1 M and 10 M rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import scale

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_scale_bench_fills_a_table_measures_every_read_and_prints_every_figure(
    postgres: None, redis_server: None, tmp_path: Path
) -> None:
    # Given a table of 2,000 tasks filled by SQL and an API on it, one-second windows
    figures = tmp_path / "scale.json"
    argv = [sys.executable, str(ROOT / "bench/scale.py"), "--quick", "--sizes", "2000"]
    argv += ["--window", "1", "--json", str(figures)]

    # When the bench runs
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=150)

    # Then it completed, every read answered 200, and the report names every figure
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = json.loads(figures.read_text())["runs"]
    assert run["rows"] == 2000
    for key, read in run["reads"].items():
        assert set(read["statuses"]) == {"200"}, (key, read)
    assert run["windows"]["stream"]["events"]["stats"] >= 1
    for read in scale.reads("0" * 36):
        label = read.label.split("=")[0]
        assert label in done.stdout
    for line in ("live stream alone", "one open dashboard", "fill time, database size"):
        assert line in done.stdout
