"""Documents in lists: status in words, upload outcomes, one row with its actions."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from rag.loaders import ocr
from services.documents import ALLOWED_TYPES, size_text
from services.models import Document

from . import ui
from .dates import file_size, relative_date

ACTIVE = ("pending", "processing")
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in ALLOWED_TYPES)


def upload_help(settings) -> str:
    """The uploader's help: the real per-file limit (the same setting `pharmgpt run` gives
    Streamlit as server.maxUploadSize, and the service checks) and whether scans are read."""
    scans = ("Scanned PDFs and images are read by text recognition (OCR)." if ocr.available()
             else "Scanned PDFs and images can't be read on this server (OCR is not installed).")
    return f"Up to {size_text(settings.max_upload_bytes)} per file. {scans}"


def ocr_notice() -> None:
    """Say plainly, where files are added, that scans will not be read and how to enable it."""
    if not ocr.available():
        st.caption(f":material/document_scanner: Scanned PDFs and images can't be read: {ocr.UNAVAILABLE} "
                   f"{ocr.ENABLE_HINT}")


def status_label(doc: Document, progress: dict | None = None) -> str:
    """pending / processing n % / ready / failed, as a short badge."""
    progress = progress or {}
    if doc.status == "pending":
        retrying = doc.processing_error and doc.processing_error.startswith("Retrying")
        return ":orange-badge[Retrying soon]" if retrying else ":orange-badge[Waiting to be processed]"
    if doc.status == "processing":
        if progress.get("stage") == "ocr" and progress.get("ocr_pages"):
            return (f":blue-badge[Reading scanned pages (OCR): {progress.get('ocr_pages_done', 0)} of "
                    f"{progress['ocr_pages']}]")
        pct = progress.get("percent")
        return f":blue-badge[Processing {pct} %]" if pct is not None else ":blue-badge[Processing…]"
    if doc.status == "ready":
        parts = [f"{doc.chunk_count} passages"]
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
    kind: str  # "queued", "duplicate", "error"
    text: str
    document_id: str | None = None


def register_files(ctx, user_id: str, files, conversation_id: str | None) -> list[UploadResult]:
    """Register each uploaded file; one result per file (errors are per file, not fatal)."""
    results = []
    for f in files or []:
        out = ui.attempt(ctx.services.documents.register_upload(user_id, f.name, f.getvalue(),
                                                                conversation_id=conversation_id))
        if not out.ok:
            results.append(UploadResult(f.name, "error", out.error or ui.GENERIC_ERROR))
        elif out.value.duplicate:
            d = out.value
            results.append(UploadResult(d.filename, "duplicate", f"{d.filename} was already uploaded here "
                                        f"({relative_date(d.added_at)}); the existing copy is used.", d.id))
        else:
            d = out.value
            results.append(UploadResult(d.filename, "queued", f"{d.filename} uploaded; processing it now. "
                                        "It can be used in answers once it shows Ready.", d.id))
    if any(r.kind == "queued" for r in results):
        ui.wake_worker(ctx)
    return results


def show_results(results: list[UploadResult]) -> None:
    for r in results:
        if r.kind == "error":
            st.error(r.text, icon="🚫")
        elif r.kind == "duplicate":
            st.info(r.text, icon="ℹ️")
        else:
            st.success(r.text, icon="⏳")


def _retry(user_id: str, doc_id: str, filename: str) -> None:
    ctx = ui.context()
    if ui.act(ctx.services.documents.retry_document(user_id, doc_id), f"{filename} is queued again."):
        ui.wake_worker(ctx)


def _delete(user_id: str, doc_id: str, filename: str) -> None:
    ctx = ui.context()
    ui.act(ctx.services.documents.delete_document(user_id, doc_id), f"{filename} deleted.")


def document_row(user_id: str, doc: Document, progress: dict | None = None) -> None:
    left, mid, right = st.columns([5, 3, 2], vertical_alignment="center")
    with left:
        st.markdown(f"**{doc.filename}**")
        st.caption(" · ".join(x for x in (doc.file_type.split("/")[-1], file_size(doc.file_size),
                                          f"added {relative_date(doc.added_at)}") if x))
    with mid:
        st.markdown(status_label(doc, progress))
        if doc.status == "failed" and doc.processing_error:
            st.caption(doc.processing_error)
        warnings = (doc.metadata or {}).get("warnings")
        if doc.status == "ready" and warnings:
            st.caption(f"{len(warnings)} warning(s): {warnings[0]}")
    with right:
        if doc.status == "failed":
            st.button("Retry", key=f"doc_retry_{doc.id}", icon=":material/refresh:",
                      on_click=_retry, args=(user_id, doc.id, doc.filename))
        with st.popover("Delete", icon=":material/delete:", key=f"doc_delmenu_{doc.id}"):
            st.caption("Deleting removes the file and its passages from every answer.")
            sure = st.checkbox("Yes, delete it", key=f"doc_delok_{doc.id}")
            st.button("Delete document", key=f"doc_delete_{doc.id}", type="primary", disabled=not sure,
                      on_click=_delete, args=(user_id, doc.id, doc.filename))
