"""A scanned PDF end to end on the real stack: upload → sandboxed OCR (real Tesseract)
→ index → an offline answer that cites the scanned page, marked as OCR."""

from __future__ import annotations

import re
import shutil
import uuid

import pytest
import pytest_asyncio
from pharmgpt.rag_system import RagSystem
from pharmgpt.services.model_names import OFFLINE_MODEL

from tests.fixtures import documents as fx
from tests.fixtures.documents import wrap

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("tesseract") is None,
        reason="tesseract is not installed (bash scripts/setup_ocr.sh)",
    ),
]

# three printed pages; the dose is on page 2
PAGES = [
    wrap(
        "WARFARIN SODIUM TABLETS. Description: warfarin sodium is an anticoagulant that acts by "
        "inhibiting the synthesis of vitamin K dependent clotting factors. Each tablet contains "
        "warfarin sodium with lactose, starch and magnesium stearate as inactive ingredients. "
        "Indications: prophylaxis and treatment of venous thrombosis and pulmonary embolism, and "
        "of thromboembolic complications associated with atrial fibrillation or cardiac valve "
        "replacement. Contraindications: pregnancy except in women with mechanical heart valves, "
        "haemorrhagic tendencies, recent surgery of the central nervous system or eye, and "
        "threatened abortion or eclampsia."
    ),
    wrap(
        "DOSAGE AND ADMINISTRATION. Individualise the dose for each patient according to the "
        "response measured by the INR. Obtain a baseline INR before starting treatment. The "
        "recommended starting dose of warfarin is 2 to 5 mg once daily, with dose adjustments "
        "based on the INR. Lower starting doses are advised for elderly or debilitated patients "
        "and those of Asian descent. Check the INR daily until it is stable in the therapeutic "
        "range, then at intervals of up to four weeks. Take the tablets at the same time each "
        "day, with or without food."
    ),
    wrap(
        "HOW SUPPLIED AND STORAGE. Tablets are single scored and imprinted with the strength. "
        "Store at controlled room temperature, 20 to 25 C. Protect from light and moisture. "
        "Dispense in a tight, light resistant container. Keep out of the reach of children. "
        "Patients should be told to carry a card saying that they take an anticoagulant and to "
        "tell every prescriber and dentist."
    ),
]


@pytest_asyncio.fixture(scope="module")
async def scan(services):
    rag = RagSystem(services, use_configured_provider=False)
    user = await services.users.create_user(f"ocr-{uuid.uuid4().hex[:8]}", "long enough pw")
    conv = await services.conversations.create_conversation(user.id)
    doc = await services.documents.register_upload(
        user.id, "warfarin scan.pdf", fx.scanned_pdf(PAGES, font_size=30), conversation_id=conv.id
    )
    reports: list[dict] = []
    job_update = rag.worker._job

    async def spy(job_id, **patch):  # the real update, recorded: what the documents page polls
        if "progress" in patch:
            reports.append(patch["progress"])
        await job_update(job_id, **patch)

    rag.worker._job = spy
    while await rag.worker.run_once():
        pass
    return {"rag": rag, "user": user, "conv": conv, "doc": doc, "reports": reports}


async def test_scanned_pdf_is_ocrd_with_progress(services, scan):
    doc = await services.documents.get_document(scan["user"].id, scan["doc"].id)
    assert doc.status == "ready", doc.processing_error
    assert doc.page_count == 3 and doc.metadata.get("ocr_pages") == 3
    ocr_reports = [
        (r["ocr_pages_done"], r["ocr_pages"]) for r in scan["reports"] if r.get("stage") == "ocr"
    ]
    assert ocr_reports == [(0, 3), (1, 3), (2, 3), (3, 3)]  # pages OCR'd / total, as they are read
    progress = await services.documents.job_progress(scan["user"].id, [doc.id])
    assert progress[doc.id]["ocr_pages"] == 3 and progress[doc.id]["percent"] == 100


async def test_answer_cites_the_scanned_page_as_ocr(scan):
    rag, user, conv = scan["rag"], scan["user"], scan["conv"]
    events = [
        e
        async for e in rag.engine.answer(
            user.id, conv.id, "What is the recommended starting dose of warfarin?"
        )
    ]
    text = "".join(e["text"] for e in events if e["type"] == "token")
    done = next(e for e in events if e["type"] == "done")["message"]
    assert done.model == OFFLINE_MODEL
    assert done.sources and all(
        s["document_id"] == scan["doc"].id and s["ocr"] is True for s in done.sources
    )
    assert "2 to 5 mg once daily" in text
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
    dose = [
        s for s in done.sources if s["n"] in markers and any("2 to 5 mg" in q for q in s["quotes"])
    ]
    assert dose, "the dose is quoted from a cited source"
    first, last = (int(x) for x in (str(dose[0]["pages"]).split("-") * 2)[:2])
    assert first <= 2 <= last, dose[0]["pages"]  # its pages hold page 2 (a passage may span two)
    page = await rag.page_text(
        user.id, scan["doc"].id, 2
    )  # "Open page 2" reads just that page again
    assert page and "2 to 5 mg once daily" in " ".join(page.split())
