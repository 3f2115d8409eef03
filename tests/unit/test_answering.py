"""The answering use-case over its ports, with in-memory stand-ins (no stack, no rag): what it
asks the retriever, what it stores, and that what the page holds is not read again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from pharmgpt.rag.prompts import not_covered
from pharmgpt.services.answering import AnswerService
from pharmgpt.services.model_names import OFFLINE_MODEL
from pharmgpt.services.models import Document, Message
from pharmgpt.services.ports import AnswerPlan, Question, Retriever

PREFS = {"top_k": 4, "strict_mode": True, "model": "", "temperature": 0.2}


class Conversations:
    def __init__(self, stored: list[Message]):
        self.stored, self.reads = list(stored), 0

    async def add_message(self, user_id, conv_id, message):
        m = Message(
            message.get("id") or str(uuid.uuid4()),
            conv_id,
            message["role"],
            message["content"],
            model=message.get("model"),
        )
        known = {x.id: x for x in self.stored}
        if m.id in known:  # idempotent on the id, as the service is
            return known[m.id]
        self.stored.append(m)
        return m

    async def delete_answers_after(self, user_id, conv_id, message_id, keep):
        ids = [x.id for x in self.stored]
        start = ids.index(message_id) + 1
        self.stored = self.stored[:start] + [x for x in self.stored[start:] if x.id == keep]

    async def get_messages(self, user_id, conv_id, limit=50):
        self.reads += 1
        return self.stored[-limit:]


class Documents:
    async def get_conversation_documents(self, user_id, conv_id):
        return []

    async def get_library_documents(self, user_id):
        return []

    async def get_shared_documents(self, user_id):
        return []


class Preferences:
    def __init__(self):
        self.reads = 0

    async def get_all(self, user_id):
        self.reads += 1
        return PREFS


class Planner:
    def __init__(self):
        self.asked: list[Question] = []

    async def plan(self, question: Question) -> AnswerPlan:
        self.asked.append(question)
        return AnswerPlan(question.text, [], [], question.strict, False, prepared="Not covered.")


def service(earlier: list[Message]):
    convs, prefs, planner = Conversations(earlier), Preferences(), Planner()
    return AnswerService(convs, Documents(), prefs, planner), convs, prefs, planner


def run(agen):
    async def collect():
        return [e async for e in agen]

    return asyncio.run(collect())


EARLIER = [
    Message("q1", "c", "user", "Dose of Lipitor?"),
    Message("a1", "c", "assistant", "10 mg [1]."),
]


def test_the_planner_is_a_retriever_port():
    assert isinstance(Planner(), Retriever)


def test_preferences_and_history_are_read_when_the_page_passes_none():
    answers, convs, prefs, planner = service(EARLIER)
    events = run(answers.answer("u", "c", "and in pregnancy?"))
    assert (prefs.reads, convs.reads) == (1, 1)
    assert [h["content"] for h in planner.asked[0].history] == ["Dose of Lipitor?", "10 mg [1]."]
    assert (
        events[-1]["message"].content == "Not covered."
        and events[-1]["message"].model == OFFLINE_MODEL
    )


def test_what_the_page_holds_is_used_as_is():
    answers, convs, prefs, planner = service(EARLIER)
    run(answers.answer("u", "c", "and in pregnancy?", prefs=PREFS, messages=EARLIER))
    assert (prefs.reads, convs.reads) == (0, 0)
    q = planner.asked[0]
    assert [h["content"] for h in q.history] == ["Dose of Lipitor?", "10 mg [1]."]
    assert (q.top_k, q.strict, q.with_model, q.chosen) == (4, True, False, False)


def test_regenerate_from_the_page_forgets_the_old_answer():
    answers, convs, _, planner = service(EARLIER)
    run(
        answers.answer(
            "u",
            "c",
            "Dose of Lipitor?",
            message_id="q1",
            replace=True,
            prefs=PREFS,
            messages=EARLIER,
        )
    )
    assert planner.asked[0].history == []  # the conversation as it was before the question
    assert [m.id for m in convs.stored][:1] == ["q1"] and len(convs.stored) == 2  # a1 replaced


def _document(doc_id: str, filename: str, status: str) -> Document:
    now = datetime.now(UTC)
    drugs = {"drugs": ["warfarin"]} if status == "ready" else {}
    return Document(
        doc_id, "u", None, None, filename, "application/pdf", 1, 1, 1, status, None, drugs, now, now
    )


class LibraryWithOneInFlight(Documents):
    async def get_library_documents(self, user_id):
        return [
            _document("d1", "warfarin.pdf", "ready"),
            _document("d2", "metformin.pdf", "processing"),
            _document("d3", "old.pdf", "failed"),
        ]


def test_only_ready_documents_are_searched_and_a_refusal_knows_what_is_in_flight():
    planner = Planner()
    answers = AnswerService(Conversations([]), LibraryWithOneInFlight(), Preferences(), planner)
    run(answers.answer("u", "c", "Metformin renal dose?"))
    q = planner.asked[0]
    assert [d.id for d in q.documents] == ["d1"]
    assert q.in_flight == ("metformin.pdf",)


def test_the_refusal_names_the_files_still_being_processed():
    text = not_covered(["metformin"], strict=False, in_flight=["metformin.pdf"])
    assert "None of your documents is about metformin" in text
    assert "Still being processed, so not searched yet: metformin.pdf." in text
    assert "when it shows Ready" in text
    many = not_covered(None, strict=False, in_flight=[f"f{i}.pdf" for i in range(5)])
    assert "f0.pdf, f1.pdf, f2.pdf and 2 more" in many and "when they show Ready" in many
    assert "Still being processed" not in not_covered(["metformin"], strict=False)
