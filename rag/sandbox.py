"""Reading an uploaded file in its own bounded process (issue 12).

Parsing is where hostile bytes do harm: a 212 KB CSV that pads to 6 GB, a PDF
whose one content stream is drawn on 300 pages, a DOCX of 2 million empty
paragraphs. So the worker never parses in its own process: each job's
load + chunk step runs in a fresh child (`python -m pharmgpt.rag.sandbox`) with an
address-space limit (RLIMIT_AS) and a CPU limit set before anything is
imported, killed at a wall-clock limit, and with the loaders' page, character
and chunk caps. Whatever happens there, the worker (and the app beside it)
keeps running; a child past a limit is a permanent `LimitExceeded`, never a retry.

Protocol: one JSON line (the job) then the file's bytes on stdin; on stdout,
zero or more `{"progress": {...}}` lines (scanned pages OCR'd so far, so the
documents page can say "page 3 of 10") and then one JSON object, the result.
OCR's `tesseract` runs as a grandchild in the same process group, under the same
limits, and is killed with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pharmgpt.services.errors import IngestionError


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 120.0
    memory_mb: int = 1024
    ocr_page_s: float = (
        30.0  # each scanned page the child reports it will OCR adds this to the wall clock
    )

    def cpu_s(self, max_ocr_pages: int) -> int:
        """The child's CPU limit: the longest wall clock it can be given (tesseract has its own)."""
        return int(self.timeout_s + self.ocr_page_s * max_ocr_pages) + 5


@dataclass
class ParsedFile:
    chunks: list  # rag.chunking.Chunk
    page_count: int | None
    warnings: list[str]
    subjects: list[str] = field(
        default_factory=list
    )  # drug names the file declares (SPL product data)
    sample: str = ""  # the opening text, to tell which drugs an undeclared file is about
    ocr_pages: int = 0  # pages (or image frames) whose text was recognised by OCR


def _limit_error(filename: str, message: str, **details) -> IngestionError:
    from .loaders.limits import LimitExceeded

    return LimitExceeded(
        f"{filename} was not processed: {message} Split it into smaller files, or save "
        "only the pages you need, and upload those.",
        details=details or None,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its tesseract
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _feed(proc: subprocess.Popen, payload: bytes) -> None:
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except (
        BrokenPipeError,
        OSError,
    ):  # the child stopped reading (a limit, a crash): its answer says why
        pass


def parse_in_sandbox(
    filename: str,
    data: bytes,
    file_type: str | None,
    *,
    limits,
    chunk_size: int,
    chunk_overlap: int,
    sandbox: SandboxLimits,
    on_progress: Callable[[dict], None] | None = None,
) -> ParsedFile:
    """Load and chunk `data` in a fresh bounded child process (blocking: call it in a thread).

    `on_progress(dict)` is called (from this thread) with each progress line the child sends.
    Raises IngestionError (the file's fault, shown to the user) or LimitExceeded; OSError
    only if the child could not be started at all (a transient server problem)."""
    from .chunking import Chunk

    job = {
        "filename": filename,
        "file_type": file_type,
        "limits": asdict(limits),
        "chunk_size": chunk_size,
        "chunk_overlap": chunk_overlap,
        "memory_mb": sandbox.memory_mb,
        "cpu_s": sandbox.cpu_s(limits.max_ocr_pages),
    }
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "GROQ_", "OPENAI_"))
    }
    env["OMP_THREAD_LIMIT"] = (
        "1"  # tesseract: one core per file; the worker runs files side by side
    )
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pharmgpt.rag.sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errfile,
            env=env,
            start_new_session=True,
        )
        timed_out = threading.Event()
        finished = threading.Event()
        allowed = [
            sandbox.timeout_s
        ]  # grows when the child says how many scanned pages it will OCR
        started = time.monotonic()

        def watch() -> None:
            while not finished.wait(0.2):
                if time.monotonic() - started > allowed[0]:
                    timed_out.set()
                    _kill_group(proc)
                    return

        watchdog = threading.Thread(target=watch, daemon=True)
        watchdog.start()
        feeder = threading.Thread(
            target=_feed, args=(proc, json.dumps(job).encode() + b"\n" + data), daemon=True
        )
        feeder.start()
        out = b""
        try:
            for line in proc.stdout:
                if line.startswith(b'{"progress"'):
                    try:
                        report = json.loads(line)["progress"]
                        pages = min(int(report.get("ocr_pages", 0)), limits.max_ocr_pages)
                        allowed[0] = max(allowed[0], sandbox.timeout_s + sandbox.ocr_page_s * pages)
                        if on_progress is not None:
                            on_progress(report)
                    except Exception:  # a progress report must never fail the file
                        pass
                else:
                    out += line
            proc.wait()
        finally:
            finished.set()
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
            if proc.returncode < 0:
                _kill_group(proc)  # a tesseract left behind by a killed child
            feeder.join(timeout=5)
        errfile.seek(0)
        err = errfile.read()
    if timed_out.is_set():
        raise _limit_error(
            filename,
            f"reading it took longer than {allowed[0]:g} seconds, this "
            "server's limit for one file.",
            limit="wall clock",
            value=allowed[0],
        ) from None
    try:
        result = json.loads(out) if out else None
    except ValueError:
        result = None
    if result is None:  # killed (memory, CPU) or crashed before answering
        tail = err.decode("utf-8", "replace")[-300:]
        if proc.returncode < 0 or "MemoryError" in tail or "Cannot allocate" in tail:
            raise _limit_error(
                filename,
                f"reading it needed more than {sandbox.memory_mb:,} MB of memory or "
                "more processing time than this server allows for one file.",
                limit="memory",
                value=sandbox.memory_mb,
                exit=proc.returncode,
                stderr=tail,
            )
        raise IngestionError(
            f"{filename} could not be read (the reader stopped unexpectedly)",
            details={"exit": proc.returncode, "stderr": tail},
        )
    if not result["ok"]:
        if result["kind"] == "limit":
            from .loaders.limits import LimitExceeded

            raise LimitExceeded(result["message"], details=result.get("details"))
        if result["kind"] == "memory":
            raise _limit_error(
                filename,
                f"reading it needed more than {sandbox.memory_mb:,} MB of memory, this "
                "server's limit for one file.",
                limit="memory",
                value=sandbox.memory_mb,
            )
        raise IngestionError(result["message"], details=result.get("details"))
    chunks = [Chunk(**c) for c in result["chunks"]]
    return ParsedFile(
        chunks,
        result["page_count"],
        result["warnings"],
        result.get("subjects") or [],
        result.get("sample") or "",
        result.get("ocr_pages") or 0,
    )


# ---------------------------------------------------------------------------------- child side
def _set_limits(memory_mb: int, cpu_s: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child() -> int:
    header = sys.stdin.buffer.readline()
    job = json.loads(header)
    _set_limits(job["memory_mb"], job["cpu_s"])
    data = sys.stdin.buffer.read()

    def answer(obj) -> int:
        sys.stdout.write(json.dumps(obj))
        sys.stdout.flush()
        return 0

    def progress(done: int, total: int) -> None:
        sys.stdout.write(
            json.dumps({"progress": {"ocr_pages_done": done, "ocr_pages": total}}) + "\n"
        )
        sys.stdout.flush()

    try:
        from .chunking import chunk_document
        from .loaders import LimitExceeded, Limits, load_document

        limits = Limits(**job["limits"])
        loaded = load_document(
            job["filename"], data, job["file_type"], limits=limits, progress=progress
        )
        chunks = chunk_document(loaded, job["chunk_size"], job["chunk_overlap"])
        if len(chunks) > limits.max_chunks:
            from .loaders.limits import too_big

            raise too_big(job["filename"], "chunks", limits.max_chunks, "searchable passages")
        return answer(
            {
                "ok": True,
                "page_count": loaded.page_count,
                "warnings": loaded.warnings[:50],
                "ocr_pages": sum(1 for sec in loaded.sections if sec.ocr),
                "chunks": [asdict(c) for c in chunks],
                "subjects": loaded.subjects[:20],
                "sample": "\n".join(sec.text for sec in loaded.sections[:400])[:200_000],
            }
        )
    except LimitExceeded as e:
        return answer(
            {"ok": False, "kind": "limit", "message": e.message, "details": _jsonable(e.details)}
        )
    except IngestionError as e:
        return answer(
            {"ok": False, "kind": "file", "message": e.message, "details": _jsonable(e.details)}
        )
    except MemoryError:
        return answer({"ok": False, "kind": "memory"})
    except RecursionError:
        return answer(
            {
                "ok": False,
                "kind": "limit",
                "details": None,
                "message": f"{job['filename']} was not processed: it is nested too deeply to read.",
            }
        )


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)[:500]


if __name__ == "__main__":
    sys.exit(_child())
