"""bench/: the pure helpers (figures, ratios, goals, phase times, the table) and one real run of the serving
and memory sections against nginx and `metalstream install`. Only that the numbers exist and are
consistent is checked; timings are never asserted."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import deploy
from bench.cli import render_table
from bench.stats import figure, goal, median_of_phases, ratio
from conftest import REPO, require_root, require_tools


def test_figure_is_median_min_max_of_the_runs():
    assert figure([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}
    assert figure([1.0, 4.0])["median"] == 2.5
    with pytest.raises(ValueError):
        figure([])


def test_ratio_and_goal():
    slow, fast = figure([100.0]), figure([8.0])
    assert ratio(slow, fast) == 12.5
    assert ratio(slow, figure([0.0])) is None
    assert goal(12.5, ">=", 10) == {"goal": ">= 10", "met": True}
    assert goal(1.2, "<=", 1.15) == {"goal": "<= 1.15", "met": False}
    assert goal(None, ">=", 10)["met"] is None


def test_phase_durations_from_install_output():
    lines = [(0.2, "[start] installing"), (0.21, "[disk] choosing"), (0.3, "[disk] target x"),
             (0.5, "[partition] wiping"), (0.9, "[stream] streaming"), (1.0, "[stream] streaming: 1 MiB"),
             (5.0, "[configure] fstab"), (5.5, "[bootloader] uefi"), (6.0, "[finish] syncing"),
             (8.0, "[finish] install succeeded")]
    phases = deploy.phase_durations(lines, 8.5)
    assert phases["startup"] == 0.2
    assert phases["stream"] == 4.1
    assert phases["finish"] == 2.5
    assert round(sum(v for k, v in phases.items() if k != "startup") + phases["startup"], 3) == 8.5


def test_median_of_phases_keeps_the_order_and_tolerates_missing_phases():
    assert median_of_phases([{"a": 1, "b": 4}, {"a": 3}, {"a": 2, "b": 2}]) == {"a": 2, "b": 3}


def test_table_says_which_goals_are_not_met():
    result = {"deploy_vs_raw": {"deploy_seconds": figure([12.0]), "raw_seconds": figure([8.0]), "ratio": 1.5,
                                **goal(1.5, "<=", 1.15)},
              "build": {"cold_seconds": figure([100.0]), "cached_seconds": figure([60.0]), "cached_over_cold": 0.6,
                        "reproducible": True}}
    table = render_table(result)
    assert "NOT MET" in table.splitlines()[2]
    assert "reproducible" in table and "1.5x" in table


@pytest.mark.root
def test_serve_and_memory_sections_run_against_nginx_and_the_agent(debian_minimal_image, tmp_path):
    require_root()
    require_tools("nginx", "curl", "zstd", "tar", "mkfs.ext4", "mcopy")
    output = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--runs", "1", "--only", "serve", "--only", "memory", "--large-size", "256",
         "--image-dir", str(debian_minimal_image.parent), "--work", str(tmp_path / "work"), "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(output.read_text())
    serve = data["serve_vs_nginx"]
    assert set(serve["clients"]) == {"1", "4", "16"}
    for row in serve["clients"].values():
        assert row["metalstream_mib_s"]["median"] > 0 and row["nginx_mib_s"]["median"] > 0
        assert row["ratio"] == round(row["metalstream_mib_s"]["median"] / row["nginx_mib_s"]["median"], 3)
    memory = data["agent_peak_rss_mb"]
    assert 0 < memory["small"] and 0 < memory["large"]
    assert memory["image_mib"]["large"] >= 250 > memory["image_mib"]["small"]
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "serve, 16 clients" in result.stdout and "agent peak RSS" in result.stdout
