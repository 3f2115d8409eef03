"""The open conversation in the address bar (`?c=<id>`), so refresh, back/forward,
bookmarks and a new tab open it.

The page itself is already in the path (`/chat`, `/library`, … from
`st.navigation`). The session state stays the source of truth while the user
clicks around; the URL wins only when it changed under us, i.e. the browser
navigated (a fresh load, back/forward, an edited or bookmarked address).
Streamlit drops the query string when the page changes, so a missing `c`
right after a page switch says nothing and the open conversation is kept.
"""

from __future__ import annotations

import streamlit as st

PARAM = "c"
_WRITTEN = "_url_conv"  # what this session last put in the URL
_PAGE = "_url_page"  # the page of the previous run


def resolve(
    url: str | None, written: str | None, current: str | None, page_changed: bool
) -> str | None:
    """Which conversation to open, from the URL's `c`, what we last wrote there and the
    session's own."""
    if url and url != written:
        return url  # the browser navigated to it
    if not url and written and not page_changed:
        return None  # back to a URL without a conversation, on the same page: "New chat"
    return current


def sync(page: str) -> str | None:
    """Settle the open conversation for this run of `page` (every page, once, before drawing)."""
    s = st.session_state
    page_changed = s.get(_PAGE) != page
    s[_PAGE] = page
    url = st.query_params.get(PARAM) or None
    conv_id = resolve(url, s.get(_WRITTEN), s.get("conv_id"), page_changed)
    if conv_id != s.get("conv_id"):
        s["conv_id"] = conv_id
        s.pop("upload_results", None)
    write(conv_id)
    return conv_id


def write(conv_id: str | None) -> None:
    """Put `conv_id` in the URL (or take it out); also fine in a button callback."""
    st.session_state[_WRITTEN] = conv_id
    if conv_id:
        if st.query_params.get(PARAM) != conv_id:
            st.query_params[PARAM] = conv_id
    elif PARAM in st.query_params:
        del st.query_params[PARAM]
