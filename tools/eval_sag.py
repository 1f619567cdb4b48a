"""Evaluate the power-quality classifier on a held-out set, or on your own recordings from a CSV.

Run from the repo root (runtime dependencies only: numpy, onnxruntime):
    .venv/bin/python tools/eval_sag.py                         # held-out draw, 200 windows per class and grid
    .venv/bin/python tools/eval_sag.py --per-label 50          # a quicker draw
    .venv/bin/python tools/eval_sag.py --csv rec.csv --rate 10000 --frequency 50

Held-out set: windows from hil.waveforms drawn with seeds the training never used and under harsher
conditions than training (waveforms.HARSH: 20-40 dB SNR, frequency off nominal by up to 0.5 Hz, phase
jumps up to 45 degrees, amplitude off nominal by up to 5 %), at 10 kS/s (so resampling is exercised),
for 50 and 60 Hz.  CSV: a header row ``label,s0,s1,...,sN``, then one 0.2 s window per row at ``--rate``;
any amplitude (each window is scaled so that its first nominal cycle is 1 pu, the pre-event reference).

Prints accuracy, per-class precision and recall, the confusion matrix (rows: truth, columns: predicted)
and, last, one JSON line with ``accuracy``, ``per_class`` ({label: {precision, recall}}), ``windows``,
plus ``sag_recall``, ``anomalous`` (windows scored above the anomaly threshold) and the model version.
Exit status 2 on bad input (a clear message on stderr), 3 if the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edgeagent.analytics.pq_model import PqClassifier, PqModelError, PqWindow  # noqa: E402
from edgeagent.analytics.pq_model_io import LABELS, normalise_to_first_cycle, window_samples  # noqa: E402
from hil.waveforms import HARSH, Generator, Options  # noqa: E402

MODEL_VERSION = "1.1.0"
HELD_OUT_SEEDS = {50.0: 91_050, 60.0: 91_060}
HELD_OUT_RATE_HZ = 10_000.0
HELD_OUT_OPTIONS: Options = HARSH


def default_manifest() -> Path:
    return REPO / "models" / f"pq-classifier-{MODEL_VERSION}.manifest.json"


def draw(seed: int, nominal_hz: float, rate_hz: float, options: Options, per_label: int) -> list[PqWindow]:
    """``per_label`` windows of each class, 0.2 s long, labels in ``LABELS`` order, interleaved."""
    cycles = round(0.2 * nominal_hz)
    gen = Generator(seed, rate_hz=rate_hz, nominal_hz=nominal_hz, cycles=cycles, options=options)
    return [PqWindow(w.samples, rate_hz, nominal_hz) for w in gen.windows(per_label)]


def held_out(per_label: int) -> tuple[list[PqWindow], list[str]]:
    windows: list[PqWindow] = []
    for nominal_hz, seed in HELD_OUT_SEEDS.items():
        windows += draw(seed, nominal_hz, HELD_OUT_RATE_HZ, HELD_OUT_OPTIONS, per_label)
    labels = [LABELS[i % len(LABELS)] for i in range(len(windows))]
    return windows, labels


@dataclass(frozen=True)
class Scores:
    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: npt.NDArray[np.int64]  # [truth, predicted] in LABELS order
    windows: int


def score(truth: Sequence[str], predicted: Sequence[str]) -> Scores:
    index = {label: i for i, label in enumerate(LABELS)}
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    total = int(confusion.sum())
    correct = int(np.trace(confusion))
    predicted_n = confusion.sum(axis=0)
    truth_n = confusion.sum(axis=1)
    precision = {lab: float(confusion[i, i] / predicted_n[i]) if predicted_n[i] else math.nan
                 for i, lab in enumerate(LABELS)}
    recall = {lab: float(confusion[i, i] / truth_n[i]) if truth_n[i] else math.nan for i, lab in enumerate(LABELS)}
    return Scores(correct / total if total else math.nan, precision, recall, confusion, total)


def read_csv(path: Path, rate_hz: float, nominal_hz: float) -> tuple[list[PqWindow], list[str]]:
    """Windows and labels from a CSV (header ``label,s0..sN``), each scaled to its first cycle."""
    expected = window_samples(rate_hz)
    windows: list[PqWindow] = []
    labels: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        rows: Iterator[list[str]] = csv.reader(handle)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        want = ["label", *(f"s{i}" for i in range(len(header) - 1))]
        if [h.strip() for h in header] != want:
            raise ValueError(f"{path}: header must be label,s0,s1,...; got {','.join(header[:4])},...")
        if len(header) - 1 != expected:
            raise ValueError(f"{path}: {len(header) - 1} samples per row, but 0.2 s at {rate_hz:g} Hz is {expected}")
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            label = row[0].strip()
            if label not in LABELS:
                raise ValueError(f"{path}:{line}: unknown label {label!r} (known: {', '.join(LABELS)})")
            if len(row) != expected + 1:
                raise ValueError(f"{path}:{line}: {len(row) - 1} samples, expected {expected}")
            try:
                values = np.array([float(v) for v in row[1:]], dtype=np.float64)
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: not a number: {exc}") from exc
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{path}:{line}: NaN or infinite sample")
            windows.append(PqWindow(normalise_to_first_cycle(values, rate_hz, nominal_hz), rate_hz, nominal_hz))
            labels.append(label)
    if not windows:
        raise ValueError(f"{path}: no windows")
    return windows, labels


def report(scores: Scores, anomalous: int, version: str) -> list[str]:
    def fmt(v: float) -> str:
        return "  n/a" if math.isnan(v) else f"{v:5.3f}"

    lines = [f"windows: {scores.windows}", f"accuracy: {scores.accuracy:.4f}", "",
             f"{'class':<13} precision  recall"]
    lines += [f"{lab:<13} {fmt(scores.precision[lab]):>9}  {fmt(scores.recall[lab]):>6}" for lab in LABELS]
    short = [lab[:5] for lab in LABELS]
    lines += ["", "confusion (rows: truth, columns: predicted)", f"{'':<13}" + "".join(f"{s:>6}" for s in short)]
    lines += [f"{lab:<13}" + "".join(f"{n:>6d}" for n in scores.confusion[i]) for i, lab in enumerate(LABELS)]
    lines += ["", f"anomalous (score > threshold): {anomalous}"]

    def clean(v: float) -> float | None:
        return None if math.isnan(v) else round(v, 6)

    summary = {"accuracy": clean(scores.accuracy),
               "per_class": {lab: {"precision": clean(scores.precision[lab]), "recall": clean(scores.recall[lab])}
                             for lab in LABELS},
               "windows": scores.windows, "sag_recall": clean(scores.recall["sag"]), "anomalous": anomalous,
               "model_version": version}
    lines.append(json.dumps(summary, sort_keys=False))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--manifest", type=Path, default=None, help="model manifest (default: models/ of the repo)")
    parser.add_argument("--per-label", type=int, default=200, help="held-out windows per class and grid")
    parser.add_argument("--csv", type=Path, default=None, help="windows to evaluate instead of the held-out draw")
    parser.add_argument("--rate", type=float, default=None, help="sample rate of the CSV's windows (Hz)")
    parser.add_argument("--frequency", type=float, choices=(50.0, 60.0), default=None,
                        help="nominal frequency of the CSV's windows (50 or 60)")
    args = parser.parse_args(argv)
    try:
        if args.csv is not None:
            if args.rate is None or args.frequency is None:
                raise ValueError("--csv needs --rate HZ and --frequency 50|60")
            windows, truth = read_csv(args.csv, args.rate, args.frequency)
        else:
            if args.per_label < 1:
                raise ValueError(f"--per-label must be >= 1, got {args.per_label}")
            windows, truth = held_out(args.per_label)
    except (OSError, ValueError) as exc:
        print(f"eval_sag: {exc}", file=sys.stderr)
        return 2
    try:
        model = PqClassifier(args.manifest or default_manifest())
        results = model.classify_batch(windows)
    except PqModelError as exc:
        print(f"eval_sag: model unusable: {exc}", file=sys.stderr)
        return 3
    except ValueError as exc:
        print(f"eval_sag: {exc}", file=sys.stderr)
        return 2
    scores = score(truth, [r.label for r in results])
    anomalous = sum(r.anomalous for r in results)
    for line in report(scores, anomalous, model.manifest.version):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
