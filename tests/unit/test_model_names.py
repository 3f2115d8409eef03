"""Model names live in services/model_names.py only: no other product module spells one as a
string literal (docstrings may mention them), and the modules that use them read that one."""

from __future__ import annotations

import ast
from pathlib import Path

from pharmgpt.services import model_names as names

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("app", "services", "rag", "migration", "localbase", "pharmgpt")
HOME = ROOT / "services" / "model_names.py"
NAMES = {
    names.EMBEDDING_MODEL,
    names.EMBEDDING_PACKAGE,
    names.ONNX_BUILD_DIR,
    names.ONNX_RECIPE,
    names.ONNX_MODEL_GLOB,
    names.OFFLINE_MODEL,
    *names.GROQ_DEFAULT_MODELS,
}


def test_no_product_module_spells_a_model_name():
    found = []
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            if path == HOME:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in NAMES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []


def test_the_users_read_the_one_home():
    from pharmgpt.rag import embeddings, onnx_build
    from pharmgpt.rag.llm import groq_provider
    from pharmgpt.services import answering
    from pharmgpt.services.config import Settings

    assert embeddings.TORCH_NAME == f"{names.EMBEDDING_MODEL}/{names.TORCH}"
    assert embeddings.DIMENSION == names.EMBEDDING_DIMENSION
    assert onnx_build.RECIPE == names.ONNX_RECIPE and onnx_build.BUILD_DIR == names.ONNX_BUILD_DIR
    assert groq_provider.DEFAULT_MODELS == list(names.GROQ_DEFAULT_MODELS)
    assert answering.OFFLINE_MODEL == names.OFFLINE_MODEL
    assert Settings().embedder == names.ONNX_INT8 and names.ONNX_INT8 in names.EMBEDDER_KINDS
