"""tools/eval_transformer.py: the standard protocol on ETT-format CSVs, and the shipped model's ETTh1 score."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "eval_transformer.py"
ETTH1 = REPO / "data" / "ett" / "ETTh1.csv"
sys.path.insert(0, str(REPO / "tools"))

import eval_transformer  # noqa: E402


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_small_slice_prints_one_json_line_with_the_protocol_numbers(tmp_path: Path) -> None:
    lines = ETTH1.read_text().splitlines()[:1501]
    small = tmp_path / "slice.csv"
    small.write_text("\n".join(lines) + "\n")
    done = _run("--csv", str(small), "--horizon", "24")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["horizon"] == 24
    assert result["windows"] == 300 - 24 + 1  # 60/20/20 split of 1500 rows: test is rows [1200, 1500)
    assert result["split"] == {"train_end": 900, "val_end": 1200, "test_end": 1500, "standard": False}
    for key in ("mse", "mae", "baseline_mse", "baseline_mae"):
        assert result[key] > 0
    assert result["mse"] < result["baseline_mse"]


def test_non_hourly_csv_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    lines = ETTH1.read_text().splitlines()[:1501]
    del lines[500]
    gappy = tmp_path / "gappy.csv"
    gappy.write_text("\n".join(lines) + "\n")
    done = _run("--csv", str(gappy), "--horizon", "24")
    assert done.returncode == 2
    assert "hourly without gaps" in done.stderr


def test_horizon_beyond_the_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"--horizon must be in \[1, 96\]"):
        eval_transformer.evaluate(ETTH1, 97)


def test_shipped_model_beats_the_ridge_baseline_at_96h() -> None:
    """ETTh1, standard protocol: the README's ridge (336 h, last-value-normalised) measures 0.0541 here."""
    result = eval_transformer.evaluate(ETTH1, 96)
    assert result["windows"] == 2880 - 96 + 1
    assert result["mse"] < 0.054
    assert result["mse"] < result["baseline_mse"]


@pytest.mark.xfail(strict=True, reason="target MSE < 0.052 not met by model 1.0.0 (0.0532); see models/MODEL_CARD.md")
def test_shipped_model_meets_the_issue_target_at_96h() -> None:
    assert eval_transformer.evaluate(ETTH1, 96)["mse"] < 0.052
