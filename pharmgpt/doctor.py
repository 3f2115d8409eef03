"""`pharmgpt doctor`: what is configured (secrets masked) and whether each part answers.

The `check_*` functions and `health_checks` also serve the admin page's health tab.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pharmgpt.services.config import Settings, describe_data
from pharmgpt.services.errors import PharmGPTError

from .wiring import load_settings, local_stack, on_stack, running_gateway


def check_supabase(settings: Settings) -> tuple[bool, str]:
    if settings.embedded:
        st = local_stack(settings).pg.status()
        gw = running_gateway(settings)
        if not st.running or gw is None:
            return False, (
                f"embedded local stack in {settings.data_dir}: postgres "
                f"{'running' if st.running else 'stopped'}, "
                f"gateway {'running' if gw else 'stopped'} "
                "(`make run` or `pharmgpt local start` starts them)"
            )
        url, key = gw.url, gw.service_role_key
    else:
        url, key = settings.supabase_url, settings.supabase_service_role_key
    req = urllib.request.Request(
        f"{url.rstrip('/')}/rest/v1/users?select=id&limit=1",
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200, f"{url}: REST answers ({r.status}), schema present"
    except urllib.error.HTTPError as e:
        body = e.read()[:300].decode(errors="replace")
        hint = " — apply sql/ (pharmgpt db migrate)" if e.code == 404 else ""
        return False, f"{url}: HTTP {e.code} {body}{hint}"
    except (urllib.error.URLError, OSError) as e:
        return False, f"{url}: not reachable ({e})"


def check_signing(settings: Settings) -> tuple[bool, str]:
    """Does the project accept the user tokens PharmGPT signs? One read as a user that owns
    nothing."""
    if settings.embedded:
        gw = running_gateway(settings)
        if gw is None:
            return False, "embedded local stack not running"
        settings = on_stack(settings, gw)
    from pharmgpt.services.backend import Backend

    try:
        signer = settings.signing_key()
        token, _ = Backend(settings).user_token("00000000-0000-0000-0000-000000000000")
    except PharmGPTError as e:
        return False, e.message
    what = f"{signer.alg} key" + (
        f" kid {signer.kid}" if signer.kid else " (legacy JWT secret, no kid)"
    )
    url = settings.supabase_url.rstrip("/")
    listed = ""
    if signer.asymmetric:
        try:
            with urllib.request.urlopen(f"{url}/auth/v1/.well-known/jwks.json", timeout=10) as r:
                kids = {k.get("kid") for k in json.loads(r.read()).get("keys", [])}
            listed = (
                "; in the project's JWKS" if signer.kid in kids else "; NOT in the project's JWKS"
            )
        except (urllib.error.URLError, OSError, ValueError):
            listed = "; the project's JWKS could not be read"
    req = urllib.request.Request(
        f"{url}/rest/v1/users?select=id&limit=1",
        headers={"apikey": settings.supabase_anon_key, "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200, f"user tokens signed with the {what} are accepted{listed}"
    except urllib.error.HTTPError as e:
        body = e.read()[:200].decode(errors="replace")
        return False, (
            f"user tokens signed with the {what} are refused (HTTP {e.code} {body}){listed} — "
            "import the key in the project (docs/supabase.md)"
        )
    except (urllib.error.URLError, OSError) as e:
        return False, f"{url}: not reachable ({e})"


def check_chroma(settings: Settings) -> tuple[bool, str]:
    from pharmgpt.rag.store import ChunkStore

    where = (
        f"server {settings.chroma_host}:{settings.chroma_port}"
        if settings.chroma_host
        else f"embedded store in {settings.data_dir / 'chroma'}"
    )
    try:
        from pharmgpt.rag.embeddings import embedder_name

        store = ChunkStore(
            path=settings.data_dir / "chroma",
            host=settings.chroma_host,
            port=settings.chroma_port,
            embedder=embedder_name(settings.embedder),
        )
        store.client.heartbeat()
        stale = len(store.stale_users())
        note = (
            f", {stale} built by another embedder (re-indexed at app start, or `pharmgpt reindex`)"
            if stale
            else ""
        )
        return True, f"{where}: answers, {len(store.users())} user collection(s){note}"
    except Exception as e:
        return False, f"{where}: {type(e).__name__}: {e}"


def check_llm(settings: Settings) -> tuple[bool, str]:
    if settings.groq_api_key:
        url, what = "https://api.groq.com/openai/v1/models", "Groq"
        headers = {"Authorization": f"Bearer {settings.groq_api_key}"}
    elif settings.openai_base_url:
        url, what = (
            settings.openai_base_url.rstrip("/") + "/models",
            f"OpenAI-compatible server {settings.openai_base_url}",
        )
        headers = (
            {"Authorization": f"Bearer {settings.openai_api_key}"}
            if settings.openai_api_key
            else {}
        )
    else:
        return (
            True,
            "offline mode: no GROQ_API_KEY or OPENAI_BASE_URL, "
            "answers quote the documents (extractive)",
        )
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status == 200, f"{what}: answers ({r.status})"
    except urllib.error.HTTPError as e:
        return False, f"{what}: HTTP {e.code}" + (
            " — the key was refused" if e.code in (401, 403) else ""
        )
    except (urllib.error.URLError, OSError) as e:
        return False, f"{what}: not reachable ({e})"


def check_ocr(settings: Settings) -> tuple[bool, str]:
    """Optional: without Tesseract scanned PDFs and images are refused (with how to enable it)."""
    from pharmgpt.rag.loaders import ocr

    st = ocr.status()
    return st.available, (
        f"scanned PDFs and images are read: {st.detail}" if st.available else st.detail
    )


# what the admin page's health tab shows (the signing check is the command's: it needs a token)
HEALTH_CHECKS = (
    ("Data store (Supabase API)", check_supabase),
    ("Vector store (Chroma)", check_chroma),
    ("Language model", check_llm),
    ("Scans (OCR)", check_ocr),
)


def health_checks(settings: Settings) -> list[tuple[str, bool, str]]:
    """The doctor's checks against what a running server uses, as (label, ok, detail); a check
    that raises is a failed check, never an error of the page that shows them."""
    out = []
    for name, check in HEALTH_CHECKS:
        try:
            ok, detail = check(settings)
        except Exception as e:
            ok, detail = False, f"{type(e).__name__}: {e}"
        out.append((name, ok, detail))
    return out


def run_doctor(as_json: bool = False) -> int:
    try:
        settings = load_settings()
    except PharmGPTError as e:
        print(f"configuration: {e.message}")
        return 1
    checks = {
        "supabase": check_supabase(settings),
        "signing": check_signing(settings),
        "chroma": check_chroma(settings),
        "llm": check_llm(settings),
        "ocr": check_ocr(settings),
    }
    if as_json:
        print(
            json.dumps(
                {
                    "data": describe_data(settings),
                    "settings": settings.describe(),
                    "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in checks.items()},
                },
                indent=2,
            )
        )
    else:
        print(describe_data(settings))
        print("configuration")
        for k, v in settings.describe().items():
            print(f"  {k:<28} {v}")
        print("checks")
        for k, (ok, detail) in checks.items():
            print(f"  {'OK  ' if ok else 'FAIL'} {k:<9} {detail}")
    return 0 if checks["supabase"][0] and checks["signing"][0] else 1
