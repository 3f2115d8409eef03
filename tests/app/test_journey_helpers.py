"""Pure helpers behind the issue-13 fixes: words, duplicate detection, upload outcomes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pharmgpt.app.components import docs
from pharmgpt.app.views.chat import files_title
from pharmgpt.services.models import Document, Upload

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def doc(
    name="a.pdf", status="ready", file_type="application/pdf", sha="1" * 64, conv=None, **meta
) -> Document:
    return Document(
        name, "u1", conv, sha, name, file_type, 10, 1, 3, status, None, dict(meta), NOW, NOW
    )


def upload(outcome="accepted", status=None, error=None) -> Upload:
    return Upload("x", "f.pdf", 10, "application/pdf", outcome, "d", None, NOW, status, error)


def test_one_passage_is_singular():
    assert (
        docs.status_label(replace(doc(), chunk_count=1, page_count=1))
        == ":green-badge[Ready] 1 passage · 1 page"
    )
    assert docs.plural(0, "passage") == "0 passages" and docs.plural(2, "warning") == "2 warnings"


def test_a_chat_started_by_files_is_named_after_them():
    assert files_title(["label.pdf"]) == "label.pdf"
    assert files_title(["a.pdf", "b.xml", "c.md"]) == "a.pdf and 2 more"
    assert files_title([]) == "documents"


def test_same_file_and_same_label_are_flagged():
    lib = doc(
        "lipitor.xml",
        file_type="application/xml",
        sha="a" * 64,
        drugs=["atorvastatin"],
        products=["Lipitor"],
    )
    pdf = doc(
        "Lipitor label.pdf", sha="b" * 64, conv="c1", drugs=["atorvastatin"], products=["lipitor"]
    )
    copy = doc(
        "copy.xml",
        file_type="application/xml",
        sha="a" * 64,
        conv="c1",
        drugs=["atorvastatin"],
        products=["Lipitor"],
    )
    other = doc("crestor.pdf", sha="c" * 64, drugs=["rosuvastatin"], products=["Crestor"])
    assert docs.same_file(copy, [lib, pdf, other]) is lib
    assert docs.same_file(pdf, [lib, copy, other]) is None
    assert docs.same_label(pdf, [lib, other]) is lib  # the XML and a PDF of the same label
    assert docs.same_label(copy, [lib]) is None  # same format: the hash check covers an exact copy
    assert docs.same_label(other, [lib, pdf]) is None
    assert docs.same_label(replace(pdf, status="processing"), [lib]) is None
    assert (
        docs.same_label(
            doc("x.pdf", drugs=[]), [doc("y.xml", file_type="application/xml", drugs=[])]
        )
        is None
    )
    notes = docs.duplicate_notes(copy, [lib])
    assert notes == ["The same file is also in your library as lipitor.xml."]
    assert docs.duplicate_notes(pdf, [lib]) == [
        "Possibly the same label as lipitor.xml (same drugs, another format)."
    ]


def test_upload_outcomes_say_what_became_of_the_file():
    assert docs.upload_outcome(upload("rejected")) == "rejected"
    assert (
        docs.upload_outcome(upload("accepted", "failed", "bad.pdf could not be read"))
        == "failed: bad.pdf could not be read"
    )  # a corrupt PDF is not "accepted"
    assert docs.upload_outcome(upload("accepted", "ready")) == "ready"
    assert docs.upload_outcome(upload("accepted", "processing")) == "processing"
    assert docs.upload_outcome(upload("accepted", None)) == "accepted (since deleted)"


def test_processing_banners_go_once_the_document_settles():
    queued = docs.UploadResult("a.pdf", "queued", "a.pdf uploaded; processing it now.", "a.pdf")
    noted = docs.UploadResult(
        "b.pdf",
        "queued",
        "b.pdf uploaded; processing it now.",
        "b.pdf",
        ("The same file is also in your library as b0.pdf: answers may cite it twice.",),
    )
    error = docs.UploadResult("c.pdf", "error", "c.pdf: the contents are not a valid PDF file.")
    assert docs.settled(
        [queued, noted, error], [doc("a.pdf", "processing"), doc("b.pdf", "processing")]
    ) == [queued, noted, error]
    left = docs.settled([queued, noted, error], [doc("a.pdf", "ready"), doc("b.pdf", "failed")])
    assert [(r.filename, r.kind) for r in left] == [("b.pdf", "note"), ("c.pdf", "error")]
