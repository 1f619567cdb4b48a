"""The shipped ONNX power-quality classifier: refusal of bad model files, accuracy, anomaly score, eval_sag."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import math
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from edgeagent.analytics.pq_model import LABELS, PqClassifier, PqModelError, PqWindow, default_manifest_path
from hil.waveforms import HARSH, Generator

REPO = Path(__file__).resolve().parents[2]
VERSION = "1.1.0"
MANIFEST = default_manifest_path(VERSION)


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model() -> PqClassifier:
    return PqClassifier(MANIFEST)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The shipped manifest and model copied into tmp_path (returns the manifest's path)."""
    manifest = json.loads(MANIFEST.read_text())
    shutil.copy(MANIFEST.parent / manifest["file"], tmp_path / manifest["file"])
    path = tmp_path / MANIFEST.name
    path.write_text(json.dumps(manifest))
    return path


def rewrite(manifest_path: Path, **changes: object) -> None:
    doc = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(doc | changes))


def test_the_shipped_model_fits_its_budget_and_manifest(model: PqClassifier) -> None:
    path = MANIFEST.parent / model.manifest.file
    assert path.stat().st_size <= 1_000_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.manifest.sha256
    assert model.manifest.raw["metrics"]["held_out"]["accuracy"] >= 0.98


def test_a_hash_mismatch_is_refused(model_copy: Path) -> None:
    rewrite(model_copy, sha256="f" * 64)
    with pytest.raises(PqModelError, match="does not match the manifest"):
        PqClassifier(model_copy)


def test_a_tampered_model_file_is_refused(model_copy: Path) -> None:
    onnx_path = model_copy.parent / json.loads(model_copy.read_text())["file"]
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(PqModelError, match="sha256"):
        PqClassifier(model_copy)


def test_a_corrupt_model_with_a_matching_hash_is_refused(model_copy: Path) -> None:
    onnx_path = model_copy.parent / json.loads(model_copy.read_text())["file"]
    garbage = b"this is not an onnx graph" * 10
    onnx_path.write_bytes(garbage)
    rewrite(model_copy, sha256=hashlib.sha256(garbage).hexdigest())
    with pytest.raises(PqModelError, match="onnxruntime refused"):
        PqClassifier(model_copy)


def test_a_model_with_the_wrong_signature_is_refused(model_copy: Path) -> None:
    other = load_tool("bench_pq_model")._reduce_mean_model()  # a valid ONNX graph with input "x", output "y"
    onnx_path = model_copy.parent / json.loads(model_copy.read_text())["file"]
    onnx_path.write_bytes(other)
    rewrite(model_copy, sha256=hashlib.sha256(other).hexdigest())
    with pytest.raises(PqModelError, match="expected one float input 'waveform'"):
        PqClassifier(model_copy)


def test_a_missing_model_file_is_refused(model_copy: Path) -> None:
    (model_copy.parent / json.loads(model_copy.read_text())["file"]).unlink()
    with pytest.raises(PqModelError, match="model file not found"):
        PqClassifier(model_copy)


def test_wrong_shapes_are_refused_before_inference(model: PqClassifier) -> None:
    with pytest.raises(ValueError, match="2000 samples"):
        model.classify(PqWindow(np.zeros(1500), 10_000.0, 50.0))
    with pytest.raises(ValueError, match=r"float32 \[batch, 1280 or 1536\]"):
        model.run_model_grid(np.zeros((1, 1000), dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        model.run_model_grid(np.zeros((1, 1280), dtype=np.float64))


def test_a_result_is_a_distribution_whose_top_is_the_label(model: PqClassifier) -> None:
    window = Generator(3, rate_hz=7_680.0, nominal_hz=60.0, cycles=12).window("sag")
    label, probabilities, anomaly = model.classify(PqWindow(window.samples, 7_680.0, 60.0))
    assert label == "sag"
    assert list(probabilities) == list(LABELS)
    assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-4)
    assert max(probabilities, key=lambda k: probabilities[k]) == label
    assert 0.0 <= anomaly < 1.0


@pytest.fixture(scope="module")
def held_out_scores(model: PqClassifier) -> object:
    eval_sag = load_tool("eval_sag")
    windows, truth = eval_sag.held_out(40)  # 720 windows: other seeds, HARSH conditions, 10 kS/s, 50 and 60 Hz
    return eval_sag.score(truth, [r.label for r in model.classify_batch(windows)])


def test_held_out_accuracy_meets_the_target(held_out_scores: Any) -> None:
    assert held_out_scores.windows == 720
    assert held_out_scores.accuracy >= 0.98, held_out_scores.confusion


def test_held_out_sag_recall_meets_the_target(held_out_scores: Any) -> None:
    assert held_out_scores.recall["sag"] >= 0.99, held_out_scores.confusion


def test_out_of_distribution_windows_score_higher_than_in_distribution_ones(model: PqClassifier) -> None:
    rate_hz = 10_000.0
    t = np.arange(2000) / rate_hz
    rng = np.random.default_rng(4)
    ood = [rng.normal(0.0, 0.7, 2000),  # white noise
           np.sign(np.sin(2 * math.pi * 50.0 * t + 0.4)),  # a square wave
           np.sin(2 * math.pi * 50.0 * t) + 0.6 * np.sin(2 * math.pi * 173.0 * t)]  # a strong interharmonic
    ood_scores = [model.classify(PqWindow(x, rate_hz, 50.0)).anomaly_score for x in ood]
    normal = Generator(77, rate_hz=rate_hz, options=HARSH).windows(10)
    in_scores = [r.anomaly_score for r in model.classify_batch([PqWindow(w.samples, rate_hz, 50.0) for w in normal])]
    assert min(ood_scores) > 1.0, ood_scores  # all three flagged anomalous
    assert min(ood_scores[:2]) > float(np.median(in_scores)) * 3, (ood_scores, in_scores)
    assert max(in_scores) < min(ood_scores[:2]), (ood_scores, in_scores)


def write_csv(path: Path, per_label: int, scale_v: float) -> None:
    gen = Generator(31, rate_hz=8_000.0, nominal_hz=50.0, cycles=10, options=HARSH)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", *(f"s{i}" for i in range(1600))])
        for w in gen.windows(per_label):
            writer.writerow([w.label.value, *(f"{v:.3f}" for v in w.samples * scale_v)])


def run_eval(*argv: str) -> tuple[int, str, str]:
    eval_sag = load_tool("eval_sag")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = eval_sag.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_eval_sag_reads_windows_of_any_amplitude_from_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    write_csv(path, 3, scale_v=230.0 * math.sqrt(2.0))
    code, out, _ = run_eval("--csv", str(path), "--rate", "8000", "--frequency", "50")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["windows"] == 27
    assert set(summary["per_class"]) == set(LABELS)
    assert all(set(v) == {"precision", "recall"} for v in summary["per_class"].values())
    assert summary["accuracy"] >= 0.9
    assert summary["per_class"]["sag"]["recall"] == 1.0
    assert "confusion (rows: truth, columns: predicted)" in out


@pytest.mark.parametrize(("content", "argv", "message"), [
    ("label,s0,s1\nsag,1,2\n", ("--rate", "8000", "--frequency", "50"), "0.2 s at 8000 Hz is 1600"),
    ("label,x0\n", ("--rate", "8000", "--frequency", "50"), "header must be"),
    ("label,s0\n", (), "--csv needs --rate"),
])
def test_eval_sag_refuses_a_bad_csv_with_a_reason(tmp_path: Path, content: str, argv: tuple[str, ...],
                                                  message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, _, err = run_eval("--csv", str(path), *argv)
    assert code == 2
    assert message in err


def test_eval_sag_names_an_unknown_label(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("label," + ",".join(f"s{i}" for i in range(1600)) + "\nglitch," + ",".join(["1"] * 1600) + "\n")
    code, _, err = run_eval("--csv", str(path), "--rate", "8000", "--frequency", "50")
    assert (code, "unknown label 'glitch'" in err) == (2, True)
