"""PharmGPT's Streamlit entry. The full UI is issue #5; this page shows the stack is up."""

from __future__ import annotations

import os

import streamlit as st

st.set_page_config(page_title="PharmGPT", page_icon="💊")
st.title("PharmGPT")
st.caption("Grounded answers for pharmacists, from your own drug references.")

url = os.environ.get("SUPABASE_URL")
if url:
    st.success(f"Connected data store: {url}")
else:
    st.warning("No data store configured. Start the app with `make run`.")
st.info("Sign-in, chat and document upload are being built (see the README's status section).")
