"""Run import-linter's contracts (pyproject `[tool.importlinter]`) over the installed layout.

grimp finds `pharmgpt` and walks its folder, but the product folders sit beside it in the
checkout (pyproject's package-dir mapping), so plain `lint-imports` sees only `pharmgpt/`.
This builds the wheel's layout as a tree of symlinks in a temporary folder and lints that.
Usage: `.venv/bin/python scripts/lint_imports.py [lint-imports options]`.
"""

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def link_tree(dest: Path) -> None:
    """Mirror each `pharmgpt.<x>` package-dir entry (Python packages only) under `dest`."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = mapping["package-dir"]
    top = dest / "pharmgpt"
    top.mkdir()
    for entry in (ROOT / package_dir["pharmgpt"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, folder in package_dir.items():
        source = ROOT / folder
        if package != "pharmgpt" and (source / "__init__.py").is_file():
            target = dest / Path(*package.split("."))
            if not target.exists():
                target.symlink_to(source, target_is_directory=True)


def main(argv: list[str]) -> int:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="pharmgpt-lint-imports-") as tmp:
        link_tree(Path(tmp))
        # lint-imports puts its cwd first on sys.path: run it from the tree, not the checkout
        env = {**os.environ, "PYTHONPATH": tmp}
        command = [str(lint_imports), str(ROOT / "pyproject.toml"), "--no-cache", *argv]
        return subprocess.run(command, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
