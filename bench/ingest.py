"""Ingestion throughput of a large PDF, against bare embedding of the same chunks.

The five FDA labels in ../shared/data/fda-labels are rendered to PDFs with
reportlab and concatenated (repeated `--copies` times) into one large PDF. It
is uploaded through the services and ingested by the real worker (parse,
chunk, embed, Chroma, BM25, status updates in the database). Then the same
chunk texts are embedded bare, in the same process, for the ratio.

    .venv/bin/python bench/ingest.py [--copies 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from localbase.stack import LocalStack  # noqa: E402
from rag.chunking import chunk_document  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.index import embedding_text  # noqa: E402
from rag.loaders import load_document  # noqa: E402
from rag.system import RagSystem  # noqa: E402
from services.config import Settings  # noqa: E402
from services.container import Services  # noqa: E402
from tests.fixtures.documents import spl_to_pdf  # noqa: E402

LABELS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fda-labels"


def big_pdf(workdir: Path, copies: int) -> bytes:
    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter()
    for xml in sorted(LABELS.glob("*.xml")):
        out = workdir / f"{xml.stem}.pdf"
        spl_to_pdf(xml, out)
        for _ in range(copies):
            for page in PdfReader(out).pages:
                writer.add_page(page)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


async def run(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="ing-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        data = big_pdf(root, args.copies)
        settings = Settings(**info.settings_overrides(),
                            data_dir=root / "svc", bcrypt_rounds=4)
        services = await Services.create(settings)
        embedder = Embedder()
        embedder.embed(["warm up the model"])  # model load is a once-per-process cost, not throughput
        rag = RagSystem(services, embedder=embedder, use_configured_provider=False)
        user = await services.users.create_user("bench-ingest", "long enough pw")
        doc = await services.documents.register_upload(user.id, "fda-labels.pdf", data)
        t0 = time.perf_counter()
        assert await rag.worker.run_once()
        pipeline_s = time.perf_counter() - t0
        doc = await services.documents.get_document(user.id, doc.id)
        assert doc.status == "ready", doc.processing_error

        t0 = time.perf_counter()
        loaded = load_document("fda-labels.pdf", data)
        parse_s = time.perf_counter() - t0
        chunks = chunk_document(loaded)
        texts = [embedding_text(c) for c in chunks]
        t0 = time.perf_counter()
        embedder.embed(texts)
        bare_s = time.perf_counter() - t0
        await services.close()
        return {"pages": doc.page_count, "chunks": doc.chunk_count, "bytes": len(data),
                "pipeline_seconds": round(pipeline_s, 2), "bare_embedding_seconds": round(bare_s, 2),
                "parse_seconds": round(parse_s, 2),
                "pipeline_chunks_per_s": round(doc.chunk_count / pipeline_s, 1),
                "pipeline_pages_per_s": round(doc.page_count / pipeline_s, 2),
                "bare_chunks_per_s": round(len(texts) / bare_s, 1),
                "pipeline_vs_bare": round(bare_s / pipeline_s, 3)}
    finally:
        stack.down()
        stack.pg.reset()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = asyncio.run(run(a))
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"ingest benchmark: {r['pages']} pages, {r['chunks']} chunks, {r['bytes'] / 2**20:.1f} MB PDF")
        print(f"  pipeline (worker: parse, chunk, embed, Chroma, BM25, DB): {r['pipeline_seconds']} s = "
              f"{r['pipeline_chunks_per_s']} chunks/s, {r['pipeline_pages_per_s']} pages/s")
        print(f"  bare embedding of the same chunks: {r['bare_embedding_seconds']} s = {r['bare_chunks_per_s']} "
              f"chunks/s  (parsing alone: {r['parse_seconds']} s)")
        print(f"  pipeline reaches {100 * r['pipeline_vs_bare']:.1f} % of bare embedding speed")
