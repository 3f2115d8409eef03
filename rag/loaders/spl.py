"""FDA Structured Product Labeling (SPL) XML, the format DailyMed publishes.

Labels are already structured, so we keep that structure: one Section per label
section with its numbered title as the heading ("7 DRUG INTERACTIONS › 7.3
Cyclosporine"), and every table as its own Markdown table Section.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from pharmgpt.services.errors import IngestionError

from ._common import LoadedDocument, Section, inline, markdown_table, normalise_whitespace

NS = "{urn:hl7-org:v3}"
TITLE_HEADING = "Label title"  # sections.py reads it as data, not an answer
UNCLASSIFIED = "42229-5"  # "SPL UNCLASSIFIED SECTION": says nothing a reader would want as a title
_INLINE_SKIP = frozenset({"footnote", "renderMultiMedia", "footnoteRef"})
_BLOCK = {"paragraph", "list", "item", "table", "caption"}
_SPACES = re.compile(r"\s+")
# Indentation between </linkHtml></content> and "]." leaves "(12.3) ]."; tidy it.
_SPACE_BEFORE_CLOSE = re.compile(r" +(?=[\]),;]|\.(?:\s|$))")


def _tag(el: ET.Element) -> str:
    return el.tag.removeprefix(NS) if isinstance(el.tag, str) else ""


def _parse(filename: str, data: bytes, max_depth: int = 200) -> ET.Element:
    """Parse with defusedxml, whatever the encoding (a byte search for "<!ENTITY" misses
    UTF-16): no DTD, no entities, no external references, which FDA labels never use.
    A document nested deeper than `max_depth` is refused for good, before any recursive walk."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise IngestionError(
            f"{filename} declares XML entities or a DTD, which FDA labels never do; "
            "it was refused for safety",
            details=repr(e),
        ) from e
    except Exception as e:  # ParseError
        raise IngestionError(
            f"{filename} is not readable XML (the file is damaged)", details=repr(e)
        ) from e
    stack = [(root, 1)]
    while stack:  # iterative: the check itself cannot overflow
        el, depth = stack.pop()
        if depth > max_depth:
            raise IngestionError(
                f"{filename} is nested more than {max_depth:,} levels deep, which no FDA "
                "label is; it was not processed",
                details={"limit": "xml depth"},
            )
        stack.extend((child, depth + 1) for child in el)
    return root


def _text(el: ET.Element, skip: frozenset[str] = _INLINE_SKIP) -> str:
    """Inline text of an element: content/sub/sup/linkHtml joined, br and blocks as line breaks.

    As in HTML, source line breaks are just indentation; only <br/> and blocks break lines.
    """
    parts = [_SPACES.sub(" ", el.text or "")]
    for child in el:
        tag = _tag(child)
        if tag == "br":
            parts.append("\n")
        elif tag not in skip:
            inner = _text(child, skip)
            parts.append(f"\n{inner}\n" if tag in _BLOCK else inner)
        parts.append(_SPACES.sub(" ", child.tail or ""))
    return "".join(parts)


def _list(el: ET.Element, depth: int = 0) -> list[str]:
    ordered = el.get("listType") == "ordered"
    lines = []
    for n, item in enumerate(el.findall(f"{NS}item"), start=1):
        marker = f"{n}." if ordered else "-"
        lines.append("  " * depth + f"{marker} {inline(_text(item, _INLINE_SKIP | {'list'}))}")
        for sub in item.findall(f"{NS}list"):
            lines.extend(_list(sub, depth + 1))
    return lines


def _fill_carried(row: list[str], carried: dict[int, list]) -> None:
    while len(row) in carried:
        col = len(row)
        carried[col][0] -= 1
        row.append(carried[col][1])
        if carried[col][0] == 0:
            del carried[col]


def _rows(trs: list[ET.Element], repeat_colspan: bool) -> list[list[str]]:
    """Cell texts, colspan padded (or repeated) and rowspan text repeated, so columns line up."""
    rows: list[list[str]] = []
    carried: dict[int, list] = {}  # column -> [rows still to fill, text]
    for tr in trs:
        row: list[str] = []
        for cell in tr:
            if _tag(cell) not in ("td", "th"):
                continue
            _fill_carried(row, carried)
            text = inline(_text(cell)).lstrip(",; ")  # a stray separator left by footnote marks
            down = _int(cell.get("rowspan"))
            for i in range(_int(cell.get("colspan"))):
                if down > 1:
                    carried[len(row)] = [down - 1, text]
                row.append(text if i == 0 or repeat_colspan else "")
        _fill_carried(row, carried)
        rows.append(row)
    return rows


def _table_rows(table: ET.Element) -> list[list[str]]:
    """Header row first: several <thead> rows merge column-wise ("Atorvastatin Dose (mg)")."""
    head = _rows(table.findall(f"{NS}thead/{NS}tr"), repeat_colspan=True)
    body = _rows([*table.findall(f"{NS}tbody/{NS}tr"), *table.findall(f"{NS}tr")], False)
    if len(head) > 1:
        width = max(len(r) for r in head)
        merged = []
        for col in range(width):
            parts: list[str] = []
            for r in head:
                if col < len(r) and r[col] and r[col] not in parts:
                    parts.append(r[col])
            merged.append(" ".join(parts))
        head = [merged]
    return head + body


def _int(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 100))
    except ValueError:
        return 1


def _table_notes(table: ET.Element) -> str:
    """Footnotes and the table footer, kept as text after the table rather than as a row."""
    notes = [inline(_text(f)) for f in table.iter(f"{NS}footnote")]
    notes += [inline(_text(f)) for f in table.findall(f"{NS}tfoot")]
    return "\n".join(n for n in notes if n)


def _heading(section: ET.Element) -> str | None:
    title = section.find(f"{NS}title")
    if title is not None and (text := inline(_text(title))):
        return text
    code = section.find(f"{NS}code")
    if code is None or code.get("code") == UNCLASSIFIED or not code.get("displayName"):
        return None
    name = re.sub(r"\s+SECTION$", "", code.get("displayName", "").strip(), flags=re.IGNORECASE)
    name = re.sub(r"\.(?=\S)", ": ", name).title()
    return re.sub(r"\bSpl\b", "SPL", name) or None


def _indexing(section: ET.Element) -> str:
    """Indexing files (e.g. pharmacologic class) carry data, not prose: say it in words."""
    lines = []
    for sub in section.findall(f"{NS}subject/{NS}identifiedSubstance/{NS}identifiedSubstance"):
        name = inline(sub.findtext(f"{NS}name") or "")
        classes = [
            c.get("displayName")
            for c in sub.findall(f"{NS}asSpecializedKind/{NS}generalizedMaterialKind/{NS}code")
        ]
        classes = [c for c in classes if c]
        if name and classes:
            lines.append(f"{name}: pharmacologic class {'; '.join(classes)}")
        elif name:
            lines.append(name)
    return "\n".join(lines)


class _Builder:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.buf: list[str] = []

    def flush(self, heading: str | None, code: str | None = None) -> None:
        """Emit buffered text; untitled subsections merge into their parent's Section."""
        text = _SPACE_BEFORE_CLOSE.sub("", normalise_whitespace("\n\n".join(self.buf)))
        self.buf.clear()
        if not text:
            return
        last = self.sections[-1] if self.sections else None
        if last is not None and last.kind == "text" and last.heading == heading:
            last.text = f"{last.text}\n\n{text}"
        else:
            self.sections.append(Section(text, None, heading, code=code))

    def add_text_element(
        self, text_el: ET.Element, heading: str | None, code: str | None = None
    ) -> None:
        self.buf.append(text_el.text or "")
        for child in text_el:
            tag = _tag(child)
            if tag == "list":
                self.buf.append("\n".join(_list(child)))
            elif tag == "table":
                caption = child.find(f"{NS}caption")
                if caption is not None:
                    self.buf.append(inline(_text(caption)))
                table = markdown_table(_table_rows(child))
                if table:
                    self.flush(heading, code)
                    self.sections.append(Section(table, None, heading, kind="table", code=code))
                self.buf.append(_table_notes(child))
            elif tag not in _INLINE_SKIP:
                self.buf.append(_text(child))
            self.buf.append(child.tail or "")

    def walk(self, section: ET.Element, path: list[str], code: str | None = None) -> None:
        heading_text = _heading(section)
        path = path + [heading_text] if heading_text else path
        heading = " › ".join(path) or None
        code = _code(section) or code  # an unclassified subsection keeps its parent's code
        text_el = section.find(f"{NS}text")
        if text_el is not None:
            self.add_text_element(text_el, heading, code)
        self.buf.append(_indexing(section))
        self.flush(heading, code)
        for highlight in section.findall(f"{NS}excerpt/{NS}highlight/{NS}text"):
            self.add_text_element(highlight, " › ".join(path + ["Highlights"]), code)
            self.flush(" › ".join(path + ["Highlights"]), code)
        for child in section.findall(f"{NS}component/{NS}section"):
            self.walk(child, path, code)


def _code(section: ET.Element) -> str | None:
    el = section.find(f"{NS}code")
    code = el.get("code") if el is not None else None
    return code if code and code != UNCLASSIFIED else None


def _declared_drugs(root: ET.Element) -> list[str]:
    """Product, generic and active-ingredient names from the label's product data."""
    names: list[str] = []

    def add(el: ET.Element | None) -> None:
        text = inline(_text(el)) if el is not None else ""
        if text and len(text) <= 120 and text.lower() not in (n.lower() for n in names):
            names.append(text)

    for product in root.iter(f"{NS}manufacturedProduct"):
        actives = [
            i
            for i in product.findall(f"{NS}ingredient")
            if (i.get("classCode") or "").startswith("ACTI")
        ]
        if not actives:  # a kit's outer box, or a part such as an alcohol pad
            continue
        add(product.find(f"{NS}name"))
        for generic in product.findall(f"{NS}asEntityWithGeneric/{NS}genericMedicine"):
            add(generic.find(f"{NS}name"))
        for ingredient in actives:
            add(ingredient.find(f"{NS}ingredientSubstance/{NS}name"))
    if not names:  # an indexing file names its substance instead
        for substance in root.iter(f"{NS}identifiedSubstance"):
            add(substance.find(f"{NS}name"))
    return names


def load_spl(filename: str, data: bytes, *, max_depth: int = 200) -> LoadedDocument:
    root = _parse(filename, data, max_depth)
    if root.tag != f"{NS}document":
        raise IngestionError(f"{filename} is XML but not an FDA Structured Product Label (SPL)")
    builder = _Builder()
    title = root.find(f"{NS}title")
    if title is not None and (text := normalise_whitespace(_text(title))):
        builder.sections.append(Section(text, None, TITLE_HEADING))
    for section in root.findall(f"{NS}component/{NS}structuredBody/{NS}component/{NS}section"):
        builder.walk(section, [])
    return LoadedDocument(
        sections=builder.sections, page_count=None, warnings=[], subjects=_declared_drugs(root)
    )
