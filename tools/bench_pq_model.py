"""Benchmark: the power-quality classifier's inference time per window, and its size.

Targets (issue "power quality"): model <= 1 MB, inference p99 <= 1 ms per window.

Run from the repo root (runtime dependencies only):
    .venv/bin/python tools/bench_pq_model.py            # ~10 s
    .venv/bin/python tools/bench_pq_model.py --json     # same, plus one JSON object as the last line
Options: --manifest PATH, --windows N (measured per variant, default 2000), --warmup N (default 200).

Each iteration times, in a rotating order and one window at a time (batch 1, one onnxruntime thread):

    model           run_model_grid on a window already on the model grid (50 Hz, 1280 samples): the target
    classify        classify() of a 10 kS/s window: resampling + the model + building the result
    baseline        a same-run trivial ONNX session (ReduceMean of the same input): the floor any
                    onnxruntime call pays on this machine right now

It reports median and p99 in microseconds, the model's p99 as a multiple of the baseline's (compare that
ratio across machines), and the model file's size.  Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edgeagent.analytics.pq_model import PqClassifier, PqWindow  # noqa: E402
from edgeagent.analytics.pq_model_io import to_model_grid  # noqa: E402
from hil.waveforms import HARSH, LABELS, Generator  # noqa: E402

MODEL_VERSION = "1.1.0"
P99_TARGET_US = 1000.0
SIZE_TARGET_BYTES = 1_000_000


def percentile_us(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description="power-quality model inference benchmark")
    parser.add_argument("--manifest", type=Path,
                        default=REPO / "models" / f"pq-classifier-{MODEL_VERSION}.manifest.json")
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.windows < 100 or args.warmup < 0:
        print("bench_pq_model: --windows must be >= 100 and --warmup >= 0", file=sys.stderr)
        return 2

    model = PqClassifier(args.manifest)
    size_bytes = (args.manifest.parent / model.manifest.file).stat().st_size
    gen = Generator(5, rate_hz=10_000.0, nominal_hz=50.0, cycles=10, options=HARSH)
    raw = [gen.window(LABELS[i % len(LABELS)]) for i in range(64)]
    windows = [PqWindow(w.samples, 10_000.0, 50.0) for w in raw]
    grids = [to_model_grid(w.samples, 10_000.0, 50.0)[None, :] for w in raw]
    mean_of = trivial_mean()

    variants: dict[str, Callable[[int], object]] = {
        "model": lambda i: model.run_model_grid(grids[i % len(grids)]),
        "classify": lambda i: model.classify(windows[i % len(windows)]),
        "baseline": lambda i: mean_of(grids[i % len(grids)]),
    }
    timings: dict[str, list[int]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(args.warmup + args.windows):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            start = time.perf_counter_ns()
            variants[name](i)
            elapsed = time.perf_counter_ns() - start
            if i >= args.warmup:
                timings[name].append(elapsed)

    summary: dict[str, Any] = {"windows": args.windows, "model_bytes": size_bytes, "model": model.manifest.file}
    print(f"model {model.manifest.file}: {size_bytes} bytes (target <= {SIZE_TARGET_BYTES})")
    print(f"{'variant':<10} {'median us':>10} {'p99 us':>10}")
    for name in names:
        med, p99 = percentile_us(timings[name], 50), percentile_us(timings[name], 99)
        summary[name] = {"median_us": round(med, 1), "p99_us": round(p99, 1)}
        print(f"{name:<10} {med:>10.1f} {p99:>10.1f}")
    ratio = summary["model"]["p99_us"] / max(summary["baseline"]["p99_us"], 1e-3)
    summary["model_p99_over_baseline_p99"] = round(ratio, 2)
    ok = summary["model"]["p99_us"] <= P99_TARGET_US and size_bytes <= SIZE_TARGET_BYTES
    summary["targets_met"] = ok
    print(f"model p99 / baseline p99: {ratio:.2f}; targets {'met' if ok else 'MISSED'} "
          f"(p99 <= {P99_TARGET_US:.0f} us, size <= {SIZE_TARGET_BYTES} bytes)")
    if args.json:
        print(json.dumps(summary))
    return 0 if ok else 1


def trivial_mean() -> Callable[[np.ndarray], object]:
    """A same-run baseline: onnxruntime running a one-node graph (ReduceMean) on the same input, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(_reduce_mean_model(), sess_options=options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def _reduce_mean_model() -> bytes:
    """Serialise a one-node ReduceMean graph with a minimal hand-written protobuf (no onnx package at runtime)."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(number: int, payload: bytes) -> bytes:  # length-delimited
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def vint(number: int, value: int) -> bytes:
        return varint(number << 3) + varint(value)

    def value_info(name: str, dims: list[bytes]) -> bytes:
        shape = b"".join(field(1, d) for d in dims)
        tensor_type = vint(1, 1) + field(2, shape)  # elem_type FLOAT, shape
        return field(1, name.encode()) + field(2, field(1, tensor_type))

    def dim_param(name: str) -> bytes:
        return field(2, name.encode())

    node = field(1, b"x") + field(2, b"y") + field(4, b"ReduceMean")
    graph = field(1, node) + field(2, b"baseline") + field(11, value_info("x", [dim_param("b"), dim_param("n")]))
    graph += field(12, value_info("y", [dim_param("b"), dim_param("one")]))
    opset = field(1, b"") + vint(2, 13)
    return vint(1, 8) + field(7, graph) + field(8, opset)


if __name__ == "__main__":
    sys.exit(main())
