"""One file-type table (services/file_types.py) behind upload validation, the loaders and the
uploader widget: each entry has a loader, and the three agree on what they accept."""

from __future__ import annotations

import importlib

import pytest
from pharmgpt.rag import loaders
from pharmgpt.rag.loaders._common import KIND_NAMES
from pharmgpt.services import file_types
from pharmgpt.services.documents import detect_type
from pharmgpt.services.errors import IngestionError, ValidationError

from tests.fixtures import documents as fx

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32  # its first bytes are what counts


@pytest.mark.parametrize("ft", file_types.TYPES, ids=lambda t: t.name)
def test_every_type_has_a_loader_a_mime_type_and_a_label(ft):
    module, function = ft.loader.split(":")
    fn = getattr(importlib.import_module(f"pharmgpt.rag.loaders.{module}"), function)
    assert callable(fn)
    assert ft.extensions and all(e.startswith(".") and e == e.lower() for e in ft.extensions)
    assert ft.mime_types and all("/" in m for m in ft.mime_types)
    assert ft.label.startswith(("a ", "an "))


def test_names_extensions_and_mime_types_are_unique():
    assert len({t.name for t in file_types.TYPES}) == len(file_types.TYPES)
    assert len(set(file_types.EXTENSIONS)) == len(file_types.EXTENSIONS)
    mimes = [m for t in file_types.TYPES for m in t.mime_types]
    assert len(set(mimes)) == len(mimes)


def test_every_signature_kind_has_a_name_for_messages():
    kinds = {k for _, k in file_types.SIGNATURES}
    assert kinds == set(KIND_NAMES)
    assert {k for t in file_types.TYPES for k in t.kinds} <= kinds


def test_the_uploader_and_the_loaders_accept_exactly_the_table():
    from pharmgpt.app.components import docs

    assert docs.UPLOAD_TYPES == sorted(e.lstrip(".") for e in file_types.EXTENSIONS)
    assert set(loaders.SUPPORTED_EXTENSIONS) == set(file_types.EXTENSIONS)


def _upload_accepts(name: str, data: bytes) -> bool:
    try:
        detect_type(name, data)
    except ValidationError:
        return False
    return True


def _loader_accepts(name: str, data: bytes) -> bool:
    try:
        loaders.check_first_bytes(name, loaders.file_type_of(name, None), data)
    except IngestionError:
        return False
    return True


# Each of these was accepted by one side and refused by the other before the table.
DISAGREED = [
    ("notes.text", b"Take with food.", True),  # loader-only extension
    ("notes.markdown", b"# Dose\n", True),  # loader-only extension
    ("junk-first.pdf", b"\r\n%%junk\n" + fx.simple_pdf(1), True),  # upload wanted %PDF- first
    ("export.txt", "Dose: café daily for adults".encode("utf-16-be"), True),  # upload: "binary"
    ("export.txt", "Dose: café".encode("utf-16"), True),  # UTF-16 with its BOM
    ("photo.png", JPEG, False),  # the loader took any image for any image name
    ("label.pdf", b"just words, no header", False),  # the loader let the PDF parser fail
    ("notes.txt", fx.simple_pdf(1), False),  # upload took a PDF renamed .txt
    ("label.xml", b"no markup at all", False),  # upload wanted a "<"; the loader did not
    ("data.csv", b"a,b\x00\x01\x02", False),  # upload: binary; the loader read it
]
AGREED = [
    ("a.pdf", fx.simple_pdf(1), True),
    ("a.docx", fx.make_docx(), True),
    ("a.txt", b"hello", True),
    ("a.md", b"# x", True),
    ("a.xml", b"<document/>", True),
    ("a.png", fx.png_bytes(), True),
    ("a.jpeg", JPEG, True),
    ("fake.pdf", b"<html>not a pdf</html>", False),
    ("binary.txt", b"abc\x00\x01\x02", False),
    ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, False),
]


@pytest.mark.parametrize("name, data, accepted", DISAGREED + AGREED)
def test_upload_validation_and_the_loaders_agree(name, data, accepted):
    assert _upload_accepts(name, data) is accepted
    assert _loader_accepts(name, data) is accepted


def test_upload_records_the_tables_first_mime_type():
    assert detect_type("a.markdown", b"# x") == "text/markdown"
    assert detect_type("a.JPG", JPEG) == "image/jpeg"
    assert file_types.by_mime("text/xml; charset=utf-8").name == "spl"


def test_a_migrated_upload_records_what_an_upload_records():
    from pharmgpt.migration.steps.uploads import _mime  # platform mimetypes vary (.xml)

    for ft in file_types.TYPES:
        for ext in ft.extensions:
            assert _mime(f"label{ext.upper()}") == ft.mime
    assert _mime("notes.rtf") in ("application/rtf", "text/rtf", None)  # outside the table
