"""The app's small pure helpers (no stack, no Streamlit run)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from pharmgpt.app.components import answers, auth, docs, sidebar
from pharmgpt.app.components.dates import file_size, relative_date
from pharmgpt.app.views import admin, settings
from pharmgpt.services.config import Settings
from pharmgpt.services.metrics import OpStats
from pharmgpt.services.models import Conversation, Document, SessionInfo
from pharmgpt.services.users import UserService

NOW = datetime(2025, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "delta,expected",
    [
        (timedelta(seconds=5), "just now"),
        (timedelta(minutes=5), "5 min ago"),
        (timedelta(hours=3), "3 h ago"),
        (timedelta(days=1, hours=2), "yesterday"),
        (timedelta(days=4), "4 days ago"),
        (timedelta(days=30), "23 Oct"),
        (timedelta(days=400), "18 Oct 2024"),
        (timedelta(seconds=-30), "just now"),
    ],
)
def test_relative_date(delta, expected):
    assert relative_date(NOW - delta, NOW) == expected


def test_relative_date_and_sizes_edge_cases():
    assert relative_date(None) == ""
    assert relative_date(datetime(2025, 11, 22, 11, 0), NOW) == "1 h ago"  # naive means UTC
    assert [file_size(n) for n in (None, 512, 2048, 5 * 2**20)] == ["", "512 B", "2 KB", "5.0 MB"]


def test_citations_become_badges_only_for_real_sources():
    text = "Max 80 mg daily [1][2]. See [3] and [link](http://x) and [2](note)."
    assert (
        answers.format_citations(text, 2) == "Max 80 mg daily :blue-badge[1]:blue-badge[2]. "
        "See [3] and [link](http://x) and [2](note)."
    )
    assert answers.format_citations(text, 0) == text


def test_source_labels():
    assert (
        answers.source_label({"n": 1, "filename": "a.pdf", "page": 3, "pages": "3"})
        == "[1] a.pdf, page 3"
    )
    assert (
        answers.source_label({"n": 2, "filename": "a.pdf", "pages": "3-4", "section": "Dosing"})
        == "[2] a.pdf, pages 3-4 — Dosing"
    )
    assert answers.source_label({"filename": "notes.md"}) == "notes.md"


def test_answer_text_streams_tokens_and_keeps_the_rest():
    sink: dict = {}
    events = [
        {"type": "sources", "sources": [{"n": 1}], "covered": True},
        {"type": "token", "text": "Hel"},
        {"type": "token", "text": "lo"},
        {"type": "done", "message": "stored"},
    ]
    assert "".join(answers.answer_text(events, sink)) == "Hello"
    assert sink == {"sources": [{"n": 1}], "covered": True, "message": "stored"}
    assert "aspirin.pdf" in answers.summary_question("aspirin.pdf")


def test_cookie_script_carries_a_one_time_code_not_the_token():
    from pharmgpt.app import session_cookie

    token = "abc_DEF-123456789012345"
    js = auth.cookie_script(token, 3600)
    assert token not in js and session_cookie.ROUTE in js
    code = re.search(r'c="([A-Za-z0-9_\-]+)"', js).group(1)
    assert session_cookie.redeem(code) == (token, 3600)
    assert session_cookie.redeem(code) is None  # once only
    with pytest.raises(ValueError):
        auth.cookie_script("x'; alert(1); '")


def test_sign_in_and_sign_up_validation():
    assert auth.validate_sign_in("", "") == {
        "username": "Enter your username.",
        "password": "Enter your password.",
    }
    assert auth.validate_sign_in("alice", "pw") == {}
    users = UserService(None, Settings(), None, None, None)
    assert auth.validate_sign_up(users, "alice", "long enough pw", "long enough pw", "") == {}
    errs = auth.validate_sign_up(users, "a", "short", "short", "bad@")
    assert set(errs) == {"username", "password", "email"}
    assert auth.validate_sign_up(users, "alice", "long enough pw", "other", None) == {
        "confirm": "The two passwords don't match."
    }


def _doc(status, **kw):
    base = dict(
        id="d",
        user_id="u",
        conversation_id=None,
        sha256=None,
        filename="f.pdf",
        file_type="application/pdf",
        file_size=10,
        page_count=None,
        chunk_count=0,
        status=status,
        processing_error=None,
        metadata={},
        added_at=NOW,
        updated_at=NOW,
    )
    return Document(**{**base, **kw})


def test_status_labels():
    assert docs.status_label(_doc("pending")) == ":orange-badge[Waiting to be processed]"
    assert (
        docs.status_label(_doc("pending", retry_at=datetime.now(UTC)))
        == ":orange-badge[Retrying soon]"
    )
    assert (  # the field decides, not the wording of the error
        docs.status_label(_doc("pending", processing_error="Retrying shortly: x"))
        == ":orange-badge[Waiting to be processed]"
    )
    assert docs.status_label(_doc("processing"), {"percent": 40}) == ":blue-badge[Processing 40 %]"
    assert docs.status_label(_doc("processing")) == ":blue-badge[Processing…]"
    assert (
        docs.status_label(_doc("ready", chunk_count=12, page_count=3))
        == ":green-badge[Ready] 12 passages · 3 pages"
    )
    assert docs.status_label(_doc("failed")) == ":red-badge[Failed]"
    assert "pdf" in docs.UPLOAD_TYPES and "docx" in docs.UPLOAD_TYPES


def test_ocr_progress_and_marks():
    assert (
        docs.status_label(
            _doc("processing"), {"stage": "ocr", "ocr_pages_done": 3, "ocr_pages": 10}
        )
        == ":blue-badge[Reading scanned pages (OCR): 3 of 10]"
    )
    ready = _doc("ready", chunk_count=4, page_count=3, metadata={"ocr_pages": 2})
    assert docs.status_label(ready).endswith("· 3 pages · 2 read by OCR")
    assert (
        answers.source_label({"n": 1, "filename": "scan.pdf", "page": 2, "pages": "2", "ocr": True})
        == "[1] scan.pdf, page 2 · OCR"
    )
    assert {"png", "jpg", "jpeg", "tif", "tiff"} <= set(docs.UPLOAD_TYPES)


def test_upload_help_states_the_one_limit_and_ocr(monkeypatch):
    from pharmgpt.launcher import streamlit_command, upload_limit_mb
    from pharmgpt.rag.loaders import ocr

    s = Settings.load(env={}, max_upload_bytes=25 * 2**20)
    monkeypatch.setattr(ocr.shutil, "which", lambda name: "/usr/bin/tesseract")
    assert (
        docs.upload_help(s)
        == "Up to 25 MB per file. Scanned PDFs and images are read by text recognition (OCR)."
    )
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    assert "can't be read on this server (OCR is not installed)" in docs.upload_help(s)
    cmd = streamlit_command(s, 8600)
    flags = dict(a[2:].split("=", 1) for a in cmd if a.startswith("--"))
    assert flags["server.maxUploadSize"] == "25" and flags["server.port"] == "8600"
    # the shipped .streamlit/config.toml, as flags: Streamlit reads only ./.streamlit from its cwd
    assert flags["server.headless"] == "true" and flags["browser.gatherUsageStats"] == "false"
    assert flags["server.fileWatcherType"] == "none" and flags["client.toolbarMode"] == "minimal"
    assert Path(cmd[4]).name == "server.py" and Path(cmd[4]).is_file()
    assert (
        upload_limit_mb(Settings.load(env={}, max_upload_bytes=1024)) == 1
    )  # Streamlit counts whole MB
    assert upload_limit_mb(Settings.load(env={}, max_upload_bytes=5 * 2**20 + 1)) == 6
    assert docs.upload_help(
        Settings.load(env={"PHARMGPT_MAX_UPLOAD_BYTES": "10485760"})
    ).startswith("Up to 10 MB")


def test_conversation_rows():
    conv = Conversation("c", "u", "Warfarin / NSAIDs: bleeding?", None, True, True, 2, NOW, NOW)
    assert sidebar.row_label(conv) == "📌 🗄️ Warfarin / NSAIDs: bleeding?"
    assert sidebar.export_name(conv, "md") == "warfarin-nsaids-bleeding.md"
    untitled = Conversation("c", "u", "???", None, False, False, 0, NOW, NOW)
    assert (
        sidebar.row_label(untitled) == "???"
        and sidebar.export_name(untitled, "json") == "conversation.json"
    )


def test_settings_helpers():
    from pharmgpt.rag.llm.groq_provider import DEFAULT_MODELS
    from pharmgpt.rag_system import make_provider

    groq = make_provider(Settings(groq_api_key="k"))
    assert groq.models == DEFAULT_MODELS  # the provider's own list: no copy in settings
    assert make_provider(Settings(groq_api_key="k", llm_fallback_models="a, b")).models == [
        DEFAULT_MODELS[0],
        "a",
        "b",
    ]
    assert make_provider(Settings(openai_base_url="http://x/v1", openai_model="m")).model == "m"
    assert make_provider(Settings(openai_base_url="http://x/v1")).model is None  # asks the server
    assert settings.changed({"a": 1, "b": 2}, {"a": 1, "b": 3}) == {"b": 3}
    sessions = [
        SessionInfo(
            "1",
            NOW - timedelta(hours=2),
            NOW + timedelta(hours=20),
            NOW,
            "127.0.0.1",
            "Firefox",
            None,
        ),
        SessionInfo(
            "2",
            NOW - timedelta(days=2),
            NOW - timedelta(days=1),
            NOW - timedelta(days=2),
            None,
            None,
            None,
        ),
        SessionInfo("3", NOW, NOW + timedelta(hours=1), NOW, None, None, NOW),
    ]
    assert [r["status"] for r in settings.session_rows(sessions, NOW)] == [
        "active",
        "expired",
        "signed out",
    ]


def test_admin_helpers():
    snap = {"a.fast": OpStats(3, 1.0, 2.0, 3.0, 0), "b.slow": OpStats(2, 300.0, 900.0, 950.0, 1)}
    rows = admin.metric_rows(snap, 500)
    assert (
        [r["operation"] for r in rows] == ["b.slow", "a.fast"]
        and rows[0]["slow"]
        and not rows[1]["slow"]
    )
    days = [
        SimpleNamespace(day=date(2025, 11, d), users=1, conversations=2, messages=3, documents=0)
        for d in (21, 22)
    ]
    frame = admin.usage_frame(days)
    assert list(frame.columns) == ["new users", "conversations", "messages", "documents"]
    assert int(frame["messages"].sum()) == 6
    assert admin.usage_frame([]).empty
    item = SimpleNamespace(
        filename="x.pdf",
        document_id="d",
        username="bob",
        user_id="u",
        status="running",
        document_status="processing",
        progress={"chunks": 10, "chunks_done": 4},
        attempts=1,
        max_attempts=3,
        created_at=NOW,
        last_error=None,
        processing_error=None,
    )
    (row,) = admin.queue_rows([item])
    assert row["progress"] == "4/10 passages" and row["attempts"] == "1/3" and row["owner"] == "bob"


def test_search_snippet_is_escaped_markdown_with_the_matches_in_bold():
    from pharmgpt.services.models import SearchHit

    hit = SearchHit(None, 0.5, "see <b>x</b> [link](http://e) \ue000dose\ue001 of *y*\n_z_", None)
    md = sidebar.snippet_markdown(hit)
    assert md == r"see \<b\>x\</b\> \[link\]\(http\://e\) **dose** of \*y\* \_z\_"
    assert sidebar.snippet_markdown(SearchHit(None, 0.0, "no markers", None)) == "no markers"
