"""`pharmgpt doctor`: what is configured (secrets masked) and whether each part answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from .config import Settings
from .errors import PharmGPTError


def _check_supabase(settings: Settings) -> tuple[bool, str]:
    if settings.embedded:
        from localbase.stack import LocalStack
        stack = LocalStack(settings.data_dir)
        st = stack.pg.status()
        gw = stack._running_gateway()
        if not st.running or gw is None:
            return False, (f"embedded local stack in {settings.data_dir}: postgres "
                           f"{'running' if st.running else 'stopped'}, gateway {'running' if gw else 'stopped'} "
                           "(`make run` or `pharmgpt local start` starts them)")
        url, key = gw.url, gw.service_role_key
    else:
        url, key = settings.supabase_url, settings.supabase_service_role_key
    req = urllib.request.Request(f"{url.rstrip('/')}/rest/v1/users?select=id&limit=1",
                                 headers={"apikey": key, "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200, f"{url}: REST answers ({r.status}), schema present"
    except urllib.error.HTTPError as e:
        body = e.read()[:300].decode(errors="replace")
        hint = " — apply sql/ (pharmgpt db migrate)" if e.code == 404 else ""
        return False, f"{url}: HTTP {e.code} {body}{hint}"
    except (urllib.error.URLError, OSError) as e:
        return False, f"{url}: not reachable ({e})"


def _check_chroma(settings: Settings) -> tuple[bool, str]:
    from rag.store import ChunkStore
    where = f"server {settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host \
        else f"embedded store in {settings.data_dir / 'chroma'}"
    try:
        from rag.embeddings import embedder_name
        store = ChunkStore(path=settings.data_dir / "chroma", host=settings.chroma_host, port=settings.chroma_port,
                           embedder=embedder_name(settings.embedder))
        store.client.heartbeat()
        stale = len(store.stale_users())
        note = f", {stale} built by another embedder (re-indexed at app start, or `pharmgpt reindex`)" if stale else ""
        return True, f"{where}: answers, {len(store.users())} user collection(s){note}"
    except Exception as e:
        return False, f"{where}: {type(e).__name__}: {e}"


def _check_llm(settings: Settings) -> tuple[bool, str]:
    if settings.groq_api_key:
        url, what = "https://api.groq.com/openai/v1/models", "Groq"
        headers = {"Authorization": f"Bearer {settings.groq_api_key}"}
    elif settings.openai_base_url:
        url, what = settings.openai_base_url.rstrip("/") + "/models", f"OpenAI-compatible server {settings.openai_base_url}"
        headers = {"Authorization": f"Bearer {settings.openai_api_key}"} if settings.openai_api_key else {}
    else:
        return True, "offline mode: no GROQ_API_KEY or OPENAI_BASE_URL, answers quote the documents (extractive)"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status == 200, f"{what}: answers ({r.status})"
    except urllib.error.HTTPError as e:
        return False, f"{what}: HTTP {e.code}" + (" — the key was refused" if e.code in (401, 403) else "")
    except (urllib.error.URLError, OSError) as e:
        return False, f"{what}: not reachable ({e})"


def run_doctor(as_json: bool = False) -> int:
    try:
        settings = Settings.load()
    except PharmGPTError as e:
        print(f"configuration: {e.message}")
        return 1
    checks = {"supabase": _check_supabase(settings), "chroma": _check_chroma(settings),
              "llm": _check_llm(settings)}
    if as_json:
        print(json.dumps({"settings": settings.describe(),
                          "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in checks.items()}}, indent=2))
    else:
        print("configuration")
        for k, v in settings.describe().items():
            print(f"  {k:<28} {v}")
        print("checks")
        for k, (ok, detail) in checks.items():
            print(f"  {'OK  ' if ok else 'FAIL'} {k:<9} {detail}")
    return 0 if checks["supabase"][0] else 1

