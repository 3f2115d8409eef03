"""Documents: upload to the library or the open conversation, watch processing, retry, delete."""

from __future__ import annotations

import streamlit as st
from pharmgpt.app.components import auth, docs, ui

LIBRARY = "Library (every chat)"


def _load(ctx, user_id: str, conv_id: str | None):
    lib = ui.call(ctx.services.documents.get_library_documents(user_id), default=[], quiet=True)
    conv_docs = []
    if conv_id:
        conv_docs = ui.call(
            ctx.services.documents.get_conversation_documents(user_id, conv_id),
            default=[],
            quiet=True,
        )
    return conv_docs, lib


def _lists(user_id: str, conv_id: str | None, conv_title: str | None, polling: bool) -> None:
    ctx = ui.context()
    ui.show_flashes()
    if polling:
        # another process's worker may have moved them on: read afresh while anything is in flight
        ctx.refresh_documents(user_id)
    conv_docs, lib = _load(ctx, user_id, conv_id)
    active = [d.id for d in conv_docs + lib if d.status in docs.ACTIVE]
    if polling and not active:
        st.rerun(scope="app")  # everything settled: redraw once and stop refreshing
    progress = (
        ui.call(ctx.services.documents.job_progress(user_id, active), default={}, quiet=True)
        if active
        else {}
    )
    tabs = st.tabs(
        [f"This chat ({len(conv_docs)})", f"Library ({len(lib)})"]
        if conv_id
        else [f"Library ({len(lib)})"]
    )
    groups = (
        [(tabs[0], conv_docs, f"Nothing uploaded to “{conv_title}” yet."), (tabs[1], lib, None)]
        if conv_id
        else [(tabs[0], lib, None)]
    )
    for tab, items, empty in groups:
        with tab:
            if not items:
                st.caption(empty or "Your library is empty. Documents here are used in every chat.")
            for d in items:
                docs.document_row(user_id, d, progress.get(d.id), others=conv_docs + lib)
    if active:
        st.caption(f"{len(active)} document(s) in progress; this list refreshes every 2 seconds.")


def render() -> None:
    st.title("Documents")
    body()


def body() -> None:
    """The page below its title (also the Library page's "Mine" tab)."""
    ctx = ui.context()
    user = auth.user()
    st.caption(
        "Drug references you upload are read, split into passages and indexed; "
        "answers cite them by file and page. "
        "Library documents are used in every chat, the others in their own chat."
    )

    conv_id = st.session_state.get("conv_id")  # settled by urlstate.sync
    conv = (
        ui.call(ctx.services.conversations.get_conversation(user.id, conv_id), quiet=True)
        if conv_id
        else None
    )
    if conv is None:
        conv_id = None

    conv_docs, lib = _load(ctx, user.id, conv_id)
    with st.container(border=True):
        counter = st.session_state.get("uploader_n", 0)
        files = st.file_uploader(
            "Add documents",
            accept_multiple_files=True,
            type=docs.UPLOAD_TYPES,
            key=f"doc_uploader_{counter}",
            help=docs.upload_help(ctx.services.settings),
        )
        docs.ocr_notice()
        scopes = [LIBRARY] + ([f"This chat: {conv.title}"] if conv else [])
        scope = st.radio("Add to", scopes, horizontal=True, key="doc_scope")
        if st.button(
            "Upload", key="doc_upload", type="primary", disabled=not files, icon=":material/upload:"
        ):
            target = None if scope == LIBRARY else conv_id
            st.session_state["doc_results"] = docs.register_files(ctx, user.id, files, target)
            st.session_state["uploader_n"] = counter + 1  # a fresh, empty uploader
            st.rerun()
        results = docs.settled(st.session_state.get("doc_results") or [], conv_docs + lib)
        st.session_state["doc_results"] = results
        docs.show_results(results)

    polling = any(d.status in docs.ACTIVE for d in conv_docs + lib)
    st.fragment(_lists, run_every=2 if polling else None)(
        user.id, conv_id, conv.title if conv else None, polling
    )

    with st.expander("Upload history", icon=":material/history:"):
        history = ui.call(
            ctx.services.documents.get_upload_history(user.id, 50), default=[], quiet=True
        )
        if not history:
            st.caption("No uploads yet.")
        else:
            st.dataframe(
                [
                    {
                        "file": u.filename,
                        "outcome": docs.upload_outcome(u),
                        "size (bytes)": u.file_size,
                        "uploaded": u.uploaded_at,
                    }
                    for u in history
                ],
                hide_index=True,
                width="stretch",
            )


if __name__ == "__main__":
    render()
