"""The import-linter contracts in pyproject name modules one by one where an allow-list is meant
("rag imports from services only errors and ports"): a module added later would be allowed
silently. These tests fail until each new module is listed (or deliberately allowed)."""

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# what rag may import from each package (issue 9): the ports, the errors, the shared facts
RAG_MAY_USE = {
    "services": {"errors", "ports", "file_types", "model_names"},
    "localbase": {"files", "chroma"},
}


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["name"]: c for c in config["contracts"]}


def _modules(folder: Path) -> set[str]:
    """The folder's direct modules and subpackages, by name."""
    names = {p.stem for p in folder.glob("*.py") if p.name != "__init__.py"}
    return names | {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}


def _contract_forbidding(prefix: str) -> dict:
    found = [
        c
        for c in _contracts().values()
        if c.get("source_modules") == ["pharmgpt.rag"]
        and all(m.startswith(prefix) for m in c.get("forbidden_modules", ["-"]))
    ]
    assert len(found) == 1, f"one contract should forbid rag the {prefix}* modules"
    return found[0]


@pytest.mark.parametrize("package", sorted(RAG_MAY_USE))
def test_rag_allow_list_contract_names_every_other_module(package):
    contract = _contract_forbidding(f"pharmgpt.{package}.")
    listed = {m.removeprefix(f"pharmgpt.{package}.") for m in contract["forbidden_modules"]}
    expected = _modules(ROOT / package) - RAG_MAY_USE[package]
    missing, stale = sorted(expected - listed), sorted(listed - expected)
    assert not missing and not stale, (
        f"update the contract {contract['name']!r} in pyproject: add {missing}, drop {stale}"
    )


def test_every_composition_root_module_is_in_the_top_layer():
    (contract,) = [c for c in _contracts().values() if c["type"] == "layers"]
    top = {tail.strip(" ()") for tail in contract["layers"][0].split(":")}
    root = _modules(ROOT / "pharmgpt")
    assert root <= top, f"add {sorted(root - top)} to the top layer of {contract['name']!r}"


def test_lint_imports_tree_has_the_installed_layout(tmp_path):
    """scripts/lint_imports.py lints a mirror of the wheel; a folder missing there is unchecked."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lint_imports", ROOT / "scripts/lint_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.link_tree(tmp_path)
    for package in ("app", "services", "rag", "migration", "localbase"):
        assert (tmp_path / "pharmgpt" / package / "__init__.py").is_file(), package
    assert (tmp_path / "pharmgpt" / "__init__.py").resolve() == ROOT / "pharmgpt/__init__.py"
