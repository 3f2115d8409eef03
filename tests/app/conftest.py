"""The Streamlit app under `AppTest`, on the test session's real local stack.

`app_context()` is a process-wide singleton; the `app_env` fixture
points the environment at the stack (and a throwaway data directory) before
the first run builds it, and clears it again when this package's tests are
done, stopping its ingestion worker so it cannot touch other tests' jobs.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
PASSWORD = "correct horse battery"
TIMEOUT = 30


@pytest.fixture(scope="package")
def app_env(stack, tmp_path_factory):
    from pharmgpt.app.context import app_context

    data_dir = tmp_path_factory.mktemp("appdata")
    mp = pytest.MonkeyPatch()
    for key, value in stack.as_env().items():
        mp.setenv(key, value)
    mp.setenv("PHARMGPT_DATA_DIR", str(data_dir))
    mp.setenv("PHARMGPT_BCRYPT_ROUNDS", "4")
    mp.setenv("PHARMGPT_RETRY_MAX_WAIT_S", "0.5")
    mp.setenv(
        "PHARMGPT_WARM_START", "0"
    )  # the model loads when a test needs it (test_warm_start covers it)
    mp.setenv("PHARMGPT_SECRETS_FILE", str(data_dir / "no-secrets.toml"))
    mp.setenv(
        "PHARMGPT_APP_RUNS_WORKER", "true"
    )  # the worker on the app's loop (pharmgpt run: its own process)
    for key in ("GROQ_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY", "CHROMA_HOST"):
        mp.delenv(key, raising=False)  # offline answers, embedded Chroma
    app_context.clear()
    holder: dict = {}
    yield holder
    ctx = holder.get("ctx")
    if ctx is not None:
        ctx.run(ctx.rag.stop_worker())
        ctx.run(ctx.services.close())
    app_context.clear()
    mp.undo()


@pytest.fixture
def ctx(app_env):
    """The app's own AppContext (the one its pages use), built on first use."""
    if "ctx" not in app_env:
        from pharmgpt.app.context import app_context

        app_env["ctx"] = app_context()
    return app_env["ctx"]


@pytest.fixture
def new_app(ctx):
    def _make() -> AppTest:
        at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
        return at.run()

    return _make


@pytest.fixture
def make_account(ctx):
    """A fresh account made through the services; returns (User, password)."""

    def _make(prefix: str = "pharm", *, admin: bool = False):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        user = ctx.run(ctx.services.users.create_user(name, PASSWORD, is_admin=admin))
        return user, PASSWORD

    return _make


def sign_in(at: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="signin_username").input(username)
    at.text_input(key="signin_password").input(password)
    at.button(key="signin_submit").click()
    return at.run()


@pytest.fixture
def signed_in(new_app, make_account):
    """An AppTest with a fresh user signed in; returns (at, user)."""

    def _make(*, admin: bool = False):
        user, password = make_account(admin=admin)
        at = sign_in(new_app(), user.username, password)
        assert at.session_state["user"].id == user.id, [e.value for e in at.error]
        return at, user

    return _make


def texts(at: AppTest) -> str:
    """Everything the page says in markdown, captions, alerts and buttons, as one string."""
    parts = [
        e.value
        for kind in ("markdown", "caption", "error", "info", "success", "warning", "title")
        for e in getattr(at, kind)
    ]
    parts += [b.label for b in at.button]
    return "\n".join(str(p) for p in parts)
