"""A scanned PDF in a real browser (issue 13): Debian's Chromium driven by Playwright against
the app started the README's way (`pharmgpt run --port`), with Debian's Tesseract.

Sign up → upload a PDF that is only page images (a label rendered with Pillow, no text
layer) → it is OCR'd and shows Ready, read by OCR → ask the dose → the answer cites the
scanned page and its source is marked "OCR". Also checks the uploader states the real limit.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

from tests.e2e.app_process import running_app
from tests.e2e.browser import launch, skip_without_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"

skip_without_chromium()
if shutil.which("tesseract") is None:
    pytest.skip(
        "tesseract is not installed (scripts/setup_ocr.sh installs it as root)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def app_url():
    with running_app("e2e-ocr", PHARMGPT_MAX_UPLOAD_BYTES=str(10 * 2**20)) as url:
        yield url


def key(name: str) -> str:
    return f".st-key-{name}"


def test_a_scanned_pdf_is_read_and_cited(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.fixtures.documents import scanned_pdf
    from tests.integration.test_ocr_flow import PAGES

    (tmp_path / "warfarin scan.pdf").write_bytes(scanned_pdf(PAGES, font_size=30))
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.set_default_timeout(60_000)
            page.goto(app_url)
            page.wait_for_selector(f"{key('signin_username')} input")
            page.get_by_role("tab", name="Create account").click()
            page.fill(f"{key('signup_username')} input", f"scan-{uuid.uuid4().hex[:6]}")
            page.fill(f"{key('signup_password')} input", PASSWORD)
            page.fill(f"{key('signup_confirm')} input", PASSWORD)
            page.click(f"{key('signup_submit')} button")
            page.wait_for_selector(key("new_chat"))

            page.get_by_role("link", name="Library").click()
            uploader = "[class*='st-key-doc_uploader_'] input[type=file]"
            page.wait_for_selector(uploader, state="attached")
            # Streamlit's own "Limit … per file" is the configured limit, not its 200 MB default
            box = page.locator("[class*='st-key-doc_uploader_']").first
            box.get_by_text(re.compile(r"10\s?MB")).first.wait_for(timeout=20_000)
            assert "200" not in box.inner_text(), box.inner_text()
            page.set_input_files(uploader, str(tmp_path / "warfarin scan.pdf"))
            page.wait_for_selector(f"{key('doc_upload')} button:not([disabled])")
            page.click(f"{key('doc_upload')} button")
            try:
                page.get_by_text("Ready", exact=True).first.wait_for(timeout=300_000)
            except Exception as e:
                shown = page.locator("section.main, [data-testid=stMain]").first.inner_text()[
                    -2000:
                ]
                raise AssertionError(f"not Ready; the page shows: {shown}") from e
            page.get_by_text(re.compile(r"3 read by OCR")).first.wait_for()

            page.get_by_role("link", name="Chat").click()
            page.wait_for_selector("textarea")
            page.fill("textarea", "What is the recommended starting dose of warfarin?")
            page.keyboard.press("Enter")
            page.wait_for_selector("text=Offline mode", timeout=120_000)
            page.wait_for_selector(key("stop_generating"), state="detached", timeout=120_000)
            last = page.locator("[data-testid='stChatMessage']").last
            last.get_by_text("2 to 5 mg once daily").first.wait_for()
            last.get_by_text(re.compile(r"^Sources \(")).click()
            panel = last.locator("[data-testid='stExpander']")
            panel.get_by_text(
                re.compile(r"warfarin scan\.pdf, pages? [0-9-]*2[0-9-]*.*· OCR")
            ).first.wait_for()
        finally:
            browser.close()
