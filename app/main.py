"""PharmGPT's Streamlit entry: page setup, the sign-in gate, navigation.

Pages live in app/views/ (one module each) and reach the services only
through app.context (via app.components.ui); nothing here talks to a database.
The folder is deliberately not called `pages/`: Streamlit treats a `pages/`
folder next to the entry script as a legacy multipage app and, on a fresh
server, would run a requested page file directly, skipping the sign-in gate
below (AppTest does so on every run).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from pharmgpt.app.components import auth, ui, urlstate
from pharmgpt.app.context import built as context_built

HERE = Path(__file__).resolve().parent
VIEWS = HERE / "views"

st.set_page_config(page_title="PharmGPT", page_icon="💊", layout="wide")
ui.start_run()

try:
    if context_built():
        ctx = ui.context()
    else:
        with st.spinner("Starting PharmGPT…"):
            ctx = ui.context()
except Exception as e:  # the stack or the configuration: say what to fix, no stack trace
    ui.log.exception("PharmGPT could not start")
    st.title("PharmGPT")
    st.error(
        "PharmGPT could not start: " + (getattr(e, "message", None) or str(e) or type(e).__name__)
    )
    st.info("Run `pharmgpt doctor` to see which part is missing, then reload this page.")
    st.stop()

user = auth.current_user(ctx)

if user is None:
    page = st.navigation(
        [st.Page(VIEWS / "signin.py", title="Sign in", icon="🔐", url_path="signin")],
        position="hidden",
    )
    if st.session_state.get("clear_cookie"):
        auth.write_cookie(None)
else:
    pages = [
        st.Page(
            VIEWS / "chat.py", title="Chat", icon=":material/chat:", url_path="chat", default=True
        ),
        st.Page(  # Mine (views/documents.py's content) and Pharmacy tabs
            VIEWS / "library.py",
            title="Library",
            icon=":material/library_books:",
            url_path="library",
        ),
        st.Page(
            VIEWS / "settings.py", title="Settings", icon=":material/settings:", url_path="settings"
        ),
    ]
    if user.is_admin:
        pages.append(
            st.Page(
                VIEWS / "admin.py",
                title="Admin",
                icon=":material/admin_panel_settings:",
                url_path="admin",
            )
        )
    page = st.navigation(pages)
    ui.warm_user(ctx, user.id)  # this user's search index, while they look around
    urlstate.sync(page.url_path)  # the open conversation follows the address bar (?c=<id>)
    prefs = ui.preferences(ctx, user.id)
    ui.apply_theme(prefs.get("theme", "light"))
    with st.sidebar:
        top = st.container()
        top.caption(f"Signed in as **{user.username}**" + (" · admin" if user.is_admin else ""))
        if top.button("Log out", key="logout", icon=":material/logout:"):
            auth.sign_out(ctx)
            st.rerun()

page.run()

if user is not None and auth.token():
    # keeps the browser's cookie in step with the (sliding) server session; last, so it takes
    # no room
    with st.sidebar:
        auth.keep_cookie(auth.token(), ctx.services.settings.session_ttl_s)
