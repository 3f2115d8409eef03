"""Documents in lists: status in words, upload outcomes, one row with its actions."""

from __future__ import annotations

from dataclasses import dataclass, replace

import streamlit as st
from pharmgpt.rag.loaders import ocr
from pharmgpt.services import file_types
from pharmgpt.services.documents import is_file_fault, size_text
from pharmgpt.services.models import ACTIVE_STATUSES, Document, Upload

from . import ui
from .dates import file_size, relative_date

ACTIVE = ACTIVE_STATUSES
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in file_types.EXTENSIONS)  # the uploader accepts
NO_RETRY = "Retrying won't help: the file can't be read as it is. Upload a corrected copy."


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _scope(doc: Document) -> str:
    return "a chat" if doc.conversation_id else "your library"


def same_file(doc: Document, others) -> Document | None:
    """Another of the user's documents with exactly these bytes (in another chat or the library)."""
    return next(
        (o for o in others if o.id != doc.id and doc.sha256 and o.sha256 == doc.sha256), None
    )


def same_label(doc: Document, others) -> Document | None:
    """A ready document in another format covering the same drugs and products: likely the same
    label twice (e.g. its SPL XML and a PDF of it), which would be cited twice."""

    def key(d: Document):
        m = d.metadata or {}
        return tuple(sorted(m.get("drugs") or ())), tuple(
            sorted(p.lower() for p in m.get("products") or ())
        )

    if doc.status != "ready" or not key(doc)[0]:
        return None
    return next(
        (
            o
            for o in others
            if o.id != doc.id
            and o.status == "ready"
            and o.file_type != doc.file_type
            and key(o) == key(doc)
        ),
        None,
    )


def duplicate_notes(doc: Document, others) -> list[str]:
    notes = []
    twin = same_file(doc, others)
    if twin is not None:
        notes.append(f"The same file is also in {_scope(twin)} as {twin.filename}.")
    label = same_label(doc, others)
    if label is not None:
        notes.append(f"Possibly the same label as {label.filename} (same drugs, another format).")
    return notes


def upload_outcome(u: Upload) -> str:
    """What became of an upload, in words (accepted then unreadable is not "accepted")."""
    if u.outcome == "rejected":
        return "rejected"
    if u.document_status == "failed":
        return "failed" + (f": {u.document_error}" if u.document_error else "")
    if u.document_status in ACTIVE:
        return "processing"
    if u.document_status == "ready":
        return "ready" if u.outcome != "duplicate" else "duplicate (existing copy used)"
    return {"accepted": "accepted (since deleted)", "duplicate": "duplicate"}.get(
        u.outcome, u.outcome
    )


def upload_help(settings) -> str:
    """The uploader's help: the real per-file limit (the same setting `pharmgpt run` gives
    Streamlit as server.maxUploadSize, and the service checks) and whether scans are read."""
    scans = (
        "Scanned PDFs and images are read by text recognition (OCR)."
        if ocr.available()
        else "Scanned PDFs and images can't be read on this server (OCR is not installed)."
    )
    return f"Up to {size_text(settings.max_upload_bytes)} per file. {scans}"


def ocr_notice() -> None:
    """Say plainly, where files are added, that scans will not be read and how to enable it."""
    if not ocr.available():
        st.caption(
            f":material/document_scanner: Scanned PDFs and images can't be read: {ocr.UNAVAILABLE} "
            f"{ocr.ENABLE_HINT}"
        )


def status_label(doc: Document, progress: dict | None = None) -> str:
    """pending / processing n % / ready / failed, as a short badge."""
    progress = progress or {}
    if doc.status == "pending":
        retrying = doc.retry_at is not None
        return (
            ":orange-badge[Retrying soon]" if retrying else ":orange-badge[Waiting to be processed]"
        )
    if doc.status == "processing":
        if progress.get("stage") == "ocr" and progress.get("ocr_pages"):
            return (
                f":blue-badge[Reading scanned pages (OCR): {progress.get('ocr_pages_done', 0)} of "
                f"{progress['ocr_pages']}]"
            )
        pct = progress.get("percent")
        return f":blue-badge[Processing {pct} %]" if pct is not None else ":blue-badge[Processing…]"
    if doc.status == "ready":
        parts = [plural(doc.chunk_count, "passage")]
        if doc.page_count:
            parts.append(f"{doc.page_count} page{'s' if doc.page_count != 1 else ''}")
        ocr_pages = (doc.metadata or {}).get("ocr_pages")
        if ocr_pages:
            parts.append(f"{ocr_pages} read by OCR")
        return ":green-badge[Ready] " + " · ".join(parts)
    return ":red-badge[Failed]"


@dataclass(frozen=True)
class UploadResult:
    filename: str
    kind: str  # "queued", "duplicate", "error"; "note": only `notes` are left to show
    text: str
    document_id: str | None = None
    notes: tuple[str, ...] = ()  # the same file elsewhere


def register_files(
    ctx, user_id: str, files, conversation_id: str | None, *, pharmacy_id: str | None = None
) -> list[UploadResult]:
    """Register each uploaded file (into a pharmacy's library with `pharmacy_id`); one result
    per file (errors are per file, not fatal)."""
    results = []
    for f in files or []:
        out = ui.attempt(
            ctx.services.documents.register_upload(
                user_id,
                f.name,
                f.getvalue(),
                conversation_id=conversation_id,
                pharmacy_id=pharmacy_id,
            )
        )
        if not out.ok:
            results.append(UploadResult(f.name, "error", out.error or ui.GENERIC_ERROR))
        elif out.value.duplicate:
            d = out.value
            results.append(
                UploadResult(
                    d.filename,
                    "duplicate",
                    f"{d.filename} was already uploaded here "
                    f"({relative_date(d.added_at)}); the existing copy is used.",
                    d.id,
                    _elsewhere(ctx, user_id, d),
                )
            )
        else:
            d = out.value
            results.append(
                UploadResult(
                    d.filename,
                    "queued",
                    f"{d.filename} uploaded; processing it now. "
                    "It can be used in answers once it shows Ready.",
                    d.id,
                    _elsewhere(ctx, user_id, d),
                )
            )
    if any(r.kind == "queued" for r in results):
        ui.wake_worker(ctx)
    return results


def _elsewhere(ctx, user_id: str, doc: Document) -> tuple[str, ...]:
    others = ui.call(
        ctx.services.documents.find_by_hash(user_id, doc.sha256), default=[], quiet=True
    )
    twin = same_file(doc, [o for o in others if o.conversation_id != doc.conversation_id])
    return (
        (f"The same file is also in {_scope(twin)} as {twin.filename}: answers may cite it twice.",)
        if twin is not None
        else ()
    )


def settled(results: list[UploadResult], documents) -> list[UploadResult]:
    """The results still worth showing: a "processing it now" banner goes once its document is
    Ready or Failed (the list shows that); errors and notices stay until the next upload."""
    status = {d.id: d.status for d in documents}
    out = []
    for r in results:
        if r.kind == "queued" and status.get(r.document_id, "pending") not in ACTIVE:
            if not r.notes:
                continue
            r = replace(r, kind="note")  # keep the duplicate notice, drop the banner
        out.append(r)
    return out


def show_results(results: list[UploadResult]) -> None:
    for r in results:
        if r.kind == "error":
            st.error(r.text, icon="🚫")
        elif r.kind == "duplicate":
            st.info(r.text, icon="ℹ️")
        elif r.kind == "queued":
            st.success(r.text, icon="⏳")
        for note in r.notes:
            st.warning(note, icon="⚠️")


def _retry(user_id: str, doc_id: str, filename: str) -> None:
    ctx = ui.context()
    if ui.act(
        ctx.services.documents.retry_document(user_id, doc_id), f"{filename} is queued again."
    ):
        ui.wake_worker(ctx)


def _delete(user_id: str, doc_id: str, filename: str) -> None:
    ctx = ui.context()
    ui.act(ctx.services.documents.delete_document(user_id, doc_id), f"{filename} deleted.")


def caption_of(doc: Document, *extra: str) -> None:
    """A document's name and its facts (type, size, when added, and any `extra`)."""
    st.markdown(f"**{doc.filename}**")
    facts = (
        doc.file_type.split("/")[-1],
        file_size(doc.file_size),
        f"added {relative_date(doc.added_at)}",
        *extra,
    )
    st.caption(" · ".join(x for x in facts if x))


def document_row(user_id: str, doc: Document, progress: dict | None = None, others=()) -> None:
    """One document: name, status (with the reason of a failure), duplicate notes, actions."""
    left, mid, right = st.columns([5, 3, 2], vertical_alignment="center")
    with left:
        caption_of(doc)
    with mid:
        st.markdown(status_label(doc, progress))
        if doc.status == "failed" and doc.processing_error:
            st.caption(doc.processing_error)
        warnings = (doc.metadata or {}).get("warnings")
        if doc.status == "ready" and warnings:
            st.caption(f"{plural(len(warnings), 'warning')}: {warnings[0]}")
        if is_file_fault(doc):
            st.caption(NO_RETRY)
        for note in duplicate_notes(doc, others):
            st.caption(f":orange[{note}]")
    with right:
        if doc.status == "failed" and not is_file_fault(doc):
            st.button(
                "Retry",
                key=f"doc_retry_{doc.id}",
                icon=":material/refresh:",
                on_click=_retry,
                args=(user_id, doc.id, doc.filename),
            )
        with st.popover("Delete", icon=":material/delete:", key=f"doc_delmenu_{doc.id}"):
            st.caption("Deleting removes the file and its passages from every answer.")
            sure = st.checkbox("Yes, delete it", key=f"doc_delok_{doc.id}")
            st.button(
                "Delete document",
                key=f"doc_delete_{doc.id}",
                type="primary",
                disabled=not sure,
                on_click=_delete,
                args=(user_id, doc.id, doc.filename),
            )
