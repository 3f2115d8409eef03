"""Chat: ask, read grounded answers with their sources; conversations in the sidebar."""

from __future__ import annotations

import time

import streamlit as st
from pharmgpt.app.components import answers, auth, citations, docs, sidebar, ui
from pharmgpt.app.components.dates import relative_date
from pharmgpt.services.conversations import MAX_PAGE
from pharmgpt.services.errors import BackendUnavailable, PharmGPTError
from pharmgpt.services.model_names import OFFLINE_MODEL
from pharmgpt.services.models import Message

HISTORY_PAGE = 30
NOT_FOUND = (
    "That conversation was not found: it was deleted, or the link belongs to another account. "
    "Pick one from the list or start a new chat."
)


def load_messages(ctx, user_id: str, conv_id: str, count: int) -> tuple[list[Message], bool]:
    """The latest `count` messages, oldest first, paging back with `before=`; and whether older
    ones exist."""
    out: list[Message] = []
    before = None
    while len(out) < count:
        size = min(MAX_PAGE, count - len(out))
        batch = ui.call(
            ctx.services.conversations.get_messages(user_id, conv_id, limit=size, before=before)
        )
        if batch is None:
            return out, False
        out = batch + out
        if len(batch) < size:
            return out, False
        before = batch[0].id
    return out, True


def _show_more(conv_id: str) -> None:
    shown = st.session_state.setdefault("history_shown", {})
    shown[conv_id] = shown.get(conv_id, HISTORY_PAGE) + HISTORY_PAGE


def _model_changed(user_id: str) -> None:
    value = st.session_state["chat_model"]
    if ui.act(
        ui.context().services.preferences.set(user_id, "model", value), f"Answers now use {value}."
    ):
        st.session_state.setdefault("prefs", {})["model"] = value


def _strict_changed(user_id: str) -> None:
    value = bool(st.session_state["strict_toggle"])
    ctx = ui.context()
    if ui.act(
        ctx.services.preferences.set(user_id, "strict_mode", value),
        "Answers now come from your documents only."
        if value
        else "Answers may now add general knowledge, marked as such.",
    ):
        st.session_state.setdefault("prefs", {})["strict_mode"] = value


def files_title(names: list[str]) -> str:
    """The title of a chat started by attaching files (a question names it otherwise)."""
    names = [n for n in names if n] or ["documents"]
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def _ensure_conversation(
    ctx, user_id: str, conv_id: str | None, title: str | None = None
) -> str | None:
    if conv_id:
        return conv_id
    conv = ui.call(ctx.services.conversations.create_conversation(user_id, title=title))
    if conv is None:
        return None
    sidebar.open_conversation(conv.id)
    return conv.id


def _message(m: Message, prefs: dict, live_ids: set[str] | None) -> None:
    with st.chat_message(m.role, avatar="🧑‍⚕️" if m.role == "user" else "💊"):
        st.markdown(
            answers.format_citations(answers.safe_markdown(m.content), len(m.sources))
            if m.role == "assistant"
            else m.content
        )
        meta = [relative_date(m.created_at)]
        if m.model == OFFLINE_MODEL:
            meta.append("offline mode")
        if m.pending:
            meta.append("not saved yet: it is sent when the data store is back")
        st.caption(" · ".join(x for x in meta if x))
        if m.role == "assistant" and prefs.get("show_sources", True):
            answers.render_sources(
                m.sources, open_source=citations.open_source, live_ids=live_ids, key=m.id
            )


def _live_documents(ctx, user_id: str, conv_id: str | None) -> set[str] | None:
    """Ids of the documents a source of this conversation may cite; None when they can't be read."""
    library = ui.call(
        ctx.services.documents.get_library_documents(user_id), default=None, quiet=True
    )
    shared = ui.call(  # the libraries of the user's pharmacies, through RLS
        ctx.services.documents.get_shared_documents(user_id), default=None, quiet=True
    )
    attached = (
        ui.call(
            ctx.services.documents.get_conversation_documents(user_id, conv_id),
            default=None,
            quiet=True,
        )
        if conv_id
        else []
    )
    if library is None or attached is None or shared is None:
        return None
    return {d.id for d in library} | {d.id for d in attached} | {d.id for d in shared}


def _record_first_token(ctx) -> None:
    """Server time from the start of this script run to the first answer token (metrics)."""
    started = st.session_state.get("_run_started")
    if started is not None:
        ctx.record_metric("app.send_to_first_token", (time.perf_counter() - started) * 1000)


def _prepend(first, rest):
    if first is not None:
        yield first
    yield from rest


def ask(
    ctx,
    user_id: str,
    conv_id: str,
    question: str,
    *,
    message_id: str | None = None,
    show_question: bool = True,
    document_ids: list[str] | None = None,
    replace: bool = False,
    prefs: dict | None = None,
    messages: list[Message] | None = None,
) -> None:
    """Stream an answer token by token. Any click (Stop included) reruns the page, which closes
    the stream; the engine then stores what was written so far, marked as stopped. `prefs` and
    `messages`: what the page has read already, so answering does not read them again."""
    if show_question:
        with st.chat_message("user", avatar="🧑‍⚕️"):
            st.markdown(question)
    ok = False
    with st.chat_message("assistant", avatar="💊"):
        st.button(
            "Stop generating",
            key="stop_generating",
            icon=":material/stop_circle:",
            help="Stops the answer; what was written so far is kept.",
        )
        sink: dict = {}
        stream = ctx.stream(
            ctx.rag.engine.answer(
                user_id,
                conv_id,
                question,
                message_id=message_id,
                document_ids=document_ids,
                replace=replace,
                prefs=prefs,
                messages=messages,
            )
        )
        try:
            with st.spinner("Looking through your documents…"):
                first = next(stream, None)  # retrieval happens before the first event
            st.write_stream(
                answers.answer_text(
                    _prepend(first, stream), sink, on_first_token=lambda: _record_first_token(ctx)
                )
            )
            ok = True
        except BackendUnavailable:
            ui.backend_down()
        except PharmGPTError as e:
            st.error(e.message)
        except Exception:
            ui.log.exception("answer failed")
            st.error(ui.GENERIC_ERROR)
        finally:
            stream.close()
    if ok:
        st.rerun()  # redraw with citations, sources and the new title in the list


def _summarise_offers(ctx, user_id: str, conv_id: str) -> tuple[str, str] | None:
    """After an upload: a "Summarise" button per new document (enabled once it is ready).
    Pressed: (the question, that document's id), so the summary reads that file only."""
    recent = st.session_state.get("recent_uploads", {}).get(conv_id) or []
    if not recent:
        return None
    by_id = {
        d.id: d
        for d in ui.call(
            ctx.services.documents.get_conversation_documents(user_id, conv_id),
            default=[],
            quiet=True,
        )
    }
    question = None
    waiting = False
    for doc_id, filename in list(recent):
        d = by_id.get(doc_id)
        if d is None:
            continue
        ready = d.status == "ready"
        waiting = waiting or d.status in docs.ACTIVE
        cols = st.columns([3, 2], vertical_alignment="center")
        if cols[0].button(
            f"Summarise {filename}",
            key=f"summarise_{doc_id}",
            disabled=not ready,
            icon=":material/summarize:",
            help=None if ready else "Available once the document is processed.",
        ):
            question = answers.summary_question(filename), doc_id
            recent.remove((doc_id, filename))  # offered once it has been used
        cols[1].markdown(docs.status_label(d))
    if waiting:
        _watch_processing(user_id, conv_id, [doc_id for doc_id, _ in recent])
    return question


@st.fragment(run_every=2)
def _watch_processing(user_id: str, conv_id: str, doc_ids: list[str]) -> None:
    """Polls while a new document is processed, then redraws the page once it is done."""
    ctx = ui.context()
    ctx.refresh_documents(user_id)  # a worker in another process may have moved them on
    current = ui.call(
        ctx.services.documents.get_conversation_documents(user_id, conv_id),
        default=None,
        quiet=True,
    )
    if current is not None and not any(
        d.id in doc_ids and d.status in docs.ACTIVE for d in current
    ):
        st.rerun(scope="app")


def render() -> None:
    ctx = ui.context()
    user = auth.user()
    prefs = ui.preferences(ctx, user.id)
    sidebar.render(ctx, user.id)

    conv_id = st.session_state.get("conv_id")  # settled by urlstate.sync
    conv = None
    if conv_id:
        out = ui.attempt(ctx.services.conversations.get_conversation(user.id, conv_id))
        conv = out.value if out.ok else None
        if conv is None and not out.unavailable:
            sidebar.open_conversation(None)  # deleted, or never ours: RLS shows nothing of it
            conv_id = None
            st.warning(NOT_FOUND, icon=":material/search_off:")

    head, mode = st.columns([3, 2], vertical_alignment="center")
    head.header(conv.title if conv else "New chat", anchor=False)
    mode.toggle(
        "Answer from my documents only",
        value=bool(prefs.get("strict_mode", True)),
        key="strict_toggle",
        on_change=_strict_changed,
        args=(user.id,),
        help="On: answers use only your documents and say so when they don't cover a question. "
        "Off: general pharmacological knowledge may be added, clearly marked.",
    )
    if ctx.rag.engine.provider is None:
        st.caption(":gray-badge[Offline mode] " + answers.OFFLINE_NOTE)
    else:
        choice = answers.model_picker(ctx, prefs.get("model"))
        if choice is not None:
            st.selectbox(
                "Model",
                choice.available,
                index=choice.available.index(choice.model),
                key="chat_model",
                on_change=_model_changed,
                args=(user.id,),
                help=(
                    "Which model answers; the provider's fallbacks take over if it is unavailable."
                ),
            )
            if choice.notice:
                st.caption(f":orange-badge[Model] {choice.notice}")
    st.caption(answers.DISCLAIMER)
    if ctx.rag.warmup.warming:
        ui.warming_notice()

    messages: list[Message] = []
    if conv_id:
        wanted = st.session_state.get("history_shown", {}).get(conv_id, HISTORY_PAGE)
        messages, more = load_messages(ctx, user.id, conv_id, wanted)
        if more:
            st.button(
                "Load older messages",
                key="load_older",
                on_click=_show_more,
                args=(conv_id,),
                icon=":material/expand_less:",
            )
        seen = {m.id for m in messages}
        messages += [
            m
            for m in ctx.services.conversations.pending_messages(user.id, conv_id)
            if m.id not in seen
        ]
    elif not st.session_state.get("upload_results"):
        st.info(
            "Ask about a drug, a dose or an interaction. Attach drug references (PDF, Word, text, "
            "images) with the paperclip; answers cite them by file and page."
        )
    live_ids = _live_documents(ctx, user.id, conv_id) if messages else None
    for m in messages:
        _message(m, prefs, live_ids)

    question, message_id, only = None, None, None
    last_user = next((m for m in reversed(messages) if m.role == "user"), None)
    if messages and messages[-1].role == "assistant" and last_user is not None:
        if st.button(
            "Regenerate",
            key="regenerate",
            icon=":material/refresh:",
            help="Ask the last question again.",
        ):
            question, message_id = last_user.content, last_user.id

    if st.session_state.get("upload_results"):
        here = (
            ui.call(
                ctx.services.documents.get_conversation_documents(user.id, conv_id),
                default=[],
                quiet=True,
            )
            if conv_id
            else []
        )
        st.session_state["upload_results"] = docs.settled(st.session_state["upload_results"], here)
        docs.show_results(st.session_state["upload_results"])
    if conv_id:
        offer = _summarise_offers(ctx, user.id, conv_id)
        if offer is not None:
            question, message_id, only = offer[0], None, [offer[1]]

    prompt = st.chat_input(
        "Ask about a drug, dose or interaction…",
        key="chat_input",
        accept_file="multiple",
        file_type=docs.UPLOAD_TYPES,
        submit_mode="stop",
    )
    if prompt is not None:
        st.session_state.pop("upload_results", None)
        text = (prompt.text or "").strip()
        files = list(prompt.files or [])
        if files:
            # no question with them: the files name the chat (a question would name it itself)
            conv_id = _ensure_conversation(
                ctx, user.id, conv_id, None if text else files_title([f.name for f in files])
            )
            if conv_id:
                results = docs.register_files(ctx, user.id, files, conv_id)
                st.session_state["upload_results"] = results
                recent = st.session_state.setdefault("recent_uploads", {}).setdefault(conv_id, [])
                for r in results:
                    if r.document_id and (r.document_id, r.filename) not in recent:
                        recent.append((r.document_id, r.filename))
                if not text:
                    st.rerun()
        if text:
            question, message_id, only = text, None, None
    if question:
        conv_id = _ensure_conversation(ctx, user.id, conv_id)
        if conv_id:
            ask(
                ctx,
                user.id,
                conv_id,
                question,
                message_id=message_id,
                show_question=message_id is None,
                document_ids=only,
                replace=message_id is not None,
                prefs=prefs,
                messages=messages,
            )


if __name__ == "__main__":
    render()
