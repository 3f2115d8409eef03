"""CSV files (formularies, price lists, stock exports) as Markdown row groups.

Each group repeats the header row so a retrieved chunk still says which column
is which. Named csv_loader so it does not shadow the standard library's csv.
"""

from __future__ import annotations

import csv
import io

from services.errors import IngestionError

from ._common import LoadedDocument, Section, markdown_table
from .text import decode_text_file

ROWS_PER_GROUP = 20


_DELIMITERS = ",;\t|"


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """csv.Sniffer first; when it gives up (quoted delimiters confuse it), pick the delimiter
    that splits the most sample rows into the same number (>1) of columns."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
    except csv.Error:
        pass
    lines = sample.splitlines()[:-1] or sample.splitlines()  # the last line may be cut off
    best, best_score = ",", 0
    for delimiter in _DELIMITERS:
        widths = [len(r) for r in csv.reader(lines, delimiter=delimiter) if r]
        if not widths:
            continue
        common = max(set(widths), key=widths.count)
        score = widths.count(common) if common > 1 else 0
        if score > best_score:
            best, best_score = delimiter, score

    class Guessed(csv.excel):
        delimiter = best

    return Guessed


def load_csv(filename: str, data: bytes, rows_per_group: int = ROWS_PER_GROUP) -> LoadedDocument:
    text = decode_text_file(filename, data)
    try:
        rows = list(csv.reader(io.StringIO(text), _dialect(text[:20_000])))
    except csv.Error as e:
        raise IngestionError(f"{filename} is not a readable CSV file ({e})", details=str(e)) from e
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise IngestionError(f"{filename} is empty")
    header, body = rows[0], rows[1:]
    width = max(len(r) for r in rows)
    header = header + [f"Column {i + 1}" for i in range(len(header), width)]
    warnings = [] if body else [f"{filename} has a header row but no data rows"]
    groups = [body[i : i + rows_per_group] for i in range(0, len(body), max(1, rows_per_group))]
    sections = [Section(markdown_table([header, *group]), None, None, kind="table")
                for group in groups or [[]]]
    return LoadedDocument(sections=sections, page_count=None, warnings=warnings)
