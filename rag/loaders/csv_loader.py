"""CSV files (formularies, price lists, stock exports) as Markdown row groups.

Each group repeats the header row so a retrieved chunk still says which column
is which. Named csv_loader so it does not shadow the standard library's csv.

Hostile files (issue 12): rows are read one at a time and never padded to the
widest row; a row wider than `max_columns` or a cell longer than
`max_cell_chars` stops the load; wide tables are cut into column slices of
COLUMNS_PER_SLICE (the first column repeated in each, as the row's name), so
no chunk has to hold a whole wide row.
"""

from __future__ import annotations

import csv
import io

from pharmgpt.services.errors import IngestionError

from ._common import LoadedDocument, Section, markdown_table
from .limits import Budget, Limits, too_big
from .text import decode_text_file

ROWS_PER_GROUP = 20
COLUMNS_PER_SLICE = 12


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


def _rows(filename: str, text: str, budget: Budget):
    limits = budget.limits
    previous = csv.field_size_limit()
    csv.field_size_limit(limits.max_cell_chars)
    try:
        for row in csv.reader(io.StringIO(text), _dialect(text[:20_000])):
            if len(row) > limits.max_columns:
                raise too_big(
                    filename, "columns in one row", limits.max_columns, "columns in a row"
                )
            if any(c.strip() for c in row):
                budget.add_paragraphs(len(row))
                yield row
    except csv.Error as e:
        if "field larger than field limit" in str(e):
            raise too_big(
                filename,
                "characters in one cell",
                limits.max_cell_chars,
                "characters in a single cell",
            ) from e
        raise IngestionError(f"{filename} is not a readable CSV file ({e})", details=str(e)) from e
    finally:
        csv.field_size_limit(previous)


def _slices(width: int) -> list[range]:
    """Column ranges of at most COLUMNS_PER_SLICE (column 0 is added to each later one)."""
    if width <= COLUMNS_PER_SLICE:
        return [range(width)]
    return [
        range(start, min(start + COLUMNS_PER_SLICE, width))
        for start in range(0, width, COLUMNS_PER_SLICE)
    ]


def load_csv(
    filename: str, data: bytes, rows_per_group: int = ROWS_PER_GROUP, budget: Budget | None = None
) -> LoadedDocument:
    budget = budget or Budget(filename, Limits())
    text = decode_text_file(filename, data, budget)
    rows = list(_rows(filename, text, budget))
    if not rows:
        raise IngestionError(f"{filename} is empty")
    header, body = rows[0], rows[1:]
    warnings = [] if body else [f"{filename} has a header row but no data rows"]
    groups = [body[i : i + rows_per_group] for i in range(0, len(body), max(1, rows_per_group))]
    sections = []
    for group in groups or [[]]:
        width = max(len(r) for r in [header, *group])  # this group's widest row, never the file's
        names = header + [f"Column {i + 1}" for i in range(len(header), width)]
        for cols in _slices(width):
            keep = list(cols) if cols.start == 0 else [0, *cols]
            table = [[names[i] for i in keep]] + [
                [r[i] if i < len(r) else "" for i in keep] for r in group
            ]
            if cols.start and not any(any(c.strip() for c in r[1:]) for r in table[1:]):
                continue  # short rows: nothing in these columns
            sections.append(
                Section(
                    markdown_table(table),
                    None,
                    None
                    if width <= COLUMNS_PER_SLICE
                    else f"Columns {cols.start + 1}-{cols.stop} of {width}",
                    kind="table",
                )
            )
    return LoadedDocument(sections=sections, page_count=None, warnings=warnings)
