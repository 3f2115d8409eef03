"""A pharmacist's session in a real browser: Debian's Chromium driven by Playwright,
against the app started the README's way (`pharmgpt run`) on free ports.

Sign up → upload a PDF rendered from the Lipitor label → wait until ready →
ask for the starting dose → the answer streams and cites the right page →
refresh (the URL keeps the open conversation) → rename (the menu closes), search,
pin, archive, export, delete → log out → sign in again and find the history →
"log out everywhere" ends a second browser's session on its next action → five
wrong passwords show the lockout message.

Set PHARMGPT_UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.app_process import running_app
from tests.e2e.browser import launch, skip_without_chromium
from tests.fixtures import shared_data

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
LABEL = shared_data("fda-labels", "lipitor-orig.xml")
SHOTS = ROOT / "docs" / "screenshots"
QUESTION = "What is the recommended starting dose of atorvastatin?"
PASSWORD = "correct horse battery"

skip_without_chromium()
if not LABEL.exists():
    pytest.skip(f"{LABEL} is missing (set PHARMGPT_SHARED_DATA)", allow_module_level=True)


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def app_url():
    with running_app("e2e") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def key(name: str) -> str:
    return f".st-key-{name}"


def shot(page, name: str) -> None:
    if os.environ.get("PHARMGPT_UPDATE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def settle(page) -> None:
    """Wait until Streamlit has finished the script run (and any answer has finished streaming)."""
    page.wait_for_timeout(400)
    page.wait_for_selector(key("stop_generating"), state="detached", timeout=120_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
        ".includes('Running')",
        timeout=60_000,
    )


def sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"{key('signin_username')} input", timeout=60_000)
    page.fill(f"{key('signin_username')} input", username)
    page.fill(f"{key('signin_password')} input", password)
    page.click(f"{key('signin_submit')} button")


def open_menu(page):
    """Open the first conversation's menu (a popover); a rerun may swallow a click, so retry."""
    for _ in range(4):
        settle(page)
        page.locator("[class*='st-key-conv_menu_'] button").first.click()
        try:
            page.wait_for_selector("[class*='st-key-conv_rename_'] button:visible", timeout=5_000)
            return
        except Exception:
            page.keyboard.press("Escape")
    raise AssertionError("the conversation menu did not open")


def in_menu(page, selector: str) -> None:
    """Click `selector` inside the first conversation's menu, opening it first when a rerun
    (which redraws the sidebar) has closed it."""
    for _ in range(4):
        if not page.locator(selector).count():
            open_menu(page)
        try:
            page.locator(selector).first.click(timeout=10_000)
            settle(page)
            return
        except Exception:
            page.keyboard.press("Escape")
    raise AssertionError(f"could not click {selector} in the conversation menu")


def sidebar_titles(page) -> list[str]:
    texts = page.evaluate(
        "() => [...document.querySelectorAll('[class*=st-key-conv_open_]')]"
        ".map(r => (r.querySelector('button') || r).innerText)"
    )
    return [norm(t.strip().splitlines()[0]) for t in texts if t.strip()]


def wait_titles(page, check, timeout_s: float = 20) -> list[str]:
    """The sidebar's titles once `check` holds (Streamlit redraws after each rerun)."""
    deadline = time.monotonic() + timeout_s
    while True:
        settle(page)
        titles = sidebar_titles(page)
        if check(titles) or time.monotonic() > deadline:
            return titles
        page.wait_for_timeout(300)


def test_a_pharmacists_session(app_url, browser, tmp_path):
    from tests.fixtures.documents import spl_to_pdf

    pages = spl_to_pdf(LABEL, tmp_path / "Lipitor label.pdf")
    page = browser.new_page(viewport={"width": 1400, "height": 950}, accept_downloads=True)
    page.set_default_timeout(60_000)
    username = f"pharm-{uuid.uuid4().hex[:6]}"

    # --- sign up (validation first)
    page.goto(app_url)
    page.wait_for_selector(f"{key('signin_username')} input")
    shot(page, "signin")
    page.get_by_role("tab", name="Create account").click()
    page.fill(f"{key('signup_username')} input", "ab")
    page.fill(f"{key('signup_password')} input", "short")
    page.fill(f"{key('signup_confirm')} input", "short")
    page.click(f"{key('signup_submit')} button")
    page.wait_for_selector("text=3 to 64 characters")
    page.fill(f"{key('signup_username')} input", username)
    page.fill(f"{key('signup_password')} input", PASSWORD)
    page.fill(f"{key('signup_confirm')} input", PASSWORD)
    page.click(f"{key('signup_submit')} button")
    page.wait_for_selector(key("new_chat"))
    # the session cookie is set HttpOnly by the app's route: page script cannot read it,
    # and a reload still finds the pharmacist signed in
    deadline = time.monotonic() + 30
    while (
        not [c for c in page.context.cookies() if c["name"] == "pharmgpt_session"]
        and time.monotonic() < deadline
    ):
        page.wait_for_timeout(200)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "pharmgpt_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "pharmgpt_session" not in page.evaluate("document.cookie")
    page.reload()
    page.wait_for_selector(key("new_chat"))

    # --- upload the label PDF to the library and wait until it is ready
    page.get_by_role("link", name="Library").click()
    uploader = "[class*='st-key-doc_uploader_'] input[type=file]"
    page.wait_for_selector(uploader, state="attached")
    page.set_input_files(uploader, str(tmp_path / "Lipitor label.pdf"))
    page.wait_for_selector(f"{key('doc_upload')} button:not([disabled])")
    page.click(".st-key-doc_upload button")
    try:
        page.get_by_text("Ready", exact=True).first.wait_for(
            timeout=480_000
        )  # a loaded machine is slow
    except Exception:
        page.screenshot(
            path=str(Path(tempfile.gettempdir()) / "pharmgpt-e2e-failure.png"), full_page=True
        )
        raise
    shot(page, "documents")

    # --- ask: the answer streams and cites the right page
    page.get_by_role("link", name="Chat").click()
    page.wait_for_selector("textarea")
    page.fill("textarea", QUESTION)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Offline mode", timeout=120_000)
    settle(page)
    last = page.locator("[data-testid='stChatMessage']").last
    answer = last.inner_text()
    assert "starting dose" in answer and re.search(r"\b(10|20) ?mg\b", answer), answer
    shot(page, "chat")
    last.get_by_text(re.compile(r"^Sources \(")).click()
    page.wait_for_timeout(500)
    shot(page, "chat-sources")
    panel = last.locator("[data-testid='stExpander']")
    labels = [norm(t) for t in panel.locator("strong").all_inner_texts() if re.match(r"\[\d+\]", t)]
    captions = [
        norm(t).rstrip("…") for t in panel.locator("[data-testid='stText']").all_inner_texts()
    ]
    page_text = {n: norm(t) for n, t in pages}
    checked = 0
    for label, snippet in zip(labels, captions, strict=False):
        m = re.search(r"pages? (\d+)(?:-(\d+))?", label)
        if not m or "Lipitor label.pdf" not in label:
            continue
        first, last_page = int(m.group(1)), int(m.group(2) or m.group(1))
        text = " ".join(page_text.get(n, "") for n in range(first, last_page + 1))
        assert snippet[:80] in text, f"{label}: the cited page does not contain {snippet[:80]!r}"
        checked += 1
    assert checked, f"no PDF source with a page among {labels}"
    # the pharmacist opens the cited page itself
    opener = panel.get_by_role("button", name=re.compile(r"Open page \d+")).first
    number = int(re.search(r"\d+", opener.inner_text()).group())
    opener.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"page {number}").first.wait_for()
    page.wait_for_function(
        "() => (document.querySelector('[role=dialog]')?.innerText || '').length > 300",
        timeout=60_000,
    )
    shown = norm(dialog.inner_text())
    assert page_text[number][:60] in shown or page_text[number][-60:] in shown
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")

    # --- the open conversation is in the address bar: a refresh (or a bookmark) opens it again
    settle(page)
    assert re.search(r"[?&]c=[0-9a-f-]{36}", page.url), page.url
    page.reload()
    page.locator("[data-testid='stChatMessage']").filter(has_text=QUESTION).first.wait_for(
        timeout=60_000
    )
    assert re.search(r"[?&]c=[0-9a-f-]{36}", page.url), page.url

    # --- conversation management through the sidebar
    title = QUESTION[:50]
    named = lambda titles: any(t.startswith(title[:30]) for t in titles)  # noqa: E731
    assert named(wait_titles(page, named)), sidebar_titles(
        page
    )  # after the reload the sidebar comes last
    open_menu(page)
    page.locator("[class*='st-key-conv_title_'] input:visible").first.fill("My statin notes")
    page.locator("[class*='st-key-conv_rename_'] button:visible").first.click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[class*=st-key-conv_open_] button')]"
        ".some(b => b.innerText.includes('My statin notes'))"
    )
    settle(page)
    # the menu closed after the action
    page.wait_for_selector("[class*='st-key-conv_rename_'] button", state="hidden", timeout=10_000)
    page.click(key("new_chat") + " button")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=stChatMessage]').length === 0",
        timeout=30_000,
    )
    settle(page)
    page.fill("textarea", "Is atorvastatin safe in pregnancy?")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Offline mode >> nth=0")
    settle(page)
    page.fill(f"{key('conv_search')} input", "statin notes")
    page.keyboard.press("Enter")
    settle(page)
    assert wait_titles(page, lambda t: t == ["My statin notes"]) == ["My statin notes"]
    page.fill(f"{key('conv_search')} input", "")
    page.keyboard.press("Enter")
    settle(page)
    open_menu(page)
    with page.expect_download() as dl:
        page.locator("[class*='st-key-conv_export_json_'] button:visible").first.click()
    exported = json.loads(Path(dl.value.path()).read_text())
    assert exported["messages"] and exported["messages"][0]["role"] == "user"
    page.locator("[class*='st-key-conv_pin_'] button:visible").first.click()
    assert len(wait_titles(page, lambda t: len(t) == 2)) == 2
    open_menu(page)
    page.locator("[class*='st-key-conv_archive_'] button:visible").first.click()
    assert len(wait_titles(page, lambda t: len(t) == 1)) == 1
    page.locator(key("conv_archived")).locator("label").first.click()
    archived = wait_titles(page, lambda t: len(t) == 1)
    assert len(archived) == 1
    in_menu(page, "[class*='st-key-conv_delok_'] label:visible")
    in_menu(page, "[class*='st-key-conv_delete_'] button:visible:not([disabled])")
    assert wait_titles(page, lambda t: t == []) == []
    page.locator(key("conv_archived")).locator("label").first.click()
    remaining = wait_titles(page, lambda t: len(t) == 1)
    assert len(remaining) == 1

    # --- settings and log out, then sign in again and find the history
    page.get_by_role("link", name="Settings").click()
    page.wait_for_selector(key("prefs_save"))
    shot(page, "settings")
    page.click(f"{key('logout')} button")
    page.wait_for_selector(f"{key('signin_username')} input")
    sign_in(page, app_url, username, PASSWORD)
    page.wait_for_selector(key("new_chat"))
    assert wait_titles(page, lambda t: t == remaining) == remaining

    # --- "log out everywhere" in one browser ends the session in another on its next action
    other = browser.new_page(
        viewport={"width": 1200, "height": 900}
    )  # its own context: its own cookie
    other.set_default_timeout(60_000)
    sign_in(other, app_url, username, PASSWORD)
    other.wait_for_selector(key("new_chat"))
    settle(other)
    page.get_by_role("link", name="Settings").click()
    page.click(f"{key('logout_everywhere')} button")
    page.wait_for_selector(f"{key('signin_username')} input")
    other.click(key("new_chat") + " button")
    other.wait_for_selector(f"{key('signin_username')} input", timeout=30_000)
    other.get_by_text("Your session has ended").first.wait_for(timeout=10_000)
    other.close()

    # --- five wrong passwords lock the account, in words
    for _ in range(5):
        sign_in(page, app_url, username, "wrong password!")
        page.wait_for_selector("text=Wrong username or password")
    sign_in(page, app_url, username, PASSWORD)
    page.wait_for_selector("text=locked")
    page.close()
