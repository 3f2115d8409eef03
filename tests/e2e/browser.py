"""What every browser test shares: Debian's chromium (never `playwright install`), launched
the same way, and the skip when it is not installed."""

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def skip_without_chromium() -> None:
    """Call at module level: the module's tests skip with the reason and the fix."""
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian's chromium is not installed (tests/e2e/setup_browser.sh installs it as root)",
            allow_module_level=True,
        )


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
