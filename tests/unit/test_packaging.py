"""The wheel's shape: one import name (`pharmgpt`) over the product folders, nothing left out.

pyproject maps `pharmgpt.<name>` onto each folder (package-dir); a new subpackage missing from
its explicit list would import in the checkout and be absent from the wheel, so this fails."""

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("app", "services", "rag", "migration", "localbase")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _folder_of(package: str, package_dir: dict[str, str]) -> Path:
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in package_dir:
            return ROOT / package_dir[prefix] / Path(*parts[n:])
    raise AssertionError(f"{package} has no package-dir entry")


def test_every_package_folder_is_in_the_wheel_under_pharmgpt():
    tool = _pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    package_dir = tool["package-dir"]
    found = {"pharmgpt", "pharmgpt.sql", "pharmgpt.streamlit_config"}
    for top in PRODUCT:
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add("pharmgpt." + ".".join(rel.parts))
    assert listed == found
    for package in listed:
        assert (_folder_of(package, package_dir) / "__init__.py").is_file(), package


def test_sql_and_streamlit_config_ship_as_package_data():
    data = _pyproject()["tool"]["setuptools"]["package-data"]
    assert data["pharmgpt.sql"] == ["*.sql"]
    assert data["pharmgpt.streamlit_config"] == ["config.toml"]
    from pharmgpt.localbase.migrations import sql_files

    assert sql_files() and all(p.suffix == ".sql" for p in sql_files())


def test_no_module_imports_a_product_folder_by_its_bare_name():
    """A bare `import services` works only in a checkout (cwd on sys.path), never installed."""
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    bare = re.compile(rf"^\s*(?:from|import) (?:{'|'.join(PRODUCT)})(?:\.|\s|$)", re.M)
    offenders = [f for f in tracked if bare.search((ROOT / f).read_text(encoding="utf-8"))]
    assert offenders == []
