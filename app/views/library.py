"""Library: the user's own documents ("Mine") and the shared libraries of their pharmacies."""

from __future__ import annotations

import streamlit as st
from pharmgpt.app.components import auth, pharmacy
from pharmgpt.app.views import documents


def render() -> None:
    user = auth.user()
    st.title("Library")
    mine, shared = st.tabs(["Mine", "Pharmacy"])
    with mine:
        documents.body()
    with shared:
        pharmacy.pharmacy_tab(user)


if __name__ == "__main__":
    render()
