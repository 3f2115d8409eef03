"""Issue 13 §8 as a user meets it: a chat started by files, Summarise reading one file only,
duplicate files flagged, and the warming-up notice after a restart."""

from __future__ import annotations

import threading
import time

import pytest
from pharmgpt.app.components import ui
from pharmgpt.rag.warmup import READY, Warmup

from tests.app.conftest import texts

pytestmark = pytest.mark.integration

LABEL_A = (
    b"# Product information\n\nAtorvastatin calcium tablets. The recommended starting dose is 10 "
    b"or 20 mg once daily. Contraindicated in active liver disease. Adverse reactions: myalgia, "
    b"arthralgia.\n"
)
LABEL_B = (
    b"# Product information\n\nMetformin hydrochloride tablets. The usual starting dose is 500 mg "
    b"twice daily with meals. Contraindicated in severe renal impairment. Adverse reactions: "
    b"diarrhoea, nausea.\n"
)


def wait_ready(ctx, user_id, doc_ids, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ctx.refresh_documents(user_id)
        got = [ctx.run(ctx.services.documents.get_document(user_id, d)) for d in doc_ids]
        if all(d.status in ("ready", "failed") for d in got):
            return got
        time.sleep(0.5)
    raise AssertionError(f"not processed in {timeout} s: {[(d.filename, d.status) for d in got]}")


def test_files_start_a_named_chat_and_summarise_reads_only_that_file(signed_in, ctx):
    at, user = signed_in()
    ci = at.chat_input(key="chat_input")
    ci.upload("label-a.md", LABEL_A, "text/markdown")
    ci.upload("label-b.md", LABEL_B, "text/markdown")
    at.run()
    assert not at.exception, at.exception
    conv_id = at.session_state["conv_id"]
    assert [h.value for h in at.header] == ["label-a.md and 1 more"]  # not "New chat"
    assert sum("uploaded; processing" in s.value for s in at.success) == 2
    docs_ = ctx.run(ctx.services.documents.get_conversation_documents(user.id, conv_id))
    by_name = {d.filename: d for d in wait_ready(ctx, user.id, [d.id for d in docs_])}
    assert {d.status for d in by_name.values()} == {"ready"}
    at.run()
    assert not any("uploaded; processing" in s.value for s in at.success)  # cleared once Ready
    at.button(key=f"summarise_{by_name['label-a.md'].id}").click()
    at.run()
    assert not at.exception, at.exception
    answer = ctx.run(ctx.services.conversations.get_messages(user.id, conv_id))[-1]
    assert answer.role == "assistant" and answer.sources
    assert {s["filename"] for s in answer.sources} == {"label-a.md"}  # nothing from label-b.md
    # an ordinary question still searches every document of the chat
    at.chat_input(key="chat_input").set_value("What are the adverse reactions of metformin?")
    at.run()
    answer = ctx.run(ctx.services.conversations.get_messages(user.id, conv_id))[-1]
    assert "label-b.md" in {s["filename"] for s in answer.sources}


def test_the_same_file_in_the_library_and_a_chat_is_flagged(signed_in, ctx):
    at, user = signed_in()
    lib = ctx.run(
        ctx.services.documents.register_upload(user.id, "atorvastatin-library.md", LABEL_A)
    )
    at.chat_input(key="chat_input").upload("atorvastatin-copy.md", LABEL_A, "text/markdown")
    at.run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert (
        "The same file is also in your library as atorvastatin-library.md: "
        "answers may cite it twice." in warnings
    )
    wait_ready(ctx, user.id, [lib.id])
    at.switch_page("views/library.py").run()
    assert "The same file is also in a chat as atorvastatin-copy.md." in texts(at)


def test_warming_up_is_shown_until_the_search_parts_are_loaded(signed_in, ctx, monkeypatch):
    at, _ = signed_in()
    release = threading.Event()
    warm = Warmup(ctx.rag.index, ctx.services.documents.get_shared_documents)
    real = warm._shared_parts

    def slow_parts():
        release.wait(60)  # the test decides when loading ends
        real()

    monkeypatch.setattr(warm, "_shared_parts", slow_parts)
    monkeypatch.setattr(ctx.rag, "warmup", warm)

    async def start():
        warm.start()

    ctx.run(start())
    at.run()
    assert ui.WARMING_UP in [c.value for c in at.caption]
    release.set()
    assert ctx.run(warm.wait(), timeout=120) == READY and warm.seconds is not None
    embedder = ctx.rag.embedder  # the model is loaded, before any question (torch or ONNX)
    assert (getattr(embedder, "_model", None) or getattr(embedder, "_session", None)) is not None
    at.run()
    assert ui.WARMING_UP not in [c.value for c in at.caption]
