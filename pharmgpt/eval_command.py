"""`pharmgpt eval pharm|scifact`: what each evaluation runs on, built here (composition root).

The scoring lives in rag (rag/eval_pharm.py, rag/eval.py) and takes built objects; this module
starts them: for `pharm` a throwaway local stack, services and the RAG system over it (the
app's data directory is never touched), for `scifact` the configured embedder.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from pharmgpt.rag import eval_pharm
from pharmgpt.services.config import Settings


async def _pharm_on_stack(
    questions: list[dict], labels: Path, work: Path, ablate: bool
) -> eval_pharm.PharmEval:
    from pharmgpt.localbase.stack import LocalStack
    from pharmgpt.services.container import Services
    from pharmgpt.wiring import build_rag

    stack = LocalStack(work / "data", ephemeral=True, gateway_port=0)
    info = await asyncio.to_thread(stack.up)
    try:
        settings = Settings.load(
            **info.settings_overrides(), data_dir=work / "app", bcrypt_rounds=4
        )
        services = await Services.create(settings)
        try:
            rag = build_rag(services, use_configured_provider=False)  # offline answers
            user = await services.users.create_user("eval-pharmacist", "an eval password 1")
            for name, data in await asyncio.to_thread(eval_pharm.label_files, labels):
                await services.documents.register_upload(user.id, name, data)
            while await rag.worker.run_once():
                pass
            return await eval_pharm.score_questions(
                rag.engine,
                rag.planner,
                services.conversations,
                services.preferences,
                user.id,
                questions,
                ablate=ablate,
            )
        finally:
            await services.close()
    finally:
        await asyncio.to_thread(stack.down)


def evaluate_pharm(
    questions_file: Path | None = None, labels: Path | None = None, *, ablate: bool = False
) -> eval_pharm.PharmEval:
    """`ablate`: also score the questions once with each answer rule switched off (same index)."""
    # short: socket paths are length-limited
    work = Path(tempfile.mkdtemp(prefix="pgt-eval-", dir="/tmp"))
    print(
        f"database: a temporary embedded Postgres in {work} (deleted afterwards); "
        "the app's data dir is not touched",
        file=sys.stderr,
    )
    try:
        questions = eval_pharm.load_questions(questions_file or eval_pharm.DEFAULT_QUESTIONS)
        return asyncio.run(
            _pharm_on_stack(questions, labels or eval_pharm.DEFAULT_LABELS, work, ablate)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args) -> int:
    """The `eval` subcommand: the chosen dataset's report (or JSON) on stdout."""
    if args.dataset == "pharm":
        outcome = evaluate_pharm(args.questions, args.labels, ablate=args.ablate)
        print(json.dumps(outcome.as_dict(), indent=2) if args.json else outcome.report())
        return 0
    from pharmgpt.rag.embeddings import shared_embedder
    from pharmgpt.rag.eval import DEFAULT_DATA, evaluate, report

    s = Settings.load()
    result = evaluate(
        args.data_dir or DEFAULT_DATA,
        args.split,
        tune=not args.no_tune,
        cache_dir=args.cache_dir,
        embedder=shared_embedder(args.embedder or s.embedder, s.data_dir, s.embedder_threads),
    )
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0
