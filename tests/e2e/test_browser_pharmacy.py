"""A pharmacy team in a real browser (issue 15): Debian's Chromium driven by Playwright
against the app started the README's way (`pharmgpt run --port`).

Two colleagues sign up; owner A signs up, creates a pharmacy, adds both as readers and
uploads the Lipitor label (FDA SPL XML from the shared data) to the pharmacy's library.
- Reader B sees it in the Pharmacy tab, with no upload or delete controls; after A removes
  B, B's next look shows no pharmacy and no document.
- Reader C asks about the drug and the answer cites the shared document; after A removes
  C, C's next question no longer sees it. This needs retrieval across scopes (the
  pharmacy's library searched for its members), detected by the store's owner scopes.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.e2e.app_process import running_app
from tests.e2e.browser import launch, skip_without_chromium
from tests.fixtures import shared_data

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

LABEL = shared_data("fda-labels", "lipitor-orig.xml")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery"
QUESTION = "What is the recommended starting dose of atorvastatin?"
READ_ONLY = "You are a reader here"
NO_PHARMACY = "You are not in a pharmacy yet."

skip_without_chromium()
if not LABEL.exists():
    pytest.skip(f"{LABEL} is missing (set PHARMGPT_SHARED_DATA)", allow_module_level=True)


def key(name: str) -> str:
    return f".st-key-{name}"


def settle(page) -> None:
    """Wait until Streamlit has finished running the script (and any answer has streamed)."""
    page.wait_for_timeout(400)
    page.wait_for_selector(key("stop_generating"), state="detached", timeout=120_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
        ".includes('Running')",
        timeout=60_000,
    )


def shot(page, name: str) -> None:
    """Set PHARMGPT_UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/."""
    if os.environ.get("PHARMGPT_UPDATE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def failure_shot(page, name: str) -> None:
    page.screenshot(
        path=str(Path(tempfile.gettempdir()) / f"pharmgpt-e2e-{name}.png"), full_page=True
    )


def sign_up(browser, url: str, prefix: str):
    """A fresh browser context (its own cookies) with a new account signed in."""
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    page = context.new_page()
    page.set_default_timeout(60_000)
    username = f"{prefix}-{uuid.uuid4().hex[:6]}"
    page.goto(url)
    page.wait_for_selector(f"{key('signin_username')} input")
    page.get_by_role("tab", name="Create account").click()
    page.fill(f"{key('signup_username')} input", username)
    page.fill(f"{key('signup_password')} input", PASSWORD)
    page.fill(f"{key('signup_confirm')} input", PASSWORD)
    page.click(f"{key('signup_submit')} button")
    page.wait_for_selector(key("new_chat"))
    for _ in range(150):  # the session cookie, so a fresh load finds the account signed in
        if any(c["name"] == "pharmgpt_session" for c in context.cookies()):
            break
        page.wait_for_timeout(200)
    return context, page, username


def pharmacy_tab(page) -> None:
    """Load Library → Pharmacy afresh (a new run reads the membership again)."""
    page.goto(re.sub(r"^(https?://[^/]+).*$", r"\1/library", page.url))
    page.get_by_role("tab", name="Pharmacy").wait_for()
    settle(page)
    page.get_by_role("tab", name="Pharmacy").click()
    settle(page)


def panel(page):
    """The Pharmacy tab's content."""
    return page.get_by_role("tabpanel", name="Pharmacy")


def member(page, username: str):
    """A member's name in the members list (bold)."""
    return panel(page).locator("strong").get_by_text(username, exact=True)


def remove(page, username: str) -> None:
    row = (
        panel(page)
        .locator("[data-testid='stHorizontalBlock']")
        .filter(has_text=username)
        .filter(has=page.locator("[class*='st-key-pharm_remove_']"))
    )
    row.locator("[class*='st-key-pharm_remove_'] button").click()
    settle(page)
    member(page, username).wait_for(state="detached")


def ask(page, question: str) -> str:
    """Ask in a new chat; the last answer's text with its sources opened."""
    page.get_by_role("link", name="Chat").click()
    page.wait_for_selector(key("new_chat"))
    settle(page)
    page.click(key("new_chat") + " button")
    settle(page)
    page.fill("textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Offline mode", timeout=120_000)
    settle(page)
    last = page.locator("[data-testid='stChatMessage']").last
    opener = last.get_by_text(re.compile(r"^Sources \("))
    if opener.count():
        opener.click()
        page.wait_for_timeout(500)
    return last.inner_text()


@pytest.fixture(scope="module")
def team():
    """The app, owner A's page with a pharmacy whose library holds the ready label, and two
    colleagues (B, C) added to it as readers."""
    from playwright.sync_api import sync_playwright

    with running_app("e2e-pharmacy") as url, sync_playwright() as p:
        browser = launch(p)
        try:
            readers = {n: sign_up(browser, url, f"col{n.lower()}") for n in ("B", "C")}
            _, a, _ = sign_up(browser, url, "owner")
            pharmacy_tab(a)
            assert panel(a).get_by_text(NO_PHARMACY).count()
            a.fill(f"{key('pharm_new_name')} input", "Main Street Pharmacy")
            a.click(f"{key('pharm_create')} button")
            a.wait_for_selector(key("pharm_pick"))
            settle(a)
            for _, _, name in readers.values():
                a.fill(f"{key('pharm_invite_name')} input", name)
                a.click(f"{key('pharm_invite')} button")  # "as reader" is the default
                member(a, name).wait_for()
                settle(a)
            uploader = "[class*='st-key-pharm_uploader_'] input[type=file]"
            a.wait_for_selector(uploader, state="attached")
            a.set_input_files(uploader, str(LABEL))
            a.wait_for_selector(f"{key('pharm_upload')} button:not([disabled])")
            a.click(f"{key('pharm_upload')} button")
            try:
                panel(a).get_by_text("Ready", exact=True).first.wait_for(timeout=300_000)
            except Exception:
                failure_shot(a, "pharmacy-upload")
                raise
            assert panel(a).get_by_text(LABEL.name).count()
            shot(a, "pharmacy-owner")
            yield a, readers
        finally:
            browser.close()


def test_a_reader_reads_the_shared_library_without_controls_until_removed(team):
    a, readers = team
    _, b, b_name = readers["B"]
    pharmacy_tab(b)
    tab = panel(b)
    tab.get_by_text(LABEL.name).first.wait_for()
    assert tab.get_by_text(READ_ONLY).count()
    assert tab.get_by_text("Ready", exact=True).count()
    for control in ("pharm_uploader_", "pharm_upload", "pharm_delmenu_", "pharm_deldoc_"):
        assert not b.locator(f"[class*='st-key-{control}']").count(), control
    assert not b.locator("[class*='st-key-pharm_invite']").count()  # nor members' management
    settle(b)
    shot(b, "pharmacy-reader")
    remove(a, b_name)
    pharmacy_tab(b)
    panel(b).get_by_text(NO_PHARMACY).wait_for()
    assert not b.get_by_text(LABEL.name).count()


def test_a_readers_answer_cites_the_shared_label_until_removed(team):
    a, readers = team
    _, c, c_name = readers["C"]
    answer = ask(c, QUESTION)
    assert LABEL.name in answer and re.search(r"\b(10|20) ?mg\b", answer), answer
    assert f"Pharmacy library: {LABEL.name}" in answer, answer
    # drawn again from the stored message, the shared source still opens (not "deleted")
    c.reload()  # the URL keeps the conversation open (?c=…), the cookie the session
    c.get_by_role("button", name="Regenerate").wait_for(timeout=60_000)
    settle(c)
    last = c.locator("[data-testid='stChatMessage']").last
    last.get_by_text(re.compile(r"^Sources \(")).click()
    c.wait_for_timeout(500)
    assert "document deleted" not in last.inner_text(), last.inner_text()
    remove(a, c_name)
    answer = ask(c, QUESTION)
    assert LABEL.name not in answer, answer
