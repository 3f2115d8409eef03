"""Layers (issue 9): rag implements the services' ports and imports nothing else of them.

Services own the use-cases (answering, ingestion) and the interfaces (services/ports.py); a rag
module reaching into another service module would put a use-case back into the library. The
scan reads every import statement, module-level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# what rag may import from services: the error hierarchy, the ports and their types, and the
# shared facts (one home each) if they exist
ALLOWED = {
    "pharmgpt.services.errors",
    "pharmgpt.services.ports",
    "pharmgpt.services.file_types",
    "pharmgpt.services.model_names",
}
# construction, not library: rag/system.py builds services' use-cases over rag's adapters and
# moves to the composition root (pharmgpt/wiring.py); the evaluations start a whole stack
EXEMPT = {"system.py", "eval.py", "eval_pharm.py"}


def services_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = (  # `from pharmgpt.services import ports` names the module ports
                [f"{node.module}.{a.name}" for a in node.names]
                if node.module == "pharmgpt.services"
                else [node.module]
            )
        else:
            continue
        for name in names:
            if name == "pharmgpt.services" or name.startswith("pharmgpt.services."):
                out.add(name)
    return out


def violations(rag_dir: Path) -> dict[str, set[str]]:
    found = {}
    for path in sorted(rag_dir.rglob("*.py")):
        rel = path.relative_to(rag_dir)
        if str(rel) in EXEMPT:
            continue
        bad = services_imports(path) - ALLOWED
        if bad:
            found[str(rel)] = bad
    return found


def test_rag_imports_only_errors_and_ports_from_services():
    assert violations(ROOT / "rag") == {}


def test_the_scan_catches_a_use_case_import(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "ok.py").write_text("from pharmgpt.services.errors import IngestionError\n")
    (tmp_path / "sub" / "bad.py").write_text(
        "def f():\n    from pharmgpt.services.container import Services\n"
    )
    (tmp_path / "worse.py").write_text("import pharmgpt.services.documents\n")
    (tmp_path / "package.py").write_text("from pharmgpt.services import answering, ports\n")
    assert violations(tmp_path) == {
        "sub/bad.py": {"pharmgpt.services.container"},
        "worse.py": {"pharmgpt.services.documents"},
        "package.py": {"pharmgpt.services.answering"},
    }


def test_rag_implements_the_ports():
    from pharmgpt.rag.indexer import RagIndexer
    from pharmgpt.rag.llm import GroqProvider, OpenAICompatProvider
    from pharmgpt.rag.planner import AnswerPlanner
    from pharmgpt.services.ports import DocumentIndexer, Provider, Retriever

    assert isinstance(AnswerPlanner(None), Retriever)
    assert isinstance(RagIndexer(None, None), DocumentIndexer)
    assert isinstance(GroqProvider("key", models=["m"]), Provider)
    assert isinstance(OpenAICompatProvider("http://127.0.0.1:9", None, "m"), Provider)
