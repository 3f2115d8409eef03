"""Ingestion throughput of a large PDF, against bare embedding of the same chunks.

The five FDA labels in ../shared/data/fda-labels are rendered to PDFs with
reportlab and concatenated (repeated `--copies` times) into one large PDF. It
is uploaded through the services and ingested by the real worker (parse,
chunk, embed, Chroma, BM25, status updates in the database). Then the same
chunk texts are embedded bare, in the same process, for the ratio.

With `--peer`, the same PDF also goes through the LangChain default pipeline
(PyPDFLoader -> RecursiveCharacterTextSplitter(1000/200) -> HuggingFaceEmbeddings
on the same packaged MiniLM -> langchain-chroma), alternating with this
pipeline run by run, and the pages/s ratio of each pair is printed. It needs
the optional extra: `pip install -e '.[peer]'`. Models are loaded and warmed
before timing for both sides.

    .venv/bin/python bench/ingest.py [--copies 1] [--embedder onnx-int8|torch] [--json]
    .venv/bin/python bench/ingest.py --peer [--runs 3] [--copies 1]
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
from pharmgpt.localbase.stack import LocalStack  # noqa: E402
from pharmgpt.rag.chunking import chunk_document  # noqa: E402
from pharmgpt.rag.embeddings import make_embedder, model_dir  # noqa: E402
from pharmgpt.rag.index import embedding_text  # noqa: E402
from pharmgpt.rag.loaders import load_document  # noqa: E402
from pharmgpt.rag_system import RagSystem  # noqa: E402
from pharmgpt.services.config import Settings  # noqa: E402
from pharmgpt.services.container import Services  # noqa: E402
from pharmgpt.services.model_names import EMBEDDER_KINDS, ONNX_INT8  # noqa: E402

from tests.fixtures import shared_data  # noqa: E402
from tests.fixtures.documents import spl_to_pdf  # noqa: E402

LABELS = shared_data("fda-labels")


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


class LangChainPeer:
    """The LangChain default pipeline, model loaded once (as our side's is)."""

    def __init__(self):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from langchain_huggingface import HuggingFaceEmbeddings

        self.embeddings = HuggingFaceEmbeddings(
            model_name=str(model_dir()),
            model_kwargs={"device": "cpu"},
            encode_kwargs={"normalize_embeddings": True},
        )
        self.embeddings.embed_query("warm up the model")

    def ingest(self, pdf: Path, workdir: Path) -> tuple[int, int, float]:
        from chromadb.config import Settings as ChromaSettings
        from langchain_chroma import Chroma
        from langchain_community.document_loaders import PyPDFLoader
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        t0 = time.perf_counter()
        pages = PyPDFLoader(str(pdf)).load()
        chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(
            pages
        )
        Chroma.from_documents(
            chunks,
            self.embeddings,
            persist_directory=str(workdir),
            collection_name="peer",
            client_settings=ChromaSettings(
                anonymized_telemetry=False, is_persistent=True, persist_directory=str(workdir)
            ),
        )
        return len(pages), len(chunks), time.perf_counter() - t0


async def ingest_once(services, rag, data: bytes, n: int) -> tuple[object, float]:
    user = await services.users.create_user(f"bench-ingest-{n}", "long enough pw")
    doc = await services.documents.register_upload(user.id, "fda-labels.pdf", data)
    t0 = time.perf_counter()
    assert await rag.worker.run_once()
    elapsed = time.perf_counter() - t0
    doc = await services.documents.get_document(user.id, doc.id)
    assert doc.status == "ready", doc.processing_error
    return doc, elapsed


async def run(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="ing-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        data = big_pdf(root, args.copies)
        settings = Settings(
            **info.settings_overrides(),
            data_dir=root / "svc",
            bcrypt_rounds=4,
            embedder=args.embedder,
        )
        services = await Services.create(settings)
        # the ONNX build is a first-use cost: keep it (and model loading) out of the timing
        embedder = make_embedder(args.embedder, args.models_dir or settings.data_dir)
        embedder.embed(["warm up the model"])
        rag = RagSystem(services, embedder=embedder, use_configured_provider=False)
        if args.peer:
            return await run_peer(args, services, rag, data, root)
        doc, pipeline_s = await ingest_once(services, rag, data, 0)

        t0 = time.perf_counter()
        loaded = load_document("fda-labels.pdf", data)
        parse_s = time.perf_counter() - t0
        chunks = chunk_document(loaded)
        texts = [embedding_text(c) for c in chunks]
        t0 = time.perf_counter()
        embedder.embed(texts)
        bare_s = time.perf_counter() - t0
        await services.close()
        return {
            "embedder": embedder.name,
            "pages": doc.page_count,
            "chunks": doc.chunk_count,
            "bytes": len(data),
            "pipeline_seconds": round(pipeline_s, 2),
            "bare_embedding_seconds": round(bare_s, 2),
            "parse_seconds": round(parse_s, 2),
            "pipeline_chunks_per_s": round(doc.chunk_count / pipeline_s, 1),
            "pipeline_pages_per_s": round(doc.page_count / pipeline_s, 2),
            "bare_chunks_per_s": round(len(texts) / bare_s, 1),
            "pipeline_vs_bare": round(bare_s / pipeline_s, 3),
        }
    finally:
        stack.down()
        stack.pg.reset()


async def run_peer(args, services, rag, data: bytes, root: Path) -> dict:
    pdf = root / "fda-labels.pdf"
    pdf.write_bytes(data)
    peer = LangChainPeer()
    runs = []
    for n in range(args.runs):  # alternate, and swap who goes first, so drift hits both sides alike
        order = ("ours", "peer") if n % 2 == 0 else ("peer", "ours")
        row: dict = {}
        for side in order:
            if side == "ours":
                doc, s = await ingest_once(services, rag, data, n)
                row["ours"] = {
                    "pages": doc.page_count,
                    "chunks": doc.chunk_count,
                    "seconds": round(s, 2),
                    "pages_per_s": round(doc.page_count / s, 2),
                }
            else:
                pages, chunks, s = await asyncio.to_thread(peer.ingest, pdf, root / f"peer-{n}")
                row["peer"] = {
                    "pages": pages,
                    "chunks": chunks,
                    "seconds": round(s, 2),
                    "pages_per_s": round(pages / s, 2),
                }
        row["ratio"] = round(row["ours"]["pages_per_s"] / row["peer"]["pages_per_s"], 2)
        runs.append(row)
        print(
            f"  run {n + 1}: ours {row['ours']['pages_per_s']} pages/s "
            f"({row['ours']['chunks']} chunks), "
            f"LangChain {row['peer']['pages_per_s']} pages/s ({row['peer']['chunks']} chunks): "
            f"{row['ratio']}x",
            file=sys.stderr,
            flush=True,
        )
    await services.close()
    ratios = sorted(r["ratio"] for r in runs)
    return {
        "peer": True,
        "embedder": rag.embedder.name,
        "bytes": len(data),
        "runs": runs,
        "ratio_median": ratios[len(ratios) // 2],
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--embedder", choices=EMBEDDER_KINDS, default=ONNX_INT8)
    ap.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where the ONNX build is kept (default: the throwaway data dir, so it is rebuilt)",
    )
    ap.add_argument(
        "--peer", action="store_true", help="against the LangChain default pipeline ([peer] extra)"
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = asyncio.run(run(a))
    if a.json:
        print(json.dumps(r, indent=2))
    elif a.peer:
        first = r["runs"][0]
        print(
            f"ingest vs LangChain: {first['ours']['pages']} pages, "
            f"{r['bytes'] / 2**20:.1f} MB PDF, "
            f"embedder {r['embedder']}, {len(r['runs'])} alternating runs"
        )
        for i, row in enumerate(r["runs"], 1):
            print(
                f"  run {i}: ours {row['ours']['pages_per_s']} pages/s "
                f"in {row['ours']['seconds']} s, "
                f"LangChain {row['peer']['pages_per_s']} pages/s "
                f"in {row['peer']['seconds']} s -> {row['ratio']}x"
            )
        print(
            f"  ratio (ours / LangChain pages/s): median {r['ratio_median']}x, "
            f"range {r['ratio_min']}-{r['ratio_max']}x"
        )
    else:
        print(
            f"ingest benchmark: {r['pages']} pages, {r['chunks']} chunks, "
            f"{r['bytes'] / 2**20:.1f} MB PDF, "
            f"embedder {r['embedder']}"
        )
        print(
            "  pipeline (worker: parse, chunk, embed, Chroma, BM25, DB): "
            f"{r['pipeline_seconds']} s = "
            f"{r['pipeline_chunks_per_s']} chunks/s, {r['pipeline_pages_per_s']} pages/s"
        )
        print(
            f"  bare embedding of the same chunks: {r['bare_embedding_seconds']} s = "
            f"{r['bare_chunks_per_s']} "
            f"chunks/s  (parsing alone: {r['parse_seconds']} s)"
        )
        print(f"  pipeline reaches {100 * r['pipeline_vs_bare']:.1f} % of bare embedding speed")
