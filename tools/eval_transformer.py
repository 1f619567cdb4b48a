"""Evaluate the shipped top-oil forecaster on any CSV in the ETT format, with the standard protocol.

Run from the repo root (runtime dependencies only: numpy + onnxruntime):
    .venv/bin/python tools/eval_transformer.py --csv data/ett/ETTh1.csv --horizon 96
    .venv/bin/python tools/eval_transformer.py --csv OTHER.csv --horizon 96 --adapt

The protocol (data/ett/README.md): split by row into train [0, 8640), validation [8640, 11520) and test
[11520, 14400) (a file shorter than 14,400 rows is split 60/20/20 by row instead, and says so); the
test windows start `lookback` rows before the test split, stride 1; errors are computed on values
standardised with the train split's mean and std, averaged over every window and step.

The model takes °C and returns °C; standardising its output is the same as standardising its input,
because it normalises each window itself. `--adapt` first recalibrates on the train split exactly as the
device would (`edgeagent.analytics.forecast_recal.recalibrate`: fit on the older 70 %, judge on the newer
30 %, promote only when better) and uses the correction only if it was promoted.

The last line printed is one JSON object with `mse`, `mae`, `horizon`, `windows`, `baseline_mse`,
`baseline_mae` (repeat the last value), and what was used (model, split, adaptation).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edgeagent.analytics.forecast import ModelFileError, TopOilForecaster  # noqa: E402
from edgeagent.analytics.forecast_recal import history_windows, predict_batched, recalibrate  # noqa: E402

FloatArray = NDArray[np.float64]
MODELS = REPO / "models"
STANDARD_ROWS = (8640, 11520, 14400)  # ETTh train / validation / test borders (12 / 4 / 4 months)


class EttFormatError(ValueError):
    """The CSV is not in the ETT format this tool evaluates (hourly rows, a date column, the target column)."""


@dataclass(frozen=True, slots=True)
class Split:
    train_end: int
    val_end: int
    test_end: int
    standard: bool


def default_manifest() -> Path:
    found = sorted(MODELS.glob("transformer-topoil-*.manifest.json"))
    if not found:
        raise FileNotFoundError(f"no transformer-topoil-*.manifest.json in {MODELS}")
    return found[-1]


def read_ett_csv(path: Path, target: str = "OT") -> FloatArray:
    """The target column of an ETT-format CSV (first column `date`, hourly, no gaps), as float64."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise EttFormatError(f"{path}: cannot read ({exc})") from None
    if len(rows) < 2:
        raise EttFormatError(f"{path}: no data rows")
    header = rows[0]
    if header[0] != "date" or target not in header:
        raise EttFormatError(f"{path}: header must start with 'date' and contain {target!r} (got {header})")
    column = header.index(target)
    try:
        dates = np.array([r[0] for r in rows[1:]], dtype="datetime64[s]")
        values = np.array([float(r[column]) for r in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise EttFormatError(f"{path}: unreadable row ({exc})") from None
    steps = np.diff(dates).astype(np.int64)
    if steps.size and not np.all(steps == 3600):
        bad = int(np.argmax(steps != 3600)) + 1
        raise EttFormatError(f"{path}: rows must be hourly without gaps; row {bad + 1} ({dates[bad]}) follows "
                             f"{dates[bad - 1]} (the model is hourly; resample first)")
    if not np.all(np.isfinite(values)):
        raise EttFormatError(f"{path}: column {target!r} has non-numeric or missing values")
    return values


def split_for(rows: int) -> Split:
    if rows >= STANDARD_ROWS[2]:
        return Split(*STANDARD_ROWS, standard=True)
    return Split(int(rows * 0.6), int(rows * 0.8), rows, standard=False)


def metrics(pred_c: FloatArray, truth_c: FloatArray, std_c: float) -> tuple[float, float]:
    error = (pred_c - truth_c) / std_c
    return float(np.mean(error ** 2)), float(np.mean(np.abs(error)))


def evaluate(csv_path: Path, horizon_h: int, adapt: bool = False, manifest_path: Path | None = None,
             target: str = "OT") -> dict[str, object]:
    series = read_ett_csv(csv_path, target)
    split = split_for(len(series))
    with TopOilForecaster.load(manifest_path or default_manifest(), timeout_s=30.0) as model:
        lookback, model_horizon = model.manifest.lookback_h, model.manifest.horizon_h
        if not 1 <= horizon_h <= model_horizon:
            raise ValueError(f"--horizon must be in [1, {model_horizon}] for this model (got {horizon_h})")
        if split.val_end < lookback:
            raise EttFormatError(f"{csv_path}: {len(series)} rows is too short for lookback {lookback}")
        train = series[:split.train_end]
        mean_c, std_c = float(train.mean()), float(train.std())
        if not std_c > 0:
            raise EttFormatError(f"{csv_path}: column {target!r} is constant over the train split")
        inputs, truth = history_windows(series[split.val_end - lookback:split.test_end], lookback, horizon_h)
        forecast = predict_batched(model, inputs)
        adaptation: dict[str, object] | None = None
        if adapt:
            decision = recalibrate(model, train)
            adaptation = dict(decision.as_dict())
            if decision.promoted:
                forecast = decision.head.apply(forecast)
        mse, mae = metrics(forecast.p50_c[:, :horizon_h], truth, std_c)
        base_mse, base_mae = metrics(np.repeat(inputs[:, -1:], horizon_h, axis=1), truth, std_c)
        name = f"{model.manifest.name} {model.manifest.version}"
    return {
        "mse": round(mse, 6), "mae": round(mae, 6), "horizon": horizon_h, "windows": len(inputs),
        "baseline_mse": round(base_mse, 6), "baseline_mae": round(base_mae, 6),
        "model": name, "lookback": lookback, "csv": str(csv_path), "target": target,
        "split": {"train_end": split.train_end, "val_end": split.val_end, "test_end": split.test_end,
                  "standard": split.standard},
        "train_mean_c": round(mean_c, 4), "train_std_c": round(std_c, 4), "adapt": adaptation,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, required=True, help="ETT-format CSV (date, ..., OT), hourly")
    parser.add_argument("--horizon", type=int, required=True, help="forecast horizon in hours (1..96)")
    parser.add_argument("--adapt", action="store_true", help="recalibrate on the train split first, as the device")
    parser.add_argument("--target", default="OT", help="target column (default OT)")
    parser.add_argument("--manifest", type=Path, default=None, help="model manifest (default: newest in models/)")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.csv, args.horizon, adapt=args.adapt, manifest_path=args.manifest, target=args.target)
    except (EttFormatError, ValueError, FileNotFoundError, ModelFileError) as exc:
        print(f"eval_transformer: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
