"""Page plumbing: reaching the services, calling them safely, messages, the health banner.

Pages never see a stack trace: a `PharmGPTError` shows its `message`, anything
else a short apology (the details go to the log). When the data store cannot
be reached, a banner at the top of the page says so and what to do, and the
page carries on with what it has.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import streamlit as st
from pharmgpt.services.errors import BackendUnavailable, PharmGPTError

log = logging.getLogger("pharmgpt.app")

GENERIC_ERROR = (
    "Something went wrong. Please try again; if it keeps happening, tell your administrator."
)
BACKEND_DOWN = (
    "**The data store is not reachable right now**, so some things can't be loaded or saved. "
    "Messages you send are kept on this server and delivered once it is back. "
    "If this lasts more than a minute, check that the stack is running (`pharmgpt doctor`; "
    "restart it with `make run`) or your Supabase project's status, then reload this page."
)
SESSION_ENDED_CODE = "session_ended"  # the sign-in page says why; nothing else to show
_BANNER = "_ui_banner"
_DOWN = "_ui_backend_down"
_FLASH = "_ui_flash"


@dataclass
class Outcome:
    ok: bool
    value: Any = None
    error: str | None = None
    unavailable: bool = False
    code: str | None = None  # the PharmGPTError code, e.g. "conflict", "validation", "auth"


def context():
    """The process-wide services and RAG system (built on first use)."""
    from pharmgpt.app.context import app_context

    return app_context()


def start_run() -> None:
    """Call once at the top of every run: the banner slot, then any flashed messages."""
    st.session_state["_run_started"] = time.perf_counter()  # for server-side timings (bench/app.py)
    st.session_state[_BANNER] = st.empty()
    if st.session_state.get(_DOWN):
        st.session_state[_BANNER].warning(BACKEND_DOWN, icon="⚠️")
    show_flashes()


def show_flashes() -> None:
    """Messages left by button callbacks (also called inside fragments, which rerun alone)."""
    for kind, text in st.session_state.pop(_FLASH, []):
        if kind == "error":
            st.error(text)
        elif kind == "info":
            st.info(text)
        else:
            st.toast(text, icon="✅")


def flash(text: str, kind: str = "success") -> None:
    """A message for the next run (e.g. from a button callback)."""
    st.session_state.setdefault(_FLASH, []).append((kind, text))


def backend_down(render: bool = True) -> None:
    st.session_state[_DOWN] = True
    slot = st.session_state.get(_BANNER)
    if render and slot is not None:
        slot.warning(BACKEND_DOWN, icon="⚠️")


def backend_is_down() -> bool:
    return bool(st.session_state.get(_DOWN))


def attempt(coro: Coroutine, *, render: bool = True, timeout: float | None = 60) -> Outcome:
    """Run a service coroutine; never raises for service errors.

    `render=False` (button callbacks, which run before the page exists) only
    records a lost data store; the banner appears when the page is drawn.
    The sign-in is rechecked first (`auth.session_alive`): a session revoked
    elsewhere does nothing more, even from a callback that runs before the page.
    """
    from . import auth

    try:
        ctx = context()
        alive = auth.session_alive(ctx, render=render)
    except BaseException:  # e.g. Streamlit stopping this run: the coroutine never starts
        coro.close()
        raise
    if not alive:  # revoked elsewhere: this action must not happen
        coro.close()
        if render:  # mid-page (a fragment, a slow run): start again at the sign-in page
            st.rerun()
        return Outcome(False, error=auth.SESSION_ENDED, code=SESSION_ENDED_CODE)
    try:
        value = ctx.run(coro, timeout=timeout)
    except BackendUnavailable as e:
        backend_down(render)
        return Outcome(False, error=e.message, unavailable=True, code=e.code)
    except PharmGPTError as e:
        return Outcome(False, error=e.message, code=e.code)
    except Exception:  # a timeout or a bug: log it, show words
        log.exception("service call failed")
        return Outcome(False, error=GENERIC_ERROR)
    st.session_state.pop(_DOWN, None)
    return Outcome(True, value)


def call(coro: Coroutine, default: Any = None, *, where=None, quiet: bool = False) -> Any:
    """Run a service coroutine and return its value, or `default` after showing the error
    (in `where`, e.g. a placeholder next to a field, else inline). A lost data store is
    reported by the banner only."""
    out = attempt(coro)
    if out.ok:
        return out.value
    if not quiet and not out.unavailable and out.code != SESSION_ENDED_CODE:
        (where or st).error(out.error)
    return default


def act(coro: Coroutine, success: str | None = None) -> bool:
    """For button callbacks: run an action and flash how it went."""
    out = attempt(coro, render=False)
    if out.ok:
        if success:
            flash(success)
    elif not out.unavailable and out.code != SESSION_ENDED_CODE:
        flash(out.error, "error")
    return out.ok


def wake_worker(ctx) -> None:
    """Tell an in-process ingestion worker a job is waiting. Under `pharmgpt run` the worker is
    another process that polls the queue every second (`claim_ingest_job`, one cheap RPC), so
    there is nothing to signal; this only shortens the wait when the app runs the worker itself."""
    try:
        ctx.wake_worker()
    except Exception:  # the worker may run in another process; it polls
        log.debug("could not wake the worker", exc_info=True)


def warm_user(ctx, user_id: str) -> None:
    """Open the user's collection and BM25 index in the background, once per browser session."""
    if st.session_state.get("_warm_user") == user_id or not ctx.services.settings.warm_start:
        return
    st.session_state["_warm_user"] = user_id
    ctx.warm_user(user_id)


WARMING_UP = (
    ":orange-badge[Warming up] Loading the search model and indexes after a restart; "
    "a question asked now waits until they are ready."
)


@st.fragment(run_every=2)
def warming_notice() -> None:
    """Says so while the search parts load at start-up; draws nothing once they are ready."""
    if context().rag.warmup.warming:
        st.caption(WARMING_UP)


def preferences(ctx, user_id: str, *, refresh: bool = False) -> dict:
    """The user's settings, read once per browser session (and after each save)."""
    from pharmgpt.services.preferences import PREFERENCES

    if refresh or "prefs" not in st.session_state:
        got = call(ctx.services.preferences.get_all(user_id), quiet=True)
        if got is None:
            return st.session_state.get("prefs") or {k: p.default for k, p in PREFERENCES.items()}
        st.session_state["prefs"] = got
    return st.session_state["prefs"]


DARK_CSS = """<style>
.stApp, [data-testid="stHeader"], [data-testid="stBottom"],
[data-testid="stBottomBlockContainer"] {
  background-color: #0e1117; color: #fafafa; }
[data-testid="stSidebar"] { background-color: #1b1d26; }
.stApp [data-testid="stMarkdownContainer"], .stApp [data-testid="stHeading"],
.stApp [data-testid="stWidgetLabel"], .stApp [data-testid="stCaptionContainer"],
.stApp [data-testid="stSidebarNavLink"] span { color: #fafafa; }
.stApp [data-testid="stCaptionContainer"] { opacity: 0.75; }
.stApp [data-testid="stBaseButton-secondary"],
.stApp [data-testid="stBaseButton-secondaryFormSubmit"],
.stApp [data-testid="stPopoverButton"], .stApp [data-testid="stDownloadButton"] button,
.stApp [data-testid="stExpander"] details, .stApp [data-testid="stExpander"] summary {
  background-color: #262730; border-color: #4a4b57; color: #fafafa; }
.stApp [data-testid="stChatMessage"] { background-color: #1b1d26; }
</style>"""


def apply_theme(theme: str) -> None:
    """Streamlit's theme is per server; a dark preference darkens this user's page."""
    if theme == "dark":
        st.html(DARK_CSS)
