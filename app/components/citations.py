"""A cited source opened in the app: its page or section, with the quoted passages marked.

Document text is shown as inert HTML (escaped, then only `<mark>` added), never
as Markdown: a label's text must not be able to load images or links (issue #12, M3).
"""

from __future__ import annotations

import html

import streamlit as st
from pharmgpt.rag.source_view import SourceView

from . import ui

DELETED = "document deleted"


def view_html(view: SourceView) -> str:
    """The view's text with its highlights as `<mark>`; everything else escaped."""
    body = "".join(
        f"<mark>{html.escape(piece)}</mark>" if marked else html.escape(piece)
        for piece, marked in view.segments()
    )
    return (
        f'<div class="pharmgpt-source" style="white-space: pre-wrap; line-height: 1.5">{body}</div>'
    )


@st.dialog("Cited source", width="large")
def open_source(source: dict, whole_section: bool = False) -> None:
    ctx = ui.context()
    user = st.session_state["user"]
    view = ui.call(ctx.rag.source_view(user.id, source, whole_section=whole_section), default=None)
    if view is None:
        st.info(
            "This source could not be shown: the document may have been deleted, or the cited "
            "part has no text."
        )
        return
    st.markdown(f"**{html.escape(view.title)}**")
    if view.highlights:
        st.caption("The passages the answer quotes are highlighted.")
    st.html(view_html(view))
