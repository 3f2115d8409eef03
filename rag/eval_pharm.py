"""Answer quality on pharmacist questions, through the product's real path.

`pharmgpt eval pharm` (pharmgpt/eval_command.py) starts a throwaway local stack (embedded
Postgres + gateway), signs a user up, uploads the FDA labels through the documents service and
lets the worker ingest them; `score_questions` here then asks every question through
`AnswerService.answer` in a new conversation, offline. Three scores, as
`shared/data/pharm-qa/README.md` defines:
- retrieval: the answer phrase inside one of the top-5 passages retrieved in scope;
- answer: the phrase inside the answer text the pharmacist reads;
- refusals: questions the labels do not answer, answered "not covered".
Latency to the first token and to the whole answer is measured per question.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("PHARMGPT_SHARED_DATA")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "data"
)
DEFAULT_QUESTIONS = SHARED_DATA / "pharm-qa" / "dev.jsonl"
DEFAULT_LABELS = SHARED_DATA / "fda-labels"
REFUSAL_MARKERS = ("don't cover this question", "None of your documents is about")


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip().lower()


@dataclass
class Row:
    id: str
    question: str
    must: str | None
    retrieved: bool | None = None
    answered: bool | None = None
    refused: bool = False
    first_token_ms: float = 0.0
    total_ms: float = 0.0
    answer: str = ""


@dataclass
class PharmEval:
    rows: list[Row] = field(default_factory=list)
    ablations: dict[str, dict[str, list[int]]] = field(
        default_factory=dict
    )  # rule switched off -> scores

    def _count(self, attr: str, answerable: bool = True) -> tuple[int, int]:
        rows = [r for r in self.rows if (r.must is not None) == answerable]
        return sum(bool(getattr(r, attr)) for r in rows), len(rows)

    @property
    def scores(self) -> dict[str, list[int]]:
        return {
            "top5": list(self._count("retrieved")),
            "in_answer": list(self._count("answered")),
            "refusals": list(self._count("refused", answerable=False)),
        }

    @property
    def latency(self) -> dict[str, float]:
        def pct(xs: list[float], q: float) -> float:
            xs = sorted(xs)
            return round(xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))], 1) if xs else 0.0

        first = [r.first_token_ms for r in self.rows]
        total = [r.total_ms for r in self.rows]
        return {
            "first_token_p50_ms": pct(first, 0.5),
            "first_token_p95_ms": pct(first, 0.95),
            "answer_p50_ms": pct(total, 0.5),
            "answer_p95_ms": pct(total, 0.95),
        }

    def as_dict(self) -> dict:
        return {
            "scores": self.scores,
            "latency": self.latency,
            "ablations": self.ablations,
            "rows": [asdict(r) for r in self.rows],
        }

    def report(self) -> str:
        s = self.scores
        lines = [
            f"top-5 retrieval   {s['top5'][0]}/{s['top5'][1]}",
            f"in offline answer {s['in_answer'][0]}/{s['in_answer'][1]}",
            f"refusals          {s['refusals'][0]}/{s['refusals'][1]}",
            "latency           " + ", ".join(f"{k} {v}" for k, v in self.latency.items()),
            "",
        ]
        if self.ablations:
            lines += [
                "with one rule switched off:",
                "| rule off | top-5 | in answer | refusals |",
                "|---|---|---|---|",
            ]
            for rule, got in self.ablations.items():
                lines.append(
                    f"| {rule} | "
                    + " | ".join(
                        f"{got[k][0]}/{got[k][1]}" for k in ("top5", "in_answer", "refusals")
                    )
                    + " |"
                )
            lines.append("")
        for r in self.rows:
            if r.must is None and not r.refused:
                lines.append(f"MISS refusal {r.id}: {r.question}\n    answered: {r.answer[:300]!r}")
            elif r.must is not None and not (r.retrieved and r.answered):
                what = (
                    "retrieval+answer"
                    if not r.retrieved and not r.answered
                    else ("retrieval" if not r.retrieved else "answer")
                )
                lines.append(
                    f"MISS {what} {r.id}: {r.question}\n    must: {r.must!r}\n"
                    f"    answer: {r.answer[:400]!r}"
                )
        return "\n".join(lines)


def load_questions(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


async def score_questions(
    engine,
    planner,
    conversations,
    preferences,
    user_id: str,
    questions: list[dict],
    *,
    ablate=False,
) -> PharmEval:
    """Ask every question of a user whose labels are already indexed. `engine`: the answering
    use-case; `planner`: the AnswerPlanner it plans with (its rules are switched for the
    ablations, then restored); `conversations`, `preferences`: the services the questions'
    conversations live in. `ablate`: also score once with each answer rule switched off."""
    result = await _ask_all(engine, conversations, preferences, user_id, questions)
    if ablate:
        from .planner import AnswerRules

        try:
            for rule in AnswerRules.names():
                planner.rules = AnswerRules(**{rule: False})
                again = await _ask_all(engine, conversations, preferences, user_id, questions)
                result.ablations[rule] = again.scores
        finally:
            planner.rules = AnswerRules()
    return result


def label_files(folder: Path) -> list[tuple[str, bytes]]:
    return [
        (p.name, p.read_bytes())
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in (".xml", ".pdf", ".docx", ".txt", ".md", ".csv")
    ]


async def _ask_all(
    engine, conversations, preferences, user_id: str, questions: list[dict]
) -> PharmEval:
    result = PharmEval()
    prefs = await preferences.get_all(user_id)
    for q in questions:
        conv = await conversations.create_conversation(user_id)
        row = Row(q["id"], q["q"], q.get("must"))
        plan = await engine.plan(user_id, conv.id, q["q"], [], prefs)
        if row.must is not None:
            row.retrieved = any(norm(row.must) in norm(p.text) for p in plan.retrieved[:5])
        start = time.perf_counter()
        parts: list[str] = []
        async for event in engine.answer(user_id, conv.id, q["q"]):
            if event["type"] == "token":
                if not parts:
                    row.first_token_ms = (time.perf_counter() - start) * 1000
                parts.append(event["text"])
        row.total_ms = (time.perf_counter() - start) * 1000
        row.answer = "".join(parts)
        row.refused = any(m in row.answer for m in REFUSAL_MARKERS)
        if row.must is not None:
            row.answered = norm(row.must) in norm(row.answer)
        result.rows.append(row)
    return result
