"""Train the power-quality classifier and export it to ONNX with its manifest and model card section.

Run from the repo root (needs the ``train`` extra: onnx, scikit-learn; about a minute on 2 cores):
    .venv/bin/python tools/train_sag.py                  # writes models/pq-classifier-<version>.*
    .venv/bin/python tools/train_sag.py --per-label 100  # a quick, weaker model (for trying things)

Data: hil.waveforms windows of 0.2 s (10 cycles at 50 Hz, 12 at 60 Hz), drawn at the model's own rate and
at 10 and 12.8 kS/s, resampled onto the model's grid with the runtime's resampler.
``FIRST_CYCLE_SHARE`` of them may be scaled to their first cycle as eval_sag does for CSV recordings; it is
0 because that scaling moves a residual by the window's amplitude error, across the absolute 0.1 pu
sag/interruption boundary (held-out sag recall was 93.75 % both with a quarter scaled and with none).
Training conditions cover the held-out set's ranges (20-60 dB SNR against 20-40, +/-0.5 Hz, phase jumps up
to 45 degrees, amplitude +/-5 %); the held-out draw still uses other seeds.  Model 1.0.0 was trained
milder (22-60 dB, 40 degrees) and read sags with 45 degree phase jumps as impulsive transients.
Sag recall (target 99 %): sags weigh ``SAG_WEIGHT`` in the fit, and a bias on the sag logit is chosen on
the validation draw (``CALIBRATION_SEED``, never the held-out one) by ``choose_sag_bias``.

Model: the features are computed inside the ONNX graph (``build_model``), so the runtime needs numpy and
onnxruntime only: a sliding one-cycle DFT of the fundamental (the envelope, its trajectory and its sorted
values), per-cycle harmonic spectra (log power of orders 0-63: mean, max and min over the cycles), peak
and slope statistics, the lowest sliding half-cycle RMS (the IEEE 1159 residual) and the logs of it and
of the envelope minimum (they resolve the 0.1 pu sag/interruption boundary).  A small MLP (scikit-learn)
classifies the standardised features; the anomaly score is the distance to the nearest class in that
standardised space (per-class mean and spread), calibrated so that ``CALIBRATION_PERCENTILE`` % of
in-distribution windows score below the threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "tools"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import eval_sag  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped]  # noqa: E402

from edgeagent.analytics.pq_model import PqClassifier  # noqa: E402
from edgeagent.analytics.pq_model_io import (  # noqa: E402
    LABELS,
    SAMPLES_PER_CYCLE,
    WINDOW_S,
    model_rate_hz,
    model_samples,
    normalise_to_first_cycle,
    to_model_grid,
)
from hil.waveforms import Generator, Options  # noqa: E402

NAME = "pq-classifier"
VERSION = eval_sag.MODEL_VERSION
TRAIN_OPTIONS = Options(snr_db_range=(20.0, 60.0), freq_dev_hz=0.5, phase_jump_rad=math.radians(45.0),
                        amplitude_dev_pu=0.05)
TRAIN_SEED = 11_000
CALIBRATION_SEED = 12_000
MLP_SEED = 13
SAG_WEIGHT = 2.0  # training sample weight of the sag class (the one with a recall target)
SAG_RECALL_TARGET = 0.995  # on the validation draw (CALIBRATION_SEED); the held-out draw never picks anything
MAX_ACCURACY_LOSS = 0.003  # validation accuracy the sag bias may cost at most
SAG_BIAS_GRID = tuple(round(0.25 * i, 2) for i in range(13))  # added to the sag logit, 0 to 3
INPUT_RATES_HZ = (None, 10_000.0, 12_800.0)  # None: the model's own rate
FIRST_CYCLE_SHARE = 0.0
CALIBRATION_PERCENTILE = 99.5
SPREAD_FLOOR = 0.1  # per-class spread floor in standardised units: no feature may dominate the distance
MAX_MODEL_BYTES = 1_000_000


# ------------------------------------------------------------------------------------------------ graph

TRAJECTORY_POINTS = 40
SPECTRUM_BINS = SAMPLES_PER_CYCLE // 2
FEATURE_NAMES: tuple[str, ...] = (
    *(f"envelope_t{i}" for i in range(TRAJECTORY_POINTS)),
    *(f"envelope_sorted{i}" for i in range(TRAJECTORY_POINTS)),
    "envelope_min", "envelope_max", "envelope_mean", "envelope_std",
    *(f"logpow_mean_h{k}" for k in range(SPECTRUM_BINS)),
    *(f"logpow_max_h{k}" for k in range(SPECTRUM_BINS)),
    *(f"logpow_min_h{k}" for k in range(SPECTRUM_BINS)),
    "peak_abs", "min_cycle_peak", "slope_max_abs", "slope_log_mean_square",
    "halfcycle_rms_min", "log_halfcycle_rms_min", "log_envelope_min",
)
HALF_CYCLE_STRIDE = 4  # samples between sliding half-cycle RMS windows


class _Graph:
    """A tiny helper that names nodes and constants as it goes."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, value: npt.ArrayLike, dtype: Any = np.float32) -> str:
        self._n += 1
        name = f"c{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._n += 1
        name = out or f"t{self._n}"
        self.nodes.append(helper.make_node(kind, list(inputs), [name], name=f"n{self._n}_{kind}", **attrs))
        return name


def _feature_nodes(g: _Graph) -> str:
    n = SAMPLES_PER_CYCLE
    t = np.arange(n)
    kernel = np.stack([np.cos(2 * np.pi * t / n), np.sin(2 * np.pi * t / n)])[:, None, :] * (2.0 / n)
    x3 = g.op("Unsqueeze", "waveform", g.const([1], np.int64))
    fund = g.op("Conv", x3, g.const(kernel), strides=[2])  # [B, 2, L]: one-cycle DFT of the fundamental
    env2 = g.op("ReduceSum", g.op("Mul", fund, fund), g.const([1], np.int64), keepdims=1)
    env = g.op("Sqrt", env2)  # [B, 1, L] pu of nominal peak
    traj3 = g.op("Resize", env, "", "", g.const([TRAJECTORY_POINTS], np.int64), axes=[2], mode="linear",
                 coordinate_transformation_mode="align_corners")
    traj = g.op("Flatten", traj3, axis=1)
    traj_sorted = g.op("TopK", traj, g.const([TRAJECTORY_POINTS], np.int64), axis=1, largest=1, sorted=1)
    g.nodes[-1].output.append(f"{traj_sorted}_idx")
    env_flat = g.op("Flatten", env, axis=1)
    axis1 = g.const([1], np.int64)
    env_min = g.op("ReduceMin", env_flat, axis1, keepdims=1)
    env_max = g.op("ReduceMax", env_flat, axis1, keepdims=1)
    env_mean = g.op("ReduceMean", env_flat, axis1, keepdims=1)
    env_var = g.op("Sub", g.op("ReduceMean", g.op("Flatten", env2, axis=1), axis1, keepdims=1),
                   g.op("Mul", env_mean, env_mean))
    env_std = g.op("Sqrt", g.op("Relu", env_var))
    bins = np.arange(SPECTRUM_BINS)
    dft = np.concatenate([np.cos(2 * np.pi * np.outer(t, bins) / n), np.sin(2 * np.pi * np.outer(t, bins) / n)],
                         axis=1) * (2.0 / n)
    cycles = g.op("Reshape", "waveform", g.const([0, -1, n], np.int64))  # [B, C, 128]
    spec = g.op("MatMul", cycles, g.const(dft))
    spec2 = g.op("Mul", spec, spec)
    re2 = g.op("Slice", spec2, g.const([0], np.int64), g.const([SPECTRUM_BINS], np.int64), g.const([2], np.int64))
    im2 = g.op("Slice", spec2, g.const([SPECTRUM_BINS], np.int64), g.const([2 * SPECTRUM_BINS], np.int64),
               g.const([2], np.int64))
    logpow = g.op("Log", g.op("Add", g.op("Add", re2, im2), g.const(1e-7)))  # [B, C, 64]
    pooled = [g.op(kind, logpow, axis1, keepdims=0) for kind in ("ReduceMean", "ReduceMax", "ReduceMin")]
    peak_abs = g.op("ReduceMax", g.op("Abs", "waveform"), axis1, keepdims=1)
    cycle_peaks = g.op("ReduceMax", g.op("Abs", cycles), g.const([2], np.int64), keepdims=0)
    min_cycle_peak = g.op("ReduceMin", cycle_peaks, axis1, keepdims=1)
    big = g.const([1 << 30], np.int64)
    later = g.op("Slice", "waveform", g.const([1], np.int64), big, axis1)
    earlier = g.op("Slice", "waveform", g.const([0], np.int64), g.const([-1], np.int64), axis1)
    slope = g.op("Sub", later, earlier)
    slope_max = g.op("ReduceMax", g.op("Abs", slope), axis1, keepdims=1)
    slope_ms = g.op("Log", g.op("Add", g.op("ReduceMean", g.op("Mul", slope, slope), axis1, keepdims=1),
                                g.const(1e-7)))
    # The lowest half-cycle RMS (IEEE 1159's residual, pu of nominal RMS) and the logarithms of it and of the
    # envelope minimum: on a linear scale the 0.1 pu sag/interruption boundary is a few hundredths of a
    # standard deviation of these features, on a log scale it is a tenth.
    squares = g.op("Unsqueeze", g.op("Mul", "waveform", "waveform"), g.const([1], np.int64))
    half_ms = g.op("AveragePool", squares, kernel_shape=[n // 2], strides=[HALF_CYCLE_STRIDE])
    half_rms = g.op("Mul", g.op("Sqrt", g.op("Flatten", half_ms, axis=1)), g.const(math.sqrt(2.0)))
    half_min = g.op("ReduceMin", half_rms, axis1, keepdims=1)
    log_half_min = g.op("Log", g.op("Add", half_min, g.const(1e-3)))
    log_env_min = g.op("Log", g.op("Add", env_min, g.const(1e-3)))
    return g.op("Concat", traj, traj_sorted, env_min, env_max, env_mean, env_std, *pooled, peak_abs, min_cycle_peak,
                slope_max, slope_ms, half_min, log_half_min, log_env_min, axis=1, out="features")


def build_model(head: dict[str, Any] | None) -> Any:
    """The feature graph alone (``head`` None, output ``features``) or the whole classifier."""
    g = _Graph()
    feats = _feature_nodes(g)
    x_info = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])
    if head is None:
        outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", len(FEATURE_NAMES)])]
    else:
        z = g.op("Mul", g.op("Sub", feats, g.const(head["mean"])), g.const(1.0 / head["std"]))
        h = z
        biases = [*head["biases"][:-1], head["biases"][-1] + head["sag_bias"] * _sag_one_hot()]
        layers = list(zip(head["weights"], biases, strict=True))
        for i, (w, b) in enumerate(layers):
            h = g.op("Gemm", h, g.const(w), g.const(b))
            if i < len(layers) - 1:
                h = g.op("Relu", h)
        g.op("Softmax", h, axis=1, out="probabilities")
        diff = g.op("Sub", g.op("Unsqueeze", z, g.const([1], np.int64)), g.const(head["class_mean"]))
        scaled = g.op("Mul", diff, g.const(1.0 / head["class_spread"]))
        per_class = g.op("ReduceMean", g.op("Mul", scaled, scaled), g.const([2], np.int64), keepdims=0)
        nearest = g.op("ReduceMin", per_class, g.const([1], np.int64), keepdims=0)
        g.op("Sqrt", nearest, out="anomaly_score")
        outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(LABELS)]),
                   helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["batch"])]
    graph = helper.make_graph(g.nodes, NAME, [x_info], outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="edgeagent train_sag")
    model.ir_version = 8
    return model


def _sag_one_hot() -> npt.NDArray[np.float64]:
    return np.eye(len(LABELS))[LABELS.index("sag")]


def choose_sag_bias(log_probs: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> tuple[float, float, float]:
    """The smallest sag logit bias from ``SAG_BIAS_GRID`` that reaches ``SAG_RECALL_TARGET`` on a validation draw.

    Bias that costs more than ``MAX_ACCURACY_LOSS`` of validation accuracy is not taken; without any that
    reaches the target, the best-recall bias within that loss is.  Returns ``(bias, recall, accuracy)``.
    """
    sag = LABELS.index("sag")
    base_acc = float(np.mean(np.argmax(log_probs, axis=1) == y))
    best = (0.0, -1.0, base_acc)
    for bias in SAG_BIAS_GRID:
        predicted = np.argmax(log_probs + bias * _sag_one_hot(), axis=1)
        recall = float(np.mean(predicted[y == sag] == sag))
        acc = float(np.mean(predicted == y))
        if acc < base_acc - MAX_ACCURACY_LOSS:
            break
        if recall > best[1]:
            best = (bias, recall, acc)
        if recall >= SAG_RECALL_TARGET:
            return bias, recall, acc
    return best


# ------------------------------------------------------------------------------------------------- data

def draw_set(base_seed: int, per_label: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64],
                                                      npt.NDArray[np.float32]]:
    """Windows on the model grid for both nominals: ``(x50, y50 ++ y60, x60)``; y indexes LABELS."""
    rng = np.random.default_rng(base_seed)
    grids: dict[float, list[npt.NDArray[np.float32]]] = {50.0: [], 60.0: []}
    ys: list[int] = []
    combo = 0
    for nominal_hz in (50.0, 60.0):
        for rate in INPUT_RATES_HZ:
            rate_hz = rate or model_rate_hz(nominal_hz)
            gen = Generator(base_seed + combo, rate_hz=rate_hz, nominal_hz=nominal_hz,
                            cycles=round(WINDOW_S * nominal_hz), options=TRAIN_OPTIONS)
            combo += 1
            for w in gen.windows(per_label):
                samples = w.samples
                if rng.random() < FIRST_CYCLE_SHARE:
                    samples = normalise_to_first_cycle(samples, rate_hz, nominal_hz)
                grids[nominal_hz].append(to_model_grid(samples, rate_hz, nominal_hz))
                ys.append(LABELS.index(w.label.value))
    return np.stack(grids[50.0]), np.array(ys, dtype=np.int64), np.stack(grids[60.0])


def features(session: ort.InferenceSession, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out = [session.run(["features"], {"waveform": x[i:i + 512]})[0] for i in range(0, x.shape[0], 512)]
    return np.concatenate(out).astype(np.float32)


def feature_matrix(session: ort.InferenceSession, base_seed: int, per_label: int) -> tuple[
        npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    x50, y, x60 = draw_set(base_seed, per_label)
    return np.concatenate([features(session, x50), features(session, x60)]), y


def main() -> int:
    parser = argparse.ArgumentParser(description="train and export the power-quality classifier")
    parser.add_argument("--per-label", type=int, default=500, help="training windows per class and input grid")
    parser.add_argument("--eval-per-label", type=int, default=200, help="held-out windows per class and nominal")
    parser.add_argument("--out", type=Path, default=REPO / "models")
    args = parser.parse_args()
    started = time.monotonic()

    feature_only = build_model(None).SerializeToString()
    fsession = ort.InferenceSession(feature_only, providers=["CPUExecutionProvider"])
    f_train, y_train = feature_matrix(fsession, TRAIN_SEED, args.per_label)
    f_cal, y_cal = feature_matrix(fsession, CALIBRATION_SEED, max(50, args.per_label // 5))
    mean = f_train.mean(axis=0)
    std = np.maximum(f_train.std(axis=0), 1e-6)
    z_train = (f_train - mean) / std
    mlp = MLPClassifier(hidden_layer_sizes=(128, 64), alpha=1e-4, batch_size=256, learning_rate_init=1e-3,
                        max_iter=300, early_stopping=True, n_iter_no_change=15, random_state=MLP_SEED)
    print(f"features of {y_train.shape[0]} windows: {time.monotonic() - started:.0f} s", flush=True)
    weights = np.where(y_train == LABELS.index("sag"), SAG_WEIGHT, 1.0)
    mlp.fit(z_train, y_train, sample_weight=weights)
    print(f"fitted: {time.monotonic() - started:.0f} s", flush=True)
    val_log_probs = np.log(np.maximum(mlp.predict_proba((f_cal - mean) / std), 1e-30))
    sag_bias, val_sag_recall, val_acc = choose_sag_bias(val_log_probs, y_cal)
    print(f"sag bias {sag_bias} (validation sag recall {val_sag_recall:.4f}, accuracy {val_acc:.4f})", flush=True)
    class_mean = np.stack([z_train[y_train == c].mean(axis=0) for c in range(len(LABELS))])
    class_spread = np.stack([np.maximum(z_train[y_train == c].std(axis=0), SPREAD_FLOOR) for c in range(len(LABELS))])
    head: dict[str, Any] = {"mean": mean, "std": std, "weights": mlp.coefs_, "biases": mlp.intercepts_,
                            "class_mean": class_mean, "class_spread": class_spread, "sag_bias": sag_bias}
    model = build_model(head)
    data = model.SerializeToString()
    if len(data) > MAX_MODEL_BYTES:
        raise SystemExit(f"model is {len(data)} bytes, over the {MAX_MODEL_BYTES} byte budget")

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x50, _, x60 = draw_set(CALIBRATION_SEED, max(50, args.per_label // 5))
    raw_cal = np.concatenate([session.run(["anomaly_score"], {"waveform": x})[0] for x in (x50, x60)])
    threshold = float(np.percentile(raw_cal, CALIBRATION_PERCENTILE))
    cal_acc = val_acc

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{NAME}-{VERSION}.onnx"
    manifest_path = args.out / f"{NAME}-{VERSION}.manifest.json"
    onnx_path.write_bytes(data)
    manifest = manifest_doc(data, threshold, args.per_label, sag_bias, {})
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    classifier = PqClassifier(manifest_path)
    windows, truth = eval_sag.held_out(args.eval_per_label)
    results = classifier.classify_batch(windows)
    scores = eval_sag.score(truth, [r.label for r in results])
    flagged = int(sum(r.anomalous for r in results))
    metrics: dict[str, Any] = {
        "held_out": {"accuracy": round(scores.accuracy, 5), "sag_recall": round(scores.recall["sag"], 5),
                     "windows": scores.windows, "per_label_per_nominal": args.eval_per_label,
                     "seeds": {str(int(k)): v for k, v in eval_sag.HELD_OUT_SEEDS.items()},
                     "input_rate_hz": eval_sag.HELD_OUT_RATE_HZ, "options": options_doc(eval_sag.HELD_OUT_OPTIONS),
                     "recall": {k: round(v, 5) for k, v in scores.recall.items()},
                     "precision": {k: round(v, 5) for k, v in scores.precision.items()},
                     "flagged_anomalous": flagged},
        "calibration_accuracy": round(cal_acc, 5),
        "calibration_sag_recall": round(val_sag_recall, 5),
        "training_accuracy": round(float(mlp.score(z_train, y_train)), 5),
        "model_bytes": len(data),
    }
    manifest = manifest_doc(data, threshold, args.per_label, sag_bias, metrics)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for line in eval_sag.report(scores, flagged, VERSION):
        print(line)
    print(f"trained on {y_train.shape[0]} windows, {len(FEATURE_NAMES)} features, {len(data)} bytes, "
          f"threshold {threshold:.4f}, {time.monotonic() - started:.0f} s")
    return 0


def options_doc(options: Options) -> dict[str, Any]:
    return {"snr_db_range": list(options.snr_db_range) if options.snr_db_range else None,
            "freq_dev_hz": options.freq_dev_hz, "phase_jump_rad": round(options.phase_jump_rad, 6),
            "amplitude_dev_pu": options.amplitude_dev_pu}


def manifest_doc(data: bytes, threshold: float, per_label: int, sag_bias: float,
                 metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": NAME,
        "version": VERSION,
        "file": f"{NAME}-{VERSION}.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "task": "classify 0.2 s voltage windows into IEEE 1159 disturbance classes; anomaly score for unseen ones",
        "inputs": [{"name": "waveform", "shape": ["batch", "samples"], "dtype": "float32",
                    "units": "pu of nominal peak voltage",
                    "samples": {"50": model_samples(50.0), "60": model_samples(60.0)}}],
        "outputs": [{"name": "probabilities", "shape": ["batch", len(LABELS)], "dtype": "float32",
                     "units": "probability, labels order"},
                    {"name": "anomaly_score", "shape": ["batch"], "dtype": "float32",
                     "units": "distance to the nearest class (standardised features); divide by anomaly_threshold"}],
        "labels": list(LABELS),
        "sample_rate_hz": {"50": model_rate_hz(50.0), "60": model_rate_hz(60.0)},
        "samples_per_cycle": SAMPLES_PER_CYCLE,
        "window_s": WINDOW_S,
        "anomaly_threshold": threshold,
        "anomaly_calibration": {"percentile": CALIBRATION_PERCENTILE, "seed": CALIBRATION_SEED},
        "features": list(FEATURE_NAMES),
        "training": {"generator": "hil.waveforms.Generator", "seed": TRAIN_SEED, "mlp_seed": MLP_SEED,
                     "per_label_per_grid": per_label, "input_rates_hz": ["model", 10_000.0, 12_800.0],
                     "first_cycle_normalised_share": FIRST_CYCLE_SHARE, "options": options_doc(TRAIN_OPTIONS),
                     "classifier": "MLP 128-64 (scikit-learn), ReLU, softmax",
                     "sag_sample_weight": SAG_WEIGHT,
                     "sag_logit_bias": {"value": sag_bias, "chosen_on_seed": CALIBRATION_SEED,
                                        "validation_sag_recall_target": SAG_RECALL_TARGET,
                                        "max_validation_accuracy_loss": MAX_ACCURACY_LOSS}},
        "metrics": metrics,
        "opset": 18,
        "runtime": "onnxruntime, one thread",
    }


if __name__ == "__main__":
    sys.exit(main())
