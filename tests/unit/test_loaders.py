"""rag.loaders on real content: FDA labels as XML and as generated PDFs, DOCX, CSV, text."""

from __future__ import annotations

import shutil

import pytest
from pharmgpt.rag.loaders import LoadedDocument, Section, load_document
from pharmgpt.rag.loaders.csv_loader import load_csv
from pharmgpt.rag.loaders.pdf import clean_page_text
from pharmgpt.rag.loaders.spl import TITLE_HEADING
from pharmgpt.rag.loaders.text import decode
from pharmgpt.services.errors import IngestionError

from tests.fixtures import documents as fx
from tests.fixtures import shared_data

LABELS = shared_data("fda-labels")
needs_labels = pytest.mark.skipif(not LABELS.is_dir(), reason="FDA label samples not present")


def norm(text: str) -> str:
    return " ".join(text.split())


def load_label(name: str) -> LoadedDocument:
    path = LABELS / name
    return load_document(path.name, path.read_bytes())


def headings(doc: LoadedDocument) -> list[str]:
    return [s.heading for s in doc.sections if s.heading]


def containing(doc: LoadedDocument, phrase: str) -> list[Section]:
    return [s for s in doc.sections if phrase in norm(s.text)]


# --------------------------------------------------------------------------- SPL XML


@needs_labels
@pytest.mark.parametrize(
    "name", ["lipitor-orig.xml", "humira.xml", "cough.xml", "no-title.xml", "methoxsalen.xml"]
)
def test_every_sample_label_loads_with_clean_headings(name):
    doc = load_label(name)
    assert doc.sections and doc.page_count is None
    assert all(s.text.strip() and s.page is None for s in doc.sections)
    assert all(s.kind in ("text", "table") for s in doc.sections)
    for h in headings(doc):
        assert h == h.strip() and "\t" not in h and "\n" not in h and "  " not in h


@needs_labels
def test_lipitor_sections_headings_and_tables():
    doc = load_label("lipitor-orig.xml")
    hs = headings(doc)
    assert any("INDICATIONS" in h for h in hs)
    dosing = [s for s in doc.sections if s.heading and "DOSAGE AND ADMINISTRATION" in s.heading]
    assert dosing and any("mg" in s.text for s in dosing)
    assert "The recommended starting dose of LIPITOR is 10 mg/day" in norm(
        " ".join(s.text for s in dosing)
    )
    # nested titles carry their parent, and source tabs/double spaces are gone
    assert "7 DRUG INTERACTIONS › 7.3 Cyclosporine" in hs
    assert "1 INDICATIONS AND USAGE › 1.1 Prevention of Cardiovascular Disease" in hs
    # the document title comes first, without a heading
    assert doc.sections[0].heading == TITLE_HEADING and "LIPITOR" in doc.sections[0].text

    tables = [s for s in doc.sections if s.kind == "table"]
    assert len(tables) >= 8
    for t in tables:
        lines = t.text.splitlines()
        assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
        assert set(lines[1].replace("|", "").split()) == {"---"}
    adverse = [t for t in tables if "Nasopharyngitis" in t.text]
    assert adverse and adverse[0].heading.startswith("6 ADVERSE REACTIONS")
    assert "| Nasopharyngitis | 8.3 | 12.9 | 5.3 | 7.0 | 4.2 | 8.2 |" in adverse[0].text
    # two-row table headers merge column-wise, so each column keeps its full name
    pk = [t for t in tables if "Cyclosporine 5.2 mg/kg/day" in t.text]
    assert pk and "Atorvastatin Change in AUC" in pk[0].text.splitlines()[0]
    interactions = [t for t in tables if "Do not exceed 20 mg atorvastatin daily" in t.text]
    assert interactions[0].text.startswith("| Interacting Agents | Prescribing Recommendations |")


@needs_labels
def test_lipitor_inline_markup_does_not_break_sentences():
    doc = load_label("lipitor-orig.xml")
    # <content><linkHtml>…</linkHtml></content> inside a paragraph stays on one line
    assert containing(
        doc,
        "[see Warnings and Precautions, Skeletal Muscle (5.1) and Clinical Pharmacology (12.3)].",
    )
    cyclo = [s for s in doc.sections if s.heading == "7 DRUG INTERACTIONS › 7.3 Cyclosporine"]
    assert "cyclosporine 5.2 mg/kg/day compared to that of LIPITOR alone" in cyclo[0].text


@needs_labels
def test_humira_boxed_warning_and_highlights():
    doc = load_label("humira.xml")
    hs = headings(doc)
    assert "WARNING: SERIOUS INFECTIONS AND MALIGNANCY" in hs
    assert any(h.startswith("2 DOSAGE AND ADMINISTRATION") for h in hs)
    assert any(h.endswith("› Highlights") for h in hs)
    assert "Recent Major Changes › Highlights" in hs  # untitled: named from its LOINC code
    assert any(s.kind == "table" for s in doc.sections)
    assert any("40 mg" in s.text for s in doc.sections if s.heading and "DOSAGE" in s.heading)


@needs_labels
def test_cough_otc_drug_facts():
    doc = load_label("cough.xml")
    hs = headings(doc)
    for expected in ("Active ingredient", "Purpose", "Uses", "Directions"):
        assert expected in hs
    assert "Warnings › Do not use" in hs
    active = [s for s in doc.sections if s.heading == "Active ingredient"][0]
    assert "Diphenhydramine HCl 6.25 mg" in active.text
    table = [s for s in doc.sections if s.kind == "table"][0]
    assert table.heading == "Directions"
    assert table.text.splitlines()[0] == "| Age | Dose |"
    assert "| children 6 to under 12 years of age | 2 teaspoonfuls (10 mL) |" in table.text
    uses = [s for s in doc.sections if s.heading == "Uses"][0]
    assert uses.text.startswith("- ")  # list items


@needs_labels
def test_label_without_document_title():
    doc = load_label("no-title.xml")
    hs = headings(doc)
    assert hs[0] == "Boxed Warning"  # untitled section: named from its LOINC code
    assert "INDICATIONS AND USAGE" in hs and "CONTRAINDICATIONS" in hs
    assert "WARNINGS › Tardive Dyskinesia" in hs
    assert containing(
        doc,
        "Haloperidol is indicated for use in the management of "
        "manifestations of psychotic disorders.",
    )


@needs_labels
def test_indexing_file_is_described_in_words():
    doc = load_label("methoxsalen.xml")
    text = " ".join(s.text for s in doc.sections)
    assert "METHOXSALEN" in text and "Psoralen [EPC]" in text


SPL_MINI = """<?xml version="1.0" encoding="UTF-8"?>
<document xmlns="urn:hl7-org:v3"><title>Mini</title>
<component><structuredBody>
<component><section><code code="34070-3" displayName="CONTRAINDICATIONS SECTION"/><title/>
<text><paragraph>Do not use with <content styleCode="bold">MAOIs</content>.</paragraph></text>
<component><section><code code="42229-5" displayName="SPL UNCLASSIFIED SECTION"/>
<text><paragraph>Untitled child text.</paragraph>
<table><thead><tr><th rowspan="2">Drug</th><th colspan="2">Dose</th></tr>
<tr><th>Adult</th><th>Child</th></tr></thead>
<tbody><tr><td>A</td><td>5 mg</td><td>2 mg</td></tr></tbody></table></text>
</section></component>
</section></component>
<component><section><text><paragraph>No title, no code.</paragraph></text></section></component>
</structuredBody></component></document>"""


def test_spl_missing_titles_rowspan_colspan():
    doc = load_document("mini.xml", SPL_MINI.encode())
    by_text = {s.text.splitlines()[0]: s for s in doc.sections}
    assert by_text["Mini"].heading == TITLE_HEADING
    first = by_text["Do not use with MAOIs."]
    assert first.heading == "Contraindications" and "Untitled child text." in first.text
    table = [s for s in doc.sections if s.kind == "table"][0]
    assert table.heading == "Contraindications"
    assert table.text.splitlines() == [
        "| Drug | Dose Adult | Dose Child |",
        "| --- | --- | --- |",
        "| A | 5 mg | 2 mg |",
    ]
    assert by_text["No title, no code."].heading is None


@pytest.mark.parametrize(
    "data, message",
    [
        (b"<document xmlns='urn:hl7-org:v3'><title>x", "not readable XML"),
        (
            b"<?xml version='1.0'?><html><body>hi</body></html>",
            "not an FDA Structured Product Label",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
            b'<document xmlns="urn:hl7-org:v3"><title>&b;</title></document>',
            "entities",
        ),
    ],
)
def test_spl_bad_xml_is_refused(data, message):
    with pytest.raises(IngestionError, match=message):
        load_document("label.xml", data)


# --------------------------------------------------------------------------- PDF


@pytest.fixture(scope="module")
def lipitor_pdf(tmp_path_factory):
    if not LABELS.is_dir():
        pytest.skip("FDA label samples not present")
    out = tmp_path_factory.mktemp("pdf") / "lipitor.pdf"
    pages = fx.spl_to_pdf(LABELS / "lipitor-orig.xml", out)
    return pages, load_document("lipitor.pdf", out.read_bytes())


def test_generated_label_pdf_has_many_pages_and_a_table(lipitor_pdf):
    pages, doc = lipitor_pdf
    assert len(pages) >= 10
    assert doc.page_count == len(pages)
    assert [s.page for s in doc.sections] == [p for p, _ in pages]  # one Section per page, in order
    assert doc.warnings == []
    assert all(s.heading is None and s.kind == "text" for s in doc.sections)


@pytest.mark.parametrize(
    "phrase",
    [
        "Therapy with lipid-altering agents should be only one component",
        "The recommended starting dose of LIPITOR is 10 mg/day",
        "Do not exceed 20 mg atorvastatin daily",  # a table cell
        "Brain hemorrhage was seen in a female dog",
        "7.2 Grapefruit Juice",  # a heading
        "Contains one or more components that inhibit CYP 3A4",
        "LIPITOR is a selective, competitive inhibitor of HMG-CoA reductase",
        "The mean achieved LDL-C value was 130.7 mg/dL",
        "Read the Patient Information that comes with LIPITOR",
    ],
)
def test_pdf_page_numbers_match_the_layout(lipitor_pdf, phrase):
    pages, doc = lipitor_pdf
    expected = [p for p, text in pages if phrase in norm(text)]
    assert len(expected) == 1, f"the generator should place {phrase!r} on exactly one page"
    found = containing(doc, phrase)
    assert [s.page for s in found] == expected


def test_pdf_every_page_holds_the_text_laid_out_on_it(lipitor_pdf):
    pages, doc = lipitor_pdf
    by_page = {s.page: norm(s.text) for s in doc.sections}
    lines = [(p, norm(line)) for p, text in pages for line in text.splitlines() if norm(line)]
    missing = [(p, line) for p, line in lines if line not in by_page[p]]
    assert len(missing) <= len(lines) // 100, missing[:5]  # sub/superscript formulas may differ


def test_pdf_hyphenated_line_breaks_and_whitespace():
    assert clean_page_text("risk of hepato-\ntoxicity  is   low") == "risk of hepatotoxicity is low"
    assert clean_page_text("Vitamin B-\n12") == "Vitamin B-\n12"  # not a broken word
    assert clean_page_text("one\n\n\n\n  two\r\nthree ") == "one\n\ntwo\nthree"
    doc = load_document("x.pdf", fx.text_pdf(["Monitor for hepato-\ntoxicity weekly."]))
    assert "hepatotoxicity weekly" in norm(doc.sections[0].text)


def test_encrypted_pdf_is_refused():
    with pytest.raises(IngestionError, match="label.pdf is encrypted and could not be opened"):
        load_document("label.pdf", fx.encrypted_pdf())


def test_pdf_with_empty_user_password_loads():
    doc = load_document("label.pdf", fx.empty_password_pdf())
    assert doc.page_count == 1 and "paracetamol 500 mg" in doc.sections[0].text


def test_corrupt_pdf_is_refused():
    damaged = r"label.pdf is not a readable PDF \(the file is damaged\)"
    with pytest.raises(IngestionError, match=damaged):
        load_document("label.pdf", fx.corrupt_pdf())
    with pytest.raises(IngestionError, match="damaged"):
        load_document("label.pdf", fx.simple_pdf(3)[:400])


@pytest.fixture
def no_tesseract(monkeypatch):
    """This server as one without Tesseract installed."""
    from pharmgpt.rag.loaders import ocr

    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)


def test_page_without_text_layer_is_reported_and_skipped(no_tesseract):
    doc = load_document("scan.pdf", fx.pdf_without_text_layer())
    assert doc.page_count == 3
    assert [s.page for s in doc.sections] == [1, 3]
    assert doc.warnings[0] == "no text on page 2"
    assert "1 page(s) without a text layer were skipped" in doc.warnings[1]
    assert not any(s.ocr for s in doc.sections)


def test_scanned_pdf_without_tesseract_says_how_to_enable_it(no_tesseract):
    with pytest.raises(IngestionError) as e:
        load_document("scan.pdf", fx.text_pdf([None, None]))
    assert "contains no extractable text: it looks like a scanned document" in e.value.message
    assert "tesseract-ocr tesseract-ocr-eng" in e.value.message


def test_page_limit():
    with pytest.raises(IngestionError, match="big.pdf has 2,001 pages; the limit is 2,000"):
        load_document("big.pdf", fx.blank_pdf(2001))
    with pytest.raises(IngestionError, match="has 5 pages; the limit is 3"):
        load_document("five.pdf", fx.simple_pdf(5), max_pages=3)
    assert load_document("five.pdf", fx.simple_pdf(5), max_pages=5).page_count == 5


# --------------------------------------------------------------------------- OCR (real Tesseract)

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed (bash scripts/setup_ocr.sh)",
)


@needs_tesseract
def test_scanned_pdf_is_read_by_ocr_page_by_page():
    pages = [["WARFARIN SODIUM TABLETS", "Take 5 mg once daily."], ["Monitor the INR every week."]]
    seen = []
    doc = load_document(
        "scan.pdf", fx.scanned_pdf(pages), progress=lambda done, total: seen.append((done, total))
    )
    assert doc.page_count == 2
    assert [s.page for s in doc.sections] == [1, 2]
    assert all(s.ocr for s in doc.sections)
    assert (
        "WARFARIN SODIUM TABLETS" in doc.sections[0].text
        and "5 mg once daily" in doc.sections[0].text
    )
    assert "INR every week" in doc.sections[1].text
    assert seen == [(0, 2), (1, 2), (2, 2)]  # pages OCR'd / pages to OCR
    # the chunks carry the mark to the index (and so to the sources)
    from pharmgpt.rag.chunking import chunk_document
    from pharmgpt.rag.index import chunk_metadata

    chunks = chunk_document(doc)
    assert chunks and all(c.ocr for c in chunks)
    assert chunk_metadata(chunks[0], {"id": "d", "filename": "scan.pdf"})["ocr"] is True


@needs_tesseract
def test_only_the_pages_without_text_are_ocrd():
    seen = []
    doc = load_document(
        "mixed.pdf", fx.pdf_with_scanned_page(), progress=lambda d, t: seen.append((d, t))
    )
    assert [(s.page, s.ocr) for s in doc.sections] == [(1, False), (2, True)]
    assert doc.sections[0].text == "Typed page: metformin 500 mg"
    assert "Amoxicillin 250 mg" in doc.sections[1].text
    assert seen == [(0, 1), (1, 1)]
    # a page with neither text nor anything printed still has no text, and says so
    doc = load_document("scan.pdf", fx.pdf_without_text_layer())
    assert doc.warnings == ["no text on page 2"]


@needs_tesseract
def test_png_and_tiff_are_read_by_ocr():
    doc = load_document("label.png", fx.scan_png(["Amoxicillin 250 mg capsules"]))
    assert len(doc.sections) == 1 and doc.sections[0].ocr and doc.sections[0].page is None
    assert "Amoxicillin 250 mg" in doc.sections[0].text
    doc = load_document(
        "leaflet.tiff", fx.scan_tiff([["Page one: ibuprofen"], ["Page two: naproxen"]])
    )
    assert doc.page_count == 2
    assert [s.page for s in doc.sections] == [1, 2]
    assert "naproxen" in doc.sections[1].text


@needs_tesseract
def test_ocr_page_cap_is_a_limit():
    from pharmgpt.rag.loaders import LimitExceeded, Limits

    with pytest.raises(LimitExceeded, match="more than 1 scanned pages"):
        load_document(
            "scan.pdf", fx.scanned_pdf([["one"], ["two"]]), limits=Limits(max_ocr_pages=1)
        )


@needs_tesseract
def test_damaged_image_is_a_clear_error():
    with pytest.raises(IngestionError, match="scan.png is not a readable image"):
        load_document("scan.png", fx.png_bytes()[:30])


def test_image_without_tesseract_says_how_to_enable_it(no_tesseract):
    with pytest.raises(IngestionError) as e:
        load_document("scan.png", fx.png_bytes())
    assert "scan.png can't be read: text recognition (OCR) is not installed" in e.value.message
    assert "apt-get install tesseract-ocr tesseract-ocr-eng" in e.value.message


def test_ocr_status_names_what_is_missing(no_tesseract):
    from pharmgpt.rag.loaders import ocr

    st = ocr.status()
    assert not st.available and "tesseract is not installed" in st.detail


@needs_tesseract
def test_ocr_status_when_installed():
    from pharmgpt.rag.loaders import ocr

    st = ocr.status()
    assert st.available and "eng" in st.detail


# --------------------------------------------------------------------------- empty, mislabelled


@pytest.mark.parametrize(
    "name", ["a.pdf", "a.docx", "a.txt", "a.md", "a.csv", "a.xml", "a.png", "a.jpg"]
)
def test_empty_files_are_refused(name):
    with pytest.raises(IngestionError, match=f"{name} is empty"):
        load_document(name, b"")


@pytest.mark.parametrize(
    "name, data",
    [
        ("notes.txt", b"  \r\n\t \n"),
        ("notes.txt", "  \n ".encode("utf-16")),
        ("list.csv", b"\n,,\n , \n"),
    ],
)
def test_whitespace_only_files_are_empty(name, data):
    with pytest.raises(IngestionError, match=f"{name} is empty"):
        load_document(name, data)


def test_files_that_parse_but_hold_no_text():
    with pytest.raises(IngestionError, match="blank.docx contains no extractable text"):
        load_document("blank.docx", fx.make_docx([]))
    spl = b'<document xmlns="urn:hl7-org:v3"><component><structuredBody/></component></document>'
    with pytest.raises(IngestionError, match="label.xml contains no extractable text"):
        load_document("label.xml", spl)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("label.docx", fx.simple_pdf(1), "named as a Word document .* actually a PDF"),
        ("label.pdf", fx.make_docx(), "named as a PDF but is actually a ZIP"),
        ("notes.txt", fx.simple_pdf(1), "named as a text file but is actually a PDF"),
        ("label.xml", fx.png_bytes(), "actually a PNG image"),
        ("scan.png", b"this is not really an image at all", "not a valid image"),
        ("scan.jpg", fx.simple_pdf(1), "actually a PDF"),
        ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "old Word .doc format"),
    ],
)
def test_mislabelled_files_are_refused(name, data, message):
    with pytest.raises(IngestionError, match=message):
        load_document(name, data)


def test_unsupported_types_and_mime_dispatch():
    with pytest.raises(IngestionError, match="not supported"):
        load_document("setup.exe", b"MZ\x90\x00")
    with pytest.raises(IngestionError, match="save it as a Word .docx"):
        load_document("old.doc", b"whatever")
    doc = load_document("upload", b"Take with food.", "text/plain; charset=utf-8")
    assert doc.sections[0].text == "Take with food."
    doc = load_document("C:\\Users\\me\\notes.txt", b"x")  # messages and dispatch use the base name
    assert doc.sections[0].text == "x"
    with pytest.raises(IngestionError, match="^notes.txt is empty"):
        load_document("C:\\Users\\me\\notes.txt", b"")


# --------------------------------------------------------------------------- DOCX


def test_docx_headings_paragraphs_and_tables():
    doc = load_document("warfarin.docx", fx.make_docx())
    assert [(s.heading, s.kind) for s in doc.sections] == [
        ("Warfarin counselling notes", "text"),
        ("Dosing", "text"),
        ("Dosing", "table"),
        ("Monitoring", "text"),
    ]
    assert doc.sections[0].text == "Warfarin is an oral anticoagulant."
    assert "5 mg once daily" in doc.sections[1].text and "INR target" in doc.sections[1].text
    assert doc.sections[2].text.splitlines() == [
        "| Drug | Effect on INR |",
        "| --- | --- |",
        "| Amiodarone | Increase |",
        "| Rifampicin | Decrease |",
    ]
    assert doc.page_count is None and all(s.page is None for s in doc.sections)


def test_docx_text_before_any_heading_and_pipes_in_cells():
    data = fx.make_docx([("p", "Preamble."), ("table", [["a|b", "c"], ["1", "2"]])])
    doc = load_document("x.docx", data)
    assert doc.sections[0].heading is None and doc.sections[0].text == "Preamble."
    assert doc.sections[1].text.splitlines()[0] == "| a\\|b | c |"


def test_corrupt_docx_is_refused():
    data = fx.make_docx()
    with pytest.raises(IngestionError, match="not a readable Word document"):
        load_document("notes.docx", data[: len(data) // 2])


# --------------------------------------------------------------------------- CSV


def test_csv_row_groups_repeat_the_header():
    doc = load_document("formulary.csv", fx.csv_bytes(45))
    assert [s.kind for s in doc.sections] == ["table"] * 3
    for s in doc.sections:
        lines = s.text.splitlines()
        assert lines[:2] == ["| Drug | Strength | Form |", "| --- | --- | --- |"]
    assert [len(s.text.splitlines()) - 2 for s in doc.sections] == [20, 20, 5]
    assert "| Drug 21 | 105 mg | tablet |" in doc.sections[1].text


def test_csv_dialect_quoting_and_group_size():
    data = (
        'Drug;Note\r\nAspirin;"take with food; avoid in children"\r\n'
        'Codeine;"a ""quoted"" note"\r\n'
    )
    doc = load_csv("x.csv", data.encode("cp1252"), rows_per_group=1)
    assert [s.text.splitlines()[2] for s in doc.sections] == [
        "| Aspirin | take with food; avoid in children |",
        '| Codeine | a "quoted" note |',
    ]
    header_only = load_document("h.csv", b"Drug,Dose\n")
    assert header_only.warnings == ["h.csv has a header row but no data rows"]


def test_csv_ragged_rows_are_padded():
    doc = load_document("r.csv", b"a,b\n1,2,3\n4\n")
    assert doc.sections[0].text.splitlines() == [
        "| a | b | Column 3 |",
        "| --- | --- | --- |",
        "| 1 | 2 | 3 |",
        "| 4 |  |  |",
    ]


# --------------------------------------------------------------------------- text, Markdown


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "cp1252", "latin-1"]
)
def test_text_encodings(encoding):
    data = fx.encoded_text(fx.CAFE, encoding)
    if encoding == "utf-16-be":  # no BOM: the byte order must be detected
        data = fx.encoded_text("Dose: " + fx.CAFE + " daily for adults", encoding)
    doc = load_document("notes.txt", data)
    assert fx.CAFE in doc.sections[0].text
    assert "\ufeff" not in doc.sections[0].text


def test_cp1252_specials_and_other_code_pages():
    text = "Paracetamol 500 mg – “do not exceed 4 g” – crème à la française, 5 µg"
    assert decode(text.encode("cp1252")) == text
    cyrillic = "Ибупрофен 200 мг таблетки, принимать после еды два раза в день"
    assert decode(cyrillic.encode("cp1251")) == cyrillic


MARKDOWN = """Intro before any heading.

# Amoxicillin

Broad-spectrum penicillin.

## Dosing ##

Adults: 500 mg every 8 hours.

| Age | Dose |
|-----|-----:|
| Adult | 500 mg |

```
# not a heading, inside code
```
"""


def test_markdown_headings_and_tables():
    doc = load_document("amoxicillin.md", MARKDOWN.encode())
    assert [(s.heading, s.kind) for s in doc.sections] == [
        (None, "text"),
        ("Amoxicillin", "text"),
        ("Dosing", "text"),
        ("Dosing", "table"),
        ("Dosing", "text"),
    ]
    assert doc.sections[1].text == "Broad-spectrum penicillin."
    assert doc.sections[3].text.splitlines() == [
        "| Age | Dose |",
        "| --- | --- |",
        "| Adult | 500 mg |",
    ]
    assert "# not a heading" in doc.sections[4].text


def test_plain_text_is_one_section_with_normalised_whitespace():
    doc = load_document("n.txt", b"Line  one\r\nline two\r\n\r\n\r\n\r\nPara   two  \r\n")
    assert doc.sections == [Section("Line one\nline two\n\nPara two", None, None)]
    assert doc.page_count is None and doc.warnings == []
