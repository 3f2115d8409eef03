"""The app's server, started by `pharmgpt run`: Streamlit (its Starlette server) plus the one
route of our own, which sets the session cookie HttpOnly (app/session_cookie.py), and a
warm start that loads the search parts as the server starts (app/warm.py)."""

from __future__ import annotations

import streamlit as st
from pharmgpt.app.session_cookie import routes
from pharmgpt.app.warm import lifespan

app = st.App("main.py", routes=routes(), lifespan=lifespan)
