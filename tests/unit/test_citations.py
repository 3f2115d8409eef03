"""Citations open to their text with the quotes marked, and document text cannot load anything."""

from __future__ import annotations

from pharmgpt.app.components.answers import safe_markdown, safe_stream
from pharmgpt.app.components.citations import view_html
from pharmgpt.rag.loaders._common import LoadedDocument, Section
from pharmgpt.rag.source_view import find_quote, highlight, locate

LABEL = LoadedDocument(
    sections=[
        Section(
            "Adults: 10 mg once daily.\n\n- Maximum: 80 mg daily.",
            None,
            "Dosage › Adults",
            code="34068-7",
        ),
        Section(
            "| age | dose |\n| --- | --- |\n| children 6 to under 12 | 2 teaspoonfuls (10 mL) |",
            None,
            "Dosage › Adults",
            kind="table",
            code="34068-7",
        ),
        Section("Store at room temperature.", None, "Storage"),
    ],
    page_count=None,
)


def test_a_quote_is_found_across_spacing_bullets_and_table_bars():
    text = LABEL.sections[0].text + "\n" + LABEL.sections[1].text
    assert text[slice(*find_quote(text, "Maximum:   80 mg daily."))] == "Maximum: 80 mg daily."
    row = text[slice(*find_quote(text, "children 6 to under 12 | 2 teaspoonfuls (10 mL)"))]
    assert row.startswith("children 6") and row.endswith("(10 mL)")
    assert find_quote(text, "take 500 mg every hour") is None


def test_an_xml_source_opens_to_its_whole_section():
    view = locate(
        LABEL,
        {
            "filename": "label.xml",
            "section": "Dosage › Adults",
            "page": None,
            "quotes": ["Adults: 10 mg once daily."],
        },
    )
    assert view.title == "label.xml — Dosage › Adults"
    assert "teaspoonfuls" in view.text and "room temperature" not in view.text
    assert [view.text[a:b] for a, b in view.highlights] == ["Adults: 10 mg once daily."]


def test_a_pdf_source_opens_to_its_page_or_its_section():
    doc = LoadedDocument(
        sections=[
            Section("Page one text.", 1, "Intro"),
            Section("Dose is 5 mg.", 2, "Dosing"),
            Section("Dose rises to 10 mg.", 3, "Dosing"),
        ],
        page_count=3,
    )
    source = {"filename": "a.pdf", "page": 2, "section": "Dosing", "quotes": ["Dose is 5 mg."]}
    assert locate(doc, source).text == "Dose is 5 mg."
    assert locate(doc, source, whole_section=True).text == "Dose is 5 mg.\n\nDose rises to 10 mg."
    assert locate(doc, {**source, "page": 9, "section": None}) is None


def test_overlapping_quotes_merge_and_segments_cover_the_text():
    view = highlight("t", "one two three four", ["one two", "two three"])
    assert view.highlights == [(0, 13)]
    assert "".join(p for p, _ in view.segments()) == view.text
    assert [m for _, m in view.segments()] == [True, False]


def test_document_text_is_escaped_and_only_quotes_are_marked():
    view = highlight("t", '<img src="http://x/y.png"> dose 5 mg', ["dose 5 mg"])
    html = view_html(view)
    assert "<img" not in html and "&lt;img" in html and "<mark>dose 5 mg</mark>" in html


def test_answer_markdown_loads_no_images_and_follows_only_http_links():
    text = (
        "A ![p](http://host/x.png?c=1) B [x](data:text/html,hi) "
        "C [ok](https://dailymed.nlm.nih.gov) [1]"
    )
    safe = safe_markdown(text)
    assert "![" not in safe and "data:" not in safe and "[ok](https://dailymed.nlm.nih.gov)" in safe
    assert "[1]" in safe  # citation markers stay for the badges
    for size in (1, 2, 3, 7):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        shown = ""
        for piece in safe_stream(pieces):
            shown += piece
            assert "![" not in shown  # never, at any point while streaming
        assert shown == safe
