"""Layers (issue 9): rag implements the services' ports.

Which services modules rag may import is one rule with one home: the import-linter contracts in
pyproject `[tool.importlinter]`, run by `make lint` (`scripts/lint_imports.py`) before the tests,
and kept complete by tests/unit/test_import_contracts.py. What stays here is the other half: the
adapters do satisfy the ports the use-cases are written against."""

from __future__ import annotations


def test_rag_implements_the_ports():
    from pharmgpt.rag.indexer import RagIndexer
    from pharmgpt.rag.llm import GroqProvider, OpenAICompatProvider
    from pharmgpt.rag.planner import AnswerPlanner
    from pharmgpt.services.ports import DocumentIndexer, Provider, Retriever

    assert isinstance(AnswerPlanner(None), Retriever)
    assert isinstance(RagIndexer(None, None), DocumentIndexer)
    assert isinstance(GroqProvider("key", models=["m"]), Provider)
    assert isinstance(OpenAICompatProvider("http://127.0.0.1:9", None, "m"), Provider)
