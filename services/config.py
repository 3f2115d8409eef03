"""All configuration in one place: environment first, then the secrets file (secrets_path()).

Validated at start-up with messages that say what to fix (DESIGN D9).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .model_names import EMBEDDER_KINDS, ONNX_INT8

# the checkout, or site-packages/pharmgpt when installed (never a place for data: _is_checkout)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LEGACY_DATA_DIR = (
    PROJECT_ROOT / ".pharmgpt"
)  # where a checkout kept its data before the per-user default
SECRET_FIELDS = {
    "supabase_anon_key",
    "supabase_service_role_key",
    "supabase_jwt_secret",
    "groq_api_key",
    "openai_api_key",
    "supabase_jwt_signing_key",
}
# Supabase's current names for the API keys; the legacy names (the field names) work too
ENV_ALIASES = {
    "supabase_anon_key": "SUPABASE_PUBLISHABLE_KEY",
    "supabase_service_role_key": "SUPABASE_SECRET_KEY",
}
_FROM_ENV = "from PHARMGPT_DATA_DIR"
_LEGACY = "the checkout's old default, kept because it holds data; set PHARMGPT_DATA_DIR to move it"


def _is_checkout() -> bool:
    """Run from a source checkout (editable install), not from an installed package."""
    return not {"site-packages", "dist-packages"} & set(PROJECT_ROOT.parts)


def _legacy_data_in_use() -> bool:
    """An existing user's data in <checkout>/.pharmgpt: keep using it, so an upgrade loses
    nothing."""
    return _is_checkout() and LEGACY_DATA_DIR.is_dir() and any(LEGACY_DATA_DIR.iterdir())


def user_data_dir() -> Path:
    """The per-user data directory (XDG): $XDG_DATA_HOME/pharmgpt, else ~/.local/share/pharmgpt.
    A relative XDG_DATA_HOME is ignored, as the XDG spec says."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "pharmgpt"


def default_data_dir() -> Path:
    """The data directory when PHARMGPT_DATA_DIR is unset: per user, never inside the installed
    package (a reinstall would lose it) and never the current directory; the checkout's old
    `.pharmgpt` while it holds data."""
    return LEGACY_DATA_DIR if _legacy_data_in_use() else user_data_dir()


def secrets_path() -> Path | None:
    """The secrets file: PHARMGPT_SECRETS_FILE, else the first that exists of
    ./.streamlit/secrets.toml (where Streamlit looks), the checkout's .streamlit/secrets.toml,
    and secrets.toml in the data directory (PHARMGPT_DATA_DIR from the environment, or the
    default)."""
    if os.environ.get("PHARMGPT_SECRETS_FILE"):
        return Path(os.environ["PHARMGPT_SECRETS_FILE"])
    data = os.environ.get("PHARMGPT_DATA_DIR")
    candidates = [Path.cwd() / ".streamlit" / "secrets.toml"]
    if _is_checkout():
        candidates.append(PROJECT_ROOT / ".streamlit" / "secrets.toml")
    candidates.append(
        (Path(data).expanduser().resolve() if data else default_data_dir()) / "secrets.toml"
    )
    return next((p for p in candidates if p.is_file()), None)


def _secrets_file() -> dict:
    path = secrets_path()
    if path is None or not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path} could not be read: {e}") from e


def data_dir(env: dict[str, str] | None = None) -> Path:
    """The one place the data directory is decided, for every command and the app:
    PHARMGPT_DATA_DIR (environment, then the secrets file), else default_data_dir().

    `env` replaces both sources (tests). A relative PHARMGPT_DATA_DIR is taken from where
    the command runs, as the user typed it; the default never depends on it."""
    if env is None:
        raw = os.environ.get("PHARMGPT_DATA_DIR") or _secrets_file().get("PHARMGPT_DATA_DIR")
    else:
        raw = env.get("PHARMGPT_DATA_DIR")
    return Path(str(raw)).expanduser().resolve() if raw else default_data_dir()


def data_dir_source(path: Path) -> str:
    """Why `path` is the data directory, in words a command prints."""
    if path == default_data_dir():
        return _LEGACY if path == LEGACY_DATA_DIR else "the default"
    return _FROM_ENV


def describe_data(settings: Settings) -> str:
    """One line naming the database and data directory a command used (it prints it)."""
    where = f"data dir {settings.data_dir} ({data_dir_source(settings.data_dir)})"
    if settings.embedded:
        return f"database: embedded Postgres in {settings.data_dir / 'pgdata'}; {where}"
    return f"database: Supabase at {settings.supabase_url}; {where}"


@dataclass(frozen=True)
class Settings:
    # data store (no URL: the embedded local stack)
    supabase_url: str | None = None
    supabase_anon_key: str | None = (
        None  # sb_publishable_… (SUPABASE_PUBLISHABLE_KEY) or the legacy anon JWT
    )
    supabase_service_role_key: str | None = (
        None  # sb_secret_… (SUPABASE_SECRET_KEY) or the legacy JWT
    )
    supabase_jwt_signing_key: str | None = (
        None  # private JWK / PEM (ES256, RS256), or a file holding it
    )
    supabase_jwt_kid: str | None = None  # the kid, for a PEM key or an imported shared secret
    supabase_jwt_secret: str | None = (
        None  # legacy HS256 secret (or a shared secret imported with a kid)
    )
    data_dir: Path = field(default_factory=default_data_dir)  # decided by data_dir() in load()
    # accounts and sessions
    bcrypt_rounds: int = 12
    min_password_length: int = 8
    max_failed_logins: int = 5
    failure_window_s: int = 15 * 60
    lockout_s: int = 15 * 60
    session_ttl_s: int = 24 * 3600
    session_max_age_s: int = 30 * 24 * 3600  # absolute: activity never extends a session past this
    session_touch_interval_s: int = 60
    user_jwt_ttl_s: int = 15 * 60
    # backend calls
    request_timeout_s: float = 15.0
    retry_attempts: int = 4
    retry_max_wait_s: float = 4.0
    # rows per page: at most the API's max-rows cap (Supabase's "Max rows", default 1000;
    # localbase's --max-rows), so a capped page is never mistaken for the last one
    db_max_rows: int = 1000
    # cache (seconds) and process memory ceiling for it
    cache_ttl_conversations_s: int = 300
    cache_ttl_documents_s: int = 600
    # a list holding a document in flight: the worker may be another process, which cannot tell
    # this one's cache that the document moved on (ready, failed), so such a list is re-read soon
    cache_ttl_in_flight_s: float = 2.0
    cache_ttl_user_s: int = 1800
    cache_max_entries: int = 5000
    cache_memory_limit_mb: int = 2048
    slow_call_ms: float = 500.0
    # uploads
    max_upload_bytes: int = 25 * 1024 * 1024
    # RAG: ingestion, index and retrieval
    chroma_host: str | None = None  # a Chroma server; unset: the embedded store in data_dir/chroma
    chroma_port: int = 8000
    chunk_size: int = 1000
    chunk_overlap: int = 200
    max_pages: int = 2000
    max_ocr_pages: int = 100  # scanned pages (no text layer) or image frames OCR'd per file
    ingest_attempts: int = 3
    # where the ingestion worker runs: `pharmgpt run` supervises it as its own process and sets
    # this to false for Streamlit; true (a bare `streamlit run`, the AppTests) runs it in the app
    app_runs_worker: bool = True
    worker_restart_max_s: float = (
        30.0  # the supervisor's longest wait before restarting a dead worker or Chroma server
    )
    # ingestion against hostile files (docs/security.md): each job is read in its own process
    ingest_timeout_s: float = 120.0  # wall clock for reading one file...
    ocr_page_timeout_s: float = 30.0  # ...plus this for each scanned page it has to OCR
    ingest_memory_mb: int = 1024  # address space of that process
    ingest_concurrency: int = 2  # jobs at once per worker, so one big file cannot hold the queue
    ingest_heartbeat_s: int = 10  # a running job's lock is renewed this often...
    ingest_stale_after_s: int = 60  # ...and reclaimed this long after the last renewal
    max_chars: int = 5_000_000  # extracted characters per file
    max_chunks: int = 10_000  # searchable passages per file
    max_paragraphs: int = 200_000  # DOCX paragraphs + table cells, CSV cells
    max_columns: int = 1_000  # CSV columns in one row
    max_cell_chars: int = 20_000  # characters in one CSV cell
    max_pdf_operators: int = 3_000_000  # PDF content-stream operators over all pages
    max_xml_depth: int = 200
    max_unpacked_bytes: int = 200 * 2**20  # a DOCX's unzipped size
    # the embedder (rag/embeddings.py): onnx-int8 (built here from the packaged weights) or torch.
    # onnx-int8 is the default because it passed its quality gate (BENCHMARKS.md, issue #14)
    embedder: str = ONNX_INT8
    embedder_threads: int = 0  # onnxruntime intra-op threads; 0: one per core, at most 4
    rrf_dense_weight: float = 1.0
    rrf_lexical_weight: float = 1.0
    min_similarity: float = 0.35
    min_bm25: float = 3.0
    warm_start: bool = (
        True  # load the embedder, Chroma and BM25 at start-up, not on the first question
    )
    # LLM: Groq when a key is set, else an OpenAI-compatible server when a URL is set, else offline
    groq_api_key: str | None = None
    llm_fallback_models: str = (
        ""  # Groq: replaces the provider's own fallbacks when set (comma-separated)
    )
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None  # unset: the models the server lists at OPENAI_BASE_URL/models

    @property
    def embedded(self) -> bool:
        """No Supabase project configured: run on the local stack."""
        return not self.supabase_url

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.sqlite3"

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        secrets = _secrets_file() if env is None else {}
        env = dict(os.environ) if env is None else env

        def get(key: str) -> str | None:
            value = env.get(key) or secrets.get(key)
            return str(value) if value not in (None, "") else None

        values: dict = {"data_dir": data_dir({"PHARMGPT_DATA_DIR": get("PHARMGPT_DATA_DIR") or ""})}
        for f in dataclasses.fields(cls):
            if f.name == "data_dir":
                continue
            bare = (
                f.name.startswith(("supabase_", "chroma_", "openai_")) or f.name == "groq_api_key"
            )
            raw = get(f.name.upper()) if bare else get(f"PHARMGPT_{f.name.upper()}")
            if f.name in ENV_ALIASES:
                alias = get(ENV_ALIASES[f.name])
                if raw is not None and alias is not None and raw != alias:
                    raise ConfigError(
                        f"{f.name.upper()} and {ENV_ALIASES[f.name]} are both set, to different "
                        "keys: keep one"
                    )
                raw = alias or raw
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        s = cls(**values)
        s.validate()
        return s

    def validate(self) -> None:
        if self.supabase_url:
            missing = [
                f"{ENV_ALIASES[k]} (or {k.upper()})"
                for k in ("supabase_anon_key", "supabase_service_role_key")
                if not getattr(self, k)
            ]
            if not (self.supabase_jwt_signing_key or self.supabase_jwt_secret):
                missing.append("SUPABASE_JWT_SIGNING_KEY (or, legacy, SUPABASE_JWT_SECRET)")
            if missing:
                raise ConfigError(
                    "SUPABASE_URL is set, so these are needed too: "
                    + ", ".join(missing)
                    + " (set them in the environment or .streamlit/secrets.toml; "
                    "see docs/supabase.md)"
                )
            if not self.supabase_url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"SUPABASE_URL must start with http:// or https://, got {self.supabase_url!r}"
                )
            _check_api_key("SUPABASE_PUBLISHABLE_KEY", self.supabase_anon_key, "anon")
            _check_api_key("SUPABASE_SECRET_KEY", self.supabase_service_role_key, "service_role")
            self.signing_key()
        if not 4 <= self.bcrypt_rounds <= 16:
            raise ConfigError(
                f"PHARMGPT_BCRYPT_ROUNDS must be between 4 and 16, got {self.bcrypt_rounds}"
            )
        if self.user_jwt_ttl_s < 120:
            raise ConfigError("PHARMGPT_USER_JWT_TTL_S must be at least 120 seconds")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError("PHARMGPT_CHUNK_OVERLAP must be smaller than PHARMGPT_CHUNK_SIZE")
        if self.session_ttl_s < 60:
            raise ConfigError("PHARMGPT_SESSION_TTL_S must be at least 60 seconds")
        if self.ingest_heartbeat_s * 3 > self.ingest_stale_after_s:
            raise ConfigError(
                "PHARMGPT_INGEST_STALE_AFTER_S must be at least 3 x PHARMGPT_INGEST_HEARTBEAT_S"
            )
        if self.embedder not in EMBEDDER_KINDS:
            raise ConfigError(
                f"PHARMGPT_EMBEDDER must be {' or '.join(EMBEDDER_KINDS)}, got {self.embedder!r}"
            )
        if self.session_max_age_s < 60:
            raise ConfigError("PHARMGPT_SESSION_MAX_AGE_S must be at least 60 seconds")

    def signing_key(self):
        """The key user tokens are signed with (a localbase.keys.SigningKey): the signing key if
        set, else the shared secret (HS256; with SUPABASE_JWT_KID when it was imported with one)."""
        from pharmgpt.localbase.keys import KeyMaterialError, SigningKey, load_signing_key

        try:
            if self.supabase_jwt_signing_key:
                return load_signing_key(self.supabase_jwt_signing_key, self.supabase_jwt_kid)
            if self.supabase_jwt_secret:
                return SigningKey.shared_secret(self.supabase_jwt_secret, self.supabase_jwt_kid)
        except KeyMaterialError as e:
            raise ConfigError(f"SUPABASE_JWT_SIGNING_KEY: {e}") from None
        raise ConfigError(
            "no signing key: set SUPABASE_JWT_SIGNING_KEY (or, legacy, SUPABASE_JWT_SECRET)"
        )

    @property
    def server_secret(self) -> bytes:
        """A secret only this server knows, for keyed hashes (e.g. unknown names in the audit
        log)."""
        import hashlib

        material = (
            self.supabase_jwt_signing_key
            or self.supabase_jwt_secret
            or self.supabase_service_role_key
        )
        return hashlib.sha256(
            b"pharmgpt-server-secret:" + (material or "pharmgpt").encode()
        ).digest()

    def describe(self) -> dict[str, str]:
        """Every setting, secrets masked: for `pharmgpt doctor` and logs."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = f"set ({len(str(value))} chars, ends …{str(value)[-4:]})"
            out[f.name] = "not set" if value is None else str(value)
        return out


def _check_api_key(name: str, value: str | None, role: str) -> None:
    """The publishable key must not be the secret one (or the reverse): a user's data path
    would then run as service_role, past RLS."""
    if not value:
        return
    from pharmgpt.localbase.keys import (
        PUBLISHABLE_PREFIX,
        SECRET_PREFIX,
        api_key_role,
        is_opaque_api_key,
    )

    if is_opaque_api_key(value):
        found = api_key_role(value)
        if found is None:
            raise ConfigError(
                f"{name} must start with {PUBLISHABLE_PREFIX} or {SECRET_PREFIX} (or be a legacy "
                "JWT key)"
            )
    else:
        import jwt

        try:
            found = jwt.decode(value, options={"verify_signature": False}).get("role")
        except jwt.PyJWTError:
            raise ConfigError(f"{name} is neither an sb_ key nor a readable JWT") from None
    if found != role:
        raise ConfigError(
            f"{name} is a key for {found!r}, not {role!r}: the keys are swapped or wrong"
        )


def _coerce(name: str, typ, raw: str):
    typ = str(typ)
    try:
        if "Path" in typ:
            return Path(raw).expanduser().resolve()
        if typ.startswith("int"):
            return int(raw)
        if typ.startswith("float"):
            return float(raw)
        if typ.startswith("bool"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise ConfigError(f"{name.upper()} must be a {typ.split(' ')[0]}, got {raw!r}") from None
    return raw
