"""The conversation list in the chat sidebar: new chat, search, pinned first, paging, menus."""

from __future__ import annotations

import re

import streamlit as st
from pharmgpt.services.models import Conversation, SearchHit

from . import ui, urlstate
from .dates import relative_date

PAGE_SIZE = 20
SEARCH_LIMIT = 50


def export_name(conv: Conversation, ext: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", conv.title).strip("-").lower()[:60] or "conversation"
    return f"{slug}.{ext}"


def row_label(conv: Conversation) -> str:
    return ("📌 " if conv.is_pinned else "") + ("🗄️ " if conv.is_archived else "") + conv.title


# ---------------------------------------------------------------------- state changes (callbacks)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def snippet_markdown(hit: SearchHit, limit: int = 240) -> str:
    """The search snippet as safe markdown: the message's text escaped (no markup, links or
    HTML of its own reach the page), the matched words in bold."""
    out, used = [], 0
    for text, highlighted in hit.snippet_parts():
        text = re.sub(r"\s+", " ", text)[: max(0, limit - used)]
        used += len(text)
        if not text:
            continue
        esc = _MD_SPECIAL.sub(r"\\\1", text)
        out.append(f"**{esc}**" if highlighted and esc.strip() else esc)
    return "".join(out)


def open_conversation(conv_id: str | None) -> None:
    st.session_state["conv_id"] = conv_id
    st.session_state.pop("upload_results", None)
    urlstate.write(conv_id)


def close_menus() -> None:
    """Streamlit has no call to close a popover: give the menus new keys, so they redraw closed."""
    st.session_state["conv_menu_gen"] = st.session_state.get("conv_menu_gen", 0) + 1


def new_chat() -> None:
    open_conversation(None)


def _set_page(delta: int) -> None:
    st.session_state["conv_page"] = max(0, st.session_state.get("conv_page", 0) + delta)


def _reset_page() -> None:
    st.session_state["conv_page"] = 0


def _rename(user_id: str, conv_id: str) -> None:
    close_menus()
    title = st.session_state.get(f"conv_title_{conv_id}", "")
    ui.act(
        ui.context().services.conversations.rename(user_id, conv_id, title), "Conversation renamed."
    )


def _pin(user_id: str, conv_id: str, pinned: bool) -> None:
    close_menus()
    ui.act(
        ui.context().services.conversations.set_pinned(user_id, conv_id, pinned),
        "Pinned." if pinned else "Unpinned.",
    )


def _archive(user_id: str, conv_id: str, archived: bool) -> None:
    close_menus()
    if ui.act(
        ui.context().services.conversations.set_archived(user_id, conv_id, archived),
        "Archived." if archived else "Moved back to your chats.",
    ):
        if archived and st.session_state.get("conv_id") == conv_id:
            open_conversation(None)


def _duplicate(user_id: str, conv_id: str) -> None:
    close_menus()
    out = ui.attempt(
        ui.context().services.conversations.duplicate_conversation(user_id, conv_id), render=False
    )
    if out.ok:
        open_conversation(out.value.id)
        ui.flash(f"Opened a copy: {out.value.title}")
    elif not out.unavailable and out.code != ui.SESSION_ENDED_CODE:
        ui.flash(out.error, "error")


def _delete(user_id: str, conv_id: str) -> None:
    close_menus()
    if ui.act(
        ui.context().services.conversations.delete_conversation(user_id, conv_id),
        "Conversation deleted.",
    ):
        if st.session_state.get("conv_id") == conv_id:
            open_conversation(None)


def _exporter(ctx, user_id: str, conv_id: str, fmt: str):
    """Build the export only when the button is pressed (it reads every message)."""

    def build() -> str:
        try:
            return ctx.run(ctx.services.conversations.export_conversation(user_id, conv_id, fmt))
        except Exception as e:  # the download gets a readable note instead of a stack trace
            return f"Export failed: {getattr(e, 'message', 'please try again')}"

    return build


# ---------------------------------------------------------------------- drawing
def _menu(ctx, user_id: str, conv: Conversation) -> None:
    cid = conv.id
    gen = st.session_state.get("conv_menu_gen", 0)
    with st.popover(
        "", icon=":material/more_vert:", key=f"conv_menu_{cid}_{gen}", help="Rename, pin, export…"
    ):
        st.text_input("Title", value=conv.title, key=f"conv_title_{cid}", max_chars=200)
        st.button(
            "Rename",
            key=f"conv_rename_{cid}",
            on_click=_rename,
            args=(user_id, cid),
            icon=":material/edit:",
        )
        st.button(
            "Unpin" if conv.is_pinned else "Pin to top",
            key=f"conv_pin_{cid}",
            on_click=_pin,
            args=(user_id, cid, not conv.is_pinned),
            icon=":material/push_pin:",
        )
        st.button(
            "Unarchive" if conv.is_archived else "Archive",
            key=f"conv_archive_{cid}",
            on_click=_archive,
            args=(user_id, cid, not conv.is_archived),
            icon=":material/archive:",
        )
        st.button(
            "Duplicate",
            key=f"conv_dup_{cid}",
            on_click=_duplicate,
            args=(user_id, cid),
            icon=":material/content_copy:",
        )
        st.download_button(
            "Export JSON",
            data=_exporter(ctx, user_id, cid, "json"),
            file_name=export_name(conv, "json"),
            mime="application/json",
            key=f"conv_export_json_{cid}",
            on_click="ignore",
            icon=":material/download:",
        )
        st.download_button(
            "Export Markdown",
            data=_exporter(ctx, user_id, cid, "markdown"),
            file_name=export_name(conv, "md"),
            mime="text/markdown",
            key=f"conv_export_md_{cid}",
            on_click="ignore",
            icon=":material/download:",
        )
        st.divider()
        sure = st.checkbox("Yes, delete this chat", key=f"conv_delok_{cid}")
        st.button(
            "Delete",
            key=f"conv_delete_{cid}",
            type="primary",
            disabled=not sure,
            on_click=_delete,
            args=(user_id, cid),
            icon=":material/delete:",
        )


def _row(ctx, user_id: str, conv: Conversation, hit: SearchHit | None = None) -> None:
    current = st.session_state.get("conv_id") == conv.id
    left, right = st.columns([6, 1], vertical_alignment="center", gap="small")
    with left:
        st.button(
            row_label(conv),
            key=f"conv_open_{conv.id}",
            on_click=open_conversation,
            args=(conv.id,),
            type="primary" if current else "tertiary",
            width="stretch",
            help=f"Updated {relative_date(conv.updated_at)} · {conv.message_count} messages",
        )
        st.caption(relative_date(conv.updated_at))
        if hit is not None and hit.snippet:
            st.caption(snippet_markdown(hit))
    with right:
        _menu(ctx, user_id, conv)


def render(ctx, user_id: str) -> None:
    with st.sidebar:
        st.button(
            "New chat",
            key="new_chat",
            on_click=new_chat,
            type="primary",
            icon=":material/add:",
            width="stretch",
        )
        query = st.text_input(
            "Search chats",
            key="conv_search",
            placeholder="Titles and message text",
            on_change=_reset_page,
            icon=":material/search:",
        )
        archived = st.toggle("Show archived", key="conv_archived", on_change=_reset_page)
        query = (query or "").strip()
        page = st.session_state.get("conv_page", 0)
        if query:
            hits = ui.call(
                ctx.services.conversations.search(user_id, query, SEARCH_LIMIT), default=[]
            )
            convs, has_next = [h.conversation for h in hits], False
            found = {h.conversation.id: h for h in hits}
            if not convs:
                st.caption("No chats match.")
        else:
            got = ui.call(
                ctx.services.conversations.get_user_conversations(
                    user_id, limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE, archived=archived
                ),
                default=[],
            )
            convs, has_next = got[:PAGE_SIZE], len(got) > PAGE_SIZE
            if not convs and page == 0:
                st.caption(
                    "No archived chats."
                    if archived
                    else "No chats yet: ask a question to start one."
                )
        for conv in convs:
            _row(ctx, user_id, conv, found.get(conv.id) if query else None)
        if page > 0 or has_next:
            prev_col, next_col = st.columns(2)
            prev_col.button(
                "Newer",
                key="conv_prev",
                disabled=page == 0,
                on_click=_set_page,
                args=(-1,),
                icon=":material/chevron_left:",
                width="stretch",
            )
            next_col.button(
                "Older",
                key="conv_next",
                disabled=not has_next,
                on_click=_set_page,
                args=(1,),
                icon=":material/chevron_right:",
                width="stretch",
            )
